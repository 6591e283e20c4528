"""``patchgan``: the pix2pix PatchGAN discriminator (``NLayerDiscriminator``; ``n_layers=0`` is the PixelGAN).

The norm layer is a setting, as in pix2pix's ``networks.py`` (``batch``, ``instance`` or ``none``), and
``spectral_norm=True`` constrains every convolution's spectral norm to 1 (Miyato et al. 2018; SPADE's
discriminators pair it with instance norm), which keeps a short adversarial stage from blowing up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as with_spectral_norm

from zoo.models.weight_init import init_weights
from zoo.registry import register_discriminator

Norm = Literal["batch", "instance", "none"]
_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm2d,
    "instance": lambda c: nn.InstanceNorm2d(c, affine=False),  # pix2pix's get_norm_layer("instance")
}


def _conv_block(c_in: int, c_out: int, kernel: int, stride: int, padding: int, norm: Norm) -> list[nn.Module]:
    """Convolution (bias-free before a norm layer), the norm layer, LeakyReLU(0.2)."""
    if norm == "none":
        return [nn.Conv2d(c_in, c_out, kernel, stride, padding), nn.LeakyReLU(0.2)]
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False), _NORMS[norm](c_out), nn.LeakyReLU(0.2)]


@register_discriminator("patchgan")
class PatchGAN(nn.Module):
    """Fully convolutional discriminator giving one logit per overlapping input patch (no sigmoid).

    ``n_layers`` 4x4 stride-2 convolutions (channels ``ndf`` doubling up to ``8 * ndf``), a 4x4 stride-1 one
    and a 4x4 stride-1 convolution to one channel: ``n_layers=3`` is the 70x70 PatchGAN, ``1`` the 16x16 one.
    ``n_layers=0`` is the 1x1 PixelGAN (pix2pix's ``PixelDiscriminator``), which keeps the input size.
    """

    def __init__(self, in_channels: int = 3, *, ndf: int = 64, n_layers: int = 3, norm: Norm = "batch",
                 spectral_norm: bool = False) -> None:
        super().__init__()
        if n_layers < 0:
            raise ValueError(f"patchgan needs n_layers >= 0, got {n_layers}")
        if norm not in ("batch", "instance", "none"):
            raise ValueError(f"patchgan norm must be batch, instance or none, got {norm!r}")
        layers: list[nn.Module]
        if n_layers == 0:
            layers = [nn.Conv2d(in_channels, ndf, 1), nn.LeakyReLU(0.2), *_conv_block(ndf, 2 * ndf, 1, 1, 0, norm)]
            layers.append(nn.Conv2d(2 * ndf, 1, 1, bias=False))
        else:
            mults = [min(2**i, 8) for i in range(n_layers + 1)]
            layers = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            for m_in, m_out in zip(mults[:-2], mults[1:-1]):
                layers += _conv_block(ndf * m_in, ndf * m_out, 4, 2, 1, norm)
            layers += _conv_block(ndf * mults[-2], ndf * mults[-1], 4, 1, 1, norm)
            layers.append(nn.Conv2d(ndf * mults[-1], 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        init_weights(self)
        if spectral_norm:
            for index, layer in enumerate(self.net):
                if isinstance(layer, nn.Conv2d):
                    self.net[index] = with_spectral_norm(layer)

    def forward(self, x: Tensor) -> Tensor:
        """Map cat(L, ab) (B, in, H, W) to patch logits (B, 1, h, w)."""
        return self.net(x)


def receptive_field(n_layers: int) -> int:
    """Side in pixels of the input patch that one output logit of ``patchgan(n_layers=...)`` sees."""
    convs = [m for m in PatchGAN(1, ndf=1, n_layers=n_layers, norm="none").modules() if isinstance(m, nn.Conv2d)]
    field = 1
    for conv in reversed(convs):
        field = (field - 1) * conv.stride[0] + conv.kernel_size[0]
    return field
