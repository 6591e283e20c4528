"""Video colorization, measured per clip: how steady the colour is from frame to frame, and how true.

One path through it::

    clip = synthetic_clip(photos, folder)      # real colour photos filmed: pans and zooms, film grain, exposure
                                               #   flicker, cuts; the colour original (lossless) and the gray
                                               #   film with a sound track (H.264 + AAC in MP4)
    or gray = turned_gray(colour_clip, path)   # any colour clip, turned gray: the clip is its own truth
    zoo colorize clip.gray --out DIR           # or zoo.video.colorize_video
    score_clip(DIR / clip.gray.name, clip.gray, clip.truth) -> ClipScores

The measures (frames t and t + d are compared only within a shot; shots are found in the input's lightness as
:mod:`zoo.video` finds them):

* warping error (Lai et al. 2018): frame t + 1 of the output warped back onto frame t along the optical flow
  of the INPUT's lightness (DIS, at full resolution), the squared sRGB difference (in [0, 1], summed over the
  channels) averaged over the pixels where the flow holds: not occluded by the forward-backward check of
  Sundaram et al. 2010 (as Ruder et al. 2016 and Lai et al.'s evaluation use it), not on a motion boundary,
  not leaving the frame; then averaged over the pairs. The film's own lightness changes (grain, flicker) count
  alike for every colorization of it; ``warp_error_ab`` is the same on the output's a*b* alone (normalised
  by 110, as the models see it), the colour the model added;
* CDC (Liu et al. 2021's colour distribution consistency): the Jensen-Shannon distance (base 2) between the
  256-bin histograms of one sRGB channel of frames t and t + d, averaged over the channels and t; for d = 1, 2
  and 4, and their mean;
* CIEDE2000 to the colour original, where there is one: per frame the mean over its pixels, then over frames.

Everything streams: each clip is decoded once, frame by frame, holding the last four frames.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from scipy.spatial.distance import jensenshannon

from zoo.color import AB_SCALE, ciede2000, lab_to_rgb, rgb_to_lab
from zoo.video import gray_levels, open_clip, optical_flow, starts_shot, warp

CDC_STEPS = (1, 2, 4)
AUDIO_RATE = 48_000


# ------------------------------------------------------------------------------------------- the measures


@dataclass(frozen=True)
class ClipScores:
    """One clip's scores (see the module docstring); ``ciede2000`` is None without a colour original."""

    frames: int
    shots: int
    warp_error: float
    warp_error_ab: float
    cdc: float
    cdc_by_step: dict[int, float]
    ciede2000: float | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def trusted_flow(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(h, w) bool: where the flow from frame t to t + 1 (``forward``) holds: it lands inside frame t + 1, the
    flow back from there (``backward``, t + 1 to t) returns to the start (|f + b|^2 <= 0.01 (|f|^2 + |b|^2) +
    0.5), and it is no motion boundary (|grad f_x|^2 + |grad f_y|^2 <= 0.01 |f|^2 + 0.002)."""
    back, inside = warp(backward, forward)
    returns = (np.square(forward + back).sum(-1)
               <= 0.01 * (np.square(forward).sum(-1) + np.square(back).sum(-1)) + 0.5)
    gradients = sum(np.square(g) for channel in (0, 1) for g in np.gradient(forward[..., channel]))
    return inside & returns & (gradients <= 0.01 * np.square(forward).sum(-1) + 0.002)


def masked_mean_square(first: np.ndarray, second: np.ndarray, mask: np.ndarray) -> float:
    """The mean over ``mask`` of the squared difference of (h, w, c) images summed over channels (0 when the
    mask is empty)."""
    count = int(mask.sum())
    return float(np.square(first - second).sum(-1)[mask].sum() / count) if count else 0.0


def channel_histograms(rgb: np.ndarray) -> np.ndarray:
    """(3, 256): the normalised histogram of each channel of uint8 (h, w, 3)."""
    counts = np.stack([np.bincount(rgb[..., c].ravel(), minlength=256) for c in range(3)]).astype(np.float64)
    return counts / counts.sum(1, keepdims=True)


def histogram_distance(first: np.ndarray, second: np.ndarray) -> float:
    """The mean over channels of the Jensen-Shannon distance (base 2, in [0, 1]; scipy's) of two (3, 256)
    channel histograms."""
    return float(np.mean(jensenshannon(first, second, base=2, axis=1)))


def lab(rgb: np.ndarray) -> torch.Tensor:
    """Lab (3, h, w) float64 of uint8 sRGB (h, w, 3)."""
    return rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1).double() / 255)


@dataclass
class _Seen:
    """A frame as the measures need it after it has gone: shot, input lightness, output sRGB and a*b*."""

    shot: int
    lightness: np.ndarray  # the input's Lab L, float32 (h, w)
    rgb: np.ndarray  # the output, float32 in [0, 1] (h, w, 3)
    ab: np.ndarray  # the output's a*b* / 110, float32 (h, w, 2)
    histograms: np.ndarray


def score_clip(output: Path, source: Path, truth: Path | None = None) -> ClipScores:
    """The scores of ``output``, the colorized ``source`` (see the module docstring), against ``truth``, its
    colour original, where given. The clips must have the same number of frames and size (ValueError)."""
    warp_errors: list[float] = []
    warp_errors_ab: list[float] = []
    distances: dict[int, list[float]] = {step: [] for step in CDC_STEPS}
    differences: list[float] = []
    window: deque[_Seen] = deque(maxlen=max(CDC_STEPS))
    count = 0
    paths = [output, source] if truth is None else [output, source, truth]
    with contextlib.ExitStack() as stack:
        clips = [stack.enter_context(open_clip(path)) for path in paths]
        for frames in itertools.zip_longest(*(clip.frames() for clip in clips)):
            if any(frame is None or frame.pixels.shape != frames[0].pixels.shape for frame in frames):
                raise ValueError(f"{output}: its frames differ in number or size from {source}"
                                 + (f" or {truth}" if truth else ""))
            colour, gray = frames[0].pixels, frames[1].pixels
            colour_lab = lab(colour)
            lightness = lab(gray)[0].numpy().astype(np.float32)
            previous = window[-1] if window else None
            shot = 0 if previous is None else previous.shot + starts_shot(previous.lightness, lightness)
            seen = _Seen(shot, lightness, colour.astype(np.float32) / 255,
                         (colour_lab[1:] / AB_SCALE).permute(1, 2, 0).numpy().astype(np.float32),
                         channel_histograms(colour))
            if previous is not None and previous.shot == shot:
                before, after = gray_levels(previous.lightness), gray_levels(lightness)
                forward = optical_flow(before, after)
                held = trusted_flow(forward, optical_flow(after, before))
                warp_errors.append(masked_mean_square(previous.rgb, warp(seen.rgb, forward)[0], held))
                warp_errors_ab.append(masked_mean_square(previous.ab, warp(seen.ab, forward)[0], held))
            for step in CDC_STEPS:
                if len(window) >= step and window[-step].shot == shot:
                    distances[step].append(histogram_distance(window[-step].histograms, seen.histograms))
            if truth is not None:
                differences.append(float(ciede2000(colour_lab, lab(frames[2].pixels)).mean()))
            window.append(seen)
            count += 1
    by_step = {step: _mean(values) for step, values in distances.items()}
    return ClipScores(count, window[-1].shot + 1 if window else 0, _mean(warp_errors), _mean(warp_errors_ab),
                      _mean(list(by_step.values())), by_step, _mean(differences) if truth is not None else None)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else 0.0


# ------------------------------------------------------------------------------------------- test clips


def write_clip(path: Path, frames: Iterable[np.ndarray], rate: Fraction | int = 24, *, codec: str = "libx264",
               pix_fmt: str = "yuv420p", options: dict[str, str] | None = None, audio: np.ndarray | None = None,
               pts: Sequence[int] | None = None, time_base: Fraction | None = None, rotation: int = 0) -> Path:
    """Encode uint8 RGB frames (h, w, 3) as a video at ``path`` (container from its name): frame i at ``pts[i]``
    in ``time_base`` (default: i / ``rate``), displayed turned ``rotation`` degrees counterclockwise; with
    ``audio`` (mono float samples at 48 kHz) AAC alongside, interleaved as it plays."""
    time_base = time_base or Fraction(1) / Fraction(rate)
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=rate, options=options or {})
        video.pix_fmt, video.time_base, video.codec_context.time_base = pix_fmt, time_base, time_base
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        heard, index = 0, -1
        for index, pixels in enumerate(frames):
            if index == 0:
                video.height, video.width = pixels.shape[:2]
                if rotation:
                    video.set_display_rotation(rotation)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame.pts = pts[index] if pts is not None else index
            frame.time_base = time_base
            container.mux(video.encode(frame))
            if sound is not None:  # the sound up to this frame's time
                heard = _play(container, sound, audio, heard, round(float(frame.pts * time_base) * AUDIO_RATE))
        if index < 0:  # no frames: the header alone
            container.start_encoding()
            return path
        container.mux(video.encode(None))
        if sound is not None:
            _play(container, sound, audio, heard, len(audio))
            container.mux(sound.encode(None))
    return path


def _play(container: av.container.OutputContainer, sound: av.AudioStream, audio: np.ndarray, start: int,
          end: int) -> int:
    """Encode samples ``start`` .. ``end`` of ``audio``; returns ``end``."""
    end = min(end, len(audio))
    if end > start:
        frame = av.AudioFrame.from_ndarray(audio[None, start:end].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = AUDIO_RATE, start
        container.mux(sound.encode(frame))
    return max(start, end)


@dataclass(frozen=True)
class SyntheticClip:
    """A film made from colour photos: ``gray`` (what is colorized, with sound), ``truth`` (its colour
    original), its number of frames and the first frame of each shot after the first."""

    gray: Path
    truth: Path | None
    frames: int
    cuts: tuple[int, ...]


def camera(photo: Image.Image, thing: Image.Image, size: tuple[int, int], shot: int,
           frames: int) -> Iterator[np.ndarray]:
    """The frames (uint8 RGB at ``size``) of a camera over ``photo`` (even shots pan left to right, odd ones
    zoom in, at a pixel or so a frame) with ``thing`` (a smaller photo) crossing the frame from left to right
    in front of it: moving things, and what they uncover."""
    width, height = photo.size
    aspect = size[0] / size[1]
    fit_w, fit_h = (width, width / aspect) if width / height < aspect else (height * aspect, height)
    for t in np.linspace(0, 1, frames):
        scale = 0.8 if shot % 2 == 0 else 0.95 - 0.25 * t
        w, h = fit_w * scale, fit_h * scale
        x = (width - w) * (0.15 + 0.7 * t if shot % 2 == 0 else 0.5)
        y = (height - h) * 0.5
        frame = photo.resize(size, Image.Resampling.BICUBIC, box=(x, y, x + w, y + h))
        frame.paste(thing, (round(-thing.width + (size[0] + thing.width) * t), (size[1] - thing.height) // 2))
        yield np.asarray(frame)


def synthetic_clip(photos: Sequence[Path], folder: Path, *, size: tuple[int, int] = (192, 128),
                   shot_frames: int = 24, rate: int = 24, grain: float = 4.0, flicker: float = 0.04, seed: int = 0,
                   name: str = "clip", truth: bool = True) -> SyntheticClip:
    """A shot of ``shot_frames`` frames over each photo, the next one crossing it (:func:`camera`), cut from one
    to the next, each frame's
    exposure scaled by 1 + ``flicker`` N(0, 1) and monochrome grain of ``grain`` gray levels (N(0, grain^2))
    added: the film turned gray by its Lab lightness (each pixel the gray of its own L), with a 440 Hz tone and
    noise as its sound (H.264 and AAC, ``folder/NAME.mp4``), and, with ``truth``, its colour original written
    losslessly (FFV1, ``folder/NAME-truth.mkv``). Drawn from ``seed``; made frame by frame (a long 1080p film
    costs a few frames of memory)."""
    frames = shot_frames * len(photos)
    sound_seed, film_seed = np.random.SeedSequence(seed).spawn(2)

    def original() -> Iterator[np.ndarray]:
        rng = np.random.default_rng(film_seed)  # the same frames each time it is called
        for shot, path in enumerate(photos):
            with Image.open(path) as photo, Image.open(photos[(shot + 1) % len(photos)]) as other:
                thing = other.convert("RGB").resize((size[0] // 4, size[1] // 3), Image.Resampling.BICUBIC)
                for pixels in camera(photo.convert("RGB"), thing, size, shot, shot_frames):
                    gain = 1 + flicker * rng.standard_normal()
                    noise = rng.normal(0, grain, pixels.shape[:2])[..., None]
                    yield (pixels * gain + noise).round().clip(0, 255).astype(np.uint8)

    seconds = np.arange(round(frames / rate * AUDIO_RATE)) / AUDIO_RATE
    noise = np.random.default_rng(sound_seed).standard_normal(seconds.shape)
    sound = 0.2 * np.sin(2 * np.pi * 440 * seconds) + 0.02 * noise
    gray = write_clip(folder / f"{name}.mp4", (gray_of(pixels) for pixels in original()), rate,
                      options={"crf": "12", "preset": "veryfast"}, audio=sound)
    colour = write_clip(folder / f"{name}-truth.mkv", original(), rate, codec="ffv1", pix_fmt="bgr0") if truth else None
    return SyntheticClip(gray, colour, frames, tuple(range(shot_frames, frames, shot_frames)))


def turned_gray(colour: Path, target: Path) -> Path:
    """``colour`` (any clip) turned gray by lightness (:func:`gray_of`) at ``target``, frame by frame, for
    :func:`score_clip` to score its colorization against it: H.264 at CRF 12, its frames at a constant rate."""
    with open_clip(colour) as clip:
        return write_clip(target, (gray_of(frame.pixels) for frame in clip.frames()), clip.rate,
                          options={"crf": "12", "preset": "veryfast"})


def gray_of(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (h, w, 3) turned gray by lightness: each pixel the gray with its Lab L."""
    lightness = lab(rgb)[:1]
    gray = lab_to_rgb(torch.cat([lightness, torch.zeros_like(lightness), torch.zeros_like(lightness)]))
    return (gray.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
