"""Photo sources, bad-image scanning and the input pipeline that feeds uint8 RGB batches to training.

One path through it::

    resolve_source("sample" | folder | glob | list file | dataset name) -> paths
    scan_images(paths) -> ScanReport (.ok: decodable colour photos; .skipped: why the rest are not)
    split_paths(report.ok) -> train, val
    make_loader(ColorizationDataset(train, 256, train=True), 16, sampler=EpochSampler(len(train), seed, epoch))
        -> uint8 batches (B, 3, 256, 256)

Every decode goes through :func:`zoo.images.decode_rgb` (EXIF-aware; CMYK, palette, 16-bit and alpha handled).
Randomness comes only from the per-item seeds that ``EpochSampler`` hands out, never from global or worker RNG,
so a run resumed at any sample reproduces the same crops and flips bit for bit. Colour conversion to Lab
happens later, on the device, in batches (:mod:`zoo.color`, which also measures chroma here).
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import random
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from zoo import downloads, files
from zoo.color import rgb_to_lab
from zoo.errors import ZooError, one_line
from zoo.images import (
    MAX_PIXELS,
    SINGLE_CHANNEL_MODES,
    BadImageError,
    decode_rgb,
    is_image_name,
    load_rgb,
    resize_short_side,
)

SAMPLE_DIR = Path(__file__).parent / "sample_photos"
EXTRA_DIR = SAMPLE_DIR / "extra"  # the second set of 191 photos (extra/MANIFEST.tsv), 17 more Debian packages
HELDOUT_LIST = SAMPLE_DIR / "heldout.txt"  # 50 sample photos no shipped model or recipe tuning trains on
NEAR_COPIES_LIST = SAMPLE_DIR / "near-copies.txt"  # near-copies of held-out photos: in no training source
# sample-train's cross-validation folds, as every fold figure of the model cards is made: the sorted photos
# shuffled by random.Random(FOLD_SEED), fold i every FOLDS-th of them from the i-th (86 photos; its training
# photos the other 171 or 172). Folds of a seeded shuffle: photos of one scene can fall in different folds.
FOLDS, FOLD_SEED = 3, 0
# Named sources of the embedded sample: every photo, the second set alone, the held-out ones, the rest (what
# training uses) and its folds.
WHOLE_SOURCES = ("sample", "sample-extra", "heldout", "sample-train")
FOLD_SOURCES = tuple(f"sample-fold{i}{part}" for i in range(FOLDS) for part in ("", "-train"))
SAMPLE_SOURCES = (*WHOLE_SOURCES, *FOLD_SOURCES)
# Mean Lab chroma below which a photo counts as grayscale. Measured on 64 px thumbnails of the 120 shared photos:
# the nearly gray one (gnome-control-center-data--guitar2.jpg) has 0.65, the least colourful colour photo
# (gnome-control-center-data--calculator.jpg) 1.53; 1.0 sits a factor of about 1.5 from each.
MIN_CHROMA = 1.0
THUMBNAIL = 64  # short side at which the scan measures chroma
LOAD_SCALE = 286 / 256  # pix2pix: resize to 286, random-crop 256
SCAN_CACHE = "scan-cache.json"
_SCAN_CACHE_VERSION = 2


class SourceError(ZooError, ValueError):
    """An image source that cannot be read; the message names it (the file, for a list file) and why."""


class EmptyDatasetError(SourceError):
    """A source with no usable image; the message names the source and why."""


# ---------------------------------------------------------------------------------------------------- sources


def resolve_source(source: str = "sample", cache_dir: Path | None = None) -> list[Path]:
    """Image paths of ``source``, sorted.

    ``source`` is ``"sample"`` (the 310 photos shipped in the package), ``"sample-extra"`` (the 191 of them in
    ``extra/``), ``"heldout"`` (the 50 listed in ``heldout.txt``), ``"sample-train"`` (the others but the 3
    near-copies of held-out photos ``near-copies.txt`` lists: 257), ``"sample-fold0"`` .. ``"sample-fold2"``
    (its cross-validation folds of 86 and 85) and ``"sample-fold0-train"`` .. (each fold's others), a named dataset of
    ``zoo.downloads.DATASETS`` (downloaded into the cache on first use), a folder (searched recursively for
    image extensions), a list file (one path a line, relative to the list file; blank lines and ``#`` comments
    ignored), an image file, or a glob such as ``"photos/**/*.jpg"``.
    """
    if source in SAMPLE_SOURCES:
        return _sample_sources()[source]
    if source in downloads.DATASETS:
        return downloads.fetch(source, cache_dir)
    path = Path(source).expanduser()
    if path.is_dir():
        return _images_under(path)
    if path.is_file():
        return [path] if is_image_name(path) else _read_list(path)
    if any(c in source for c in "*?["):
        matches = glob.glob(os.path.expanduser(source), recursive=True)
        return sorted(Path(p) for p in matches if is_image_name(Path(p)) and os.path.isfile(p))
    raise SourceError(
        f"unknown image source {source!r}: expected {', '.join(WHOLE_SOURCES)}, {FOLD_SOURCES[0]} .."
        f" {FOLD_SOURCES[-2]} (-train for a fold's training photos), a folder, a glob, a list file or a dataset name "
        f"({', '.join(sorted(downloads.DATASETS))})"
    )


def _sample_sources() -> dict[str, list[Path]]:
    """Every named source of the embedded sample (:data:`SAMPLE_SOURCES`), each sorted."""
    sample, heldout = _images_under(SAMPLE_DIR), set(_read_list(HELDOUT_LIST))
    untrained = heldout | set(_read_list(NEAR_COPIES_LIST))
    train = [p for p in sample if p not in untrained]
    shuffled = list(train)
    random.Random(FOLD_SEED).shuffle(shuffled)
    sources = {"sample": sample, "sample-extra": _images_under(EXTRA_DIR), "heldout": sorted(heldout),
               "sample-train": train}
    for i in range(FOLDS):
        fold = set(shuffled[i::FOLDS])
        sources[f"sample-fold{i}"] = sorted(fold)
        sources[f"sample-fold{i}-train"] = [p for p in train if p not in fold]
    return sources


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if is_image_name(p) and p.is_file())


def _read_list(list_file: Path) -> list[Path]:
    """The paths a list file names, one a line, relative to it."""
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError(f"{list_file}: neither an image nor a text list of image paths ({one_line(err)})") from None
    lines = (line.strip() for line in text.splitlines())
    return sorted({list_file.parent / Path(line).expanduser() for line in lines if line and not line.startswith("#")})


def mean_chroma(rgb: np.ndarray) -> float:
    """Mean CIE Lab chroma sqrt(a*^2 + b*^2) of uint8 sRGB pixels (..., 3), by :func:`zoo.color.rgb_to_lab`."""
    pixels = torch.from_numpy(np.array(rgb, dtype=np.float64).reshape(-1, 1, 3)).div_(255).permute(2, 0, 1)
    lab = rgb_to_lab(pixels)
    return float(torch.hypot(lab[1], lab[2]).mean())


# ---------------------------------------------------------------------------------------------------- scanning


@dataclass
class ScanReport:
    """What a scan found: usable paths, skipped ones with reasons, and what loading will adjust."""

    ok: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    fixed: dict[str, list[Path]] = field(default_factory=dict)  # "converted", "alpha dropped", "rotated", "upscaled"

    @property
    def skip_counts(self) -> dict[str, int]:
        """Skipped files per category (corrupt, not an image, missing, too large, grayscale), most first."""
        return dict(Counter(reason.partition(":")[0] for _, reason in self.skipped).most_common())

    @property
    def counts(self) -> dict[str, int]:
        """Files per category: the skip categories, then the adjustments made to usable files."""
        return self.skip_counts | {fix: len(paths) for fix, paths in self.fixed.items()}

    def summary(self) -> str:
        """A few lines: how many were skipped and why, what was adjusted, and the first skipped files."""
        total = len(self.ok) + len(self.skipped)
        lines = [f"skipped {len(self.skipped)} of {total}" + (f": {_tally(self.skip_counts)}" if self.skipped else "")]
        if self.fixed:
            lines.append(f"adjusted at load: {_tally({k: len(v) for k, v in self.fixed.items()})}")
        lines += [f"  {path.name}: {reason}" for path, reason in self.skipped[:5]]
        if len(self.skipped) > 5:
            lines.append(f"  ... and {len(self.skipped) - 5} more")
        return "\n".join(lines)


def _tally(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in counts.items())


@dataclass(frozen=True)
class _Verdict:
    skip: str | None  # reason, or None when usable
    fixes: tuple[str, ...] = ()
    size: tuple[int, int] = (0, 0)  # upright (width, height); (0, 0) when not decodable


def scan_images(
    paths: Iterable[Path | str],
    *,
    image_size: int | None = None,
    min_chroma: float = MIN_CHROMA,
    max_pixels: int = MAX_PIXELS,
    cache_dir: Path | None = None,
    source: str | None = None,
) -> ScanReport:
    """Decode every file once and sort the usable colour photos from the rest.

    Skipped: missing, not an image, corrupt or truncated, more than ``max_pixels`` pixels (never decoded),
    grayscale (a single-channel mode, or mean Lab chroma of a 64 px thumbnail below ``min_chroma``). Usable but
    adjusted at load, and counted: converted modes, dropped alpha, EXIF rotation, and (with ``image_size``) a
    short side below ``image_size``, which is upscaled. With ``cache_dir``, verdicts are kept in a JSON file
    keyed by (path, size, mtime_ns), so a rescan decodes only new or changed files. Raises
    ``EmptyDatasetError`` naming ``source`` when nothing is usable.
    """
    paths = [Path(p) for p in paths]
    cache = _ScanCache(cache_dir, min_chroma, max_pixels)
    stamps = {p: _stamp(p) for p in paths}
    verdicts = {p: cache.get(p, stamp) for p, stamp in stamps.items()}
    todo = [p for p, verdict in verdicts.items() if verdict is None]
    with ThreadPoolExecutor(max_workers=default_workers()) as pool:  # PIL decodes without the GIL
        verdicts.update(zip(todo, pool.map(lambda p: _judge(p, min_chroma, max_pixels), todo)))
    for path in todo:
        cache.put(path, stamps[path], verdicts[path])
    cache.save()
    report = ScanReport()
    for path in paths:
        verdict = verdicts[path]
        if verdict.skip is not None:
            report.skipped.append((path, verdict.skip))
            continue
        report.ok.append(path)
        fixes = verdict.fixes + (("upscaled",) if image_size and min(verdict.size) < image_size else ())
        for fix in fixes:
            report.fixed.setdefault(fix, []).append(path)
    if not report.ok:
        where = repr(source) if source is not None else f"the {len(paths)} given paths"
        why = _tally(report.skip_counts) if paths else "no image files found"
        raise EmptyDatasetError(f"no usable images in {where}: {why}")
    return report


def _judge(path: Path, min_chroma: float, max_pixels: int) -> _Verdict:
    try:
        decoded = decode_rgb(path, THUMBNAIL, max_pixels)
    except BadImageError as err:
        return _Verdict(err.reason)
    if decoded.mode in SINGLE_CHANNEL_MODES:
        return _Verdict(f"grayscale: single-channel mode {decoded.mode}", decoded.fixes, decoded.size)
    thumbnail = resize_short_side(decoded.image, min(THUMBNAIL, *decoded.image.size))
    chroma = mean_chroma(np.asarray(thumbnail))
    skip = f"grayscale: mean chroma {chroma:.2f} < {min_chroma:.2f}" if chroma < min_chroma else None
    return _Verdict(skip, decoded.fixes, decoded.size)


def _stamp(path: Path) -> str | None:
    """``"size:mtime_ns"``, which changes whenever the file does; None when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


class _ScanCache:
    """Scan verdicts in ``<cache_dir>/scan-cache.json``, valid for one (min_chroma, max_pixels)."""

    def __init__(self, cache_dir: Path | None, min_chroma: float, max_pixels: int) -> None:
        self.file = None if cache_dir is None else Path(cache_dir) / SCAN_CACHE
        self.header = {"version": _SCAN_CACHE_VERSION, "min_chroma": min_chroma, "max_pixels": max_pixels}
        self.entries: dict[str, dict] = {}
        self.changed = False
        if self.file is not None and self.file.exists():
            try:
                stored = json.loads(self.file.read_text())
            except (OSError, ValueError):
                stored = {}
            if stored.get("header") == self.header:
                self.entries = stored["files"]

    def get(self, path: Path, stamp: str | None) -> _Verdict | None:
        entry = self.entries.get(str(path.resolve()))
        if stamp is None or entry is None or entry["stamp"] != stamp:
            return None
        return _Verdict(entry["skip"], tuple(entry["fixes"]), tuple(entry["size"]))

    def put(self, path: Path, stamp: str | None, verdict: _Verdict) -> None:
        if self.file is None or stamp is None:
            return
        self.entries[str(path.resolve())] = {
            "stamp": stamp, "skip": verdict.skip, "fixes": list(verdict.fixes), "size": list(verdict.size)
        }
        self.changed = True

    def save(self) -> None:
        if self.file is None or not self.changed:
            return
        files.write_text(self.file, json.dumps({"header": self.header, "files": self.entries}))


# ---------------------------------------------------------------------------------------------------- split


def split_paths(paths: Iterable[Path | str], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Split into (train, val), each sorted, by a seeded permutation of the sorted paths (input order is moot).

    With ``val_fraction > 0`` and at least two images, val has at least one image and train keeps one.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ordered = sorted(Path(p) for p in paths)
    n = len(ordered)
    n_val = min(max(1, round(n * val_fraction)), n - 1) if val_fraction > 0 and n >= 2 else 0
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    val = {ordered[i] for i in order[:n_val]}
    return [p for p in ordered if p not in val], sorted(val)


# ---------------------------------------------------------------------------------------------------- dataset


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that depends only on ``parts`` (stable across runs, processes and platforms)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, item_seed)`` pairs for one epoch of one rank.

    The order is a permutation of ``range(n)`` seeded by (seed, epoch) (or ``range(n)`` itself without
    ``shuffle``), padded by wrapping round to a multiple of ``world_size`` and dealt out like
    ``DistributedSampler``: rank r takes positions r, r + world_size, ... Iteration starts at this rank's
    position ``start``, so a resumed epoch skips consumed samples without decoding them. ``item_seed`` depends
    only on (seed, epoch, position in the padded order): a sample gets the same crop and flip whatever the
    number of ranks or workers. ``set_epoch`` moves a sampler that a persistent DataLoader holds to the next
    epoch.
    """

    def __init__(
        self,
        n: int,
        seed: int,
        epoch: int = 0,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if n < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need n >= 1 and 0 <= rank < world_size, got n={n}, rank={rank}, world_size={world_size}")
        self.n, self.seed, self.rank, self.world_size, self.shuffle = n, seed, rank, world_size, shuffle
        self.per_rank = math.ceil(n / world_size)
        self.set_epoch(epoch, start)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Go to ``epoch``, starting at this rank's position ``start``."""
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return max(0, self.per_rank - self.start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=generator)
        else:
            order = torch.arange(self.n)
        total = self.per_rank * self.world_size
        order = order.repeat(math.ceil(total / self.n))[:total].tolist()
        for position in range(self.rank + self.start * self.world_size, total, self.world_size):
            yield order[position], derive_seed(self.seed, self.epoch, position)


class ColorizationDataset(Dataset[torch.Tensor]):
    """Photos as uint8 RGB tensors (3, S, S), indexed by ``(index, item_seed)`` from ``EpochSampler``.

    Train, by default (pix2pix): short side resized to round(S * 286 / 256), a random S x S crop and a random
    horizontal flip. Train with ``crop_scale=(a, b)``: a random-resized crop (as torchvision's
    ``RandomResizedCrop``): a region of a fraction in [a, b] of the image's area and an aspect ratio in
    [3/4, 4/3], resized to S x S (bicubic), then the flip. Every draw comes from a ``torch.Generator`` seeded
    with ``item_seed`` (so the same key gives the same tensor in any process). Val: short side resized to S and
    the centre S x S crop; the seed is unused. A plain int index means seed 0. A file that no longer decodes
    (changed since the scan) is replaced by the next index that does, deterministically, with one warning per
    file and process naming it.
    """

    def __init__(self, paths: Sequence[Path | str], image_size: int, train: bool,
                 crop_scale: tuple[float, float] | None = None) -> None:
        if not paths:
            raise EmptyDatasetError("ColorizationDataset needs at least one image path")
        if crop_scale is not None and not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must be two area fractions 0 < a <= b <= 1, got {crop_scale}")
        self.paths = [Path(p) for p in paths]
        self.image_size = image_size
        self.train = train
        self.crop_scale = crop_scale if train else None
        if self.crop_scale is not None:  # decode large enough that the smallest region still has S pixels a side
            self.load_size = math.ceil(image_size / math.sqrt(self.crop_scale[0]))
        else:
            self.load_size = round(image_size * LOAD_SCALE) if train else image_size
        self.failed: set[Path] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int] | int) -> torch.Tensor:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        for step in range(len(self.paths)):
            path = self.paths[(index + step) % len(self.paths)]
            try:
                image = load_rgb(path, min_short_side=self.load_size)
            except BadImageError as err:
                if path not in self.failed:
                    self.failed.add(path)
                    warnings.warn(f"{err}; using the next image in its place", RuntimeWarning, stacklevel=2)
                continue
            return self._crop(image, seed)
        raise EmptyDatasetError(f"none of the {len(self.paths)} images decodes any more")

    def _crop(self, image: Image.Image, seed: int) -> torch.Tensor:
        s = self.image_size
        generator = torch.Generator().manual_seed(seed)
        if self.crop_scale is not None:
            image = resize_short_side(image, max(self.load_size, min(image.size)))  # upscale tiny images only
            box = random_resized_box(image.size, self.crop_scale, generator)
            image = image.resize((s, s), Image.Resampling.BICUBIC, box=box)
        else:
            image = resize_short_side(image, self.load_size)
            width, height = image.size
            if self.train:
                x, y = (int(torch.randint(extent - s + 1, (1,), generator=generator)) for extent in (width, height))
            else:
                x, y = (width - s) // 2, (height - s) // 2
            image = image.crop((x, y, x + s, y + s))
        if self.train and bool(torch.rand(1, generator=generator) < 0.5):
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return torch.from_numpy(np.array(image)).permute(2, 0, 1)  # (3, S, S) uint8


