"""ssl_ctx: a benchmark suite for self-supervised visual feature learning around Context Encoders."""

__version__ = "0.3.0"
