"""Another colorizer's output files, paired with the photos they colour: by relative path and stem.

One path through it::

    pairing = match_predictions(truths, folder)     # truths: the photos of --data; folder: the outputs
    pairing.pairs, pairing.missing, pairing.extra   # (truth, prediction) pairs; truths without a prediction;
                                                    # files that match no truth
    check_sizes(pairing.pairs, protocol)            # refuses predictions of another size, unless the protocol resizes

A truth's key is its path relative to the folder that holds all the truths, without its extension; a
prediction's is its path relative to ``folder``, without its extension. ``photos/city/bus.jpg`` is coloured by
``folder/city/bus.png`` (any of the image formats the zoo reads, :data:`zoo.images.IMAGE_EXTENSIONS`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zoo.data import resolve_source
from zoo.harness.protocols import Protocol
from zoo.images import upright_size

LISTED = 5  # file names a one-line message lists before "..."


class PredictionsError(ValueError):
    """Prediction files that cannot be scored against their truths; the message says which and why."""


@dataclass
class Pairing:
    """Which prediction file colours which truth."""

    pairs: list[tuple[Path, Path]]  # (truth, prediction), in the truths' order
    missing: list[Path]  # truths without a prediction
    extra: list[Path]  # prediction files that match no truth

    def summary(self, folder: Path) -> list[str]:
        """A line each on the missing and the extra files (nothing when every file has its partner)."""
        lines = []
        if self.missing:
            lines.append(f"{len(self.missing)} of {len(self.missing) + len(self.pairs)} photos have no prediction in"
                         f" {folder}, scored without them: {names(self.missing)}")
        if self.extra:
            lines.append(f"{len(self.extra)} files in {folder} match no photo, not scored: {names(self.extra)}")
        return lines


def names(paths: Sequence[Path]) -> str:
    """The first few file names, then how many more."""
    shown = ", ".join(p.name for p in paths[:LISTED])
    return shown + (f" ... and {len(paths) - LISTED} more" if len(paths) > LISTED else "")


def _key(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def match_predictions(truths: Sequence[Path], folder: Path) -> Pairing:
    """Pair every truth with the prediction file under ``folder`` of the same relative path and stem.

    Raises :class:`PredictionsError` when two files under ``folder`` claim one truth (``bus.png`` and
    ``bus.jpg``) or when no file matches any truth.
    """
    folder = Path(folder).expanduser()
    root = Path(os.path.commonpath([p.parent.resolve() for p in truths]))
    by_key = {_key(p.resolve(), root): p for p in truths}
    found: dict[str, list[Path]] = {}
    for path in resolve_source(str(folder)):
        found.setdefault(_key(path, folder), []).append(path)
    clashes = [files for files in found.values() if len(files) > 1]
    if clashes:
        raise PredictionsError(f"{len(clashes)} photos have more than one prediction in {folder}: "
                               + "; ".join(" and ".join(p.name for p in files) for files in clashes[:LISTED]))
    pairs = [(truth, found[key][0]) for key, truth in by_key.items() if key in found]
    if not pairs:
        raise PredictionsError(f"no file in {folder} matches a photo by relative path and stem (photos such as"
                               f" {next(iter(by_key))!r}, files such as {next(iter(found), 'none')!r})")
    return Pairing(pairs, [truth for key, truth in by_key.items() if key not in found],
                   sorted(files[0] for key, files in found.items() if key not in by_key))


def check_sizes(pairs: Sequence[tuple[Path, Path]], protocol: Protocol) -> None:
    """Raise :class:`PredictionsError` in one line when a prediction's size differs from its truth's and the
    protocol crops (the crops would show different parts of the scene); a resizing protocol takes any size."""
    if protocol.resizes_predictions:
        return
    wrong = [(truth, prediction, upright_size(truth), upright_size(prediction)) for truth, prediction in pairs]
    wrong = [entry for entry in wrong if entry[2] != entry[3]]
    if wrong:
        listed = ", ".join(f"{p.name} {w}x{h} for {t.name} {tw}x{th}" for t, p, (tw, th), (w, h) in wrong[:LISTED])
        raise PredictionsError(f"{len(wrong)} predictions differ in size from their photos ({listed}"
                               f"{' ...' if len(wrong) > LISTED else ''}): protocol {protocol.name} crops, so write"
                               f" them at the photos' size or score with --protocol resize256")
