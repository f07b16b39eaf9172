"""The channel-wise fully-connected layer and the bottleneck built on it (paper, Section 3.1).

An encoder's last map has m channels of n x n. A full FC layer to a map of the same size would need
m^2 n^4 weights; the channel-wise layer connects each channel's n^2 values to that same channel's n^2
outputs only (m n^4 weights, plus m n^2 biases here), so every output unit sees the whole image but no
information flows between channels. The stride-1 convolution after it mixes the channels.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ssl_ctx.errors import unknown_name_error
from ssl_ctx.models.init import apply_init

BOTTLENECKS = ("channelwise_fc", "conv1x1")


class ChannelwiseFC(nn.Module):
    """Per-channel fully-connected layer on n x n maps.

    Args:
        channels: m, the number of maps.
        size: n, their side.

    Parameters: ``weight (m, n^2, n^2)`` indexed ``[channel, out, in]`` (as ``nn.Linear``) and ``bias (m, n^2)``,
    i.e. exactly m n^4 + m n^2 values. Forward: ``x (B, m, n, n) -> (B, m, n, n)``,
    ``y[b, c] = weight[c] @ x[b, c].flatten() + bias[c]``. Implemented as one batched matmul over channels.
    """

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.channels = channels
        self.size = size
        area = size * size
        self.weight = nn.Parameter(torch.empty(channels, area, area))
        self.bias = nn.Parameter(torch.empty(channels, area))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default, per channel (fan_in = n^2); the models overwrite it with the Gaussian init.
        bound = 1.0 / math.sqrt(self.size * self.size)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        if channels != self.channels or height != self.size or width != self.size:
            raise ValueError(
                f"ChannelwiseFC expects (B, {self.channels}, {self.size}, {self.size}), got {tuple(x.shape)}"
            )
        flat = x.reshape(batch, channels, height * width)
        out = torch.einsum("bci,coi->bco", flat, self.weight) + self.bias
        return out.reshape(batch, channels, height, width)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, size={self.size}"


class ChannelwiseBottleneck(nn.Module):
    """The layer between encoder and decoder: channel-wise FC -> ReLU -> dropout -> 1x1 conv -> ReLU.

    Args:
        channels: m, channels of the encoder's last map (kept).
        size: n, its side (kept).
        dropout: dropout probability on the channel-wise FC output (0 = none).
        kind: ``channelwise_fc`` (the paper's) or ``conv1x1`` (ablation: the channel-wise FC and its ReLU are
            removed, only the 1x1 convolution remains, so no unit sees the whole image).
        init: ``gaussian`` (N(0, 0.02)) or ``torch``.

    Forward: ``x (B, m, n, n) -> (B, m, n, n)``, non-negative (ReLU), ready for :class:`UpconvDecoder`.
    The ReLUs follow AlexNet's fc6/fc7 (each linear layer is followed by one); without the first, FC and conv
    would collapse into a single linear map.
    """

    def __init__(
        self, channels: int, size: int, dropout: float = 0.0, kind: str = "channelwise_fc", init: str = "gaussian"
    ) -> None:
        super().__init__()
        if kind not in BOTTLENECKS:
            raise unknown_name_error("bottleneck", kind, BOTTLENECKS)
        self.kind = kind
        self.channels = channels
        self.size = size
        if kind == "channelwise_fc":
            self.fc: nn.Module = ChannelwiseFC(channels, size)
            self.fc_act: nn.Module = nn.ReLU(inplace=True)
        else:
            self.fc = nn.Identity()
            self.fc_act = nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv = nn.Conv2d(channels, channels, kernel_size=1, stride=1)
        self.act = nn.ReLU(inplace=True)
        apply_init(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(self.dropout(self.fc_act(self.fc(x)))))
