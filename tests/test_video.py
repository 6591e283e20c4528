"""`zoo colorize` on film: clips made from the real sample photos (pans and zooms with a thing crossing them,
grain, exposure flicker, cuts, a sound track), probed with PyAV and measured against scikit-image and scipy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from scipy.spatial.distance import jensenshannon
from skimage.color import deltaE_ciede2000, rgb2lab

from zoo import files
from zoo.cli.inference import colorize as colorize_command
from zoo.colorizer import Colorizer
from zoo.data import resolve_source
from zoo.factory import create_predictor
from zoo.harness.video import (
    channel_histograms,
    histogram_distance,
    masked_mean_square,
    score_clip,
    synthetic_clip,
    write_clip,
)
from zoo.hints import Hint, HintError, write_hints
from zoo.spec import get_spec
from zoo.video import (
    ENCODER_OPTIONS,
    FlowCarry,
    VideoError,
    colorize_video,
    open_clip,
    optical_flow,
    starts_shot,
    warp,
)

SIZE = (192, 128)
SHOT = 24
RATE = 24


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    train = resolve_source("sample-train")
    return [train[i] for i in (3, 40, 77)]


@pytest.fixture(scope="module")
def film(photos: list[Path], tmp_path_factory: pytest.TempPathFactory):
    """Three shots of 24 frames at 192 x 128, 24 frames/s: a pan, a zoom, a pan, each crossed by a smaller
    photo; grain, flicker, a 440 Hz tone."""
    return synthetic_clip(photos, tmp_path_factory.mktemp("film"), size=SIZE, shot_frames=SHOT, rate=RATE)


@pytest.fixture(scope="module")
def quick() -> Colorizer:
    """A simple-cnn with seeded random weights at working size 64: colours of no meaning, fast."""
    torch.manual_seed(0)
    spec = get_spec("simple-cnn")
    return Colorizer(spec, create_predictor(spec, pretrained=False), "cpu", size=64)


@pytest.fixture(scope="module")
def colorized(film, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The film colorized by the fastest shipped model, with --temporal flow and none."""
    colorizer = Colorizer.from_checkpoint(model="unet-effnet-lite0-ciede", device="cpu")
    folder = tmp_path_factory.mktemp("colorized")
    outs = {}
    for temporal in ("flow", "none"):
        summary = colorizer.colorize_files([film.gray], folder / temporal, temporal=temporal,
                                           echo=lambda line: pytest.fail(line))
        [(_, outs[temporal])] = summary.written
        assert (summary.videos, summary.frames) == (1, 3 * SHOT)
    return outs


def frames_of(path: Path) -> list[np.ndarray]:
    with open_clip(path) as clip:
        return [frame.pixels for frame in clip.frames()]


