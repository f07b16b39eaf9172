"""The paper's 128-px inpainting network, as in the released code (``train.lua`` with ``fineSize=128``).

The generator sees the whole 128x128 image (centre filled with the mean) and predicts its centre 64x64:
encoder (five 4x4 stride-2 convs 64-64-128-256-512) -> 4x4 conv to a 4000-d bottleneck -> five up-convs
4000-512-256-128-64-3 -> Tanh. The hole is smaller than the prediction by ``overlap`` pixels on each side;
the reconstruction loss weights that border 10x (:func:`overlap_weight_map`). The discriminator judges 64x64
patches: ``Discriminator(64)`` is the code's ``netD``.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ssl_ctx.models.decoder import UpconvDecoder
from ssl_ctx.models.discriminator import Discriminator
from ssl_ctx.models.init import apply_init
from ssl_ctx.models.spec import build_encoder
from ssl_ctx.registry import ENCODERS

INPUT_SIZE = 128
OUTPUT_SIZE = 64


class InpaintingEncoder128(nn.Module):
    """Five 4x4 stride-2 convs (64-64-128-256-512), LeakyReLU 0.2, BatchNorm on all but the first.

    Args:
        widths: channels of the five convs.
        init: ``gaussian`` (N(0, 0.02), the code's) or ``torch``.

    Forward: ``x (B, 3, 128, 128)`` in [-1, 1] -> dict ``conv1 (B, 64, 64, 64)``, ``conv2 (B, 64, 32, 32)``,
    ``conv3 (B, 128, 16, 16)``, ``conv4 (B, 256, 8, 8)``, ``conv5 (B, 512, 4, 4)``, each after its activation.
    """

    def __init__(self, widths: Sequence[int] = (64, 64, 128, 256, 512), init: str = "gaussian") -> None:
        super().__init__()
        self.input_size = INPUT_SIZE
        self.out_channels = widths[-1]
        self.out_size = INPUT_SIZE // 2 ** len(widths)
        self.feature_info = []
        c_in = 3
        for i, c_out in enumerate(widths):
            layers: list[tuple[str, nn.Module]] = [("conv", nn.Conv2d(c_in, c_out, 4, 2, 1, bias=i == 0))]
            if i > 0:
                layers.append(("bn", nn.BatchNorm2d(c_out)))
            layers.append(("act", nn.LeakyReLU(0.2, inplace=True)))
            name = f"conv{i + 1}"
            self.add_module(name, nn.Sequential(OrderedDict(layers)))
            self.feature_info.append(dict(module=name, num_chs=c_out, reduction=2 ** (i + 1)))
            c_in = c_out
        apply_init(self, init)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features: dict[str, torch.Tensor] = {}
        for info in self.feature_info:
            x = getattr(self, info["module"])(x)
            features[info["module"]] = x
        return features


class InpaintingGenerator128(nn.Module):
    """Context encoder for inpainting: 128x128 image with a masked centre -> its centre 64x64.

    Args:
        bottleneck_dim: channels of the 1x1 bottleneck (``nBottleneck=4000`` in the code).
        encoder_widths: see :class:`InpaintingEncoder128`.
        decoder_widths: channels of the hidden up-convs (512-256-128-64, then 3).
        init: ``gaussian`` (N(0, 0.02)) or ``torch``.

    Forward: ``x (B, 3, 128, 128)`` in [-1, 1] -> ``(B, 3, 64, 64)`` in [-1, 1] (Tanh), the prediction of
    ``x[..., 32:96, 32:96]``. :meth:`encode` gives the bottleneck ``(B, bottleneck_dim)``.
    Sub-modules: ``encoder`` (an :class:`InpaintingEncoder128`, what a probe transfers), ``bottleneck``
    (4x4 conv -> BatchNorm -> LeakyReLU 0.2, 512x4x4 -> bottleneck_dim x 1 x 1) and ``decoder``
    (an :class:`UpconvDecoder`: 1 -> 4 -> 8 -> 16 -> 32 -> 64, up-conv -> BatchNorm -> ReLU, Tanh last).
    """

    def __init__(
        self,
        bottleneck_dim: int = 4000,
        encoder_widths: Sequence[int] = (64, 64, 128, 256, 512),
        decoder_widths: Sequence[int] = (512, 256, 128, 64),
        init: str = "gaussian",
    ) -> None:
        super().__init__()
        self.bottleneck_dim = bottleneck_dim
        # Built from its spec (``encoder.spec``), which checkpoints store so that a probe can rebuild it alone.
        self.encoder = build_encoder("inpainting128", widths=list(encoder_widths), init=init)
        side = self.encoder.out_size
        self.bottleneck = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(self.encoder.out_channels, bottleneck_dim, kernel_size=side, bias=False),
                bn=nn.BatchNorm2d(bottleneck_dim),
                act=nn.LeakyReLU(0.2, inplace=True),
            )
        )
        self.decoder = UpconvDecoder(bottleneck_dim, 1, OUTPUT_SIZE, widths=decoder_widths, norm="batch", init=init)
        apply_init(self.bottleneck, init)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 128, 128) -> (B, bottleneck_dim)``."""
        last = self.encoder.feature_info[-1]["module"]
        return self.bottleneck(self.encoder(x)[last]).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x)[:, :, None, None])


def inpainting_discriminator(widths: Sequence[int] = (64, 128, 256, 512), init: str = "gaussian") -> Discriminator:
    """The code's ``netD``: judges 64x64 centre patches, ``(B, 3, 64, 64) -> logits (B,)``."""
    return Discriminator(OUTPUT_SIZE, widths, init=init)


def overlap_weight_map(
    size: int = OUTPUT_SIZE, overlap: int = 4, border_weight: float = 10.0, device: torch.device | str | None = None
) -> torch.Tensor:
    """Per-pixel weights of the reconstruction loss on the predicted patch, ``(1, 1, size, size)`` float.

    1 inside the hole, ``border_weight`` on the ``overlap``-pixel border that the prediction adds around it
    (the code's ``wtl2Matrix`` with ``overlapPred=4``, ``overlapL2Weight=10``).
    """
    if not 0 <= 2 * overlap < size:
        raise ValueError(f"overlap {overlap} leaves no hole in a {size}x{size} patch")
    weights = torch.full((1, 1, size, size), float(border_weight), device=device)
    weights[..., overlap : size - overlap, overlap : size - overlap] = 1.0
    return weights


@ENCODERS.register("inpainting128")
def inpainting128(**kwargs: Any) -> InpaintingEncoder128:
    """The encoder of the paper's 128-px inpainting model, 128 px -> conv5 4x4x512."""
    return InpaintingEncoder128(**kwargs)
