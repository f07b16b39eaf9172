"""Encoders, channel-wise FC bottleneck, up-conv decoder, discriminator and the 128-px inpainting network.

Importing this package registers every built-in encoder in :data:`ssl_ctx.registry.ENCODERS`.
Build encoders from a spec (name + options) with :func:`build_encoder`; every encoder follows the contract in
docs/ARCHITECTURE.md (``feature_info`` + ``forward(x) -> dict``).
"""
from __future__ import annotations

from ssl_ctx.models.alexnet import VARIANTS as ALEXNET_VARIANTS
from ssl_ctx.models.alexnet import AlexNetEncoder, AlexNetSpec
from ssl_ctx.models.channelwise_fc import ChannelwiseBottleneck, ChannelwiseFC
from ssl_ctx.models.decoder import UpconvDecoder
from ssl_ctx.models.discriminator import Discriminator
from ssl_ctx.models.init import apply_init, gaussian_init_
from ssl_ctx.models.shapes import FeatureShape, feature_shapes, last_feature_shape
from ssl_ctx.models.inpainting import (
    InpaintingEncoder128,
    InpaintingGenerator128,
    inpainting_discriminator,
    overlap_weight_map,
)
from ssl_ctx.models.spec import TIMM_PREFIX, EncoderSpec, build_encoder, encoder_input_side, encoder_spec
from ssl_ctx.models.timm_encoder import TimmEncoder
from ssl_ctx.registry import ENCODERS


def encoder_names() -> list[str]:
    """Registered encoder names (sorted); ``timm:<model>`` names are accepted too but not listed."""
    return ENCODERS.names()


__all__ = [
    "ALEXNET_VARIANTS",
    "AlexNetEncoder",
    "AlexNetSpec",
    "ChannelwiseBottleneck",
    "ChannelwiseFC",
    "Discriminator",
    "EncoderSpec",
    "FeatureShape",
    "InpaintingEncoder128",
    "InpaintingGenerator128",
    "TIMM_PREFIX",
    "TimmEncoder",
    "UpconvDecoder",
    "apply_init",
    "build_encoder",
    "encoder_names",
    "encoder_input_side",
    "encoder_spec",
    "feature_shapes",
    "gaussian_init_",
    "inpainting_discriminator",
    "last_feature_shape",
    "overlap_weight_map",
]
