"""Colorizing film: frames in, steady colour out, sound kept.

One path through it::

    clip.mp4 --PyAV demux--> video packets --decode--> frames, upright (the display matrix's quarter turns applied)
             \\-> audio packets --copied as they are (re-encoded where the output container cannot hold them)--\\
    frames --batches--> L at the working size --Colorizer.predict--> ab of each frame alone                    |
      --FlowCarry (--temporal flow): the previous frame's ab warped along DIS optical flow on L and blended     |
        with the frame's own ab under a confidence mask; reset at scene cuts; hints spread at their frame      |
      --render_image: the frame's own full-resolution L + ab resized--> RGB --encode (H.264, ...)--> DIR/clip.mp4

It streams: a batch of decoded frames, the encoder's lookahead and the muxer's interleaving queue are all it
holds, so memory does not grow with the clip's length. The output keeps the input's container (its name),
number of frames, size, timestamps (and so its frame rate, variable or not) and audio; it is written to a
temporary file beside the target and renamed when complete (:func:`zoo.files.atomic_write`), so a killed run
leaves no half file. Rotation metadata is applied, as a photo's EXIF orientation is: the output is upright
and carries none (quarter turns; a mirroring display matrix is not applied). Subtitle and data streams are
not kept.

Temporal consistency, with no weights to download (``--temporal flow``): colour is carried from frame to frame
along the optical flow of the lightness (OpenCV's DIS, at the working size) where the flow is trusted: a
confidence exp(-alpha d^2), d the mismatch between the frame's lightness and the previous frame's warped onto
it (blurred against grain, each without its mean against exposure flicker; Lai et al. 2018's occlusion
weight), zero where the flow leaves the frame. Where the flow is trusted the colour is mostly the carried one
(``keep``), so film grain and flicker no longer make it jump; moving and newly visible things take their own
prediction. A scene cut starts afresh: the frame's lightness and the previous one's warped onto it differ by
more than ``cut`` L units on average (exposure flicker and grain move lightness histograms as far as a cut
does; they leave a match along the flow alone).
Hints with a ``frame`` are spread there (:func:`zoo.guided.spread_hints`) and their part of the colour is
carried on through the shot undiminished where the flow is trusted. ``--temporal none`` colorizes each frame
alone (hints then colour only their own frame).

Every problem with a file is a :class:`VideoError` naming it, in one line.
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from zoo.color import L_SCALE
from zoo.colorizer import Colorizer, progress_bar, render_image
from zoo.errors import ZooError, one_line
from zoo.files import atomic_write
from zoo.guided import spread_hints
from zoo.hints import Hint, HintError, check_inside
from zoo.images import Source
from zoo.propagate import Propagation

TEMPORAL_MODES = ("flow", "none")
FRAMES_PER_BATCH = 8  # frames the model colorizes at once
CUT_SIDE = 128  # short side (pixels) at which shots are told apart outside the colorizer
ENCODER_OPTIONS = {  # near-transparent quality at a speed that keeps up with the model on a CPU
    "libx264": {"crf": "18", "preset": "veryfast"},
    "libvpx-vp9": {"crf": "24", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"},
}
_BITS_PER_PIXEL = 0.25  # the bit rate given to any other encoder, per pixel of each frame


class VideoError(ZooError, ValueError):
    """A video that cannot be colorized; ``reason`` says why, the message names the file."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


# ------------------------------------------------------------------------------------------- flow


@dataclass(frozen=True)
class TemporalSettings:
    """How colour is carried along the flow: ``keep``, the carried colour's weight where the flow is trusted
    (1 - keep of each frame's own prediction goes in; 0.9 averages about ten frames); ``alpha``, the confidence
    exp(-alpha d^2) of a lightness mismatch d in [0, 1] units; ``blur``, the sigma (working-size pixels) that
    evens out grain before comparing; ``cut``, the mean mismatch (Lab L units) above which a new shot starts."""

    keep: float = 0.9
    alpha: float = 800.0
    blur: float = 1.0
    cut: float = 10.0


