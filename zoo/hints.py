"""Colour hints: the person colorizing a photo says what colour a point of it is.

One path through it::

    parse_hint("120,80,#c0392b") or read_hints(Path("photo.json")) -> [Hint(x, y, ab, size)]
    check_inside(hints, (width, height), where)         # one line naming the file for a hint off the photo
    hint_cells(hint, photo_size, grid_shape)             # the cells of a (h, w) grid a hint covers
    hint_channels(hints, photo_size, (h, w))             # (3, h, w): hint ab and mask, a guided generator's input
    simulated_hints(ab_true, count, patch, seed)         # for scoring: the truth's mean colour over P x P patches
    random_hint_channels(ab_batch, generator)            # for training (Zhang et al. 2017's simulation)

A hint is a pixel of the upright photo (``x`` its column, ``y`` its row, from the top left, after EXIF
orientation) and a colour: ``#rrggbb`` sRGB, of which only a* and b* are used (the photo keeps its own
lightness), or ``ab = [a, b]`` in CIE Lab units. ``size`` is the side of the square of photo pixels it covers,
centred on the point (default 1: the pixel itself). Photos' hint files are JSON lists of
``{"x": 120, "y": 80, "color": "#c0392b"}`` (``"ab"`` instead of ``"color"``, ``"size"`` and, for a video, the
``"frame"`` it belongs to, optional). Every problem is one line naming the file and the hint.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from zoo.color import AB_SCALE, rgb_to_lab
from zoo.errors import ZooError, one_line

HINT_CHANNELS = 3  # hint a, hint b (normalised, 0 where no hint) and the mask (1 where a hint is)
AB_LIMIT = 128.0  # |a*|, |b*| of any colour a hint may name (sRGB's gamut reaches about 98 and 107)
_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
_KEYS = {"x", "y", "color", "ab", "size", "frame", "spread", "alike"}
SPREADS = ("nearby", "here", "alike")  # how far a hint's colour goes (Hint.spread)


class HintError(ZooError, ValueError):
    """A hint that cannot be used; the message names its file (or option) and the hint, in one line."""


@dataclass(frozen=True)
class Hint:
    """A colour at a pixel of the upright photo: ``ab`` in Lab units over the ``size`` x ``size`` square of
    pixels centred on column ``x``, row ``y``; ``frame`` the video frame it belongs to (None for a photo);
    ``spread``, how far the colour goes (:mod:`zoo.propagate`): ``nearby`` along similar lightness until edges
    stop it; ``here``, a small thing (a beak, a button), held closer to the spot; ``alike``, also everything the
    model coloured like this spot, wherever it is (a sky, a field, one fabric)."""

    x: int
    y: int
    ab: tuple[float, float]
    size: int = 1
    frame: int | None = None
    spread: str = "nearby"

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the pixels it covers, right and bottom exclusive (not clipped)."""
        left, top = self.x - self.size // 2, self.y - self.size // 2
        return left, top, left + self.size, top + self.size

    def to_json(self) -> dict[str, object]:
        """The hint as a hint file holds it (``ab`` in Lab units)."""
        record: dict[str, object] = {"x": self.x, "y": self.y, "ab": [round(v, 4) for v in self.ab]}
        if self.size != 1:
            record["size"] = self.size
        if self.frame is not None:
            record["frame"] = self.frame
        if self.spread != "nearby":
            record["spread"] = self.spread
        return record


def colour_ab(text: str) -> tuple[float, float]:
    """a*, b* (Lab units, D65) of the sRGB colour ``#rrggbb`` (or ``#rgb``; the ``#`` optional)."""
    match = _HEX.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"unreadable colour {text!r} (expected #rrggbb)")
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    rgb = torch.tensor([int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4)], dtype=torch.float64)
    lab = rgb_to_lab(rgb.view(3, 1, 1)).flatten()
    return float(lab[1]), float(lab[2])


def hex_colour(rgb: Sequence[float]) -> str:
    """``#rrggbb`` of sRGB values in [0, 1]."""
    return "#" + "".join(f"{round(min(1.0, max(0.0, float(v))) * 255):02x}" for v in rgb)


