"""sRGB <-> CIE L*a*b* in torch, with the constants of scikit-image's ``rgb2lab``/``lab2rgb`` (D65, 2 degrees).

Images are ``(B, 3, H, W)`` or ``(3, H, W)`` tensors (channels on dim -3) of float32 or float64 on any device;
the float conversions are differentiable, with finite gradients everywhere (also at black and out of gamut).

The models see Lab normalised to ``L / L_SCALE - 1`` in [-1, 1] and ``ab / AB_SCALE``.
:func:`rgb_uint8_to_lab_normalized` is the data pipeline's fast path from a uint8 batch to that pair: an exact
256-entry table for the sRGB transfer curve, the 3x3 map, the cube root, and the normalised Lab combination
folded into one more 3x3 map and offset; eagerly in cache-sized bands on CPU, or through ``torch.compile``.

:func:`ciede2000` is the colour difference between two Lab tensors: what the scores report (``zoo.harness.metrics``)
and, with its ``eps``, a training loss (the ``ciede2000`` objective).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import torch
from torch import Tensor

L_SCALE = 50.0
AB_SCALE = 110.0

# sRGB transfer curve, as in skimage.color.rgb2xyz / xyz2rgb.
_SRGB_KNEE = 0.04045
_LINEAR_KNEE = 0.0031308
# CIE f(t) = cbrt(t) above _F_KNEE_T, 7.787 t + 16/116 below, as in skimage.color.xyz2lab / lab2xyz.
_F_KNEE_T = 0.008856
_F_KNEE = 0.2068966
_F_SLOPE = 7.787
_F_OFFSET = 16.0 / 116.0

# Pixels per band in the eager CPU fast path: the intermediate results of a band stay in cache.
_CPU_BAND_PIXELS = 2**17

_F64 = torch.float64
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=_F64)
# XYZ from linear sRGB with rows divided by the white point: it gives the XYZ / XYZ_white that f(t) takes.
_XYZN_FROM_LINEAR = (
    torch.tensor(
        [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
        dtype=_F64,
    )
    / _WHITE_D65[:, None]
)
# (L, a, b) = _LAB_FROM_F @ (fx, fy, fz) + _LAB_OFFSET
_LAB_FROM_F = torch.tensor([[0.0, 116.0, 0.0], [500.0, -500.0, 0.0], [0.0, 200.0, -200.0]], dtype=_F64)
_LAB_OFFSET = torch.tensor([-16.0, 0.0, 0.0], dtype=_F64)
# Its inverse, (fx, fy, fz) = _F_FROM_LAB @ (L, a, b) + 16/116, written out so that the zeros are exact.
_F_FROM_LAB = torch.tensor([[1 / 116, 1 / 500, 0.0], [1 / 116, 0.0, 0.0], [1 / 116, 0.0, -1 / 200]], dtype=_F64)
_LAB_SCALE = torch.tensor([L_SCALE, AB_SCALE, AB_SCALE], dtype=_F64)


class _Constants(NamedTuple):
    """The constants in one dtype on one device: 3x3 matrices, (3, 1, 1) offsets, the 256-entry table."""

    xyzn_from_linear: Tensor
    linear_from_xyzn: Tensor
    lab_from_f: Tensor
    lab_offset: Tensor
    normalized_from_f: Tensor
    normalized_offset: Tensor
    f_from_lab: Tensor
    f_offset: Tensor
    f_min: Tensor
    linear_lut: Tensor
    f_bound: float


def _srgb_to_linear(x: Tensor) -> Tensor:
    """Undo the sRGB transfer curve (elementwise)."""
    return torch.where(x > _SRGB_KNEE, ((x.clamp(min=_SRGB_KNEE) + 0.055) / 1.055) ** 2.4, x / 12.92)


def _linear_to_srgb(x: Tensor) -> Tensor:
    """Apply the sRGB transfer curve (elementwise, no clipping); the power as exp(log / 2.4), twice as fast as
    pow on CPU."""
    curve = x.clamp(min=_LINEAR_KNEE).log().mul_(1 / 2.4).exp() * 1.055 - 0.055
    return torch.where(x > _LINEAR_KNEE, curve, 12.92 * x)


def _lab_f(t: Tensor) -> Tensor:
    """CIE f(t) as ``min(cbrt(max(t, knee)), 7.787 t + 16/116)``, which needs no (slow) ``torch.where``.

    The line is, to within 3e-7, the tangent of the cube root at the knee, so this is skimage's piecewise f
    except in (knee, knee + 3e-5), where it keeps the line, 3e-7 away (under 2e-4 Lab units). The cube root
    is exp(log / 3), twice as fast as pow on CPU, and only sees t >= knee: finite gradients for t <= 0.
    """
    cube_root = t.clamp(min=_F_KNEE_T).log().mul_(1 / 3).exp_()
    return torch.minimum(cube_root, (t * _F_SLOPE).add_(_F_OFFSET))


def _lab_f_inv(f: Tensor) -> Tensor:
    """Inverse of skimage's piecewise f (elementwise)."""
    return torch.where(f > _F_KNEE, f**3, (f - _F_OFFSET) / _F_SLOPE)


