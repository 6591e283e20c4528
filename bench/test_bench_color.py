"""Lab conversion of a batch of 32 photos at 256x256: zoo's fast path against the plain ways.

Run from the repository root: ``pytest bench/test_bench_color.py --benchmark-only``. Each benchmark records
``images_per_s`` (from the median round) in ``extra_info``; all share one group, so the table's ratios compare
them directly.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from pytest_benchmark.fixture import BenchmarkFixture
from skimage.color import rgb2lab
from skimage.util import img_as_float
from torch import Tensor

from zoo.color import AB_SCALE, L_SCALE, rgb_uint8_to_lab_normalized

BATCH, SIZE = 32, 256
PHOTOS = Path(os.environ.get("ZOO_PHOTOS") or Path(__file__).resolve().parents[2] / "shared" / "data" / "photos")

pytestmark = pytest.mark.benchmark(group=f"rgb -> normalised Lab, {BATCH} images at {SIZE}x{SIZE}", min_rounds=10)


@pytest.fixture(scope="module")
def images() -> Tensor:
    """(BATCH, 3, SIZE, SIZE) uint8: the first photos, centre-cropped and resized; random pixels without them."""
    paths = sorted(PHOTOS.glob("*.jpg"))[:BATCH]
    if len(paths) < BATCH:
        warnings.warn(f"fewer than {BATCH} photos at {PHOTOS} (set ZOO_PHOTOS): benchmarking random pixels")
        return torch.randint(0, 256, (BATCH, 3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    photos = [np.asarray(ImageOps.fit(Image.open(p).convert("RGB"), (SIZE, SIZE), Image.Resampling.BICUBIC)) for p in paths]
    return torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).contiguous()


def record_rate(benchmark: BenchmarkFixture) -> None:
    benchmark.extra_info["images_per_s"] = round(BATCH / benchmark.stats.stats.median, 1)
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()
    benchmark.extra_info["torch_interop_threads"] = torch.get_num_interop_threads()


def skimage_per_image(batch: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """What tutorials do: img_as_float, rgb2lab, then normalise, one (H, W, 3) image at a time."""
    out = []
    for image in batch:
        lab = rgb2lab(img_as_float(image))
        out.append((lab[..., :1] / L_SCALE - 1.0, lab[..., 1:] / AB_SCALE))
    return out


_XYZ_FROM_RGB = torch.tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
_WHITE = torch.tensor([0.95047, 1.0, 1.08883]).view(1, 3, 1, 1)


def plain_torch(batch: Tensor) -> tuple[Tensor, Tensor]:
    """A direct eager transcription of skimage's formulas: pow for the transfer curve, einsum for the matrix."""
    rgb = batch.float() / 255.0
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,bjhw->bihw", _XYZ_FROM_RGB, linear) / _WHITE
    f = torch.where(xyz > 0.008856, xyz ** (1 / 3), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f[:, :1], f[:, 1:2], f[:, 2:]
    L = 116.0 * fy - 16.0
    ab = torch.cat((500.0 * (fx - fy), 200.0 * (fy - fz)), dim=1)
    return L / L_SCALE - 1.0, ab / AB_SCALE


def test_skimage_per_image(benchmark: BenchmarkFixture, images: Tensor) -> None:
    batch = list(images.permute(0, 2, 3, 1).numpy())
    out = benchmark(skimage_per_image, batch)
    assert len(out) == BATCH
    record_rate(benchmark)


def test_plain_torch(benchmark: BenchmarkFixture, images: Tensor) -> None:
    L, ab = benchmark(plain_torch, images)
    torch.testing.assert_close(L, rgb_uint8_to_lab_normalized(images)[0], rtol=0, atol=1e-4)
    record_rate(benchmark)


def test_zoo_fast_path(benchmark: BenchmarkFixture, images: Tensor) -> None:
    L, ab = benchmark(rgb_uint8_to_lab_normalized, images)
    expected = plain_torch(images)
    torch.testing.assert_close(L, expected[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(ab, expected[1], rtol=0, atol=1e-4)
    record_rate(benchmark)


def test_zoo_fast_path_compiled(benchmark: BenchmarkFixture, images: Tensor) -> None:
    rgb_uint8_to_lab_normalized(images, compile=True)  # compile outside the timing
    L, ab = benchmark(rgb_uint8_to_lab_normalized, images, compile=True)
    torch.testing.assert_close(ab, plain_torch(images)[1], rtol=0, atol=1e-4)
    record_rate(benchmark)
