"""``pix2pix-unet``: the U-Net generator of pix2pix (Isola et al., 2017)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.models.weight_init import init_weights
from zoo.registry import Geometry, output_activation, register_generator

_MIN_DOWNS = 5  # the outermost level, the ngf*2, ngf*4 and ngf*8 levels, and the innermost


def _down(c_in: int, c_out: int, *, norm: bool) -> nn.Sequential:
    """Bias-free 4x4 stride-2 convolution (even with no norm after it, as in the reference), BatchNorm if ``norm``."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False)]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    return nn.Sequential(*layers)


def _up(c_in: int, c_out: int, *, dropout: float = 0.0) -> nn.Sequential:
    """ReLU, 4x4 stride-2 transposed convolution, BatchNorm, then dropout if ``dropout`` > 0."""
    layers: list[nn.Module] = [
        nn.ReLU(),
        nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _twos(n: int) -> int:
    """How many times 2 divides ``n`` (n > 0)."""
    return (n & -n).bit_length() - 1


def _fit_depth(settings: dict, image_size: int) -> dict:
    """As many levels as the image size halves evenly, at most the set ``num_downs`` (6 at 64 px, 7 at 128)."""
    return {"num_downs": min(settings["num_downs"], _twos(image_size))}


GEOMETRY = Geometry(multiple=lambda settings: 2 ** settings["num_downs"], fit=_fit_depth)


class _SkipLevel(nn.Module):
    """One inner U-Net level: LeakyReLU, down, the deeper levels, up, and the activated input concatenated.

    The skip carries the LeakyReLU'd input, as in the reference, whose in-place LeakyReLU rewrites it.
    """

    def __init__(self, down: nn.Module, inner: nn.Module, up: nn.Module) -> None:
        super().__init__()
        self.act = nn.LeakyReLU(0.2)
        self.down = down
        self.inner = inner
        self.up = up

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(x)
        return torch.cat([x, self.up(self.inner(self.down(x)))], dim=1)


@register_generator("pix2pix-unet", geometry=GEOMETRY)
class Pix2PixUNet(nn.Module):
    """The pix2pix U-Net: ``num_downs`` 4x4 stride-2 levels with skips by concatenation, tanh output (for ab).

    ``ngf=64, num_downs=8`` is the reference ``unet_256``; the ``num_downs - 5`` decoder levels next to the
    innermost carry dropout. Height and width must be multiples of ``2 ** num_downs``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        *,
        ngf: int = 64,
        num_downs: int = 8,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if num_downs < _MIN_DOWNS:
            raise ValueError(f"pix2pix-unet needs num_downs >= {_MIN_DOWNS}, got {num_downs}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"pix2pix-unet needs 0 <= dropout < 1, got {dropout}")
        self.num_downs = num_downs
        deep = ngf * 8
        level: nn.Module = _SkipLevel(_down(deep, deep, norm=False), nn.Identity(), _up(deep, deep))
        for _ in range(num_downs - _MIN_DOWNS):
            level = _SkipLevel(_down(deep, deep, norm=True), level, _up(2 * deep, deep, dropout=dropout))
        for mult in (4, 2, 1):
            outer = ngf * mult
            level = _SkipLevel(_down(outer, 2 * outer, norm=True), level, _up(4 * outer, outer))
        self.net = nn.Sequential(
            _down(in_channels, ngf, norm=False),
            level,
            nn.ReLU(),
            nn.ConvTranspose2d(2 * ngf, out_channels, 4, stride=2, padding=1),
            output_activation(out_channels)(),
        )
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """Map L (B, in, H, W) to ab (B, out, H, W) in [-1, 1]."""
        h, w = x.shape[-2:]
        multiple = 2**self.num_downs
        if h % multiple or w % multiple:
            fits = min(_twos(h), _twos(w))
            size = f"{h}" if h == w else f"{h}x{w}"
            hint = (
                f"use num_downs <= {fits} for {size} px"
                if fits >= _MIN_DOWNS
                else f"crop or resize to a multiple of {2**_MIN_DOWNS} px"
            )
            raise ValueError(
                f"pix2pix-unet with num_downs={self.num_downs} needs height and width divisible by {multiple},"
                f" got {h}x{w}; {hint}"
            )
        return self.net(x)
