"""A small residual generator and a global critic, written against the zoo's factory keywords."""

import torch
from torch import nn

from zoo.registry import Geometry


class ResidualColorNet(nn.Module):
    """Full-resolution residual conv net: L (B, in, H, W) -> ab (B, out, H, W) in [-1, 1]."""

    geometry = Geometry(multiple=1)  # no stride: any height and width

    def __init__(self, in_channels: int = 1, out_channels: int = 2, *, width: int = 32, blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))
            for _ in range(blocks)
        )
        self.head = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = h + block(h)
        return torch.tanh(self.head(h))


class GlobalCritic(nn.Module):
    """Strided convs then global pooling: one logit per image, as a (B, 1, 1, 1) patch map."""

    def __init__(self, in_channels: int = 3, *, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(2 * width, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
