"""``choices``: k alternative colourings of a photo, trained so that one of them is close (multiple-choice
learning: Guzman-Rivera et al. 2012; the relaxed winner-takes-all of Rupprecht et al. 2017), for hints to choose
among (:func:`zoo.guided.choose`).

One path through it::

    generator(L)                  (B, 2k, H, W): k ab before tanh
    alternatives(output)          (B, k, 2, H, W): each tanh'd, normalised ab
    loss                          per photo the mean CIEDE2000 of each alternative (``zoo.color.ciede2000``);
                                  the best one weighted 1 - relaxed, the others relaxed / (k - 1); mean over photos
    Mean()                        decode for automatic use (colorize, scoring, sample grids): the alternatives' mean

Trained from a model with plain ab (``zoo train ... --init``): each alternative's head starts as that model's
head times one of :data:`START_SCALES` (:meth:`Choices.grow`), its colours at a different strength, which is
what tells the alternatives apart before training does. With equal heads the best one would be the first on
every photo and the others would never move apart.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.color import ciede2000, denormalize_lab
from zoo.objectives.base import AB_CHANNELS, Batch, Critic, Objective
from zoo.objectives.colour_difference import EPS
from zoo.registry import register_objective

START_SCALES = (1.0, 0.6, 1.5, 2.0, 0.8, 1.25, 0.4, 3.0)  # the first k: the alternatives' heads at the start


def alternatives(output: Tensor) -> Tensor:
    """The generator's output (B, 2k, H, W) as k normalised ab, (B, k, 2, H, W)."""
    return output.float().tanh().unflatten(1, (-1, AB_CHANNELS))


class Each(nn.Module):
    """Every alternative: normalised ab, (B, 2k, H, W) (alternative i in channels 2i and 2i + 1): what hints
    choose among (:func:`zoo.colorizer.shipped_choices`)."""

    def forward(self, output: Tensor) -> Tensor:
        return output.float().tanh()


class Mean(nn.Module):
    """The alternatives' mean: normalised ab (B, 2, H, W), what the model gives without hints."""

    def forward(self, output: Tensor) -> Tensor:
        return alternatives(output).mean(1)


@register_objective("choices")
class Choices(Objective):
    """Relaxed min-of-``k`` CIEDE2000 over ``k`` alternative colourings (``relaxed``: the share of the weight the
    other alternatives keep, so that none is left untrained)."""

    def __init__(self, k: int = 4, relaxed: float = 0.05) -> None:
        super().__init__()
        if not 2 <= k <= len(START_SCALES):
            raise ValueError(f"choices k must be 2 .. {len(START_SCALES)}, got {k}")
        if not 0 <= relaxed < 1:
            raise ValueError(f"choices relaxed must be in [0, 1), got {relaxed}")
        self.k, self.relaxed = k, relaxed

    @classmethod
    def output_channels(cls, k: int = 4, **settings: object) -> int:
        return AB_CHANNELS * k

    def decoder(self) -> nn.Module:
        return Mean()

    def forward(self, batch: Batch, critic: Critic | None = None) -> Tensor:
        options = alternatives(batch.output)  # (B, k, 2, H, W)
        L = batch.L.float().unsqueeze(1).expand(-1, self.k, -1, -1, -1).flatten(0, 1)
        truth = denormalize_lab(batch.L.float(), batch.ab.float()).unsqueeze(1).expand(-1, self.k, -1, -1, -1)
        each = ciede2000(denormalize_lab(L, options.flatten(0, 1)), truth.flatten(0, 1), eps=EPS)
        each = each.view(len(options), self.k, -1).mean(-1)  # (B, k)
        weights = each.new_full(each.shape, self.relaxed / (self.k - 1))
        weights.scatter_(1, each.detach().argmin(1, keepdim=True), 1 - self.relaxed)
        return (weights * each).sum(1).mean()

    def grow(self, tensor: Tensor) -> Tensor:
        """A plain-ab model's head tensor (its output dimension first, 2 long) as this objective's: k copies, the
        i-th times ``START_SCALES[i]``."""
        return torch.cat([tensor * scale for scale in START_SCALES[:self.k]])
