"""Guided colorization of a 12-megapixel photo (4000 x 3000): what a click costs once the model has run.

Run from the repository root: ``pytest bench/test_bench_hints.py --benchmark-only``. The photo is a real one
(a held-out sample photo) upscaled to 12 MP; the fastest shipped model's automatic prediction and the photo's
factorised spreading system are made once, as an interactive page holds them, so each benchmark times one step
of a session with five hints already placed:

- ``add_hint``: a sixth hint, to the new ab on the spreading grid (one triangular solve, the 6 x 6 system);
- ``preview``: that, rendered at 1024 px on the long side (what a page shows while hints change);
- ``tries``: the sixth hint spread each of the three ways, three 480 px previews (what the app shows while a
  colour is picked; the ``here`` system already built);
- ``full_resolution``: that, rendered at 12 MP (what the download writes);
- ``first_hint``: building the spreading system itself (once per photo, on its first hint; ``[here]``: the second
  system, at the shorter reach, built on the first hint marked ``here``).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from PIL import Image
from pytest_benchmark.fixture import BenchmarkFixture

from zoo.colorizer import Colorizer
from zoo.data import resolve_source
from zoo.guided import GuidedPhoto
from zoo.hints import Hint
from zoo.images import as_source
from zoo.propagate import Propagation

SIZE = (4000, 3000)
PLACED = [Hint(400 + 600 * i, 500 + 400 * i, (30.0 - 10 * i, 20.0 * (-1) ** i), 24) for i in range(5)]
NEW = Hint(2100, 2400, (-25.0, 35.0), 24)

pytestmark = pytest.mark.benchmark(group="one hint on a 12 MP photo", min_rounds=5)


@pytest.fixture(scope="module")
def photo() -> GuidedPhoto:
    image = Image.open(resolve_source("heldout")[0]).convert("L").resize(SIZE, Image.Resampling.BICUBIC)
    session = GuidedPhoto(Colorizer.from_checkpoint(model="unet-effnet-lite0-ciede", device="cpu"), as_source(image))
    session.model_ab()
    session.ab(PLACED)  # the system is factorised and the five hints' solves are cached
    return session


def record(benchmark: BenchmarkFixture, photo: GuidedPhoto) -> None:
    benchmark.extra_info["megapixels"] = SIZE[0] * SIZE[1] / 1e6
    benchmark.extra_info["grid"] = "x".join(map(str, photo.grid))
    benchmark.extra_info["median_s"] = round(benchmark.stats.stats.median, 3)


def test_add_hint(benchmark: BenchmarkFixture, photo: GuidedPhoto) -> None:
    rounds = iter(range(1_000_000))

    def add() -> None:  # a sixth hint at a new place every round: one new solve, never a cached one
        i = next(rounds)
        photo.ab([*PLACED, Hint(100 + (37 * i) % 3800, 100 + (53 * i) % 2800, NEW.ab, NEW.size)])

    benchmark(add)
    record(benchmark, photo)


def test_preview(benchmark: BenchmarkFixture, photo: GuidedPhoto) -> None:
    benchmark(photo.preview, [*PLACED, NEW], 1024)
    record(benchmark, photo)


def test_tries(benchmark: BenchmarkFixture, photo: GuidedPhoto) -> None:
    photo.tries(PLACED, NEW, 480)  # the first builds the here system: test_first_hint[here] times that
    benchmark(photo.tries, PLACED, NEW, 480)
    record(benchmark, photo)


def test_full_resolution(benchmark: BenchmarkFixture, photo: GuidedPhoto) -> None:
    benchmark.pedantic(photo.image, args=([*PLACED, NEW],), rounds=3, iterations=1)
    record(benchmark, photo)


@pytest.mark.parametrize("spread", ["nearby", "here"])
def test_first_hint(benchmark: BenchmarkFixture, photo: GuidedPhoto, spread: str) -> None:
    settings = photo.settings if spread == "nearby" else replace(photo.settings, reach=photo.settings.here)
    benchmark.pedantic(Propagation, args=(photo.lightness, settings), rounds=3, iterations=1)
    record(benchmark, photo)
