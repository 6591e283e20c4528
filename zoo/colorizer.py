"""Inference at full resolution: photos in, colour photos of the same size, orientation and format family out.

One path through it::

    file --PIL, EXIF-upright--> source image (L, LA, RGB, RGBA or 16-bit gray I;16)
      --resize, short side = working size rounded to the generator's declared size multiple--> L (1, 1, h, w)
      --predictor (generator + decoder), batched by working shape--> ab (2, h, w)
      --strips of about a megapixel: full-resolution L of the source + ab resized to full resolution-->
      Lab -> RGB --> 8-bit image (alpha kept) or, for a 16-bit gray PNG, a 16-bit RGB PNG written row by row

The full-resolution L is never held as a whole: each strip recomputes it from the source's pixels, so a
24-megapixel photo costs the decoded source, the 8-bit output and a few megapixel-sized float strips; ab is
resized to full height through a band of a few weights per row, so a photo of extreme aspect ratio costs no
more than its pixels.
The output's L is the input's own L (from all 16 bits of a 16-bit gray image); only ab comes from the model.
EXIF orientation is applied, so outputs are upright and carry no orientation tag; the other EXIF tags of
JPEG, PNG and WebP files are kept (16-bit PNGs carry none). ICC profiles are dropped: pixels are taken as sRGB.

Video files (:data:`zoo.images.VIDEO_EXTENSIONS`, alone or among the photos of a folder or glob) go to
:mod:`zoo.video`, one after another once the photos are done.

Outputs follow :mod:`zoo.outputs`: an output that would replace one of the inputs is refused, an existing one is
skipped unless ``overwrite``, and an output folder inside an input folder is left out of that folder's photos.
A file that cannot be read, colorized or written is one line naming it; the others go on.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from zoo import checkpoint, outputs
from zoo.color import lab_normalized_to_rgb, normalize_lab, rgb_to_lab, rgb_uint8_to_lightness_normalized
from zoo.data import SourceError, default_workers, resolve_source
from zoo.errors import ZooError, one_line
from zoo.hints import Hint, assign_hints, check_inside, hint_channels
from zoo.images import (
    UNREAD_IMAGE_EXTENSIONS,
    BadImageError,
    Source,
    as_source,
    is_video_name,
    read_source,
    upright_size,
    write_image,
    write_png16,
)
from zoo.runtime import pick_device, use_channels_last
from zoo.spec import ModelSpec, default_model, get_spec, model_specs, size_multiple, weights_path

STRIP_PIXELS = 1 << 18  # pixels per strip of the full-resolution Lab -> RGB pass (cache-sized temporaries)
MAX_BATCH_PIXELS = 48_000_000  # full-resolution pixels decoded at once (two 24 MP photos)


class NoCheckpointError(checkpoint.CheckpointError):
    """A model asked for without trained weights; the message says how to get them."""


def trained_weights(model: str | None = None, checkpoint_path: Path | str | None = None) -> tuple[Path, str | None]:
    """The checkpoint to colorize with and the model it must hold: ``checkpoint_path`` if given (a file or a Hub
    folder); else a Hub model's folder (``hf:OWNER/REPO``, :func:`zoo.hub.fetch`); else the weights ``model``
    ships with; else those of the registry's default model. An unknown model is an error with suggestions;
    :class:`NoCheckpointError` says how to get weights for one that ships none."""
    from zoo.hub import fetch, is_hub_name

    if is_hub_name(model):
        return (Path(checkpoint_path) if checkpoint_path is not None else fetch(model)), None
    if checkpoint_path is not None:
        return Path(checkpoint_path), model
    name = model or default_model()
    if name is not None:
        get_spec(name)  # an unknown name: did you mean ...
    shipped = weights_path(name) if name is not None else None
    if shipped is None:
        raise NoCheckpointError(missing_checkpoint_message(name or "NAME"))
    return shipped, name


def shipped_choices(model: str, path: Path | str, device: torch.device | str = "cpu") -> nn.Module | None:
    """The alternative colourings that hints choose among (:func:`zoo.guided.choose`) for ``model`` run from
    checkpoint ``path``: a predictor of normalised L (B, 1, H, W) to k normalised ab (B, 2k, H, W), the
    registry's ``choices`` model (shipped weights, its flip average), when ``path`` is ``model``'s own shipped
    weights, those the alternatives were trained from; else None."""
    from zoo.factory import Predictor
    from zoo.objectives.choices import Each

    spec, shipped = model_specs().get(model), weights_path(model)
    if spec is None or spec.choices is None or shipped is None or Path(path).resolve() != shipped.resolve():
        return None
    source = weights_path(spec.choices)
    if source is None or not source.exists():
        return None
    choices, predictor = checkpoint.load_generator(source, model=spec.choices, device=device)
    return Predictor(predictor.generator, Each(), flip_average=choices.flip_average).eval()


def missing_checkpoint_message(model: str) -> str:
    """What to do when ``model`` is used without a checkpoint (with the newest local run's file, if any)."""
    message = (
        f"model {model!r} needs trained weights: train it first (`zoo train {model}` writes "
        f"RUN/generator.safetensors) or give a checkpoint (--checkpoint PATH)"
    )
    runs = sorted(Path("runs").glob(f"{model}-*/generator.safetensors"), key=lambda p: p.stat().st_mtime)
    return f"{message}; found {runs[-1]}" if runs else message


# ------------------------------------------------------------------------------------------- lightness


@functools.cache
def _gray_lightness_table(levels: int) -> Tensor:
    """Normalised L of every gray level 0 .. levels - 1 (float32), computed in float64."""
    gray = torch.arange(levels, dtype=torch.float64) / (levels - 1)
    L, _ = normalize_lab(rgb_to_lab(gray.expand(3, 1, levels)))
    return L.reshape(levels).float()


def normalized_lightness(pixels: np.ndarray) -> Tensor:
    """Normalised L (1, H, W) of uint8 gray (H, W), uint16 gray (H, W) or uint8 RGB (H, W, 3) pixels."""
    if pixels.ndim == 2:
        table = _gray_lightness_table(65536 if pixels.dtype == np.uint16 else 256)
        return table[torch.from_numpy(pixels.astype(np.int32))].unsqueeze(0)
    return rgb_uint8_to_lightness_normalized(torch.from_numpy(pixels).permute(2, 0, 1))


def _color_pixels(pixels: np.ndarray) -> np.ndarray:
    """The gray or RGB part of (H, W[, C]) pixels in L, LA, RGB, RGBA or I;16 layout."""
    if pixels.ndim == 2:
        return pixels
    return pixels[..., 0] if pixels.shape[-1] == 2 else pixels[..., :3]


def lightness_at(source: Source, size: tuple[int, int]) -> Tensor:
    """Normalised L (1, h, w) of ``source`` resized (bicubic, as in training) to ``size`` (w, h).

    PIL's quick reduction before resizing (``reducing_gap``) has no 16-bit mode: 16-bit gray is resized
    exactly, at all 16 bits."""
    gap = None if source.sixteen_bit else 3.0
    small = source.image if source.image.size == size else source.image.resize(
        size, Image.Resampling.BICUBIC, reducing_gap=gap)
    return normalized_lightness(_color_pixels(np.array(small)))


# ------------------------------------------------------------------------------------------- geometry


def working_shape(size: tuple[int, int], short_side: int, multiple: int) -> tuple[int, int]:
    """(width, height) for the model: short side ``short_side`` rounded to ``multiple``, aspect ratio kept."""
    width, height = size
    short, long = min(width, height), max(width, height)
    target = max(multiple, round(short_side / multiple) * multiple)
    long_target = max(multiple, round(long * target / short / multiple) * multiple)
    return (target, long_target) if width <= height else (long_target, target)


def _strips(height: int, width: int) -> Iterator[tuple[int, int]]:
    """(top, bottom) rows of strips of about ``STRIP_PIXELS`` pixels covering the image."""
    rows = max(1, STRIP_PIXELS // width)
    for top in range(0, height, rows):
        yield top, min(height, top + rows)


def resize_weights(size: int, out: int) -> tuple[Tensor, Tensor]:
    """The rows of the (out, size) matrix of a bilinear, antialiased resize of one axis from ``size`` to ``out``
    samples, as ``F.interpolate(..., antialias=True)`` computes them (a triangle filter, widened by the scale
    when shrinking, normalised; in float32, as torch does): for each output, the first input it reads, (out,),
    and its weights from there, (out, taps); taps past the input's end weigh 0."""
    scale = torch.tensor(size / out, dtype=torch.float32)
    support = scale.clamp(min=1.0)
    stretch = 1.0 / support
    centre = scale * (torch.arange(out, dtype=torch.float32) + 0.5)
    first = (centre - support + 0.5).trunc().clamp(min=0)
    end = (centre + support + 0.5).trunc().clamp(max=size)
    taps = int((end - first).max())
    index = first[:, None] + torch.arange(taps, dtype=torch.float32)
    weights = (1 - ((index - centre[:, None] + 0.5) * stretch).abs()).clamp(min=0) * (index < end[:, None])
    return first.long(), weights / weights.sum(1, keepdim=True)


class AbResizer:
    """Predicted ab (2, h, w) resized to (2, H, W) strip by strip, equal to one bilinear, antialiased resize.

    The width pass runs once (on h rows); the height pass reads, for each output row, the few source rows
    :func:`resize_weights` names, so no (H, h) matrix is ever made.
    """

    def __init__(self, ab: Tensor, height: int, width: int) -> None:
        self.wide = _resize(ab.unsqueeze(0), ab.shape[-2], width)[0]
        self.first, self.weights = resize_weights(ab.shape[-2], height)

    def strip(self, top: int, bottom: int) -> Tensor:
        """ab rows ``top .. bottom - 1`` at full width, (2, bottom - top, W)."""
        first, weights = self.first[top:bottom], self.weights[top:bottom]
        last_row = self.wide.shape[1] - 1
        out = torch.zeros(self.wide.shape[0], bottom - top, self.wide.shape[2], dtype=self.wide.dtype)
        for tap in range(weights.shape[1]):
            out += weights[:, tap, None] * self.wide[:, (first + tap).clamp(max=last_row)]
        return out


def _resize(x: Tensor, height: int, width: int, mode: str = "bilinear") -> Tensor:
    """Bilinear (or bicubic) resize of (B, C, h, w), antialiased when shrinking."""
    return F.interpolate(x, size=(height, width), mode=mode, align_corners=False, antialias=True)


class AtWorkingSize(nn.Module):
    """A predictor run as the colorizer runs it, on L of any size: L resized (bicubic) to the working shape
    (short side ``size`` rounded to ``multiple``), ab predicted there and resized back (bilinear). What
    :mod:`zoo.harness.scoring` scores, so that scores describe ``zoo colorize``'s output. A predictor that takes
    hints gets each image's hints (lists of :class:`zoo.hints.Hint` in L's pixels) placed on the working grid."""

    def __init__(self, predictor: nn.Module, size: int, multiple: int,
                 choices: Callable[[], nn.Module | None] | None = None) -> None:
        """``choices``: gives the model's alternative colourings (:func:`shipped_choices`), loaded when
        :meth:`alternatives` is first asked for them (a hint curve), not for automatic scoring."""
        super().__init__()
        self.predictor, self.size, self.multiple = predictor, size, multiple
        self._choices = functools.cache(choices or (lambda: None))

    @property
    def guided(self) -> bool:
        return getattr(self.predictor, "guided", False)

    def forward(self, L: Tensor, hints: Sequence[Sequence[Hint]] | None = None) -> Tensor:
        height, width = L.shape[-2:]
        w, h = working_shape((width, height), self.size, self.multiple)
        small = L if (h, w) == (height, width) else _resize(L, h, w, mode="bicubic").clamp(-1, 1)
        extra = ()
        if hints is not None and self.guided:
            extra = (torch.stack([hint_channels(each, (width, height), (h, w)) for each in hints]).to(L),)
        ab = self.predictor(small, *extra).float()
        return ab if (h, w) == (height, width) else _resize(ab, height, width)

    @property
    def has_choices(self) -> bool:
        """Whether hints choose among alternative colourings of this model's (:func:`shipped_choices`)."""
        return self._choices() is not None

    def alternatives(self, L: Tensor) -> Tensor:
        """The model's k alternative colourings of L (B, 1, H, W) at its size, (B, k, 2, H, W), run as ``forward``
        runs the model (a ValueError for a model without them)."""
        choices = self._choices()
        if choices is None:
            raise ValueError("this model has no alternative colourings")
        return AtWorkingSize(choices, self.size, self.multiple)(L).unflatten(1, (-1, 2))


# ------------------------------------------------------------------------------------------- rendering


def render_strips(source: Source, ab: Tensor) -> Iterator[tuple[int, Tensor]]:
    """(top row, sRGB strip (rows, W, 3) float32 in [0, 1]) over the full-resolution image."""
    width, height = source.image.size
    resizer = AbResizer(ab.float().cpu(), height, width)
    for top, bottom in _strips(height, width):
        pixels = np.array(source.image.crop((0, top, width, bottom)))
        L = normalized_lightness(_color_pixels(pixels))
        rgb = lab_normalized_to_rgb(L.unsqueeze(0), resizer.strip(top, bottom).unsqueeze(0))[0]
        yield top, rgb.permute(1, 2, 0)


def _quantize(rgb: Tensor, bits: int) -> np.ndarray:
    """[0, 1] floats to uint8 or uint16 levels, rounded."""
    return (rgb * ((1 << bits) - 1)).round_().to(torch.uint8 if bits == 8 else torch.uint16).numpy()


def render_image(source: Source, ab: Tensor) -> Image.Image:
    """The colour image (RGB, or RGBA keeping the source's alpha) at the source's size, 8 bits a channel."""
    out = Image.new("RGB", source.image.size)
    for top, rgb in render_strips(source, ab):
        out.paste(Image.fromarray(_quantize(rgb, 8)), (0, top))
    if source.has_alpha:
        out.putalpha(source.image.getchannel("A"))
    return out


def save_output(source: Source, ab: Tensor, path: Path) -> None:
    """Write the colour image of ``source`` to ``path`` in the source's format, atomically.

    A 16-bit gray PNG gives a 16-bit RGB PNG; everything else is 8 bits a channel (alpha kept where present).
    Raises ``OSError`` for formats PIL reads but cannot write (XPM, PSD, ...).
    """
    if source.sixteen_bit and source.format == "PNG":
        write_png16(path, source.image.size, (_quantize(rgb, 16) for _, rgb in render_strips(source, ab)))
    else:
        write_image(path, render_image(source, ab), source.format, source.exif)


# ------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Job:
    """One input file and where its output goes, relative to the output folder."""

    path: Path
    output: Path


def collect_inputs(inputs: Sequence[str | Path], out_dir: Path | None = None
                   ) -> tuple[list[Job], list[tuple[str, str]], list[Path]]:
    """Jobs for files, folders (recursive: their layout is kept), globs and ``sample``, photos and videos; the
    inputs that gave nothing, with why; and the files of folders and globs of an image type the zoo does not
    read (:data:`zoo.images.UNREAD_IMAGE_EXTENSIONS`: GIF, HEIC, raw ...). Two inputs with the same output name:
    the first wins, the second is a problem.
    An ``out_dir`` that lies inside a folder walked (a folder input, or a glob's fixed part) is left out of it."""
    jobs: list[Job] = []
    problems: list[tuple[str, str]] = []
    unread: list[Path] = []
    taken: dict[Path, Path] = {}
    for item in inputs:
        text = str(item)
        path = Path(text).expanduser()
        if path.is_file():
            found = [Job(path, Path(path.name))]
        else:
            try:
                walked_files = _walked_files(text)
                paths = sorted(resolve_source(text) + [p for p in walked_files if is_video_name(p)])
                unread += sorted(p for p in walked_files if p.suffix.lower() in UNREAD_IMAGE_EXTENSIONS)
            except (ZooError, OSError) as err:
                unknown = isinstance(err, SourceError) and not path.exists()
                problems.append((text, "missing" if unknown else one_line(err)))
                continue
            walked = _walked_folder(text)
            if out_dir is not None and walked is not None and _strictly_inside(out_dir, walked):
                paths = [p for p in paths if not outputs.inside(p, out_dir)]
            base = path if path.is_dir() else None
            found = [Job(p, p.relative_to(base) if base else Path(p.name)) for p in paths]
            if not found:
                problems.append((text, "no image or video files found"))
        for job in found:
            if job.output in taken:
                problems.append((str(job.path), f"same output name as {taken[job.output]}, skipped"))
            else:
                taken[job.output] = job.path
                jobs.append(job)
    return jobs, problems, unread


def _walked_files(source: str) -> list[Path]:
    """Every file of a folder (recursive) or a glob, whatever its type (:func:`zoo.data.resolve_source` keeps
    the photos): where the videos and the unread image types are found."""
    path = Path(source).expanduser()
    if path.is_dir():
        found: Iterable[Path] = path.rglob("*")
    elif glob.has_magic(source):
        found = (Path(p) for p in glob.glob(str(path), recursive=True))
    else:
        return []
    return [p for p in found if p.is_file()]


def _walked_folder(source: str) -> Path | None:
    """The folder a source walks: a folder itself, or the part of a glob before its first wildcard."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if not glob.has_magic(source):
        return None
    fixed = [part for part in itertools.takewhile(lambda part: not glob.has_magic(part), path.parts)]
    return Path(*fixed) if fixed else Path(".")


def _strictly_inside(path: Path, folder: Path) -> bool:
    return outputs.inside(path, folder) and path.resolve() != folder.resolve()


# ------------------------------------------------------------------------------------------- the colorizer


@dataclass
class ColorizeSummary:
    """What ``colorize_files`` did: outputs written, existing outputs left alone, inputs that failed."""

    written: list[tuple[Path, Path]] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    unread: list[Path] = field(default_factory=list)  # files of image types the zoo does not read, skipped
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    seconds: float = 0.0
    pixels: int = 0  # full-resolution pixels of the photos written
    videos: int = 0  # how many of the outputs written are videos
    frames: int = 0  # their frames

    @property
    def images(self) -> int:
        return len(self.written) - self.videos

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0

    def fail(self, where: str, why: str, echo: Callable[[str], None]) -> None:
        """Record a failed input and say so in one line."""
        self.failed.append((where, why))
        echo(f"{where}: {why}")


@dataclass
class _Planned:
    job: Job
    target: Path
    shape: tuple[int, int]  # working (width, height)
    pixels: int


class Colorizer:
    """A loaded predictor (L to ab) with what inference needs: working size, size multiple, device."""

    def __init__(
        self, spec: ModelSpec, predictor: nn.Module, device: torch.device | str | None = None, size: int | None = None,
        choices: Callable[[], nn.Module | None] | None = None,
    ) -> None:
        """``choices``: gives the alternatives hints choose among (:func:`shipped_choices`), asked for on the
        first photo with hints."""
        self.spec = spec
        self.device = torch.device(device) if device is not None else next(predictor.parameters()).device
        self.channels_last = use_channels_last(None, self.device)
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        self.predictor = predictor.to(self.device, memory_format=memory_format).eval()
        self.size = size or spec.working_size
        self.multiple = size_multiple(spec)
        self._choices = functools.cache(choices or (lambda: None))


    @classmethod
    def from_checkpoint(
        cls, path: Path | str | None = None, model: str | None = None, device: str = "auto", size: int | None = None
    ) -> Colorizer:
        """Load ``path`` (refused if it holds another architecture than ``model``) onto ``device``; without a
        path, the weights ``model`` (or the default model) ships with (see :func:`trained_weights`)."""
        path, model = trained_weights(model, path)
        target = pick_device(device)
        spec, predictor = checkpoint.load_generator(path, model=model, device=target)
        return cls(spec, predictor, target, size, choices=lambda: shipped_choices(spec.name, path, target))

    def working_shape(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) the model sees for an upright image of ``size``."""
        return working_shape(size, self.size, self.multiple)

    @property
    def guided(self) -> bool:
        """Whether the model's generator takes colour hints itself (``predict`` then takes hint channels)."""
        return getattr(self.predictor, "guided", False)

    def model_input(self, source: Source) -> Tensor:
        """Normalised L (1, h, w) of ``source`` resized (bicubic, as in training) to its working shape."""
        return lightness_at(source, self.working_shape(source.image.size))

    def predict(self, L: Tensor, hints: Tensor | None = None) -> Tensor:
        """ab (B, 2, h, w) on the CPU for normalised L (B, 1, h, w) and, for a model that takes them, hint
        channels (B, 3, h, w) (:func:`zoo.hints.hint_channels`; none if not given)."""
        L = L.to(self.device)
        if self.channels_last:
            L = L.contiguous(memory_format=torch.channels_last)
        extra = () if hints is None or not self.guided else (hints.to(self.device),)
        with torch.inference_mode():
            return self.predictor(L, *extra).float().cpu().contiguous()

    @property
    def has_choices(self) -> bool:
        """Whether hints choose among alternative colourings of this model's (:func:`shipped_choices`)."""
        return self._choices() is not None

    def alternatives(self, L: Tensor) -> Tensor:
        """The k alternative colourings (B, k, 2, h, w) on the CPU for normalised L (B, 1, h, w)."""
        choices = self._choices()
        if choices is None:
            raise ValueError(f"model {self.spec.name!r} has no alternative colourings")
        with torch.inference_mode():
            return choices.to(self.device)(L.to(self.device)).float().cpu().unflatten(1, (-1, 2))

    def load(self, path: Path) -> tuple[Source, Tensor]:
        """The decoded source of ``path`` and its model input (run in worker threads)."""
        source = read_source(path)
        return source, self.model_input(source)

    def __call__(self, image: Image.Image | Path | str, hints: Sequence[Any] = ()) -> Image.Image:
        """The colour version of ``image`` (a PIL image or a path) at its own size, upright, 8 bits a channel;
        with ``hints`` (:class:`zoo.hints.Hint` objects or hint-file records), their colours spread over it."""
        source = as_source(image) if isinstance(image, Image.Image) else read_source(Path(image))
        if hints:
            from zoo.guided import GuidedPhoto, as_hints

            where = "hints" if isinstance(image, Image.Image) else str(image)
            checked = as_hints(hints, where)
            check_inside(checked, source.image.size, where)
            return GuidedPhoto(self, source).image(checked)
        ab = self.predict(self.model_input(source).unsqueeze(0))[0]
        return render_image(source, ab)

    def colorize_files(
        self,
        inputs: Sequence[str | Path],
        out_dir: Path,
        *,
        overwrite: bool = False,
        batch_size: int = 8,
        progress: bool = False,
        echo: Callable[[str], None] = print,
        hints: Sequence[Hint] | Path | None = None,
        temporal: str = "flow",
    ) -> ColorizeSummary:
        """Colorize files, folders and globs into ``out_dir``, in batches of one working shape; then the videos
        among them (:func:`zoo.video.colorize_video`, ``temporal`` ``"flow"`` or ``"none"``).

        Each problem is one ``echo`` line naming the file; the rest go on. Existing outputs are kept unless
        ``overwrite``; an output that would replace an input is refused (:mod:`zoo.outputs`). ``hints`` are
        colour hints for the one photo given, or a hint file, or a folder of ``STEM.json`` hint files
        (:func:`zoo.hints.assign_hints`): every hint file is read and checked against its photo's size before
        anything is written, and a problem with one is a :class:`zoo.hints.HintError` (a video's hints name
        their ``frame``).
        """
        start = time.perf_counter()
        summary = ColorizeSummary()
        out_dir = outputs.output_folder(out_dir)
        jobs, problems, summary.unread = collect_inputs(inputs, out_dir)
        photo_hints = _checked_hints(jobs, hints) if hints is not None else {}
        for where, why in problems:
            summary.fail(where, why, echo)
        planned, videos = self._plan(jobs, out_dir, overwrite, summary, echo)
        with progress_bar(progress, len(planned)) as advance, ThreadPoolExecutor(default_workers()) as pool:
            batches = _batches(planned, batch_size)
            pending = self._submit(pool, next(batches, []))
            for batch in batches:  # decode the next batch while this one runs
                current, pending = pending, self._submit(pool, batch)
                self._finish(current, summary, echo, advance, photo_hints)
            self._finish(pending, summary, echo, advance, photo_hints)
        for job, target in videos:
            self._colorize_video(job.path, target, summary, echo, photo_hints.get(job.path, ()), temporal, progress)
        summary.seconds = time.perf_counter() - start
        return summary

    def _plan(
        self, jobs: list[Job], out_dir: Path, overwrite: bool, summary: ColorizeSummary, echo: Callable[[str], None]
    ) -> tuple[list[_Planned], list[tuple[Job, Path]]]:
        """The photos to colorize, ordered by working shape, from the files' headers, and the videos with their
        targets; the rest reported."""
        planned, videos = [], []
        inputs = {outputs.identity(job.path) for job in jobs} - {None}
        for job in jobs:
            target = out_dir / job.output
            if outputs.identity(target) in inputs:
                summary.fail(str(job.path), f"not written: its output {target} is an input of this command"
                             " (choose an --out outside the inputs)", echo)
                continue
            if target.exists() and not overwrite:
                summary.existing.append(target)
                continue
            if is_video_name(job.path):
                videos.append((job, target))
                continue
            try:
                size = upright_size(job.path)
            except BadImageError as err:
                summary.fail(str(job.path), err.reason, echo)
                continue
            planned.append(_Planned(job, target, self.working_shape(size), size[0] * size[1]))
        first_seen = {shape: i for i, shape in reversed(list(enumerate(p.shape for p in planned)))}
        return sorted(planned, key=lambda p: first_seen[p.shape]), videos

    def _colorize_video(self, path: Path, target: Path, summary: ColorizeSummary, echo: Callable[[str], None],
                        hints: Sequence[Hint], temporal: str, progress: bool) -> None:
        """Colorize one video into ``target``; a problem with it is one line, and the next file goes on."""
        try:
            from zoo.video import colorize_video
        except ImportError as err:
            summary.fail(str(path), f"videos need the video extra (pip install 'colorization-zoo[video]'):"
                         f" {one_line(err)}", echo)
            return
        try:
            frames = colorize_video(self, path, target, temporal=temporal, hints=hints, progress=progress, echo=echo)
        except ZooError as err:
            summary.fail(str(path), one_line(err).removeprefix(f"{path}: "), echo)
        except OSError as err:
            summary.fail(str(path), f"cannot write {target}: {one_line(err)}", echo)
        else:
            summary.written.append((path, target))
            summary.videos += 1
            summary.frames += frames

    def _submit(self, pool: ThreadPoolExecutor, batch: list[_Planned]) -> list[tuple[_Planned, Future]]:
        return [(item, pool.submit(self.load, item.job.path)) for item in batch]

    def _finish(
        self,
        batch: list[tuple[_Planned, Future]],
        summary: ColorizeSummary,
        echo: Callable[[str], None],
        advance: Callable[[], None],
        hints: Mapping[Path, Sequence[Hint]],
    ) -> None:
        """Run the model on a decoded batch (one forward pass per input shape) and write its outputs, each
        photo's ``hints`` spread over its colours."""
        ready: list[tuple[_Planned, Source, Tensor]] = []
        for item, future in batch:
            try:
                ready.append((item, *future.result()))
            except BadImageError as err:
                summary.fail(str(item.job.path), err.reason, echo)
                advance()
            except Exception as err:  # noqa: BLE001 - one file that cannot be prepared must not stop the others
                summary.fail(str(item.job.path), f"cannot colorize: {type(err).__name__}: {one_line(err)}", echo)
                advance()
        by_shape: dict[torch.Size, list[int]] = {}
        for index, (_, _, L) in enumerate(ready):
            by_shape.setdefault(L.shape, []).append(index)  # one shape unless a header misstated the size
        predicted: dict[int, Tensor] = {}
        for indices in by_shape.values():
            predicted.update(zip(indices, self.predict(torch.stack([ready[i][2] for i in indices])), strict=True))
        for index, (item, source, _) in enumerate(ready):
            try:
                ab = predicted[index]
                if hints.get(item.job.path):
                    from zoo.guided import GuidedPhoto

                    ab = GuidedPhoto(self, source, automatic=ab).ab(hints[item.job.path])
                save_output(source, ab, item.target)
            except OSError as err:
                summary.fail(str(item.job.path), f"cannot write {item.target}: {one_line(err)}", echo)
            else:
                summary.written.append((item.job.path, item.target))
                summary.pixels += item.pixels
            advance()


def _checked_hints(jobs: list[Job], given: Sequence[Hint] | Path) -> dict[Path, list[Hint]]:
    """Each job's hints (:func:`zoo.hints.assign_hints`), every one checked to lie on its photo (from the
    photo's header, upright); HintError naming the hint file (or --hint) otherwise."""
    assigned = assign_hints([(job.path, job.output) for job in jobs], given)
    for photo, (hints, where) in assigned.items():
        if is_video_name(photo):
            _check_video_hints(photo, hints, where)
            continue
        try:
            size = upright_size(photo)
        except BadImageError:
            continue  # the photo's own problem, reported as it is colorized
        check_inside(hints, size, where)
    return {photo: hints for photo, (hints, _) in assigned.items()}


def _check_video_hints(video: Path, hints: list[Hint], where: str) -> None:
    """:func:`zoo.video.check_video_hints` against the video's frame size (its first frame, decoded)."""
    try:
        from zoo.video import VideoError, check_video_hints, video_frame_size

        size = video_frame_size(video)
    except (ImportError, VideoError):
        return  # the video's own problem, reported as it is colorized
    check_video_hints(hints, size, where)


def _batches(planned: list[_Planned], batch_size: int) -> Iterator[list[_Planned]]:
    """Runs of one working shape, at most ``batch_size`` images and ``MAX_BATCH_PIXELS`` pixels each."""
    batch: list[_Planned] = []
    pixels = 0
    for item in planned:
        if batch and (item.shape != batch[0].shape or len(batch) == batch_size or pixels + item.pixels > MAX_BATCH_PIXELS):
            yield batch
            batch, pixels = [], 0
        batch.append(item)
        pixels += item.pixels
    if batch:
        yield batch


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, label: str = "colorizing",
                 unit: str | None = None) -> Iterator[Callable[..., None]]:
    """A transient rich progress bar over ``total`` items (nothing without ``enabled``; an unknown total: 0), with
    their rate when ``unit`` names them (``zoo.video``: frames/s); yields its advance function, which takes how
    many more are done (one by default)."""
    if not enabled:
        yield lambda done=1: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    rate = (TextColumn("{task.fields[rate]}"),) if unit else ()
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), *rate, TimeRemainingColumn())
    start = time.perf_counter()
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(label, total=total or None, rate="")

        def advance(done: int = 1) -> None:
            bar.advance(task, done)
            if unit:
                per_second = bar.tasks[0].completed / max(time.perf_counter() - start, 1e-9)
                bar.update(task, rate=f"{per_second:.1f} {unit}/s")

        yield advance


def colorize(
    image_or_path: Image.Image | Path | str,
    model: str | Colorizer | None = None,
    checkpoint: Path | str | None = None,
    device: str = "auto",
    hints: Sequence[Any] = (),
) -> Image.Image:
    """Colorize one image (a PIL image or a path) at its own size with a trained model.

    ``model`` is a model name (checked against the checkpoint) or an already loaded :class:`Colorizer`, which
    avoids reloading the checkpoint for every image. Without a checkpoint, the model's shipped weights are used
    (with neither, the default model's: ``zoo.colorize("photo.jpg")``); a model that ships none raises
    :class:`NoCheckpointError` saying how to get weights. ``hints`` say what colour a pixel is
    (:class:`zoo.hints.Hint` objects or ``{"x": 120, "y": 80, "color": "#c0392b"}`` records): ``zoo.colorize(
    "old.jpg", hints=[{"x": 120, "y": 80, "color": "#c0392b"}])``.
    """
    colorizer = model if isinstance(model, Colorizer) else Colorizer.from_checkpoint(checkpoint, model, device)
    return colorizer(image_or_path, hints)
