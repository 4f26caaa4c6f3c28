"""A small U-Net in plain torch, to look inside: the classic shape of Ronneberger et al.
(2015), with padding so that the output has the input's size.

Each level of the encoder runs two 3×3 convolutions (padding 1, BatchNorm, ReLU) and hands
its result to the decoder (the *skip*) before a 2×2 max pool halves the map. The decoder goes
back up with 2×2 transposed convolutions of stride 2, concatenates the skip of the same level
and runs two 3×3 convolutions again; a 1×1 convolution gives one map per class.

>>> import torch
>>> from rfviz import receptive_field, tile_margins
>>> torch.manual_seed(0) and None
>>> net = UNet(in_channels=3, classes=1, width=8, depth=3).eval()
>>> net(torch.zeros(1, 3, 64, 48)).shape              # sizes: multiples of 2**3 = 8
torch.Size([1, 1, 64, 48])
>>> print(receptive_field(net, input_size=(64, 64)))  # the size depends on the output pixel
up to 100 px, jump 1, per unit
>>> tile_margins(net, input_size=(64, 64)).grid       # tiles start on multiples of 8
(8, 8)
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["UNet"]


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3×3 convolutions with padding 1, each followed by BatchNorm and ReLU: the size
    stays, the field grows by 2 + 2 pixels of this level."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """``depth`` times down (max pool 2) and up again (transposed convolution 2, stride 2);
    ``width`` channels at the top level, doubling per level. Height and width of the input
    must be multiples of ``2**depth``, or a skip and the upsampled map differ in size.

    Modules are named by level: ``down.0`` … ``down.{depth}`` (``down.{depth}`` is the
    bottom), ``up.0`` (the deepest transposed convolution) …, ``decode.0`` …, ``head``.
    """

    def __init__(self, in_channels: int = 3, classes: int = 1, width: int = 8,
                 depth: int = 3) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("classes", classes),
                            ("width", width), ("depth", depth)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        channels = [width * 2**level for level in range(depth + 1)]  # 8, 16, 32, 64
        self.depth = depth
        self.down = nn.ModuleList(double_conv(c_in, c_out) for c_in, c_out
                                  in zip([in_channels, *channels[:-1]], channels, strict=True))
        self.pool = nn.MaxPool2d(2)
        deep_first = channels[::-1]  # 64, 32, 16, 8
        self.up = nn.ModuleList(nn.ConvTranspose2d(c, c // 2, 2, stride=2)
                                for c in deep_first[:-1])
        self.decode = nn.ModuleList(double_conv(c, c // 2) for c in deep_first[:-1])
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            x = block(x)
            if level < self.depth:
                skips.append(x)
                x = self.pool(x)
        for up, block, skip in zip(self.up, self.decode, reversed(skips), strict=True):
            x = block(torch.cat([skip, up(x)], dim=1))
        return self.head(x)
