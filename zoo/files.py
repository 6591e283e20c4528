"""Writing files so that nothing half-written is ever seen: one atomic-write helper for every output.

Checkpoints, colorized photos, results, reports and downloads all go through :func:`atomic_write`: the bytes
go to a temporary file beside the target (``.<name>.<random>.tmp``), which is flushed to disk and renamed over
the target only once complete, then the folder entry is flushed too. A crash leaves the old file (or none)
and, at worst, a temporary file that :func:`remove_stale_temporaries` clears.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def temporary_name(path: Path) -> Path:
    """A fresh temporary path beside ``path`` that :func:`remove_stale_temporaries` recognises."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


@contextlib.contextmanager
def atomic_write(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on leaving the block without an error it is
    fsynced and renamed over ``path``, otherwise deleted. Missing parent folders are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the user's umask applies, as to any file
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
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


def remove_stale_temporaries(folder: Path | str) -> list[Path]:
    """Delete the temporary files that writers killed mid-write left in ``folder`` (not its subfolders)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


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
