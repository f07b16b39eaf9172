"""AlexNet encoders in the CaffeNet widths (96-256-384-384-256), the paper's feature-learning encoder.

``alexnet227`` is CaffeNet conv1-pool5: 227x227 -> conv1 55 -> pool 27 -> conv2 27 -> pool 13 -> conv3-5 13
-> pool5 6x6x256. The small-input variants keep the five convolutions and three 3x3 stride-2 max pools and
only change conv1 (kernel, stride, padding) so that pool5 is still a real spatial map:

=========== ======= =================== =================================== ======
name        input   conv1 (k, s, p)     spatial sides conv1/conv2/conv5     pool5
=========== ======= =================== =================================== ======
alexnet227  227     11, 4, 0 (CaffeNet) 55 / 27 / 13                        6x6
alexnet128  128     7, 2, 3             64 / 32 / 16                        8x8
alexnet96   96      5, 2, 2             48 / 24 / 12                        6x6
alexnet64   64      5, 2, 2             32 / 16 / 8                         4x4
alexnet32   32      5, 1, 2             32 / 16 / 8                         4x4
=========== ======= =================== =================================== ======

Pooling rounds up (``ceil_mode=True``), as Caffe's pooling layer does: this changes nothing for 227 px and
gives the small variants exact power-of-two map sides. ``groups=2`` splits conv2, conv4 and conv5 in two groups
as CaffeNet does (a two-GPU artefact that halves their weights); ``groups=1`` is the ungrouped network.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from ssl_ctx.errors import UserError, unknown_name_error
from ssl_ctx.models.init import apply_init
from ssl_ctx.registry import ENCODERS

WIDTHS = (96, 256, 384, 384, 256)
NORMS = ("lrn", "batch", "none")
# The model settings (``model.*``) an AlexNet encoder is built with: its build spec's options.
MODEL_OPTIONS = ("norm", "width", "groups")


@dataclass(frozen=True)
class AlexNetSpec:
    """One variant: the nominal input side and conv1's geometry (everything else is CaffeNet's)."""

    input_size: int
    conv1_kernel: int
    conv1_stride: int
    conv1_padding: int


VARIANTS: dict[str, AlexNetSpec] = {
    "alexnet227": AlexNetSpec(input_size=227, conv1_kernel=11, conv1_stride=4, conv1_padding=0),
    "alexnet128": AlexNetSpec(input_size=128, conv1_kernel=7, conv1_stride=2, conv1_padding=3),
    "alexnet96": AlexNetSpec(input_size=96, conv1_kernel=5, conv1_stride=2, conv1_padding=2),
    "alexnet64": AlexNetSpec(input_size=64, conv1_kernel=5, conv1_stride=2, conv1_padding=2),
    "alexnet32": AlexNetSpec(input_size=32, conv1_kernel=5, conv1_stride=1, conv1_padding=2),
}


# ---------------------------------------------------------------------------------------- building blocks


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _pool_out(size: int) -> int:
    """Side after a 3x3 stride-2 max pool with ceil_mode (Caffe's rounding)."""
    return math.ceil((size - 3) / 2) + 1


def _max_pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


def _lrn() -> nn.LocalResponseNorm:
    # CaffeNet's norm1/norm2: local_size 5, alpha 1e-4, beta 0.75, k 1 (PyTorch divides alpha by size, as Caffe).
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)


def _conv_stage(
    in_chs: int,
    out_chs: int,
    kernel: int,
    stride: int,
    padding: int,
    norm: str,
    pool_first: bool = False,
    lrn_first: bool = False,
    groups: int = 1,
) -> nn.Sequential:
    """[max pool] [LRN] -> conv -> [BatchNorm] -> ReLU. CaffeNet pools, then normalises, then convolves."""
    layers: list[tuple[str, nn.Module]] = []
    if pool_first:
        layers.append(("pool", _max_pool()))
    if lrn_first:
        layers.append(("lrn", _lrn()))
    layers.append(("conv", nn.Conv2d(in_chs, out_chs, kernel, stride, padding, groups=groups, bias=norm != "batch")))
    if norm == "batch":
        layers.append(("bn", nn.BatchNorm2d(out_chs)))
    layers.append(("act", nn.ReLU(inplace=True)))
    return nn.Sequential(OrderedDict(layers))


# ---------------------------------------------------------------------------------------------- model


# torchvision's AlexNet (``torchvision.models.alexnet``) keeps its convolutions in ``features`` (indices of
# conv1..conv5 there); its classifier is not part of the encoder.
TORCHVISION_ALEXNET_CONVS = {"features.0.": "conv1.conv.", "features.3.": "conv2.conv.", "features.6.": "conv3.conv.",
                             "features.8.": "conv4.conv.", "features.10.": "conv5.conv."}