def _number(value: object, what: str, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if integer and value != int(value):
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    return float(value)


def hint_from_record(record: object, default_size: int = 1) -> Hint:
    """A :class:`Hint` from one entry of a hint file; ValueError saying what is wrong with it."""
    if not isinstance(record, dict):
        raise ValueError(f"expected an object like {{\"x\": 120, \"y\": 80, \"color\": \"#c0392b\"}}, got {record!r}")
    unknown = sorted(set(record) - _KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (a hint has {', '.join(sorted(_KEYS))})")
    missing = [key for key in ("x", "y") if key not in record]
    if missing:
        raise ValueError(f"no {missing[0]!r}")
    if ("color" in record) == ("ab" in record):
        raise ValueError("give its colour as either \"color\": \"#rrggbb\" or \"ab\": [a, b]")
    x, y = (math.floor(_number(record[key], key)) for key in ("x", "y"))
    if "color" in record:
        if not isinstance(record["color"], str):
            raise ValueError(f"unreadable colour {record['color']!r} (expected \"#rrggbb\")")
        ab = colour_ab(record["color"])
    else:
        value = record["ab"]
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError(f"\"ab\" must be a list [a, b], got {value!r}")
        ab = (_number(value[0], "a"), _number(value[1], "b"))
        if max(abs(v) for v in ab) > AB_LIMIT:
            raise ValueError(f"\"ab\" {value!r} is outside Lab's range (|a|, |b| <= {AB_LIMIT:g})")
    size = int(_number(record.get("size", default_size), "size", integer=True))
    if size < 1:
        raise ValueError(f"size must be at least 1 pixel, got {size}")
    frame = record.get("frame")
    if frame is not None:
        frame = int(_number(frame, "frame", integer=True))
        if frame < 0:
            raise ValueError(f"frame must be 0 or more, got {frame}")
    alike = record.get("alike", False)  # "alike": true, the spelling before "spread"
    if not isinstance(alike, bool):
        raise ValueError(f"\"alike\" must be true or false, got {alike!r}")
    spread = record.get("spread", "alike" if alike else "nearby")
    if spread not in SPREADS:
        raise ValueError(f"\"spread\" must be one of {', '.join(SPREADS)}, got {spread!r}")
    if alike and spread != "alike":
        raise ValueError(f"\"alike\": true and \"spread\": {spread!r} disagree")
    return Hint(x, y, ab, size, frame, spread)


def parse_hint(text: str) -> Hint:
    """The hint of ``--hint X,Y,#RRGGBB`` (or ``X,Y,#RRGGBB,SIZE``; a last field ``here``, ``alike`` or
    ``nearby`` says how far it spreads); HintError naming the option otherwise."""
    parts = [part.strip() for part in text.split(",")]
    spread = "nearby"
    if len(parts) > 3 and parts[-1].lower() in SPREADS:
        spread, parts = parts[-1].lower(), parts[:-1]
    try:
        if len(parts) not in (3, 4):
            raise ValueError("expected X,Y,#RRGGBB or X,Y,#RRGGBB,SIZE (and ,here or ,alike: how far it spreads)")
        numbers = {}
        for key, part in zip(("x", "y"), parts[:2], strict=True):
            try:
                numbers[key] = float(part)
            except ValueError:
                raise ValueError(f"{key} must be a number, got {part!r}") from None
        record: dict[str, object] = {**numbers, "color": parts[2], "spread": spread}
        if len(parts) == 4:
            try:
                record["size"] = int(parts[3])
            except ValueError:
                raise ValueError(f"size must be a whole number, got {parts[3]!r}") from None
        return hint_from_record(record)
    except ValueError as err:
        raise HintError(f"--hint {text!r}: {one_line(err)}") from None


def read_hints(path: Path | str) -> list[Hint]:
    """The hints of a JSON hint file; HintError naming the file (and the hint) otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HintError(f"{path}: no such hint file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise HintError(f"{path}: cannot read the hint file ({one_line(err)})") from None
    return parse_hints(text, str(path))


def parse_hints(text: str, where: str) -> list[Hint]:
    """The hints of a hint file's JSON ``text``; HintError naming ``where`` (and the hint) otherwise."""
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        raise HintError(f"{where}: not JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    if not isinstance(records, list):
        raise HintError(f"{where}: expected a JSON list of hints like [{{\"x\": 120, \"y\": 80, \"color\": \"#c0392b\"}}],"
                        f" got {type(records).__name__}")
    hints = []
    for index, record in enumerate(records, 1):
        try:
            hints.append(hint_from_record(record))
        except ValueError as err:
            raise HintError(f"{where}: hint {index}: {one_line(err)}") from None
    return hints


def write_hints(path: Path | str, hints: Iterable[Hint]) -> Path:
    """Write ``hints`` as a hint file, atomically (what :func:`read_hints` reads back)."""
    from zoo import files

    return files.write_text(path, json.dumps([hint.to_json() for hint in hints], indent=1) + "\n")


def check_inside(hints: Iterable[Hint], size: tuple[int, int], where: str | Path) -> None:
    """Raise HintError naming ``where`` for the first hint whose point is off a photo of ``size`` (w, h)."""
    width, height = size
    for index, hint in enumerate(hints, 1):
        if not (0 <= hint.x < width and 0 <= hint.y < height):
            raise HintError(f"{where}: hint {index} at x={hint.x}, y={hint.y} is outside the photo"
                            f" ({width} x {height} pixels, upright)")


def assign_hints(photos: Sequence[tuple[Path, Path]], given: Sequence[Hint] | Path) -> dict[Path, tuple[list[Hint], str]]:
    """Each photo's hints and where they came from, for ``photos`` as (input path, output path relative to the
    output folder): ``given`` hints (``--hint``) or a hint file go with the one photo there must be; a folder of
    hint files gives each photo the file at its output path with ``.json`` (``photo.jpg``: ``photo.json``,
    ``sub/b.png``: ``sub/b.json``). A hint file that no photo takes, or hints for several photos, is a
    HintError: read before anything is written."""
    if isinstance(given, Path) and given.is_dir():
        assigned, used = {}, set()
        for photo, output in photos:
            candidate = given / output.with_suffix(".json")
            if candidate.is_file():
                assigned[photo] = (read_hints(candidate), str(candidate))
                used.add(candidate.resolve())
        for stray in sorted(given.rglob("*.json")):
            if stray.resolve() not in used:
                raise HintError(f"{stray}: a hint file with no photo (hints for photo.jpg go in"
                                f" {given / 'photo.json'}; a folder input's layout is kept)")
        return assigned
    hints, where = (read_hints(given), str(given)) if isinstance(given, Path) else (list(given), "--hint")
    if len(photos) != 1:
        raise HintError(f"{where}: hints for one photo, given {len(photos)} (for a folder, --hints DIR holds"
                        " a STEM.json per photo)")
    return {photos[0][0]: (hints, where)}


# ---------------------------------------------------------------------------------------------------- on a grid


def hint_cells(hint: Hint, photo_size: tuple[int, int], grid_shape: tuple[int, int]) -> tuple[slice, slice]:
    """(rows, columns) of an (h, w) grid laid over a photo of ``photo_size`` (w, h) that ``hint`` covers: every
    cell its square of pixels touches, clipped to the photo, at least the cell of its point."""
    width, height = photo_size
    rows, columns = grid_shape
    left, top, right, bottom = hint.box
    left, top, right, bottom = max(0, left), max(0, top), min(width, right), min(height, bottom)
    col0 = min(columns - 1, left * columns // width)
    row0 = min(rows - 1, top * rows // height)
    col1 = max(col0 + 1, -(-right * columns // width))
    row1 = max(row0 + 1, -(-bottom * rows // height))
    return slice(row0, row1), slice(col0, col1)


def hint_channels(hints: Iterable[Hint], photo_size: tuple[int, int], grid_shape: tuple[int, int]) -> Tensor:
    """(3, h, w) float32: each hint's normalised ab over the cells it covers and a mask of 1 there, 0 elsewhere
    (a later hint over an earlier one wins): what a guided generator takes beside L."""
    channels = torch.zeros(HINT_CHANNELS, *grid_shape)
    for hint in hints:
        rows, columns = hint_cells(hint, photo_size, grid_shape)
        channels[0, rows, columns] = hint.ab[0] / AB_SCALE
        channels[1, rows, columns] = hint.ab[1] / AB_SCALE
        channels[2, rows, columns] = 1.0
    return channels


def photo_seed(name: str) -> int:
    """A seed from a photo's file name, the same on every machine and in every order of photos."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def simulated_hints(ab: Tensor, count: int, patch: int, seed: int) -> list[Hint]:
    """``count`` hints on a photo whose true normalised ab is ``ab`` (2, H, W), as Zhang et al. (2017) evaluate
    (their ``test_sweep.py``): the top-left corner of each ``patch`` x ``patch`` square drawn per axis from a
    normal distribution centred on the photo, its standard deviation a quarter of the span of corners, clipped
    to the photo and floored (``seed``); each hint the truth's mean ab over its square. The first n of a larger
    count are the hints of count n, so a curve over counts adds hints rather than redrawing them."""
    _, height, width = ab.shape
    patch = min(patch, height, width)
    span = torch.tensor([height - patch + 1, width - patch + 1], dtype=torch.float64)
    uniform = torch.rand(count, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    normal = torch.special.ndtri(uniform)  # by its inverse CDF: the first n draws do not depend on count
    corners = (span / 2 + normal * span / 4).clamp(torch.zeros(2, dtype=torch.float64), span - 1).floor().long()
    return [patch_hint(ab, top, left, patch) for top, left in corners.tolist()]


def worst_hint(ab_now: Tensor, ab_true: Tensor, patch: int) -> Hint:
    """The hint a person adds next to a photo coloured ``ab_now`` whose truth is ``ab_true`` (normalised, (2, H,
    W) each): on the ``patch`` x ``patch`` square where the two differ most (the mean over it of the squared a*b*
    difference; the first such square in reading order), the truth's mean ab there. Called after each hint is
    spread, it places hints one by one where the colours are still most wrong."""
    _, height, width = ab_true.shape
    patch = min(patch, height, width)
    error = ((ab_now.double() - ab_true.double()) ** 2).sum(0)[None, None]
    top, left = divmod(int(torch.nn.functional.avg_pool2d(error, patch, stride=1).flatten().argmax()),
                       width - patch + 1)
    return patch_hint(ab_true, top, left, patch)


def patch_hint(ab: Tensor, top: int, left: int, patch: int) -> Hint:
    """The hint a simulation gives for the ``patch`` x ``patch`` square at (``top``, ``left``) of a photo whose
    true normalised ab is ``ab`` (2, H, W): the truth's mean ab over it, in Lab units."""
    mean = ab[:, top:top + patch, left:left + patch].double().mean(dim=(1, 2)) * AB_SCALE
    return Hint(left + patch // 2, top + patch // 2, (float(mean[0]), float(mean[1])), patch)


# ---------------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class HintSampling:
    """How training simulates hints (Zhang et al. 2017, section 3.3): per photo a geometric number of hints
    (``stop`` the chance of stopping before each: 1/8 gives none to one photo in eight, 7 on average, at most
    ``most``), each a square of side uniform in 1 .. ``largest`` pixels, coloured with the truth's mean ab over
    it. Places are uniform over the crop (Zhang et al. centre them as their evaluation does; a random crop is
    already anywhere in the photo)."""

    stop: float = 1 / 8
    largest: int = 5
    most: int = 32


def random_hint_channels(ab: Tensor, generator: torch.Generator | None = None,
                         sampling: HintSampling = HintSampling()) -> Tensor:
    """(B, 3, H, W) hint channels for a training batch of true normalised ab (B, 2, H, W), drawn from
    ``generator`` (the global RNG by default, which training checkpoints, so a resumed run draws the same)."""
    batch, _, height, width = ab.shape
    channels = torch.zeros(batch, HINT_CHANNELS, height, width, dtype=ab.dtype, device=ab.device)
    largest = min(sampling.largest, height, width)
    uniform = torch.rand(batch, generator=generator).clamp(min=1e-12)
    counts = (uniform.log() / math.log(1 - sampling.stop)).floor().clamp(max=sampling.most).long().tolist()
    # box means of every side 1 .. largest, each pixel the mean of the square starting there
    means = [torch.nn.functional.avg_pool2d(ab, side, stride=1) for side in range(1, largest + 1)]
    for index, count in enumerate(counts):
        if count == 0:
            continue
        sides = torch.randint(1, largest + 1, (count,), generator=generator).tolist()
        spots = torch.rand(count, 2, generator=generator).tolist()
        for side, (u, v) in zip(sides, spots, strict=True):
            top, left = int(u * (height - side + 1)), int(v * (width - side + 1))
            channels[index, :2, top:top + side, left:left + side] = means[side - 1][index, :, top, left, None, None]
            channels[index, 2, top:top + side, left:left + side] = 1.0
    return channels
