"""Colour-quality metrics as torchmetrics ``Metric`` subclasses, batched and device-agnostic.

All take sRGB batches in [0, 1] of shape (B, 3, H, W) and keep sums in ``sum`` states, so they reduce correctly
across processes:

* :class:`Colorfulness`: the mean colourfulness CF of one set of images (Hasler & Suesstrunk 2003), in the
  absolute form that the published colorization code computes (``rg = |R - G|``, ``yb = |(R + G) / 2 - B|``;
  the reported ``cf``) or in Hasler & Suesstrunk's own signed form (``signed=True``; ``cf_hasler``);
* :class:`ColorfulnessGap`: dCF as papers report it, ``|mean CF(targets) - mean CF(preds)|`` over the set;
* :class:`PerImageColorfulnessGap`: the mean over images of the per-image ``|CF(target) - CF(pred)|`` (opposite
  errors do not cancel; ``dcf_per_image``);
* :class:`CIEDE2000`: the mean over images of the per-image mean CIEDE2000 colour difference;
* :class:`StructuralSimilarity`: SSIM from torchmetrics' Gaussian SSIM map, averaged over the map without its
  5-pixel border (the part the 11x11 window sees only through padding), as Wang et al.'s reference code and
  ``skimage.metrics.structural_similarity`` do; torchmetrics' own class averages the padded border too, which on
  the sample photos moves SSIM by about 0.005.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.image import structural_similarity_index_measure

from zoo.color import rgb_to_lab

_25_POW_7 = 25.0**7
SSIM_SIGMA = 1.5
SSIM_BORDER = int(3.5 * SSIM_SIGMA + 0.5)  # the Gaussian window's radius: 5 px


def colorfulness(images: Tensor, signed: bool = False) -> Tensor:
    """Per-image colourfulness (B,) of sRGB ``images`` (B, 3, H, W) in [0, 1], on the 0-255 scale.

    CF = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2), population standard deviations over the
    pixels of each image, with rg = |R - G| and yb = |(R + G) / 2 - B| as the published colorization code
    computes it (DDColor's ``calculate_cf``, CT2's evaluation, the widely copied reference implementation), or
    with the signed rg = R - G and yb = (R + G) / 2 - B of Hasler & Suesstrunk (2003) when ``signed``.
    """
    r, g, b = (images.flatten(2) * 255.0).unbind(1)
    rg, yb = r - g, 0.5 * (r + g) - b
    if not signed:
        rg, yb = rg.abs(), yb.abs()
    spread = torch.sqrt(rg.var(dim=-1, correction=0) + yb.var(dim=-1, correction=0))
    centre = torch.sqrt(rg.mean(dim=-1) ** 2 + yb.mean(dim=-1) ** 2)
    return spread + 0.3 * centre


def ciede2000(
    lab1: Tensor, lab2: Tensor, k_l: float = 1.0, k_c: float = 1.0, k_h: float = 1.0, dim: int = -3
) -> Tensor:
    """CIEDE2000 colour difference between CIE Lab tensors whose L, a, b lie along ``dim`` (Sharma et al. 2005).

    Computed in the inputs' dtype; returns their broadcast shape without ``dim``. A hue is taken as 0 where the
    (adjusted) chroma is 0, as the standard prescribes.
    """
    l1, a1, b1 = lab1.unbind(dim)
    l2, a2, b2 = lab2.unbind(dim)
    c_bar7 = ((torch.hypot(a1, b1) + torch.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - torch.sqrt(c_bar7 / (c_bar7 + _25_POW_7)))
    a1, a2 = (1 + g) * a1, (1 + g) * a2
    c1, c2 = torch.hypot(a1, b1), torch.hypot(a2, b2)
    h1 = torch.where(c1 == 0, 0.0, torch.remainder(torch.atan2(b1, a1), 2 * math.pi))
    h2 = torch.where(c2 == 0, 0.0, torch.remainder(torch.atan2(b2, a2), 2 * math.pi))
    achromatic = c1 * c2 == 0

    dh = h2 - h1
    dh = torch.where(dh > math.pi, dh - 2 * math.pi, torch.where(dh < -math.pi, dh + 2 * math.pi, dh))
    dh = torch.where(achromatic, 0.0, dh)
    d_l, d_c = l2 - l1, c2 - c1
    d_h = 2 * torch.sqrt(c1 * c2) * torch.sin(dh / 2)

    l_bar, c_bar = (l1 + l2) / 2, (c1 + c2) / 2
    h_sum = h1 + h2
    wrapped = torch.where(h_sum < 2 * math.pi, h_sum + 2 * math.pi, h_sum - 2 * math.pi)
    h_bar = torch.where((h1 - h2).abs() > math.pi, wrapped, h_sum) / 2
    h_bar = torch.where(achromatic, h_sum, h_bar)

    deg = math.pi / 180
    t = (1 - 0.17 * torch.cos(h_bar - 30 * deg) + 0.24 * torch.cos(2 * h_bar) + 0.32 * torch.cos(3 * h_bar + 6 * deg)
         - 0.20 * torch.cos(4 * h_bar - 63 * deg))
    d_theta = 30 * deg * torch.exp(-(((h_bar / deg) - 275) / 25) ** 2)
    c_bar7 = c_bar**7
    r_c = 2 * torch.sqrt(c_bar7 / (c_bar7 + _25_POW_7))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / torch.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * c_bar
    s_h = 1 + 0.015 * c_bar * t
    r_t = -torch.sin(2 * d_theta) * r_c
    t_l, t_c, t_h = d_l / (k_l * s_l), d_c / (k_c * s_c), d_h / (k_h * s_h)
    return torch.sqrt((t_l**2 + t_c**2 + t_h**2 + r_t * t_c * t_h).clamp(min=0))


def structural_similarity(preds: Tensor, target: Tensor) -> Tensor:
    """Per-image SSIM (B,) of (B, C, H, W) images in [0, 1]: Gaussian window (sigma 1.5, 11x11), border excluded."""
    _, ssim_map = structural_similarity_index_measure(
        preds, target, sigma=SSIM_SIGMA, data_range=1.0, reduction="none", return_full_image=True
    )
    b = SSIM_BORDER
    return ssim_map[..., b:-b, b:-b].mean(dim=(1, 2, 3))


class _PerImageMean(Metric):
    """The mean over images of a per-image value; subclasses say how ``update`` gets that value."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")

    def _add(self, values: Tensor) -> None:
        self.total += values.sum().to(self.total.dtype)
        self.count += values.numel()

    def compute(self) -> Tensor:
        return self.total / self.count