def _channels(v: Tensor) -> Tensor:
    """A 3-vector as (3, 1, 1), to broadcast over the channels of (..., 3, H, W)."""
    return v.view(3, 1, 1)


@functools.cache
def _constants(device: torch.device, dtype: torch.dtype) -> _Constants:
    """The constants, computed in float64 and cast to ``dtype`` on ``device`` once per pair.

    Made outside inference mode even when first asked for inside it: cached inference tensors could not be
    saved for backward later.
    """
    with torch.inference_mode(False):
        return _make_constants(device, dtype)


def _make_constants(device: torch.device, dtype: torch.dtype) -> _Constants:
    tensors = _Constants(
        xyzn_from_linear=_XYZN_FROM_LINEAR,
        linear_from_xyzn=torch.linalg.inv(_XYZN_FROM_LINEAR),
        lab_from_f=_LAB_FROM_F,
        lab_offset=_channels(_LAB_OFFSET),
        normalized_from_f=_LAB_FROM_F / _LAB_SCALE[:, None],
        normalized_offset=_channels(_LAB_OFFSET / _LAB_SCALE - torch.tensor([1.0, 0.0, 0.0], dtype=_F64)),
        f_from_lab=_F_FROM_LAB,
        f_offset=_channels(torch.full((3,), _F_OFFSET, dtype=_F64)),
        # skimage clips a negative f_z (that is, Z < 0) to zero before inverting f.
        f_min=_channels(torch.tensor([-torch.inf, -torch.inf, 0.0], dtype=_F64)),
        linear_lut=_srgb_to_linear(torch.arange(256, dtype=_F64) / 255),
        # Largest |f| whose cube, after the 3x3 map to linear RGB and the transfer curve, stays finite.
        f_bound=(torch.finfo(dtype).max / 1e3) ** (1 / 3),
    )
    return _Constants(*(v.to(device=device, dtype=dtype) if isinstance(v, Tensor) else v for v in tensors))


def _mix(matrix: Tensor, x: Tensor) -> Tensor:
    """``matrix`` (3, 3) applied to the channels (dim -3) of ``x``, as one batched matmul."""
    return torch.einsum("ij,...jhw->...ihw", matrix, x)


def _lab_from_linear(linear: Tensor, lab_from_f: Tensor, lab_offset: Tensor, c: _Constants) -> Tensor:
    """(Normalised) Lab from linear sRGB: the 3x3 map to XYZ / white, f(t), then the affine map to Lab."""
    return _mix(lab_from_f, _lab_f(_mix(c.xyzn_from_linear, linear))) + lab_offset


def _check_image(x: Tensor, name: str) -> None:
    """Raise unless ``x`` is (3, H, W) or (B, 3, H, W)."""
    if x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"{name} must be (3, H, W) or (B, 3, H, W), got shape {tuple(x.shape)}")


def _check_float_image(x: Tensor, name: str) -> None:
    """Raise unless ``x`` is a floating-point (3, H, W) or (B, 3, H, W) tensor."""
    _check_image(x, name)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def _check_uint8_image(x: Tensor, name: str) -> None:
    """Raise unless ``x`` is a uint8 (3, H, W) or (B, 3, H, W) tensor."""
    _check_image(x, name)
    if x.dtype != torch.uint8:
        raise TypeError(f"{name} must be uint8, got {x.dtype}")


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB in [0, 1] to CIE Lab (L in [0, 100]), same shape and dtype; matches ``skimage.color.rgb2lab``."""
    _check_float_image(rgb, "rgb")
    c = _constants(rgb.device, rgb.dtype)
    return _lab_from_linear(_srgb_to_linear(rgb), c.lab_from_f, c.lab_offset, c)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """CIE Lab to sRGB clipped to [0, 1], same shape and dtype; matches ``skimage.color.lab2rgb``.

    Out-of-gamut colours clip as in skimage (which first clips a negative f_z, i.e. Z < 0, to zero). Any finite
    Lab gives finite values and gradients: where |f| would overflow when cubed, the vector (fx, fy, fz) is
    scaled down, which keeps the signs and rough proportions of the linear RGB that then clips.
    """
    _check_float_image(lab, "lab")
    c = _constants(lab.device, lab.dtype)
    f = _mix(c.f_from_lab, lab) + c.f_offset
    if not bool(f.abs().amax() <= c.f_bound):  # rare: only huge Lab values need the scaling (NaN takes it too)
        f = f * (c.f_bound / f.abs().amax(dim=-3, keepdim=True).clamp(min=c.f_bound))
    f = f.clamp(min=c.f_min)
    return _linear_to_srgb(_mix(c.linear_from_xyzn, _lab_f_inv(f))).clamp(0.0, 1.0)


def normalize_lab(lab: Tensor) -> tuple[Tensor, Tensor]:
    """Split Lab into the model's ``(L / L_SCALE - 1, ab / AB_SCALE)``, shapes (B, 1, H, W) and (B, 2, H, W)."""
    _check_float_image(lab, "lab")
    return lab[..., :1, :, :] / L_SCALE - 1.0, lab[..., 1:, :, :] / AB_SCALE


