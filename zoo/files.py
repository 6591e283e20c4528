"""Writing files so that nothing half-written is ever seen: one atomic-write helper for every output.

Checkpoints, colorized photos, results, reports and downloads all go through :func:`atomic_write`: the bytes
go to a file in a private temporary folder beside the target (``.<name>.<pid>-<random>.tmp/<name>``), which
is flushed to disk and renamed over the target only once complete, then the folder entry is flushed too. A
writer's own temporaries (safetensors writes through a ``.tmpXXXXXX`` file of its own) land in that folder
as well. A crash leaves the old file (or none) and, at worst, a temporary folder named for a process that no
longer runs, which :func:`remove_stale_temporaries` clears.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"
_TEMPORARY = re.compile(r"\..+\.(?P<pid>\d+)-[0-9a-f]{8}" + re.escape(TEMP_SUFFIX))


def temporary_name(path: Path) -> Path:
    """A fresh temporary path beside ``path`` that :func:`remove_stale_temporaries` recognises."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


@contextlib.contextmanager
def atomic_write(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on leaving the block without an error it is
    fsynced and renamed over ``path``. Its temporary folder is removed either way. Missing parent folders are
    made; the new file gets the permissions the user's umask gives, whatever the writer chose."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = temporary_name(path)
    folder.mkdir()
    try:
        tmp = folder / path.name
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the user's umask applies
        mode = stat.S_IMODE(tmp.stat().st_mode)
        yield tmp
        if stat.S_IMODE(tmp.stat().st_mode) != mode:  # the writer replaced the file (safetensors makes it 0600)
            tmp.chmod(mode)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    _fsync_folder(path.parent)


def write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def remove_stale_temporaries(folder: Path | str, recursive: bool = False) -> list[Path]:
    """Delete the temporaries that writers killed mid-write left in ``folder`` (and, with ``recursive``, in its
    subfolders): those :func:`atomic_write` names for a process that no longer runs. Returns what was deleted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = []
    for parent, folders, names in os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]:
        for name in [*folders, *names]:
            match = _TEMPORARY.fullmatch(name)
            if match and not _running(int(match["pid"])):
                stale.append(Path(parent) / name)
        folders[:] = [f for f in folders if Path(parent) / f not in stale]
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def _running(pid: int) -> bool:
    """Whether a process with id ``pid`` exists (this one included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, under another user
        return True
    return True


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
