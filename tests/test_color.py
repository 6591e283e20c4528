"""zoo.color against scikit-image in float64 as the oracle: random colours, the whole 8-bit cube, real photos."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from skimage.color import lab2rgb, rgb2lab
from torch import Tensor

import zoo.color as color
from zoo.color import (
    AB_SCALE,
    L_SCALE,
    denormalize_lab,
    lab_normalized_to_rgb,
    lab_to_rgb,
    normalize_lab,
    rgb_to_lab,
    rgb_uint8_to_lab_normalized,
    rgb_uint8_to_lightness_normalized,
)

LAB_TOL = 0.01  # Lab units: float32 against skimage's float64
LAB_TOL_F64 = 1e-3  # float64: f(t) differs by < 2e-4 just above the knee, where skimage's f jumps by 3e-7
RGB_TOL = 1e-3
FLOATS = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])


def chw(a: np.ndarray, dtype: torch.dtype = torch.float64) -> Tensor:
    """(..., H, W, 3) numpy to (..., 3, H, W) torch."""
    return torch.from_numpy(np.ascontiguousarray(a)).movedim(-1, -3).to(dtype)


def sk_lab2rgb(lab: np.ndarray) -> np.ndarray:
    """skimage's lab2rgb, quiet about the negative Z it clips (that clipping is part of what we compare)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return lab2rgb(lab)


def max_abs(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def fast_lab(images: Tensor) -> Tensor:
    """The uint8 fast path, denormalised to Lab in float64."""
    return denormalize_lab(*rgb_uint8_to_lab_normalized(images)).double()


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run this module on one torch thread: on a shared, busy CPU, OpenMP threads waiting on each other make
    the many big elementwise ops here several times slower (results do not depend on the thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


rgb_images = arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6), st.just(3)), elements=st.floats(0, 1))
uint8_batches = arrays(np.uint8, st.tuples(st.integers(1, 3), st.just(3), st.integers(1, 6), st.integers(1, 6)))


@st.composite
def lab_images(draw: st.DrawFn, lightness: float, chroma: float) -> np.ndarray:
    """(H, W, 3) Lab with L in [-lightness, lightness] and a, b in [-chroma, chroma]."""
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    L = draw(arrays(np.float64, (h, w, 1), elements=st.floats(-lightness, lightness)))
    ab = draw(arrays(np.float64, (h, w, 2), elements=st.floats(-chroma, chroma)))
    return np.concatenate([L, ab], axis=-1)


# ---------------------------------------------------------------- random colours


@settings(max_examples=60, deadline=None)
@given(rgb_images)
def test_rgb_to_lab_matches_skimage(rgb: np.ndarray) -> None:
    expected = rgb2lab(rgb)
    assert max_abs(rgb_to_lab(chw(rgb, torch.float64)), chw(expected)) < LAB_TOL_F64
    assert max_abs(rgb_to_lab(chw(rgb, torch.float32)), chw(expected)) < LAB_TOL


@settings(max_examples=60, deadline=None)
@given(rgb_images)
def test_lab_to_rgb_matches_skimage_in_gamut_and_round_trips(rgb: np.ndarray) -> None:
    lab = rgb2lab(rgb)
    for dtype in (torch.float32, torch.float64):
        ours = lab_to_rgb(chw(lab, dtype))
        assert max_abs(ours, chw(sk_lab2rgb(lab))) < RGB_TOL
        assert max_abs(ours, chw(rgb)) < RGB_TOL
        assert max_abs(lab_to_rgb(rgb_to_lab(chw(rgb, dtype))), chw(rgb)) < RGB_TOL


@settings(max_examples=80, deadline=None)
@given(lab_images(lightness=200.0, chroma=400.0))
def test_lab_to_rgb_clips_out_of_gamut_like_skimage(lab: np.ndarray) -> None:
    expected = sk_lab2rgb(lab)
    assert max_abs(lab_to_rgb(chw(lab, torch.float64)), chw(expected)) < 1e-6
    assert max_abs(lab_to_rgb(chw(lab, torch.float32)), chw(expected)) < RGB_TOL


