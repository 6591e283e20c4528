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

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.image import structural_similarity_index_measure

from zoo.color import ciede2000, rgb_to_lab

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