def denormalize_lab(L: Tensor, ab: Tensor) -> Tensor:
    """Inverse of :func:`normalize_lab`: Lab of shape (B, 3, H, W)."""
    return torch.cat(((L + 1.0) * L_SCALE, ab * AB_SCALE), dim=-3)


def _linear_of_uint8(images: Tensor, c: _Constants) -> Tensor:
    """Linear sRGB of uint8 sRGB, by the 256-entry table (int32 indices: int64 ones cost 8 bytes a value)."""
    return c.linear_lut.index_select(0, images.reshape(-1).int()).view(images.shape)


def _uint8_to_lab_normalized(images: Tensor, c: _Constants) -> tuple[Tensor, Tensor]:
    """The fast path proper: table lookup, then normalised Lab."""
    lab = _lab_from_linear(_linear_of_uint8(images, c), c.normalized_from_f, c.normalized_offset, c)
    return lab[..., :1, :, :], lab[..., 1:, :, :]


class _CompiledOrEager:
    """Call a function through ``torch.compile``; if compiling fails, warn once and run it eagerly from then on."""

    def __init__(self, fn: Callable[..., tuple[Tensor, Tensor]]) -> None:
        self.fn = fn
        self.compiled: Callable[..., tuple[Tensor, Tensor]] | None = None
        self.failed = False

    def __call__(self, *args: object) -> tuple[Tensor, Tensor]:
        if not self.failed:
            try:
                if self.compiled is None:
                    self.compiled = torch.compile(self.fn)
                return self.compiled(*args)
            except Exception as exc:  # noqa: BLE001 (whatever the compiler raises, eager still works)
                self.failed = True
                warnings.warn(
                    f"torch.compile failed, falling back to eager colour conversion: {exc!r}",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return self.fn(*args)


_compiled_uint8_to_lab_normalized = _CompiledOrEager(_uint8_to_lab_normalized)


def rgb_uint8_to_lab_normalized(images: Tensor, compile: bool = False) -> tuple[Tensor, Tensor]:  # noqa: A002
    """uint8 sRGB (B, 3, H, W) or (3, H, W), on any device, to the normalised float32 ``(L, ab)`` pair.

    Equals ``normalize_lab(rgb_to_lab(images / 255))`` up to float32 rounding. With ``compile=True`` the
    conversion runs through ``torch.compile`` (compiled on first use, again for new shapes or devices; eager,
    with a warning, if compiling fails).
    """
    _check_uint8_image(images, "images")
    c = _constants(images.device, torch.float32)
    if compile:
        return _compiled_uint8_to_lab_normalized(images, c)
    # Eagerly on CPU, convert bands of rows (across the batch) so that their intermediate results stay in
    # cache, side by side on torch's number of inter-op threads (its ops release the GIL): twice as fast as
    # one pass over the batch, and far steadier on a busy CPU than waiting for every op's OpenMP team.
    pixels_per_row = images[..., 0, 0, :].numel()
    bands = images.split(max(1, _CPU_BAND_PIXELS // pixels_per_row), dim=-2)
    if images.device.type != "cpu" or len(bands) == 1:
        return _uint8_to_lab_normalized(images, c)
    convert = functools.partial(_uint8_to_lab_normalized, c=c)
    with ThreadPoolExecutor(min(torch.get_num_interop_threads(), len(bands))) as pool:
        L, ab = (torch.cat(parts, dim=-2) for parts in zip(*pool.map(convert, bands), strict=True))
    return L, ab


def rgb_uint8_to_lightness_normalized(images: Tensor) -> Tensor:
    """uint8 sRGB (B, 3, H, W) or (3, H, W) to the normalised L alone, (B, 1, H, W) or (1, H, W) float32: the
    first of :func:`rgb_uint8_to_lab_normalized`'s pair at a third of its work (only Y of XYZ, one cube root),
    for rendering and model inputs, which keep the photo's L and never read its ab."""
    _check_uint8_image(images, "images")
    c = _constants(images.device, torch.float32)
    y = _mix(c.xyzn_from_linear[1:2], _linear_of_uint8(images, c))
    return _lab_f(y).mul_(c.normalized_from_f[0, 1]).add_(c.normalized_offset[0])


def lab_normalized_to_rgb(L: Tensor, ab: Tensor) -> Tensor:
    """Normalised ``(L, ab)`` to sRGB in [0, 1]: the inverse of the fast path, for metrics and outputs."""
    return lab_to_rgb(denormalize_lab(L, ab))


_25_POW_7 = 25.0**7
_DEG = math.pi / 180


def _chroma(a: Tensor, b: Tensor, eps: float) -> Tensor:
    """sqrt(a^2 + b^2 + eps): the chroma, with a finite gradient at gray when eps > 0."""
    return torch.sqrt(a * a + b * b + eps)


def _chroma_weight(c: Tensor) -> Tensor:
    """sqrt(C^7 / (C^7 + 25^7)), written C^3.5 / sqrt(C^7 + 25^7) so that its slope is finite at C = 0."""
    return c**3.5 / torch.sqrt(c**7 + _25_POW_7)


def _hue(a: Tensor, b: Tensor, zero: Tensor) -> Tensor:
    """Hue angle in [0, 2 pi); 0 where the chroma is 0 (``zero``), with finite gradients there too."""
    return torch.remainder(torch.atan2(torch.where(zero, 0.0, b), torch.where(zero, 1.0, a)), 2 * math.pi)


def ciede2000(
    lab1: Tensor, lab2: Tensor, k_l: float = 1.0, k_c: float = 1.0, k_h: float = 1.0, dim: int = -3,
    eps: float = 0.0,
) -> Tensor:
    """CIEDE2000 colour difference between CIE Lab tensors whose L, a, b lie along ``dim`` (Sharma et al. 2005).

    Computed in the inputs' dtype; returns their broadcast shape without ``dim``. A hue is taken as 0 where the
    (adjusted) chroma is 0, as the standard prescribes. With ``eps`` > 0 (in squared Lab units) the square roots
    of the chromas, of their product and of the result are taken of the value plus ``eps``, so the difference has
    finite gradients everywhere (equal colours, gray pixels): a training loss. ``eps`` = 0 is the standard.
    """
    l1, a1, b1 = lab1.unbind(dim)
    l2, a2, b2 = lab2.unbind(dim)
    zero1, zero2 = (a1 == 0) & (b1 == 0), (a2 == 0) & (b2 == 0)
    g = 0.5 * (1 - _chroma_weight((_chroma(a1, b1, eps) + _chroma(a2, b2, eps)) / 2))
    a1, a2 = (1 + g) * a1, (1 + g) * a2
    c1, c2 = _chroma(a1, b1, eps), _chroma(a2, b2, eps)
    h1, h2 = _hue(a1, b1, zero1), _hue(a2, b2, zero2)
    achromatic = zero1 | zero2

    dh = h2 - h1
    dh = torch.where(dh > math.pi, dh - 2 * math.pi, torch.where(dh < -math.pi, dh + 2 * math.pi, dh))
    dh = torch.where(achromatic, 0.0, dh)
    d_l, d_c = l2 - l1, c2 - c1
    d_h = 2 * torch.sqrt(c1 * c2 + eps) * torch.sin(dh / 2)

    l_bar, c_bar = (l1 + l2) / 2, (c1 + c2) / 2
    h_sum = h1 + h2
    wrapped = torch.where(h_sum < 2 * math.pi, h_sum + 2 * math.pi, h_sum - 2 * math.pi)
    h_bar = torch.where((h1 - h2).abs() > math.pi, wrapped, h_sum) / 2
    h_bar = torch.where(achromatic, h_sum, h_bar)

    t = (1 - 0.17 * torch.cos(h_bar - 30 * _DEG) + 0.24 * torch.cos(2 * h_bar)
         + 0.32 * torch.cos(3 * h_bar + 6 * _DEG) - 0.20 * torch.cos(4 * h_bar - 63 * _DEG))
    d_theta = 30 * _DEG * torch.exp(-(((h_bar / _DEG) - 275) / 25) ** 2)
    r_c = 2 * _chroma_weight(c_bar)
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / torch.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * c_bar
    s_h = 1 + 0.015 * c_bar * t
    r_t = -torch.sin(2 * d_theta) * r_c
    t_l, t_c, t_h = d_l / (k_l * s_l), d_c / (k_c * s_c), d_h / (k_h * s_h)
    return torch.sqrt((t_l**2 + t_c**2 + t_h**2 + r_t * t_c * t_h).clamp(min=0) + eps)