def probe(path: Path) -> dict[str, object]:
    """What a file holds: its video frames' times (seconds, exact), size and rate; its audio stream's codec,
    duration (from the first packet's start to the last one's end) and packets."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        said = {"size": (video.width, video.height), "rate": video.average_rate}
        times = [frame.pts * frame.time_base for frame in container.decode(video)]
    with av.open(str(path)) as container:
        [audio] = container.streams.audio
        packets = [p for p in container.demux(audio) if p.size]
        span = max(p.pts + p.duration for p in packets) - min(p.pts for p in packets)
        heard = {"codec": audio.codec_context.name, "duration": span * audio.time_base,
                 "packets": [bytes(p) for p in packets]}
    return {**said, "times": times, **heard}


# ------------------------------------------------------------------------------------------- the measures


def test_cdc_distance_is_the_mean_jensen_shannon_distance_of_the_channel_histograms():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (2, 40, 50, 3), dtype=np.uint8)
    expected = np.mean([jensenshannon(np.bincount(rgb[0, ..., c].ravel(), minlength=256),
                                      np.bincount(rgb[1, ..., c].ravel(), minlength=256), base=2) for c in range(3)])
    assert histogram_distance(channel_histograms(rgb[0]), channel_histograms(rgb[1])) == pytest.approx(expected)


def test_flow_and_warp_undo_a_known_shift(photos: list[Path]):
    """A photo moved 3 px right and 2 px down: the flow from the moved frame back finds (-3, -2) and warping
    the original along it gives the moved frame, to rounding, where the flow stays inside."""
    gray = np.asarray(Image.open(photos[0]).convert("L").resize((160, 120)))
    moved = np.roll(gray, (2, 3), axis=(0, 1))
    flow = optical_flow(moved, gray)
    core = (slice(10, -10), slice(10, -10))
    assert np.median(flow[core][..., 0]) == pytest.approx(-3, abs=0.1)
    assert np.median(flow[core][..., 1]) == pytest.approx(-2, abs=0.1)
    warped, inside = warp(gray.astype(np.float32), np.tile(np.float32([-3, -2]), (*gray.shape, 1)))
    assert np.array_equal(warped[2:, 3:], moved[2:, 3:].astype(np.float32))
    assert not inside[:2].any() and not inside[:, :3].any() and inside[2:, 3:].all()


def test_masked_mean_square_against_numpy():
    rng = np.random.default_rng(1)
    first, second = rng.random((30, 40, 3)), rng.random((30, 40, 3))
    mask = rng.random((30, 40)) > 0.5
    assert masked_mean_square(first, second, mask) == pytest.approx(((first - second) ** 2).sum(-1)[mask].mean())


def test_cuts_are_found_where_the_shots_change(film):
    lightness = [rgb2lab(pixels)[..., 0].astype(np.float32) for pixels in frames_of(film.gray)]
    found = tuple(t for t in range(1, len(lightness)) if starts_shot(lightness[t - 1], lightness[t]))
    assert found == film.cuts == (SHOT, 2 * SHOT)


def test_ciede2000_of_a_clip_is_skimages(film, quick: Colorizer, tmp_path: Path):
    out = tmp_path / "clip.mp4"
    colorize_video(quick, film.gray, out, temporal="none")
    scores = score_clip(out, film.gray, film.truth)
    expected = np.mean([deltaE_ciede2000(rgb2lab(a), rgb2lab(b)).mean()
                        for a, b in zip(frames_of(out), frames_of(film.truth), strict=True)])
    assert scores.ciede2000 == pytest.approx(expected, rel=1e-4)
    assert (scores.frames, scores.shots) == (3 * SHOT, 3)
    assert score_clip(film.truth, film.gray, film.truth).ciede2000 == 0


# ------------------------------------------------------------------------------------------- what comes out


def test_steady_colour_flow_against_each_frame_alone(film, colorized: dict[str, Path]):
    """The issue's bar with the fastest shipped model: the colour's flicker (warping error of a*b*) at most
    half of each frame alone's, CIEDE2000 to the truth at most 0.3 worse. The warping error of the sRGB frames
    is mostly the film's own grain and flicker, which both keep (the gray film itself scores about as much)."""
    flow, alone = (score_clip(colorized[temporal], film.gray, film.truth) for temporal in ("flow", "none"))
    assert flow.warp_error_ab <= 0.5 * alone.warp_error_ab
    assert flow.ciede2000 <= alone.ciede2000 + 0.3
    assert flow.warp_error < alone.warp_error and flow.cdc < alone.cdc


@pytest.mark.parametrize("temporal", ["flow", "none"])
def test_frames_timestamps_size_and_sound_are_kept(film, colorized: dict[str, Path], temporal: str):
    given, made = probe(film.gray), probe(colorized[temporal])
    assert len(made["times"]) == 3 * SHOT and made["times"] == given["times"]
    assert made["size"] == given["size"] == SIZE and made["rate"] == given["rate"] == RATE
    assert made["packets"] == given["packets"]  # copied, not re-encoded
    assert made["codec"] == given["codec"] == "aac"
    assert abs(made["duration"] - given["duration"]) <= Fraction(1, RATE)
    assert abs(made["duration"] - Fraction(3 * SHOT, RATE)) <= Fraction(1, RATE)


def test_the_films_own_lightness_is_kept(film, colorized: dict[str, Path], tmp_path: Path):
    """Only a*b* comes from the model: the output's L (scikit-image) differs from the input's by what encoding
    does, no more than the gray film re-encoded with the same encoder settings differs (H.264 at CRF 18 smooths
    grain), plus 0.2 for 4:2:0 chroma at colour edges."""
    given, made = frames_of(film.gray), frames_of(colorized["flow"])
    again = frames_of(write_clip(tmp_path / "again.mp4", given, RATE, options=ENCODER_OPTIONS["libx264"]))

    def lightness_change(frames: list[np.ndarray]) -> float:
        return float(np.mean([np.abs(rgb2lab(a)[..., 0] - rgb2lab(b)[..., 0]).mean()
                              for a, b in zip(given, frames, strict=True)]))

    chroma = np.mean([np.hypot(*rgb2lab(b)[..., 1:].transpose(2, 0, 1)).mean() for b in made])
    assert chroma > 3  # coloured: keeping the lightness of a gray output would prove nothing
    assert lightness_change(made) <= lightness_change(again) + 0.2


