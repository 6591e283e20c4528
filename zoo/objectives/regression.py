"""``l1`` and ``mse``: the pixelwise distance between predicted and true ab (normalised units), in float32.

L1 is pix2pix's reconstruction term; MSE regression is what makes the simple baseline sepia (the mean of the
plausible colours of a region is a desaturated one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from zoo.objectives.base import Batch, Critic, Objective
from zoo.registry import register_objective


class Regression(Objective):
    """Mean of ``distance(ab_pred, ab)`` over every pixel and channel."""

    distance: ClassVar[Callable[[Tensor, Tensor], Tensor]]

    def forward(self, batch: Batch, critic: Critic | None = None) -> Tensor:
        return type(self).distance(batch.ab_pred, batch.ab.float())


@register_objective("l1")
class L1(Regression):
    """Mean absolute error of ab."""

    distance = staticmethod(F.l1_loss)


@register_objective("mse")
class MSE(Regression):
    """Mean squared error of ab."""

    distance = staticmethod(F.mse_loss)