@settings(max_examples=60, deadline=None)
@given(lab_images(lightness=1e30, chroma=1e30))
def test_lab_to_rgb_is_finite_and_in_range_for_huge_lab(lab: np.ndarray) -> None:
    expected = sk_lab2rgb(lab)  # finite in float64 for |values| < ~1e100
    for dtype in (torch.float32, torch.float64):
        ours = lab_to_rgb(chw(lab, dtype))
        assert torch.isfinite(ours).all()
        assert ((ours >= 0) & (ours <= 1)).all()
    assert max_abs(lab_to_rgb(chw(lab, torch.float64)), chw(expected)) < 1e-6


@pytest.mark.parametrize(
    ("lab", "rgb"),
    [
        ((-50.0, 0.0, 0.0), (0.0, 0.0, 0.0)),  # negative L: black
        ((400.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # L far above 100: white
        ((100.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        ((50.0, 1e6, -1e6), (0.0, 0.0, 1.0)),
        ((50.0, 1e35, -1e35), (0.0, 0.0, 1.0)),  # f**3 overflows float32 unless scaled down
    ],
)
@FLOATS
def test_lab_to_rgb_extremes(lab: tuple[float, ...], rgb: tuple[float, ...], dtype: torch.dtype) -> None:
    ours = lab_to_rgb(torch.tensor(lab, dtype=dtype).view(1, 3, 1, 1)).flatten()
    assert max_abs(ours, rgb) < 1e-4
    assert max_abs(sk_lab2rgb(np.array(lab).reshape(1, 1, 3)).ravel(), rgb) < 1e-4


# ---------------------------------------------------------------- the uint8 fast path


@settings(max_examples=30, deadline=None)
@given(uint8_batches)
def test_fast_path_matches_float_path_and_skimage(images: np.ndarray) -> None:
    batch = torch.from_numpy(images)
    L, ab = rgb_uint8_to_lab_normalized(batch)
    assert L.dtype == ab.dtype == torch.float32
    assert L.shape == (batch.shape[0], 1, *batch.shape[2:]) and ab.shape == (batch.shape[0], 2, *batch.shape[2:])
    lab = denormalize_lab(L, ab)
    assert max_abs(lab, rgb_to_lab(batch / 255.0)) < LAB_TOL
    assert max_abs(lab, chw(rgb2lab(images.transpose(0, 2, 3, 1) / 255.0))) < LAB_TOL


def test_whole_8bit_cube_matches_skimage() -> None:
    """All 256**3 colours, in slices of 32 red levels: fast path and float32 path against skimage and each other,
    and the lightness-only path against skimage's L."""
    g, b = torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij")
    worst = {"fast": 0.0, "float32": 0.0, "fast - float32": 0.0, "lightness": 0.0}
    for r0 in range(0, 256, 32):
        r = torch.arange(r0, r0 + 32).view(32, 1, 1).expand(32, 256, 256)
        images = torch.stack([r, g.expand_as(r), b.expand_as(r)], dim=1).to(torch.uint8)  # (32, 3, 256, 256)
        expected = chw(rgb2lab(images.movedim(1, -1).numpy() / 255.0))
        fast, float32 = fast_lab(images), rgb_to_lab(images / 255.0)
        lightness = (rgb_uint8_to_lightness_normalized(images) + 1.0) * L_SCALE
        pairs = {"fast": (fast, expected), "float32": (float32, expected), "fast - float32": (fast, float32),
                 "lightness": (lightness, expected[:, :1])}
        for key, (x, y) in pairs.items():
            worst[key] = max(worst[key], max_abs(x, y))
    assert max(worst.values()) < LAB_TOL, worst


def test_fast_path_in_bands_matches_the_float_path() -> None:
    """A batch big enough to be split into uneven bands of rows, converted side by side on a thread pool."""
    images = torch.randint(0, 256, (3, 3, 300, 200), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    L, ab = rgb_uint8_to_lab_normalized(images)
    assert L.shape == (3, 1, 300, 200) and ab.shape == (3, 2, 300, 200)
    assert max_abs(denormalize_lab(L, ab), rgb_to_lab(images / 255.0)) < LAB_TOL


def test_fast_path_accepts_unbatched_and_rejects_other_dtypes() -> None:
    image = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    L, ab = rgb_uint8_to_lab_normalized(image)
    batched = rgb_uint8_to_lab_normalized(image[None])
    assert L.shape == (1, 5, 7) and ab.shape == (2, 5, 7)
    torch.testing.assert_close(L, batched[0][0], rtol=0, atol=1e-6)
    torch.testing.assert_close(ab, batched[1][0], rtol=0, atol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        rgb_uint8_to_lab_normalized(image.float())
    with pytest.raises(ValueError, match="shape"):
        rgb_uint8_to_lab_normalized(image[:2])
    assert rgb_uint8_to_lightness_normalized(image).shape == (1, 5, 7)
    torch.testing.assert_close(rgb_uint8_to_lightness_normalized(image[None])[0], L, rtol=0, atol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        rgb_uint8_to_lightness_normalized(image.float())
    with pytest.raises(ValueError, match="shape"):
        rgb_uint8_to_lightness_normalized(image[:2])


def test_compiled_fast_path_matches_eager() -> None:
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images[0, :, 0, 0] = 0  # black and white pixels take the linear pieces
    images[0, :, 0, 1] = 255
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would hide the compiled path
        compiled = rgb_uint8_to_lab_normalized(images, compile=True)
    eager = rgb_uint8_to_lab_normalized(images)
    for c, e in zip(compiled, eager, strict=True):
        torch.testing.assert_close(c, e, rtol=0, atol=1e-5)


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def broken_compile(fn):  # noqa: ANN001, ANN202 (mimics torch.compile failing on first call: no C++ compiler)
        def run(*args):  # noqa: ANN002, ANN202
            calls.append(args)
            raise RuntimeError("no working C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(color, "_compiled_uint8_to_lab_normalized", color._CompiledOrEager(color._uint8_to_lab_normalized))
    images = torch.randint(0, 256, (1, 3, 4, 4), dtype=torch.uint8)
    expected = rgb_uint8_to_lab_normalized(images)
    with pytest.warns(RuntimeWarning, match="no working C\\+\\+ compiler"):
        first = rgb_uint8_to_lab_normalized(images, compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = rgb_uint8_to_lab_normalized(images, compile=True)
    assert len(calls) == 1
    for got in (first, second):
        assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_fast_path_on_gpu_matches_cpu() -> None:
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    for got, expected in zip(rgb_uint8_to_lab_normalized(images.cuda()), rgb_uint8_to_lab_normalized(images)):
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(images.cuda() / 255.0)).cpu(), images / 255.0, rtol=0, atol=1e-3)


# ---------------------------------------------------------------- real photos


@pytest.fixture(scope="module")
def photos(photos_dir: Path) -> list[np.ndarray]:
    """The shared photos as (H, W, 3) uint8 arrays."""
    return [np.array(Image.open(path).convert("RGB")) for path in sorted(photos_dir.glob("*.jpg"))]


def test_photos_match_skimage(photos: list[np.ndarray]) -> None:
    assert len(photos) >= 100
    worst = {"float32": 0.0, "fast": 0.0, "round trip": 0.0}
    for photo in photos:
        expected = chw(rgb2lab(photo / 255.0))
        rgb = chw(photo / 255.0, torch.float32)
        lab = rgb_to_lab(rgb)  # unbatched (3, H, W)
        worst["float32"] = max(worst["float32"], max_abs(lab, expected))
        worst["fast"] = max(worst["fast"], max_abs(fast_lab(chw(photo, torch.uint8)[None])[0], expected))
        worst["round trip"] = max(worst["round trip"], max_abs(lab_to_rgb(lab), rgb))
    assert worst["float32"] < LAB_TOL, worst
    assert worst["fast"] < LAB_TOL, worst
    assert worst["round trip"] < RGB_TOL, worst


def test_photo_batch_round_trips_through_normalised_lab(photos: list[np.ndarray]) -> None:
    batch = torch.stack([chw(p[:64, :64], torch.uint8) for p in photos])
    L, ab = rgb_uint8_to_lab_normalized(batch)
    assert L.min() >= -1 and L.max() <= 1 and ab.abs().max() <= 1
    assert max_abs(lab_normalized_to_rgb(L, ab), batch / 255.0) < RGB_TOL


# ---------------------------------------------------------------- normalisation, shapes, dtypes


@FLOATS
def test_normalize_lab_scales_and_inverts(dtype: torch.dtype) -> None:
    lab = torch.tensor([[0.0, 100.0, 50.0], [-110.0, 110.0, 0.0], [110.0, -110.0, 0.0]], dtype=dtype).view(1, 3, 1, 3)
    L, ab = normalize_lab(lab)
    assert L_SCALE == 50 and AB_SCALE == 110
    assert L.shape == (1, 1, 1, 3) and ab.shape == (1, 2, 1, 3) and L.dtype == ab.dtype == dtype
    assert L.flatten().tolist() == [-1.0, 1.0, 0.0]
    assert ab.flatten().tolist() == [-1.0, 1.0, 0.0, 1.0, -1.0, 0.0]
    assert torch.equal(denormalize_lab(L, ab), lab)


@FLOATS
def test_dtype_and_shape_are_kept(dtype: torch.dtype) -> None:
    rgb = torch.rand(2, 3, 4, 5, dtype=dtype, generator=torch.Generator().manual_seed(0))
    lab = rgb_to_lab(rgb)
    assert lab.dtype == dtype and lab.shape == rgb.shape
    assert lab_to_rgb(lab).dtype == dtype
    # A batched and a single-image einsum may sum in another order: each of the few roundings (3x3 map, cube
    # root, 3x3 map) is at most an ulp of values of order 1, and a = 500 (fx - fy) scales them by 500.
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(rgb_to_lab(rgb[1]), lab[1], atol=4 * 500 * eps, rtol=0)
    # Back to RGB in [0, 1]: the 3x3 maps, the cube and the transfer curve (slope <= 12.92) on values of order 1.
    torch.testing.assert_close(lab_to_rgb(lab[1]), lab_to_rgb(lab)[1], atol=4 * 13 * eps, rtol=0)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        rgb_to_lab(torch.rand(1, 4, 2, 2))
    with pytest.raises(ValueError, match="shape"):
        lab_to_rgb(torch.rand(3, 2))
    with pytest.raises(TypeError, match="floating"):
        rgb_to_lab(torch.zeros(3, 2, 2, dtype=torch.uint8))


# ---------------------------------------------------------------- gradients


def test_gradcheck_away_from_the_kinks() -> None:
    gen = torch.Generator().manual_seed(0)
    # rgb >= 0.1 keeps linear RGB and XYZ / white above both knees; L in (20, 90) and small ab stay in gamut.
    rgb = (0.1 + 0.8 * torch.rand(1, 3, 2, 3, dtype=torch.float64, generator=gen)).requires_grad_()
    assert torch.autograd.gradcheck(rgb_to_lab, (rgb,))
    lab = torch.stack(
        [20 + 70 * torch.rand(2, 3, generator=gen), 20 * torch.rand(2, 3, generator=gen) - 10,
         20 * torch.rand(2, 3, generator=gen) - 10]
    ).to(torch.float64)[None]
    assert ((lab_to_rgb(lab) > 0.01) & (lab_to_rgb(lab) < 0.99)).all()  # in gamut: no clipping kink
    assert torch.autograd.gradcheck(lab_to_rgb, (lab.requires_grad_(),))


@FLOATS
def test_gradients_are_finite_at_black_knees_and_out_of_gamut(dtype: torch.dtype) -> None:
    rgb = torch.tensor([0.0, 0.04045, 1.0, 0.5, 0.0, 1e-7], dtype=dtype).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    rgb = rgb.clone().requires_grad_()
    rgb_to_lab(rgb).sum().backward()
    assert torch.isfinite(rgb.grad).all()
    assert rgb.grad[..., 0].abs().sum() > 0  # black still has a gradient (the linear pieces)

    lab = torch.tensor(
        [[0.0, 0.0, 0.0], [-16.0, 0.0, 0.0], [-50.0, 10.0, 300.0], [150.0, -300.0, 20.0], [50.0, 1e30, -1e30]],
        dtype=dtype,
    ).T.reshape(1, 3, 1, 5)
    lab = lab.clone().requires_grad_()
    out = lab_to_rgb(lab)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(lab.grad).all()
