"""``confidence``: L1 on ab plus a prediction of its own error; decoded by shrinking ab toward gray where unsure.

One path through it::

    generator(L)            (B, 3, H, W): ab through tanh (2 channels, as a plain ab model's) and log e, e the
                            expected distance of the true ab from the predicted one (normalised ab units)
    loss                    mean |ab_pred - ab| (L1, as ``l1``)  +  mean(r / e + log e), r = ||ab - ab_pred||
                            with ab_pred detached: the exponential negative log-likelihood of r, least at
                            e = E[r], so e learns the error without pulling ab toward the easy pixels
    ConfidenceShrinkage     decode: ab_pred * c^2 / (c^2 + k e^2), c = ||ab_pred|| (its chroma): a pixel keeps
                            its colour where the expected error is small against its chroma, and goes toward
                            gray where it is large (k = ``shrink``; 0 keeps every colour as predicted)

Why: a per-pixel error such as CIEDE2000 charges a wrong hue more than no hue, so the score-optimal estimate of
a pixel whose hue the model cannot know is nearer gray than its L1 prediction; a uniform ``chroma_scale`` also
pales the colours the model is sure of (sky, grass). The shrinkage is a Wiener-type gain: signal power c^2
against error power e^2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.objectives.base import AB_CHANNELS, Batch, Critic, Objective
from zoo.registry import register_objective

_LOG_ERROR_FLOOR = -9.0  # e >= 1.2e-4 normalised units (0.014 ab units): keeps r / e finite on exact pixels


def split(output: Tensor) -> tuple[Tensor, Tensor]:
    """The generator's (B, 3, H, W) output as float32 normalised ab (tanh of its first two channels, bounded as a
    plain ab model's output is) and log e (B, 1, H, W)."""
    return torch.tanh(output[:, :AB_CHANNELS].float()), output[:, AB_CHANNELS:].float()


class ConfidenceShrinkage(nn.Module):
    """(B, 3, H, W) of ab and log e to (B, 2, H, W) ab: ab * c^2 / (c^2 + shrink * e^2), c = ||ab||."""

    def __init__(self, shrink: float) -> None:
        super().__init__()
        if shrink < 0:
            raise ValueError(f"confidence needs shrink >= 0, got {shrink}")
        self.shrink = shrink

    def forward(self, output: Tensor) -> Tensor:
        ab, log_error = split(output)
        chroma2 = ab.square().sum(dim=1, keepdim=True)
        error2 = torch.exp(2 * log_error.clamp(min=_LOG_ERROR_FLOOR))
        return ab * (chroma2 / (chroma2 + self.shrink * error2).clamp(min=1e-12))


@register_objective("confidence")
class Confidence(Objective):
    """L1 on the ab channels plus the exponential NLL of their error distance under the predicted e.

    Settings: ``shrink`` (k of the decoding, 1.0), ``error_weight`` (of the NLL term beside the L1 term, 0.1:
    Adam scales the error channel's own weights to its gradients whatever the weight, so the weight mostly sets
    how much the shared decoder features serve the error rather than ab).
    """

    decoding_settings = ("shrink",)

    def __init__(self, shrink: float = 1.0, error_weight: float = 0.1) -> None:
        super().__init__()
        if shrink < 0 or error_weight < 0:
            raise ValueError(f"confidence needs shrink >= 0 and error_weight >= 0, got {shrink}, {error_weight}")
        self.shrink, self.error_weight = shrink, error_weight

    @classmethod
    def output_channels(cls, **settings: object) -> int:
        return AB_CHANNELS + 1

    def decoder(self) -> nn.Module:
        return ConfidenceShrinkage(self.shrink)

    def forward(self, batch: Batch, critic: Critic | None = None) -> Tensor:
        ab_pred, log_error = split(batch.output)
        truth = batch.ab.float()
        l1 = F.l1_loss(ab_pred, truth)
        distance = (ab_pred.detach() - truth).square().sum(dim=1, keepdim=True).sqrt()
        log_error = log_error.clamp(min=_LOG_ERROR_FLOOR)
        nll = (distance * torch.exp(-log_error) + log_error).mean()
        return l1 + self.error_weight * nll