def test_rotation_is_applied(photos: list[Path], quick: Colorizer, tmp_path: Path):
    """Frames stored turned a quarter, with a display matrix that turns them back: the output is upright,
    stored so, and carries no rotation."""
    upright = np.asarray(Image.open(photos[1]).convert("RGB").resize((96, 64)))
    stored = np.rot90(upright, -1)  # turned clockwise; displayed turned 90 degrees counterclockwise
    clip = write_clip(tmp_path / "turned.mp4", [stored] * 6, RATE, rotation=90, options={"crf": "0"})
    out = tmp_path / "out" / "turned.mp4"
    colorize_video(quick, clip, out)
    with av.open(str(out)) as container:
        frames = list(container.decode(video=0))
    assert (frames[0].width, frames[0].height) == (96, 64) and frames[0].rotation == 0
    lightness = rgb2lab(frames[0].to_ndarray(format="rgb24"))[..., 0]
    assert np.abs(lightness - rgb2lab(upright)[..., 0]).mean() < 1.0


def test_hints_travel_with_the_flow(photos: list[Path], quick: Colorizer, tmp_path: Path):
    """A pan of 2 px a frame over a photo's texture at mid lightness (where a* = 30, b* = 20 lies in sRGB's
    gamut); a hint of that colour at frame 3 colours its spot there and, with the flow, where that spot has moved
    to 8 frames later; each frame alone colours only frame 3."""
    texture = np.asarray(Image.open(photos[0]).convert("L").resize((240, 120)), np.float64)
    wide = (100 + texture * 60 / 255).round().astype(np.uint8)  # gray levels 100 .. 160: L about 42 .. 66
    pan = [np.repeat(wide[:, 2 * t:2 * t + 160, None], 3, axis=2) for t in range(16)]
    clip = write_clip(tmp_path / "pan.mp4", pan, RATE, options={"crf": "10"})
    hint = Hint(100, 40, (30.0, 20.0), size=9, frame=3)

    def ab_at(out: Path, frame: int, x: int) -> np.ndarray:
        return rgb2lab(frames_of(out)[frame][37:44, x - 3:x + 4])[..., 1:].mean((0, 1))

    outs = {}
    for temporal in ("flow", "none", "plain"):
        outs[temporal] = tmp_path / temporal / "pan.mp4"
        colorize_video(quick, clip, outs[temporal], temporal="none" if temporal == "plain" else temporal,
                       hints=[] if temporal == "plain" else [hint])
    for temporal in ("flow", "none"):
        assert np.linalg.norm(ab_at(outs[temporal], 3, 100) - hint.ab) < 6
    assert np.linalg.norm(ab_at(outs["flow"], 11, 100 - 16) - hint.ab) < 6
    assert np.linalg.norm(ab_at(outs["none"], 11, 100 - 16) - ab_at(outs["plain"], 11, 100 - 16)) < 3
    assert np.linalg.norm(ab_at(outs["plain"], 11, 100 - 16) - hint.ab) > 20


def test_hints_without_a_frame_or_past_the_end_name_the_file(film, quick: Colorizer, tmp_path: Path):
    runner = CliRunner()
    hints = write_hints(tmp_path / "hints.json", [Hint(10, 10, (40.0, 20.0))])
    result = runner.invoke(colorize_command, [str(film.gray), "--out", str(tmp_path / "a"), "--hints", str(hints),
                                              "--model", "unet-effnet-lite0-ciede", "--no-progress"])
    assert result.exit_code == 1 and f"{hints}: hint 1 has no \"frame\"" in result.output
    assert not (tmp_path / "a" / film.gray.name).exists()
    with pytest.raises(HintError, match="a hint for frame 500, but the clip has 72 frames"):
        colorize_video(quick, film.gray, tmp_path / "b" / "clip.mp4", hints=[Hint(10, 10, (40.0, 20.0), frame=500)])
    assert not (tmp_path / "b" / "clip.mp4").exists()