def _check_pair(preds: Tensor, target: Tensor) -> None:
    if preds.shape != target.shape or preds.ndim != 4 or preds.shape[1] != 3:
        raise ValueError(f"expected two (B, 3, H, W) RGB batches, got {tuple(preds.shape)} and {tuple(target.shape)}")


class Colorfulness(_PerImageMean):
    """Mean colourfulness CF (0-255 scale) of the images seen: the absolute form, or Hasler's with ``signed``."""

    higher_is_better = None

    def __init__(self, signed: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.signed = signed

    def update(self, images: Tensor) -> None:
        """Add a (B, 3, H, W) sRGB batch in [0, 1]."""
        self._add(colorfulness(images, self.signed))


class ColorfulnessGap(Metric):
    """dCF as papers report it: |mean CF(targets) - mean CF(preds)| over the whole set (absolute-form CF)."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_state("preds_total", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("target_total", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add predicted and true (B, 3, H, W) sRGB batches in [0, 1]."""
        _check_pair(preds, target)
        self.preds_total += colorfulness(preds).sum().to(self.preds_total.dtype)
        self.target_total += colorfulness(target).sum().to(self.target_total.dtype)
        self.count += preds.shape[0]

    def compute(self) -> Tensor:
        return ((self.target_total - self.preds_total) / self.count).abs()


class PerImageColorfulnessGap(_PerImageMean):
    """Mean over images of |CF(target) - CF(pred)|, per image (absolute-form CF), so opposite errors do not cancel."""

    higher_is_better = False

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add predicted and true (B, 3, H, W) sRGB batches in [0, 1]."""
        _check_pair(preds, target)
        self._add((colorfulness(target) - colorfulness(preds)).abs())


class CIEDE2000(_PerImageMean):
    """Mean CIEDE2000 difference: per-image mean over pixels (Lab by ``zoo.color.rgb_to_lab``), then over images."""

    higher_is_better = False

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add predicted and true (B, 3, H, W) sRGB batches in [0, 1]."""
        _check_pair(preds, target)
        self._add(ciede2000(rgb_to_lab(preds), rgb_to_lab(target)).flatten(1).mean(dim=1))


class StructuralSimilarity(_PerImageMean):
    """Mean SSIM over images (see :func:`structural_similarity` for the window and border)."""

    higher_is_better = True

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add predicted and true (B, C, H, W) batches in [0, 1]."""
        self._add(structural_similarity(preds, target))
