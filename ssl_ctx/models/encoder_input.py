"""What an encoder takes as input: the vocabulary (``ENCODER_INPUTS``) and the one conversion of an RGB batch to it.

A pretext method declares the input its encoder is trained on (``PretextMethod.encoder_input``), its checkpoint
and exported file record it, and a probe feeds that input (:func:`feed_encoder_input`): an encoder trained on gray
images is probed on gray images. Every input keeps the image tensor convention, ``(B, 3, H, W)`` in ``[-1, 1]``, so
encoders keep three input channels whatever they take.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ssl_ctx.errors import UserError, suggest

RGB = "rgb"
GRAY = "gray"
ENCODER_INPUTS = {RGB: "colour images as they are", GRAY: "luminance (ITU-R BT.601) replicated on 3 channels"}
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601: R, G, B


def check_encoder_input(value: Any, where: str) -> str:
    """``value`` if it is in the vocabulary, else one UserError line naming ``where`` it was read."""
    if value not in ENCODER_INPUTS:
        raise UserError(f"{where} declares encoder input {value!r}, which this version of ssl-ctx does not know "
                        f"(known: {', '.join(ENCODER_INPUTS)}){suggest(str(value), ENCODER_INPUTS)}; use the "
                        f"version of ssl-ctx that wrote it")
    return value


def luminance(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in ``[-1, 1]`` -> the same shape, dtype and memory format holding the BT.601 luminance
    on all three channels (still in ``[-1, 1]``: the weights sum to 1)."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    luma = (images * weights).sum(dim=1, keepdim=True)
    return torch.empty_like(images).copy_(luma.expand_as(images))  # empty_like keeps channels_last


def convert_images(images: torch.Tensor, encoder_input: str) -> torch.Tensor:
    """An RGB batch ``(B, 3, H, W)`` in ``[-1, 1]`` as an encoder taking ``encoder_input`` must see it."""
    return luminance(images) if encoder_input == GRAY else images


def _convert_first_argument(encoder: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    # A forward pre-hook: every caller of the encoder (frozen features, heads, fine-tuning, detection) goes through
    # the module's __call__, so this one place converts what all of them feed it.
    return (convert_images(args[0], encoder.encoder_input), *args[1:])


def feed_encoder_input(encoder: nn.Module, encoder_input: str) -> nn.Module:
    """Make ``encoder`` convert the RGB batches it is called with into ``encoder_input`` (a forward pre-hook; the
    weights and state dict are untouched) and record it as ``encoder.encoder_input``. Returns ``encoder``."""
    check_encoder_input(encoder_input, "the encoder")
    already = encoder_input_of(encoder) != RGB
    encoder.encoder_input = encoder_input
    if encoder_input != RGB and not already:
        encoder.register_forward_pre_hook(_convert_first_argument)
    return encoder


def encoder_input_of(encoder: nn.Module) -> str:
    """The input ``encoder`` is fed (:func:`feed_encoder_input`), ``rgb`` unless it was told otherwise."""
    return getattr(encoder, "encoder_input", RGB)
