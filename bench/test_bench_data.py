"""Input-pipeline throughput: ``pytest bench/test_bench_data.py --benchmark-only``; images/s in extra_info."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from zoo.data import ColorizationDataset, EpochSampler, default_workers, make_loader, resolve_source, scan_images

IMAGES = 64
BATCH = 16
SIZE = 256


@pytest.fixture(scope="module")
def sample() -> list[Path]:
    return resolve_source("sample")


def test_loader_throughput(benchmark, sample):
    """A full pass over 64 sample photos at 256 px, batch 16, default workers (kept alive between passes)."""
    dataset = ColorizationDataset(sample[:IMAGES], SIZE, train=True)
    sampler = EpochSampler(IMAGES, seed=0)
    loader = make_loader(dataset, BATCH, sampler=sampler, drop_last=True)
    epochs = itertools.count()

    def one_pass() -> int:
        sampler.set_epoch(next(epochs))
        return sum(len(batch) for batch in loader)

    one_pass()  # start the workers outside the timing
    assert benchmark.pedantic(one_pass, rounds=5, iterations=1) == IMAGES
    benchmark.extra_info["workers"] = default_workers()
    benchmark.extra_info["images_per_s"] = round(IMAGES / benchmark.stats.stats.mean, 1)


def test_scan_throughput(benchmark, sample):
    """Scanning (decode at reduced scale + chroma) of the 119 sample photos, no cache."""
    report = benchmark.pedantic(scan_images, args=(sample,), rounds=5, iterations=1)
    assert len(report.ok) == len(sample)
    benchmark.extra_info["images_per_s"] = round(len(sample) / benchmark.stats.stats.mean, 1)
