"""Pretext methods; importing this package registers the built-in ones in ``PRETEXT_METHODS``."""
from ssl_ctx.pretext import autoencoder, context_encoder, random_init, supervised  # noqa: F401  (registration)
from ssl_ctx.pretext.base import DataInfo, PretextMethod

__all__ = ["DataInfo", "PretextMethod"]
