"""Up-convolutional decoder: a bottleneck map back to an image of an exact side.

Size strategy (exact by construction, no resize or crop): the target sides are found backwards from
``out_size`` by halving (rounding up) while the half is still >= ``in_size``. Every layer after the first
doubles its input (kernel 4, stride 2, padding 1; kernel 3 where the target is odd, i.e. 2a - 1) or keeps it
(kernel 3, stride 1, padding 1) where halving would have gone below ``in_size``. The first layer absorbs the
remaining ratio: from a 1x1 map it is a kernel-``b`` stride-1 up-conv (DCGAN's), otherwise stride
``s = floor((b + 2) / a)``, padding 1 and kernel ``k = b - (a - 1) s + 2`` (>= s, so no output pixel is
skipped). Examples: 6 -> 15 -> 29 -> 57 -> 114 -> 227 (alexnet227), 4 -> 4 -> 8 -> 16 -> 32 -> 64 (alexnet64),
1 -> 4 -> 8 -> 16 -> 32 -> 64 (the 128-px inpainting model, identical to the released code).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ssl_ctx.errors import unknown_name_error
from ssl_ctx.models.init import apply_init

DECODER_NORMS = ("batch", "none")


def upconv_sides(in_size: int, out_size: int, num_layers: int) -> list[int]:
    """Map sides after each of ``num_layers`` up-convolutions (the last equals ``out_size``)."""
    if out_size < in_size:
        raise ValueError(f"decoder output side {out_size} is smaller than its input side {in_size}")
    sides = [out_size]
    for _ in range(num_layers - 1):
        half = -(-sides[0] // 2)
        sides.insert(0, half if half >= in_size else sides[0])
    return sides


def upconv_geometry(in_side: int, out_side: int, first: bool) -> tuple[int, int, int]:
    """(kernel, stride, padding) of a ConvTranspose2d taking ``in_side`` exactly to ``out_side``.

    Output side of a transposed conv: ``(a - 1) s - 2 p + k``.
    """
    a, b = in_side, out_side
    if not first:  # b is 2a, 2a - 1 or a by construction of upconv_sides
        if b == a:
            return 3, 1, 1
        return b - 2 * a + 4, 2, 1
    if a == 1:
        return b, 1, 0
    stride = max(1, (b + 2) // a)
    return b - (a - 1) * stride + 2, stride, 1


class UpconvDecoder(nn.Module):
    """Five (``len(widths) + 1``) up-convolutions from a bottleneck map to an RGB image of exactly ``out_size``.

    Args:
        in_channels: channels of the input map.
        in_size: its side.
        out_size: side of the output image.
        widths: channels after each hidden up-conv (default 256-128-64-32, then 3).
        norm: ``batch`` (up-conv -> BatchNorm -> ReLU, as the released code) or ``none`` (up-conv -> ReLU).
        init: ``gaussian`` (N(0, 0.02)) or ``torch``.

    Forward: ``x (B, in_channels, in_size, in_size) -> (B, 3, out_size, out_size)`` in [-1, 1] (Tanh).
    ``sides`` holds the side after each layer; the layer geometry is described in the module docstring.
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int,
        out_size: int,
        widths: Sequence[int] = (256, 128, 64, 32),
        norm: str = "batch",
        init: str = "gaussian",
    ) -> None:
        super().__init__()
        if norm not in DECODER_NORMS:
            raise unknown_name_error("decoder norm", norm, DECODER_NORMS)
        self.in_size = in_size
        self.out_size = out_size
        channels = [in_channels, *widths, 3]
        self.sides = upconv_sides(in_size, out_size, len(channels) - 1)
        layers: list[tuple[str, nn.Module]] = []
        side = in_size
        for i, (c_in, c_out, target) in enumerate(zip(channels[:-1], channels[1:], self.sides)):
            kernel, stride, padding = upconv_geometry(side, target, first=i == 0)
            last = i == len(channels) - 2
            batch_norm = norm == "batch" and not last
            layers.append(
                (f"upconv{i + 1}", nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, bias=not batch_norm))
            )
            if batch_norm:
                layers.append((f"bn{i + 1}", nn.BatchNorm2d(c_out)))
            layers.append((f"act{i + 1}", nn.Tanh() if last else nn.ReLU(inplace=True)))
            side = target
        self.layers = nn.Sequential(OrderedDict(layers))
        apply_init(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