@functools.cache
def _dis() -> cv2.DISOpticalFlow:
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def optical_flow(frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(h, w, 2) float32: for each pixel of ``frame``, the offset (dx, dy) to where it lies in ``reference``
    (both uint8 gray (h, w)); DIS (Kroeger et al. 2016), whose patches are mean-normalised."""
    return _dis().calc(frame, reference, None)


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (h, w) or (h, w, c) sampled at p + flow(p) (bilinear), and where that point lies inside it."""
    height, width = flow.shape[:2]
    x = np.arange(width, dtype=np.float32)[None, :] + flow[..., 0]
    y = np.arange(height, dtype=np.float32)[:, None] + flow[..., 1]
    warped = cv2.remap(image, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return warped, (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def gray_levels(lightness: np.ndarray) -> np.ndarray:
    """Lab L (0 .. 100) as uint8 gray levels, what the flow is computed on."""
    return (lightness * (255 / 100)).round().clip(0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Match:
    """A frame's lightness matched to the previous frame's along the flow: ``flow`` (h, w, 2) from each pixel
    to where it lies in the previous frame, ``mismatch`` (h, w) the difference (Lab L units) of the two, blurred
    against grain and each less its mean against exposure flicker, and ``inside``, where the flow stays in the
    frame."""

    flow: np.ndarray
    mismatch: np.ndarray
    inside: np.ndarray

    def is_cut(self, settings: TemporalSettings) -> bool:
        """Whether a new shot starts: the mean mismatch is above ``settings.cut`` (or the flow leaves the frame
        everywhere)."""
        return not self.inside.any() or float(np.abs(self.mismatch[self.inside]).mean()) > settings.cut

    def confidence(self, settings: TemporalSettings) -> np.ndarray:
        """(h, w) in [0, 1]: exp(-alpha d^2) of the mismatch d in [0, 1] units; 0 where the flow leaves the frame."""
        return np.exp(-settings.alpha * (self.mismatch / 100) ** 2) * self.inside


def match(lightness: np.ndarray, previous: np.ndarray, settings: TemporalSettings) -> Match:
    """The :class:`Match` of a frame's Lab L (h, w) float32 to the previous frame's."""
    flow = optical_flow(gray_levels(lightness), gray_levels(previous))
    smooth = cv2.GaussianBlur(lightness, (0, 0), settings.blur)
    warped, inside = warp(cv2.GaussianBlur(previous, (0, 0), settings.blur), flow)
    if not inside.any():
        return Match(flow, np.zeros_like(smooth), inside)
    return Match(flow, (smooth - smooth[inside].mean()) - (warped - warped[inside].mean()), inside)


def starts_shot(previous: np.ndarray, lightness: np.ndarray, settings: TemporalSettings = TemporalSettings()) -> bool:
    """Whether a new shot starts between two frames' Lab L (h, w) of any size, judged as :class:`FlowCarry`
    judges it (at a short side of at most ``CUT_SIDE`` pixels, about the models' working size)."""
    scale = min(1.0, CUT_SIDE / min(lightness.shape))
    size = (max(1, round(lightness.shape[1] * scale)), max(1, round(lightness.shape[0] * scale)))

    def small(image: np.ndarray) -> np.ndarray:
        return cv2.resize(image.astype(np.float32), size, interpolation=cv2.INTER_AREA)

    return match(small(lightness), small(previous), settings).is_cut(settings)


class FlowCarry:
    """The colour of one clip, carried along its flow frame by frame (see the module docstring); with ``carry``
    False, each frame's own (``--temporal none``), hints spread on their frame only."""

    def __init__(self, frame_size: tuple[int, int], settings: TemporalSettings = TemporalSettings(),
                 carry: bool = True) -> None:
        """``frame_size``: the clip's (width, height), in which hints are placed."""
        self.frame_size, self.settings, self.carry = frame_size, settings, carry
        self._lightness: np.ndarray | None = None  # the previous frame's Lab L at the working size (h, w)
        self._base: np.ndarray | None = None  # the colour carried, (h, w, 2) normalised ab
        self._hinted: np.ndarray | None = None  # the hints' part of it, carried undiminished

    def step(self, L: Tensor, ab: Tensor, hints: Sequence[Hint] = ()) -> Tensor:
        """The colour (2, h, w) of the next frame, from its normalised L (1, h, w) and own ab (2, h, w) at the
        working size; ``hints`` are those given for this frame."""
        lightness = ((L[0] + 1) * L_SCALE).numpy().astype(np.float32)
        own = ab.permute(1, 2, 0).numpy()
        base, hinted = own, np.zeros_like(own)
        if self.carry and self._lightness is not None:
            matched = match(lightness, self._lightness, self.settings)
            if not matched.is_cut(self.settings):
                trust = matched.confidence(self.settings)
                weight = (self.settings.keep * trust)[..., None]
                base = weight * warp(self._base, matched.flow)[0] + (1 - weight) * own
                hinted = trust[..., None] * warp(self._hinted, matched.flow)[0]
        if hints:
            whole = torch.from_numpy(base + hinted).permute(2, 0, 1)
            spread = spread_hints(whole, hints, self.frame_size, lambda: Propagation(lightness.astype(np.float64)))
            hinted = spread.permute(1, 2, 0).numpy() - base
        self._lightness, self._base, self._hinted = lightness, base, hinted
        return torch.from_numpy(np.ascontiguousarray((base + hinted).transpose(2, 0, 1)))


# ------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Frame:
    """A decoded frame: its index in the clip, upright uint8 RGB (H, W, 3), timestamp and duration (in the
    video stream's time base)."""

    index: int
    pixels: np.ndarray
    pts: int
    duration: int


@contextlib.contextmanager
def _ffmpeg(path: Path, doing: str) -> Iterator[None]:
    """Any failure of FFmpeg inside the block as a :class:`VideoError` naming ``path`` and saying what failed."""
    try:
        yield
    except VideoError:
        raise
    except av.error.FileNotFoundError:
        raise VideoError(path, "missing") from None
    except av.FFmpegError as err:
        raise VideoError(path, f"{doing}: {err.strerror or one_line(err)}") from None


def _reading(path: Path) -> contextlib.AbstractContextManager[None]:
    return _ffmpeg(path, "corrupt or truncated")


class Clip:
    """An opened video file: the video stream colorized and the audio streams kept."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with _reading(path):
            self.container = av.open(str(path))
        try:
            if self.container.format.name == "image2" or self.container.format.name.endswith("_pipe"):
                raise VideoError(path, f"a still image ({self.container.format.name}), not a video")
            cover = av.stream.Disposition.attached_pic  # an album cover, not the film
            streams = [s for s in self.container.streams.video if not s.disposition & cover]
            if not streams:
                raise VideoError(path, "no video stream")
            self.video = streams[0]
            self.video.thread_type = "AUTO"
            self.audio = list(self.container.streams.audio)
        except BaseException:
            self.container.close()
            raise
        self.time_base = self.video.time_base or Fraction(1, 90000)
        self.rate = self.video.average_rate or self.video.guessed_rate or Fraction(25)

    def close(self) -> None:
        self.container.close()

    def frames(self, on_audio: Callable[[av.Packet], None] | None = None) -> Iterator[Frame]:
        """The video's frames in order, upright; with ``on_audio``, each audio packet goes there as it is read."""
        step = max(1, round(1 / (self.rate * self.time_base)))  # a frame's duration where the file gives none
        index, last = 0, None
        with _reading(self.path):
            for packet in self.container.demux(self.video, *(self.audio if on_audio else ())):
                if packet.stream is not self.video:
                    on_audio(packet)
                    continue
                for frame in packet.decode():
                    pts = frame.pts if frame.pts is not None else (0 if last is None else last + step)
                    pixels = np.rot90(frame.to_ndarray(format="rgb24"), (frame.rotation // 90) % 4)
                    yield Frame(index, np.ascontiguousarray(pixels), pts, frame.duration or step)
                    index, last = index + 1, pts

    def first_frame_size(self) -> tuple[int, int]:
        """(width, height) of the first frame, upright; VideoError if there is none."""
        for frame in self.frames():
            return frame.pixels.shape[1], frame.pixels.shape[0]
        raise VideoError(self.path, "no frames")


@contextlib.contextmanager
def open_clip(path: Path) -> Iterator[Clip]:
    clip = Clip(path)
    try:
        yield clip
    finally:
        clip.close()


# ------------------------------------------------------------------------------------------- writing


class ClipWriter:
    """The output file: a colour video stream like the input's, its audio streams copied; streams are added
    when the first frame's size is known, audio read before then waits."""

    def __init__(self, path: Path, clip: Clip, echo: Callable[[str], None]) -> None:
        self.clip, self.echo = clip, echo
        try:
            self.container = av.open(str(path), "w")
        except (av.FFmpegError, ValueError) as err:
            raise VideoError(clip.path, f"cannot write {path.suffix} files: {one_line(err)}") from None
        self.video: av.VideoStream | None = None
        self.audio: dict[int, av.AudioStream] = {}
        self.reencoded: set[int] = set()
        self.waiting: list[av.Packet] = []

    def close(self) -> None:
        self.container.close()

    def start(self, width: int, height: int) -> None:
        """Add the streams: video in H.264 where the container takes it (its own default codec elsewhere), audio
        copied where the container takes its codec, re-encoded in the container's default audio codec
        elsewhere."""
        fmt = self.container.format.name
        h264 = _takes(fmt, lambda trial: self._add_video(trial, "libx264", width, height))
        self.video = self._add_video(self.container, "libx264" if h264 else self.container.default_video_codec,
                                     width, height)
        for stream in self.clip.audio:
            name = stream.codec_context.name
            if _takes(fmt, lambda trial, stream=stream: trial.add_stream_from_template(stream)):
                self.audio[stream.index] = self.container.add_stream_from_template(stream)
                continue
            codec = self.container.default_audio_codec
            rates = av.Codec(codec, "w").audio_rates  # Opus, say, takes 48 kHz but not 44.1
            rate = stream.rate if not rates or stream.rate in rates else max(rates)
            self.audio[stream.index] = self.container.add_stream(codec, rate=rate)
            self.reencoded.add(stream.index)
            self.echo(f"{self.clip.path}: audio stream {stream.index} ({name}) re-encoded as {codec}: a"
                      f" {self.container.format.name} file cannot hold {name}")
        for packet in self.waiting:
            self._audio_packet(packet)
        self.waiting = []

    def _add_video(self, container: av.container.OutputContainer, encoder: str, width: int,
                   height: int) -> av.VideoStream:
        """A ``width`` x ``height`` video stream of ``encoder`` in ``container``, at the clip's rate and time base."""
        try:
            video = container.add_stream(encoder, rate=self.clip.rate, options=ENCODER_OPTIONS.get(encoder, {}))
        except ValueError as err:  # an encoder this FFmpeg lacks
            raise VideoError(self.clip.path, f"cannot encode {encoder} video: {one_line(err)}") from None
        formats = [f.name for f in video.codec_context.codec.video_formats or ()]
        wanted = ("yuv420p", "yuv444p") if width % 2 == 0 and height % 2 == 0 else ("yuv444p",)
        video.pix_fmt = next((f for f in wanted if f in formats), formats[0] if formats else "yuv420p")
        video.width, video.height = width, height
        video.time_base = video.codec_context.time_base = self.clip.time_base
        if encoder not in ENCODER_OPTIONS:
            video.bit_rate = int(_BITS_PER_PIXEL * width * height * self.clip.rate)
        return video

    def audio_packet(self, packet: av.Packet) -> None:
        """Copy (or re-encode) an audio packet of the input, once the output has its streams."""
        if self.video is None:
            self.waiting.append(packet)
        else:
            with self.writing():
                self._audio_packet(packet)

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """FFmpeg's failures to encode or write, as a :class:`VideoError` naming the input."""
        return _ffmpeg(self.clip.path, "cannot write its colour version")

    def _audio_packet(self, packet: av.Packet) -> None:
        index = packet.stream.index
        if index in self.reencoded:
            for frame in packet.decode():
                frame.pts = None  # the encoder's resampler counts samples from the start
                self.container.mux(self.audio[index].encode(frame))
        elif packet.dts is not None:  # not the demuxer's empty packet at the end
            packet.stream = self.audio[index]
            self.container.mux(packet)

    def write(self, image: Image.Image, frame: Frame) -> None:
        """Encode the colour version of ``frame``."""
        with self.writing():
            if self.video is None:
                self.start(*image.size)
            out = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
            out.pts, out.duration, out.time_base = frame.pts, frame.duration, self.clip.time_base
            self.container.mux(self.video.encode(out))

    def finish(self) -> None:
        """Flush the encoders (the video's lookahead, a re-encoded audio's last samples)."""
        with self.writing():
            self.container.mux(self.video.encode(None))
            for index in self.reencoded:
                self.container.mux(self.audio[index].encode(None))


def _takes(format_name: str, add_stream: Callable[[av.container.OutputContainer], object]) -> bool:
    """Whether a file of ``format_name`` takes the stream ``add_stream`` adds: a header with it, written to
    memory, is what the muxer says (PyAV's ``supported_codecs`` leaves out what MPEG-TS and others take)."""
    try:
        with av.open(io.BytesIO(), "w", format=format_name) as trial:
            add_stream(trial)
            trial.start_encoding()
    except (av.FFmpegError, ValueError, VideoError):
        return False
    return True


# ------------------------------------------------------------------------------------------- colorizing


def _batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def colorize_video(
    colorizer: Colorizer,
    path: Path,
    target: Path,
    *,
    temporal: str = "flow",
    hints: Sequence[Hint] = (),
    settings: TemporalSettings = TemporalSettings(),
    progress: bool = False,
    echo: Callable[[str], None] = print,
) -> int:
    """Colorize the video at ``path`` into ``target`` (see the module docstring); returns its number of frames.

    ``hints`` carry the ``frame`` they belong to (:func:`check_video_hints`; a problem with one is a
    :class:`zoo.hints.HintError`). Raises :class:`VideoError` naming the file for what cannot be read, decoded
    or written; nothing is left at ``target`` then.
    """
    if temporal not in TEMPORAL_MODES:
        raise ValueError(f"temporal must be one of {TEMPORAL_MODES}, got {temporal!r}")
    by_frame: dict[int, list[Hint]] = {}
    for hint in hints:
        by_frame.setdefault(hint.frame, []).append(hint)
    count = 0
    with open_clip(path) as clip, atomic_write(target) as tmp, progress_bar(progress, clip.video.frames, path.name,
                                                                             "frames") as advance:
        writer = ClipWriter(tmp, clip, echo)
        try:
            colour = None
            for batch in _batches(clip.frames(writer.audio_packet), FRAMES_PER_BATCH):
                sources = [Source(Image.fromarray(frame.pixels), "PNG") for frame in batch]
                if colour is None:
                    check_video_hints(hints, sources[0].image.size, path)
                    colour = FlowCarry(sources[0].image.size, settings, carry=temporal == "flow")
                for frame, source in zip(batch, sources, strict=True):
                    if source.image.size != colour.frame_size:
                        raise VideoError(path, f"its frame size changes at frame {frame.index}")
                L = torch.stack([colorizer.model_input(source) for source in sources])
                for frame, source, lightness, ab in zip(batch, sources, L, colorizer.predict(L), strict=True):
                    writer.write(render_image(source, colour.step(lightness, ab, by_frame.get(frame.index, ()))), frame)
                count += len(batch)
                advance(len(batch))
            if count == 0:
                raise VideoError(path, "no frames")
            late = sorted(frame for frame in by_frame if frame >= count)
            if late:
                raise HintError(f"{path}: a hint for frame {late[0]}, but the clip has {count} frames"
                                f" (0 .. {count - 1})")
            writer.finish()
        finally:
            writer.close()
    return count


def check_video_hints(hints: Sequence[Hint], size: tuple[int, int], where: Path | str) -> None:
    """HintError naming ``where`` for a hint without a ``frame`` or off a frame of ``size`` (w, h), upright."""
    for index, hint in enumerate(hints, 1):
        if hint.frame is None:
            raise HintError(f"{where}: hint {index} has no \"frame\" (a video's hints say which frame they colour)")
    check_inside(hints, size, where)


def video_frame_size(path: Path) -> tuple[int, int]:
    """(width, height) of a video's frames, upright (decodes its first frame); VideoError naming it otherwise."""
    with open_clip(path) as clip:
        return clip.first_frame_size()