def test_audio_the_container_cannot_hold_is_reencoded(photos: list[Path], quick: Colorizer, tmp_path: Path):
    """A Matroska file with AAC sound named .webm: WebM holds Opus, not AAC, so the sound is re-encoded (said in
    one line) and keeps its length."""
    frames = [np.asarray(Image.open(photos[2]).convert("L").convert("RGB").resize((64, 48)))] * 12
    samples = 24_000  # half a second at 48 kHz, as long as the 12 frames
    tone = np.sin(2 * np.pi * 440 * np.arange(samples) / 48_000)
    mkv = write_clip(tmp_path / "mislabelled.mkv", frames, RATE, audio=tone)
    clip = mkv.rename(tmp_path / "mislabelled.webm")
    lines: list[str] = []
    colorize_video(quick, clip, tmp_path / "out" / "mislabelled.webm", echo=lines.append)
    assert lines == [f"{clip}: audio stream 1 (aac) re-encoded as opus: a webm file cannot hold aac"]
    made = probe(tmp_path / "out" / "mislabelled.webm")
    assert made["codec"] == "opus" and abs(made["duration"] - Fraction(samples, 48_000)) <= Fraction(1, RATE)
    assert len(made["times"]) == 12


def test_bad_videos_are_one_line_and_leave_nothing(quick: Colorizer, tmp_path: Path, photos: list[Path]):
    still = tmp_path / "still.mp4"
    still.write_bytes(photos[0].read_bytes())
    silent = tmp_path / "empty.avi"  # an AVI keeps a stream with no frames (an MP4 drops it: "no video stream")
    write_clip(silent, [], RATE)
    for path, says in ((still, "a still image (jpeg_pipe), not a video"), (silent, "no frames"),
                       (tmp_path / "nowhere.mp4", "missing")):
        with pytest.raises(VideoError) as caught:
            colorize_video(quick, path, tmp_path / "out" / path.name)
        assert str(caught.value) == f"{path}: {says}"
    assert not any((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_a_killed_run_leaves_no_half_file(film, tmp_path: Path):
    """SIGKILL while the clip is being written: no clip.mp4, only a temporary that the next run clears."""
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-m", "zoo.cli", "colorize", str(film.gray), "--out", str(out),
                              "--model", "unet-effnet-lite0-ciede", "--no-progress"],
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        while child.poll() is None and not any(p.is_file() and p.stat().st_size for p in out.rglob("*.tmp/*")):
            time.sleep(0.05)  # until the temporary holds some of the clip
        assert child.poll() is None, "finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert not (out / film.gray.name).exists()
    assert [p.name for p in files.remove_stale_temporaries(out)] and not any(out.iterdir())


def test_a_folder_mixes_photos_and_videos(film, quick: Colorizer, photos: list[Path], tmp_path: Path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / film.gray.name).write_bytes(film.gray.read_bytes())
    (folder / "broken.mp4").write_bytes(film.gray.read_bytes()[:2000])
    Image.open(photos[0]).save(folder / "photo.jpg")
    lines: list[str] = []
    summary = quick.colorize_files([folder], tmp_path / "out", echo=lines.append, progress=True)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()) \
        == ["photo.jpg", f"sub/{film.gray.name}"]
    assert summary.videos == 1 and summary.images == 1
    [line] = lines
    assert line.startswith(f"{folder / 'broken.mp4'}: corrupt or truncated: ")


def test_flow_carry_resets_at_a_cut():
    """Two unrelated frames: the second keeps its own colour exactly; the same frame again takes the carried
    colour wherever the flow is trusted."""
    squares = (np.indices((32, 48)) // 8).sum(0) % 2
    first = torch.from_numpy(squares[None].astype(np.float32) * 2 - 1)
    second = torch.from_numpy(np.linspace(-1, 1, 32 * 48, dtype=np.float32).reshape(1, 32, 48))
    carry = FlowCarry((48, 32))
    a, b = torch.full((2, 32, 48), 0.2), torch.full((2, 32, 48), -0.3)
    assert torch.equal(carry.step(first, a), a)
    assert torch.equal(carry.step(second, b), b)
    again = carry.step(second, a)
    assert torch.allclose(again, torch.full_like(again, -0.3 * 0.9 + 0.2 * 0.1), atol=1e-5)
