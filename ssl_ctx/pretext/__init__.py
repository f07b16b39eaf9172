"""Pretext methods; importing this package registers the built-in ones in ``PRETEXT_METHODS``."""
from ssl_ctx.pretext import (  # noqa: F401  (registration)
    autoencoder,
    context_encoder,
    inpainting128,
    random_init,
    supervised,
)
from ssl_ctx.pretext.base import DataInfo, PretextMethod
from ssl_ctx.pretext.declarations import HeldOutMetric, MethodOption

__all__ = ["DataInfo", "HeldOutMetric", "MethodOption", "PretextMethod"]