def random_resized_box(size: tuple[int, int], scale: tuple[float, float], generator: torch.Generator,
                       ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """A (left, top, right, bottom) box of area fraction in ``scale`` and aspect ratio (width / height) in
    ``ratio``, log-uniform, at a uniform position: torchvision's ``RandomResizedCrop`` rule (10 tries, then
    the centred largest box of ratio within ``ratio``)."""
    width, height = size
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(scale[0], scale[1], generator=generator))
        aspect = math.exp(float(torch.empty(1).uniform_(*log_ratio, generator=generator)))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(height - h + 1, (1,), generator=generator))
            left = int(torch.randint(width - w + 1, (1,), generator=generator))
            return left, top, left + w, top + h
    aspect = width / height
    w, h = (round(height * ratio[1]), height) if aspect > ratio[1] else \
        (width, round(width / ratio[0])) if aspect < ratio[0] else (width, height)
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def default_workers() -> int:
    """min(4, CPU count): the default number of DataLoader workers (and scan threads)."""
    return min(4, os.cpu_count() or 1)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    sampler: Sampler,
    workers: int | None = None,
    device_type: str = "cpu",
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader of uint8 batches (B, 3, S, S) drawn in ``sampler``'s order.

    ``workers`` defaults to min(4, CPU count); workers persist across epochs (move the sampler on with
    ``set_epoch``) and prefetch 2 batches each; memory is pinned for CUDA. Pass ``drop_last=True`` for training
    so every step sees a full batch.
    """
    workers = default_workers() if workers is None else workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device_type == "cuda",
        drop_last=drop_last,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
        # Its own generator: iterating must not draw from the global RNG, which dropout uses and resume restores.
        generator=torch.Generator().manual_seed(0),
    )
