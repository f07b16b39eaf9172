"""Weight initialisation shared by every model in this package.

The paper's feature-learning baseline is "random Gaussian" and the released code (``train.lua``) initialises
every network with DCGAN's ``weights_init``: conv / up-conv weights ~ N(0, 0.02), biases 0, BatchNorm scale
~ N(1, 0.02) and shift 0. The models here apply it at construction unless ``init="torch"`` keeps PyTorch's
own defaults (Kaiming-uniform), which is useful as an ablation.
"""
from __future__ import annotations

from torch import nn

from ssl_ctx.errors import unknown_name_error

INITS = ("gaussian", "torch")

# Modules whose weight is a scale (initialised around 1) rather than a filter (around 0).
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def gaussian_init_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Initialise ``module`` and all its children in place, as the released code does; returns ``module``.

    - normalisation layers (BatchNorm, GroupNorm, LayerNorm): weight ~ N(1, std), bias = 0;
    - every other layer with a ``weight`` parameter (Conv, ConvTranspose, Linear, ChannelwiseFC ...):
      weight ~ N(0, std), bias = 0.
    Layers without parameters (ReLU, pooling, LocalResponseNorm) are untouched.
    """
    for child in module.modules():
        weight = getattr(child, "weight", None)
        bias = getattr(child, "bias", None)
        if not isinstance(weight, nn.Parameter):
            continue
        if isinstance(child, _NORM_TYPES):
            nn.init.normal_(weight, mean=1.0, std=std)
        else:
            nn.init.normal_(weight, mean=0.0, std=std)
        if isinstance(bias, nn.Parameter):
            nn.init.zeros_(bias)
    return module


def apply_init(module: nn.Module, init: str) -> nn.Module:
    """``init="gaussian"`` -> :func:`gaussian_init_` (the paper's); ``"torch"`` -> PyTorch's defaults (no-op)."""
    if init == "gaussian":
        return gaussian_init_(module)
    if init == "torch":
        return module
    raise unknown_name_error("weight init", init, INITS)