class AlexNetEncoder(nn.Module):
    """AlexNet conv1-pool5 (CaffeNet widths) returning every stage's feature map.

    Args:
        variant: a key of :data:`VARIANTS` (alexnet227, alexnet128, alexnet96, alexnet64, alexnet32).
        norm: ``lrn`` (CaffeNet's LocalResponseNorm after conv1 and conv2, after their pools; the paper's),
            ``batch`` (BatchNorm after every conv, before its ReLU) or ``none``.
        init: ``gaussian`` (N(0, 0.02), the code's) or ``torch`` (PyTorch defaults).
        width: multiplier of every conv's channels (1.0 = CaffeNet's, the paper's). Smaller values are a
            departure for CPU budgets: 0.5 costs about a quarter of the arithmetic.
        groups: convolution groups of conv2, conv4 and conv5: 2 = CaffeNet's (the paper's), 1 = ungrouped.

    Forward: ``x (B, 3, S, S)`` in [-1, 1], S = ``input_size`` (other sides work while pool5 stays >= 1) ->
    dict ``conv1 (B, 96, ., .)``, ``conv2 (B, 256, ., .)``, ``conv3 (B, 384, ., .)``, ``conv4 (B, 384, ., .)``,
    ``conv5 (B, 256, ., .)``, ``pool5 (B, 256, out_size, out_size)``, all after ReLU (conv1/conv2 before their
    pool and LRN). ``feature_info`` lists them in that order with their nominal strides.
    """

    # Other libraries' names of these weights (prefix renames), for loading their files where the shapes fit.
    foreign_layouts = {"torchvision AlexNet": TORCHVISION_ALEXNET_CONVS}

    def __init__(self, variant: str = "alexnet227", norm: str = "lrn", init: str = "gaussian",
                 width: float = 1.0, groups: int = 2) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise unknown_name_error("AlexNet variant", variant, VARIANTS)
        if norm not in NORMS:
            raise unknown_name_error("AlexNet norm", norm, NORMS)
        if groups not in (1, 2):
            raise UserError(f"model.groups={groups} is not an AlexNet grouping; use 2 (CaffeNet's) or 1 (none)")
        self.groups = groups
        spec = VARIANTS[variant]
        self.variant = variant
        self.norm = norm
        self.input_size = spec.input_size
        # Widths are rounded to a multiple of the groups (CaffeNet's are all even).
        c1, c2, c3, c4, c5 = (max(8, round(channels * width / groups) * groups) for channels in WIDTHS)
        self.out_channels = c5
        lrn = norm == "lrn"
        s1 = spec.conv1_stride
        self.conv1 = _conv_stage(3, c1, spec.conv1_kernel, s1, spec.conv1_padding, norm)
        self.conv2 = _conv_stage(c1, c2, 5, 1, 2, norm, pool_first=True, lrn_first=lrn, groups=groups)
        self.conv3 = _conv_stage(c2, c3, 3, 1, 1, norm, pool_first=True, lrn_first=lrn)
        self.conv4 = _conv_stage(c3, c4, 3, 1, 1, norm, groups=groups)
        self.conv5 = _conv_stage(c4, c5, 3, 1, 1, norm, groups=groups)
        self.pool5 = _max_pool()
        self.feature_info = [
            dict(module="conv1", num_chs=c1, reduction=s1),
            dict(module="conv2", num_chs=c2, reduction=s1 * 2),
            dict(module="conv3", num_chs=c3, reduction=s1 * 4),
            dict(module="conv4", num_chs=c4, reduction=s1 * 4),
            dict(module="conv5", num_chs=c5, reduction=s1 * 4),
            dict(module="pool5", num_chs=c5, reduction=s1 * 8),
        ]
        conv1_side = _conv_out(spec.input_size, spec.conv1_kernel, s1, spec.conv1_padding)
        self.out_size = _pool_out(_pool_out(_pool_out(conv1_side)))  # pool5 side at input_size
        apply_init(self, init)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features: dict[str, torch.Tensor] = {}
        for info in self.feature_info:
            name = info["module"]
            x = getattr(self, name)(x)
            features[name] = x
        return features


# ---------------------------------------------------------------------------------------- registered variants

# Every variant of the table above is an encoder: ``build_encoder("alexnet64", norm=..., width=..., groups=...)``.
for _variant in VARIANTS:
    ENCODERS.register(_variant, options=MODEL_OPTIONS)(partial(AlexNetEncoder, _variant))
