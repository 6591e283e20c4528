"""Colorizing film with the fastest shipped model (unet-effnet-lite0-ciede) on the CPU: frames/s and peak memory.

Run from the repository root: ``pytest bench/test_bench_video.py --benchmark-only``. The clips are made from the
sample photos (:func:`zoo.harness.video.synthetic_clip`: pans and zooms with a photo crossing them, grain,
flicker, cuts, a sound track), gray, H.264 + AAC in MP4:

- ``frames_per_second[480p|1080p]``: a 2-second clip (48 frames at 24/s) of 854 x 480 or 1920 x 1080 through
  ``colorize_video`` with ``--temporal flow``, decode to encode; ``extra_info`` holds frames/s;
- ``peak_memory``: the same 1080p frames looped into 5- and 30-second clips, each colorized in a fresh process
  that reports its peak resident memory (``VmHWM`` in ``/proc/self/status``); ``extra_info`` holds both in MB
  (the goal: under 2 GB, and no more for 30 seconds than for 5);
- ``quality[flow|none]``: the video protocol's scores per clip (:func:`zoo.harness.video.score_clip`: warping
  error of sRGB and of a*b*, CDC, CIEDE2000 to the colour original) of the 192 x 128 test film of
  ``tests/test_video.py`` and of every colour clip ``$ZOO_VIDEO`` names (a clip or a folder), turned gray
  first, in ``extra_info``: ``ZOO_VIDEO=film.mp4 pytest bench/test_bench_video.py -k quality --benchmark-only``.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from zoo.colorizer import Colorizer
from zoo.data import resolve_source
from zoo.harness.video import AUDIO_RATE, score_clip, synthetic_clip, turned_gray, write_clip
from zoo.video import colorize_video, open_clip

MODEL = "unet-effnet-lite0-ciede"
SIZES = {"480p": (854, 480), "1080p": (1920, 1080)}
RATE = 24
PEAK = """
import sys
from pathlib import Path
from zoo.colorizer import Colorizer
from zoo.video import colorize_video
colorize_video(Colorizer.from_checkpoint(model=sys.argv[1], device="cpu"), Path(sys.argv[2]), Path(sys.argv[3]))
status = Path("/proc/self/status").read_text()
print(next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) // 1024)
"""

pytestmark = pytest.mark.benchmark(group="colorizing film, CPU")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("film")
    photos = resolve_source("sample-train")[:2]
    return {name: synthetic_clip(photos, folder, size=size, shot_frames=24, rate=RATE, name=name, truth=False).gray
            for name, size in SIZES.items()}


@pytest.fixture(scope="module")
def colorizer() -> Colorizer:
    return Colorizer.from_checkpoint(model=MODEL, device="cpu")


@pytest.mark.parametrize("name", list(SIZES))
def test_frames_per_second(benchmark: BenchmarkFixture, clips: dict[str, Path], colorizer: Colorizer, name: str,
                           tmp_path: Path) -> None:
    runs = iter(itertools.count())
    frames = benchmark.pedantic(lambda: colorize_video(colorizer, clips[name], tmp_path / f"{next(runs)}.mp4"),
                                rounds=2, iterations=1, warmup_rounds=0)
    benchmark.extra_info["frames"] = frames
    benchmark.extra_info["frames_per_s"] = round(frames / benchmark.stats.stats.median, 2)
    benchmark.extra_info["size"] = "x".join(map(str, SIZES[name]))


def test_peak_memory(benchmark: BenchmarkFixture, clips: dict[str, Path], tmp_path: Path) -> None:
    with open_clip(clips["1080p"]) as clip:
        frames = [frame.pixels for frame in clip.frames()]
    peaks = {}

    def colorize_in_a_fresh_process() -> None:
        for seconds in (5, 30):
            count = seconds * RATE
            tone = np.sin(2 * np.pi * 440 * np.arange(seconds * AUDIO_RATE) / AUDIO_RATE)
            film = write_clip(tmp_path / f"{seconds}s.mp4", itertools.islice(itertools.cycle(frames), count), RATE,
                              options={"crf": "12", "preset": "veryfast"}, audio=tone)
            done = subprocess.run([sys.executable, "-c", textwrap.dedent(PEAK), MODEL, str(film),
                                   str(tmp_path / "out" / film.name)], capture_output=True, text=True, check=True)
            peaks[seconds] = int(done.stdout.split()[-1])

    benchmark.pedantic(colorize_in_a_fresh_process, rounds=1, iterations=1)
    benchmark.extra_info["peak_mb_5s_1080p"] = peaks[5]
    benchmark.extra_info["peak_mb_30s_1080p"] = peaks[30]


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """(gray film, colour original) by name: the synthetic test film and every clip of ``$ZOO_VIDEO`` (a colour
    clip or a folder of them), turned gray."""
    folder = tmp_path_factory.mktemp("films")
    train = resolve_source("sample-train")
    made = synthetic_clip([train[i] for i in (3, 40, 77)], folder, size=(192, 128), shot_frames=24, rate=RATE)
    found = {"synthetic": (made.gray, made.truth)}
    given = Path(os.environ["ZOO_VIDEO"]) if os.environ.get("ZOO_VIDEO") else None
    for colour in ([given] if given and given.is_file() else sorted(given.iterdir()) if given else []):
        found[colour.stem] = (turned_gray(colour, folder / f"{colour.stem}-gray.mp4"), colour)
    return found


@pytest.mark.parametrize("temporal", ["flow", "none"])
def test_quality(benchmark: BenchmarkFixture, films: dict[str, tuple[Path, Path]], colorizer: Colorizer,
                 temporal: str, tmp_path: Path) -> None:
    """Per clip, the video protocol's scores (zoo.harness.video.score_clip) of --temporal flow or none."""
    def colorize_and_score() -> dict[str, dict[str, object]]:
        scores = {}
        for name, (gray, truth) in films.items():
            colorize_video(colorizer, gray, tmp_path / name / gray.name, temporal=temporal)
            scores[name] = score_clip(tmp_path / name / gray.name, gray, truth).to_dict()
        return scores

    for name, scores in benchmark.pedantic(colorize_and_score, rounds=1, iterations=1).items():
        benchmark.extra_info[name] = scores
