"""Where the zoo may write: the one output-path policy of ``zoo train``, ``colorize``, ``export`` and ``report``.

The rules, checked before any work starts:

* never write onto an input: an output that is one of the command's input files (the same file, by whatever
  path or link) is refused;
* never into an existing run unless resuming: a run folder is new or empty, and lies outside the photos it
  trains on; ``zoo train --resume`` continues a run in its own folder;
* never replace a file without ``--overwrite``: export and report refuse an existing file, colorize skips it;
* an output folder inside an input folder is not an input: colorize leaves it out of the folder it walks, so
  its earlier outputs are never colorized again;
* every output path can be made: no part of it is an existing file (and a file's path is not a folder).

A folder approved for writing loses the stale temporaries that writers killed mid-write left in it
(:func:`zoo.files.remove_stale_temporaries`). Refusals are :class:`OutputError`: one line naming the path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from zoo import runs
from zoo.errors import ZooError
from zoo.files import remove_stale_temporaries


class OutputError(ZooError):
    """An output path the policy refuses; the message names it and says what to do instead."""


def identity(path: Path | str) -> tuple[int, int] | None:
    """(device, inode) of the file or folder at ``path`` (links followed); None when there is none."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def inside(path: Path | str, folder: Path | str) -> bool:
    """Whether ``path`` lies in ``folder`` or below it (``folder`` itself included), by resolved paths."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def creatable(path: Path, folder: bool) -> None:
    """Refuse ``path`` unless it can be made as a folder (``folder``) or a file: no part of it is a file, and an
    existing ``path`` is of that kind."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{path}: cannot be made: {parent} is a file, not a folder")
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{path}: is a file, not a folder")
    if not folder and path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")


def output_file(path: Path | str, inputs: Iterable[Path | str] = (), overwrite: bool = False) -> Path:
    """``path`` approved as the one file a command writes (export, report): makeable, not one of ``inputs``,
    and not an existing file unless ``overwrite``."""
    path = Path(path)
    creatable(path, folder=False)
    if identity(path) is not None and identity(path) in {identity(p) for p in inputs}:
        raise OutputError(f"{path}: is an input of this command; writing there would destroy it (choose another"
                          " --out)")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: exists (--overwrite replaces it)")
    remove_stale_temporaries(path.parent)
    return path


def output_folder(folder: Path | str) -> Path:
    """``folder`` approved as the folder a command writes many files into (colorize, results): makeable; its
    stale temporaries, at any depth, removed. Each file written there is checked by its writer."""
    folder = Path(folder)
    creatable(folder, folder=True)
    remove_stale_temporaries(folder, recursive=True)
    return folder


def new_folder(folder: Path | str, inputs: Iterable[Path | str] = ()) -> Path:
    """``folder`` approved as a folder a command makes whole (``zoo export --format hub``): makeable, new or
    empty (nothing there is replaced), and holding none of ``inputs``."""
    folder = Path(folder)
    creatable(folder, folder=True)
    if folder.is_dir() and any(folder.iterdir()):
        raise OutputError(f"{folder}: is not empty; give a new --out (a Hub folder is written whole)")
    if any(inside(path, folder) for path in inputs):
        raise OutputError(f"{folder}: holds an input of this command (choose another --out)")
    return folder


def run_folder(folder: Path | str, inputs: Iterable[Path | str] = (), resume: bool = False) -> Path:
    """``folder`` approved as a training run's folder: new or empty, outside every input folder; with
    ``resume``, a folder holding a run. Its stale temporaries, at any depth, are removed."""
    folder = Path(folder)
    if resume:
        if not (folder / runs.RUN_FILE).is_file():
            raise OutputError(f"{folder}: holds no run to resume (no {runs.RUN_FILE})")
    else:
        creatable(folder, folder=True)
        if folder.is_dir() and any(folder.iterdir()):
            if (folder / runs.RUN_FILE).exists():
                raise OutputError(f"{folder}: holds another run; give a new --out, or continue that run with"
                                  f" --resume {folder}")
            raise OutputError(f"{folder}: is not empty; a run needs a new or empty folder")
        for source in inputs:
            if Path(source).is_dir() and inside(folder, source):
                raise OutputError(f"{folder}: lies inside the photo folder {source}, where its sample grids would"
                                  " be read as photos; choose an --out outside it")
    remove_stale_temporaries(folder, recursive=True)
    return folder
