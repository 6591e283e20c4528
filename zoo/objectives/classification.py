"""``classification``: colour as classification over quantised ab, as in Zhang, Isola and Efros (2016).

One path through it::

    ab_bins(grid=10)           the in-gamut bins: the 10-unit ab grid cells that some 8-bit sRGB colour falls in
    generator(L)               logits over the bins, (B, Q, H, W)
    soft_encode(ab)            each true ab -> its 5 nearest bin centres, Gaussian weights (sigma 5), summing to 1
    loss                       cross-entropy against the soft targets, each pixel weighted by its nearest bin's
                               rebalancing weight w ~ ((1 - lambda) smoothed_prior + lambda / Q)^-1, E_prior[w] = 1
    AnnealedMean(T=0.38)       decode: softmax(logits / T) times the bin centres (a 1x1 convolution: any size, ONNX)

The prior is the share of training pixels nearest each bin, counted by :meth:`ColorClassification.prepare` on
the training photos (centre crops) and kept as a buffer, so it travels with the checkpoints.

The grid: Zhang et al. report Q = 313 in-gamut bins for their ab grid of size 10. Rounding the ab of all
16,777,216 8-bit sRGB colours (CIE Lab, D65, as :mod:`zoo.color` and scikit-image compute it) to the grid
occupies 261 bins; those are the classes here (the grid and the rule are settings, the count is tested against
scikit-image).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.color import AB_SCALE, rgb_to_lab
from zoo.objectives.base import Batch, Critic, Objective
from zoo.registry import register_objective

_WINDOW = 2  # cells searched on each side of an ab's own cell for its nearest bins
_AB_BOUND = 128.0  # |a|, |b| of every sRGB colour is below this (its extremes: a -86.2 to 98.2, b -107.9 to 94.5)


@functools.cache
def ab_bins(grid: float = 10.0) -> Tensor:
    """Centres (Q, 2) in Lab units of the ``grid`` x ``grid`` ab cells (centred on multiples of ``grid``) that the
    ab of some 8-bit sRGB colour rounds into; ordered by a, then b. Computed once per grid and process (every
    colour of the cube, one red level at a time, marked on a grid of cells: about a second on 2 CPU cores).
    Every registry read needs it (a classification model's output channels are its length)."""
    levels = torch.arange(256, dtype=torch.float64) / 255
    green, blue = torch.meshgrid(levels, levels, indexing="ij")
    reach = math.ceil(_AB_BOUND / grid)  # cells from the centre to the edge of what sRGB's ab can reach
    occupied = torch.zeros(2 * reach + 1, 2 * reach + 1, dtype=torch.bool)
    for red in levels:
        lab = rgb_to_lab(torch.stack([torch.full_like(green, float(red)), green, blue]))
        a, b = torch.round(lab[1:].reshape(2, -1) / grid).to(torch.int64) + reach
        occupied[a, b] = True
    cells = torch.nonzero(occupied) - reach  # row-major: ordered by a, then b
    return cells.to(torch.float64) * grid


class AnnealedMean(nn.Module):
    """Logits over ab bins (B, Q, H, W) to normalised ab (B, 2, H, W): the mean of the bin centres under
    softmax(logits / T). T = 1 is the mean of the predicted distribution (desaturated), T -> 0 its mode."""

    def __init__(self, centres: Tensor, temperature: float) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"the annealed-mean temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.register_buffer("centres", (centres / AB_SCALE).float())  # (Q, 2) normalised ab

    def forward(self, logits: Tensor) -> Tensor:
        probabilities = torch.softmax(logits.float() / self.temperature, dim=1)
        return F.conv2d(probabilities, self.centres.T[:, :, None, None])


@register_objective("classification")
class ColorClassification(Objective):
    """Cross-entropy over ab bins with soft targets and class rebalancing; decodes by the annealed mean.

    Settings: ``temperature`` (annealed mean, 0.38), ``rebalance`` (lambda, the uniform share mixed into the
    prior: 0.5; 1 disables rebalancing), ``sigma`` (of the soft encoding and of the prior's smoothing, 5 ab
    units), ``neighbours`` (bins a true ab is spread over, 5), ``grid`` (10 ab units), ``loss_stride``
    (the cross-entropy is taken on every ``loss_stride``-th pixel in each direction: 1 is every pixel).
    """

    decoding_settings = ("temperature",)

    def __init__(self, temperature: float = 0.38, rebalance: float = 0.5, sigma: float = 5.0, neighbours: int = 5,
                 grid: float = 10.0, loss_stride: int = 1) -> None:
        super().__init__()
        if not 0 <= rebalance <= 1 or sigma <= 0 or neighbours < 1 or loss_stride < 1:
            raise ValueError("classification needs 0 <= rebalance <= 1, sigma > 0, neighbours >= 1 and"
                             f" loss_stride >= 1, got {rebalance}, {sigma}, {neighbours}, {loss_stride}")
        self.temperature, self.rebalance, self.sigma = temperature, rebalance, sigma
        self.neighbours, self.grid, self.loss_stride = neighbours, grid, loss_stride
        centres = ab_bins(grid).float()
        self.register_buffer("centres", centres)  # (Q, 2) in Lab units
        self.register_buffer("prior", torch.full((len(centres),), 1.0 / len(centres)))
        self.register_buffer("class_weights", torch.ones(len(centres)))
        # Grid cell -> bin index (-1: no bin), padded by the search window, for the nearest-bin search.
        cells = torch.round(centres / grid).to(torch.int64)
        self.cell_origin = cells.min(dim=0).values - _WINDOW
        extent = cells.max(dim=0).values + _WINDOW - self.cell_origin + 1
        table = torch.full(tuple(extent.tolist()), -1, dtype=torch.int64)
        table[tuple((cells - self.cell_origin).T)] = torch.arange(len(centres))
        self.register_buffer("cell_table", table, persistent=False)
        steps = torch.arange(-_WINDOW, _WINDOW + 1)
        self.register_buffer("window", torch.cartesian_prod(steps, steps), persistent=False)  # (25, 2)

    @classmethod
    def output_channels(cls, grid: float = 10.0, **settings: object) -> int:
        return len(ab_bins(grid))

    def decoder(self) -> nn.Module:
        return AnnealedMean(self.centres, self.temperature)

    # -- targets

    def nearest(self, ab: Tensor) -> tuple[Tensor, Tensor]:
        """Indices (B, K, H, W) of the ``neighbours`` nearest bins of normalised ``ab`` and their squared
        distances in ab units, nearest first.

        Only the bins of the 5 x 5 grid cells around each ab's own cell are candidates (25 distances a pixel,
        not Q): any bin outside lies over 2.5 cells away, where the soft-encoding weight exp(-d^2 / 2 sigma^2)
        is below 4e-6 of the nearest's at the default sigma (half a cell). Missing candidates (cells outside
        the gamut) get an infinite distance and so a zero weight.
        """
        b, _, h, w = ab.shape
        points = ab.float().permute(0, 2, 3, 1).reshape(-1, 2) * AB_SCALE  # (N, 2) in ab units
        cells = torch.round(points / self.grid).to(torch.int64) - self.cell_origin.to(points.device)
        limit = torch.tensor(self.cell_table.shape, device=points.device) - 1 - _WINDOW
        cells = torch.minimum(cells.clamp(min=_WINDOW), limit)
        candidates = cells[:, None, :] + self.window  # (N, 25, 2)
        index = self.cell_table[candidates[..., 0], candidates[..., 1]]  # (N, 25)
        squared = (self.centres[index.clamp(min=0)] - points[:, None, :]).square().sum(-1)
        squared = squared.masked_fill(index < 0, float("inf"))
        squared, position = torch.topk(squared, self.neighbours, dim=1, largest=False)
        index = index.gather(1, position).clamp(min=0)
        return (index.reshape(b, h, w, -1).permute(0, 3, 1, 2), squared.reshape(b, h, w, -1).permute(0, 3, 1, 2))

    def soft_encode(self, ab: Tensor) -> tuple[Tensor, Tensor]:
        """Bin indices (B, K, H, W) and Gaussian weights summing to 1 over K, for normalised ``ab``."""
        index, squared = self.nearest(ab)
        weights = torch.softmax(-squared / (2 * self.sigma**2), dim=1)
        return index, weights

    # -- the prior and its rebalancing weights

    def prepare(self, batches: Iterable[tuple[Tensor, Tensor]]) -> None:
        """Count the training pixels nearest each bin; set the prior and the rebalancing weights from it."""
        counts = torch.zeros_like(self.prior, dtype=torch.float64)
        for _, ab in batches:
            index, _ = self.nearest(ab.to(self.centres.device))
            counts += torch.bincount(index[:, 0].flatten(), minlength=len(counts)).to(counts)
        if counts.sum() > 0:
            self.set_prior(counts / counts.sum())

    def set_prior(self, prior: Tensor) -> None:
        """Set the empirical ``prior`` (Q,) and the rebalancing weights: the prior smoothed by a Gaussian of
        ``sigma`` over the bin centres, mixed with the uniform distribution by ``rebalance``, inverted, and
        scaled so that their expectation under the smoothed prior is 1."""
        prior = prior.to(torch.float64)
        centres = self.centres.to(torch.float64)
        kernel = torch.exp(-torch.cdist(centres, centres).square() / (2 * self.sigma**2))
        smoothed = kernel @ prior
        smoothed = smoothed / smoothed.sum()
        weights = 1.0 / ((1 - self.rebalance) * smoothed + self.rebalance / len(prior))
        weights = weights / (smoothed * weights).sum()
        self.prior.copy_(prior.to(self.prior))
        self.class_weights.copy_(weights.to(self.class_weights))

    # -- the term

    def forward(self, batch: Batch, critic: Critic | None = None) -> Tensor:
        """Mean over pixels of w(nearest bin) * cross-entropy(soft target, softmax(logits))."""
        k = self.loss_stride
        logits, ab = batch.output[..., ::k, ::k].float(), batch.ab[..., ::k, ::k]
        index, weights = self.soft_encode(ab)
        log_p = torch.log_softmax(logits, dim=1).gather(1, index)  # (B, K, h, w)
        cross_entropy = -(weights * log_p).sum(dim=1)
        return (self.class_weights[index[:, 0]] * cross_entropy).mean()
