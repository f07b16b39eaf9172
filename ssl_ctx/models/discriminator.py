"""DCGAN-style discriminator used by the adversarial loss (the released code's ``netD``)."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ssl_ctx.models.init import apply_init


class Discriminator(nn.Module):
    """4x4 stride-2 convs with LeakyReLU 0.2 (BatchNorm on all but the first) until the map side is <= 4,
    then one conv covering the whole remaining map to a single logit.

    Args:
        input_size: side of the images it judges (>= 8). Each conv halves it (rounding down).
        widths: channels of the strided convs in order; if more convs are needed than widths given, the last
            width repeats, and if fewer are needed the list is cut. For 64 px and the default 64-128-256-512
            this is exactly the released code's discriminator (64 -> 32 -> 16 -> 8 -> 4 -> 1).
        in_channels: channels of its input (3).
        init: ``gaussian`` (N(0, 0.02)) or ``torch``.

    Forward: ``x (B, in_channels, input_size, input_size) -> logits (B,)``. No sigmoid: pair it with
    ``binary_cross_entropy_with_logits``.
    """

    def __init__(
        self,
        input_size: int,
        widths: Sequence[int] = (64, 128, 256, 512),
        in_channels: int = 3,
        init: str = "gaussian",
    ) -> None:
        super().__init__()
        if input_size < 8:
            raise ValueError(f"Discriminator input_size must be >= 8, got {input_size}")
        if not widths:
            raise ValueError("Discriminator needs at least one width")
        self.input_size = input_size
        layers: list[tuple[str, nn.Module]] = []
        side, c_in, i = input_size, in_channels, 0
        while side > 4:
            c_out = widths[min(i, len(widths) - 1)]
            layers.append((f"conv{i + 1}", nn.Conv2d(c_in, c_out, 4, 2, 1, bias=i == 0)))
            if i > 0:
                layers.append((f"bn{i + 1}", nn.BatchNorm2d(c_out)))
            layers.append((f"act{i + 1}", nn.LeakyReLU(0.2, inplace=True)))
            side, c_in, i = side // 2, c_out, i + 1
        layers.append(("logit", nn.Conv2d(c_in, 1, kernel_size=side)))
        self.layers = nn.Sequential(OrderedDict(layers))
        apply_init(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).reshape(x.shape[0])
