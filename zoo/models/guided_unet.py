"""``guided-unet``: an smp U-Net that also takes colour hints (Zhang et al. 2017's user-guided input).

One path through it::

    x = cat(L, hint a, hint b, hint mask)                  (B, 4, H, W): zoo.hints.hint_channels
    L --encoder (frozen ImageNet weights, as smp-unet)--> features at strides 2, 4, 8, 16, 32
    hints --at each stride s: the mask's max over s x s cells and the hints' mean ab there--> (B, 3, H/s, W/s)
          --3x3 conv, zero at first--> added to the encoder feature of stride s (what the decoder reads)
          --at stride 1: added to the decoder's output, before the head
    --U-Net decoder, head--> ab

Hints enter where the decoder reads, at every scale, never through the encoder's stem: at the coarsest scale a
hint covers a 32 x 32 cell, so the decoder sees it over a whole region from the first block and learns where its
colour stops from the lightness features beside it. (A hint fed only to the stem of a pretrained encoder is one
pixel among thousands: the calibration run for the hints issue learnt to ignore it.) The hint convolutions start
at zero and have no bias, so a fresh model is the automatic U-Net, and any model given no hints (all-zero
channels) is exactly its own U-Net: one model colorizes with and without hints.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.hints import HINT_CHANNELS
from zoo.models.smp_unet import smp_unet
from zoo.registry import Geometry, register_generator

_EMPTY = 1e-6  # cells with less hint mass than this hold no hint


def pooled_hints(hints: Tensor, stride: int) -> Tensor:
    """(B, 3, H/s, W/s): per s x s cell the hints' mean ab (0 where none) and whether any hint is in it."""
    if stride == 1:
        return hints
    ab, mask = hints[:, :2], hints[:, 2:]
    mass = F.avg_pool2d(mask, stride)
    mean_ab = F.avg_pool2d(ab * mask, stride) / mass.clamp(min=_EMPTY)
    return torch.cat([mean_ab, (mass > _EMPTY).to(hints.dtype)], dim=1)


class GuidedUnet(nn.Module):
    """An smp U-Net (``unet``) and one 3x3 convolution per scale (``hint_convs``), zero at first and without a
    bias: all-zero hint channels add nothing, so without hints the model is exactly its U-Net."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet
        widths = [*unet.encoder.out_channels[1:], unet.segmentation_head[0].in_channels]
        self.hint_convs = nn.ModuleList(nn.Conv2d(HINT_CHANNELS, width, 3, padding=1, bias=False) for width in widths)
        for conv in self.hint_convs:
            nn.init.zeros_(conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        lightness, hints = x[:, :1], x[:, 1:]
        features = list(self.unet.encoder(lightness))
        for level in range(1, len(features)):
            features[level] = features[level] + self.hint_convs[level - 1](pooled_hints(hints, 2**level))
        decoded = self.unet.decoder(features)
        return self.unet.segmentation_head(decoded + self.hint_convs[-1](hints))


# the U-Net's five halvings, as smp-unet's
@register_generator("guided-unet", geometry=Geometry(multiple=32), pretrained_setting="encoder_weights",
                    takes_hints=True)
def guided_unet(
    in_channels: int = 1 + HINT_CHANNELS,
    out_channels: int = 2,
    *,
    encoder: str = "tu-tf_efficientnet_lite0",
    encoder_weights: str | None = None,
    decoder_channels: Sequence[int] | None = None,
) -> GuidedUnet:
    """A :class:`GuidedUnet` on ``smp-unet``'s U-Net (same ``encoder``, ``encoder_weights`` and
    ``decoder_channels``), taking L and the three hint channels."""
    if in_channels != 1 + HINT_CHANNELS:
        raise ValueError(f"guided-unet takes L and {HINT_CHANNELS} hint channels ({1 + HINT_CHANNELS} in all),"
                         f" not {in_channels}")
    return GuidedUnet(smp_unet(1, out_channels, encoder=encoder, encoder_weights=encoder_weights,
                               decoder_channels=decoder_channels))
