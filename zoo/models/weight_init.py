"""Weight initialisation shared by the from-scratch architectures (as pix2pix does it)."""

from __future__ import annotations

from torch import nn

_AFFINE = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def init_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Draw conv, deconv and linear weights from N(0, std) and BatchNorm scales from N(1, std); zero all biases.

    Returns ``module`` (initialised in place) for chaining.
    """
    for m in module.modules():
        if isinstance(m, _AFFINE):
            nn.init.normal_(m.weight, 0.0, std)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return module
