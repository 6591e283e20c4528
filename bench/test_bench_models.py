"""Per-model speed with pytest-benchmark: ``pytest bench/test_bench_models.py --benchmark-only``.

Inference and the training steps of every registry model at 64 px, batch 2, on CPU (generator settings adapted
to the size by ``zoo.spec.adapt_to_image_size``); images/s in ``extra_info``. Save a run with
``--benchmark-save=NAME`` and compare later runs with ``--benchmark-compare``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zoo.factory import list_models
from zoo.harness.timing import BenchSettings, Workload
from zoo.spec import adapt_to_image_size, get_spec

SETTINGS = BenchSettings(device="cpu", batch_size=2, image_size=64)
ROUNDS = 5


@pytest.fixture(scope="module", params=list_models())
def work(request: pytest.FixtureRequest) -> Iterator[tuple[Workload, str | None]]:
    """The model's workload and the note on its adapted settings (None if unchanged)."""
    spec, note = adapt_to_image_size(get_spec(request.param), SETTINGS.image_size)
    yield Workload(spec, SETTINGS, SETTINGS.runtime(), SETTINGS.batch_size), note


def _run(benchmark, work: tuple[Workload, str | None], phase: str) -> None:
    built, note = work
    benchmark.pedantic(getattr(built, phase), rounds=ROUNDS, warmup_rounds=1, iterations=1)
    benchmark.extra_info |= {"images_per_s": round(built.batch / benchmark.stats.stats.median, 2),
                             "batch_size": built.batch, "image_size": SETTINGS.image_size, "note": note}


def test_inference(benchmark, work):
    _run(benchmark, work, "infer")


def test_train_step_g(benchmark, work):
    _run(benchmark, work, "train_g")


def test_train_step_gd(benchmark, work):
    if work[0].gan_stage is None:
        pytest.skip("no stage with a discriminator")
    _run(benchmark, work, "train_gd")
