"""``simple-cnn``: a plain encoder-decoder regression baseline (no skip connections)."""

from __future__ import annotations

from torch import Tensor, nn

from zoo.models.weight_init import init_weights
from zoo.registry import Geometry, output_activation, register_generator


@register_generator("simple-cnn", geometry=Geometry(multiple=lambda settings: 2 ** settings["depth"]))
class SimpleCNN(nn.Module):
    """Strided-conv encoder and transposed-conv decoder, BatchNorm + ReLU throughout, tanh output (for ab).

    Each of the ``depth`` levels halves the resolution (doubling the channels from ``width`` up to
    ``8 * width``), so height and width must be multiples of ``2 ** depth``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 2, *, width: int = 64, depth: int = 4) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"simple-cnn needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        self.depth = depth
        channels = [in_channels] + [width * 2 ** min(i, 3) for i in range(depth)]
        down: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            down += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        up: list[nn.Module] = []
        decoder_channels = channels[:0:-1] + [width]  # deepest back to width, at full resolution
        for c_in, c_out in zip(decoder_channels[:-1], decoder_channels[1:]):
            up += [
                nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
        self.encoder = nn.Sequential(*down)
        self.decoder = nn.Sequential(*up)
        self.head = nn.Sequential(nn.Conv2d(width, out_channels, 3, padding=1), output_activation(out_channels)())
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """Map L (B, in, H, W) to ab (B, out, H, W) in [-1, 1]."""
        multiple = 2**self.depth
        h, w = x.shape[-2:]
        if h % multiple or w % multiple:
            raise ValueError(
                f"simple-cnn with depth={self.depth} needs height and width divisible by {multiple}, got {h}x{w}"
            )
        return self.head(self.decoder(self.encoder(x)))
