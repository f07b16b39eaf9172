"""Where the data layer reads and writes: the two folders every other data module starts from.

``data_root()`` is the folder datasets are read from, as published (archives or extracted folders);
``cache_root()`` is the folder prepared caches, and copies of archives extracted once, are written to. Both come
from the environment (``SSL_CTX_DATA``, ``SSL_CTX_CACHE``) each time they are asked for, so a test or a run can
point them elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    """Where datasets are read from: ``$SSL_CTX_DATA`` or ``./data``."""
    return Path(os.environ.get("SSL_CTX_DATA") or "./data").expanduser()


def cache_root() -> Path:
    """Where prepared caches (and extracted copies) are written: ``$SSL_CTX_CACHE`` or ``./cache``."""
    return Path(os.environ.get("SSL_CTX_CACHE") or "./cache").expanduser()
