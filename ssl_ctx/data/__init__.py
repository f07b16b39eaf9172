"""Datasets: archive ingestion into a uint8 cache (``prepare``) and fast batches from it (``CachedBatchLoader``).

See ``docs/ARCHITECTURE.md`` (data contract): ``prepare(name, size, limit) -> Path`` is idempotent;
``load_split(name, split, size, limit) -> CachedSplit`` memory-maps one split, preparing it first if needed.
"""
from __future__ import annotations

from typing import Any

from ssl_ctx.data.archives import extract_archive
from ssl_ctx.data.cache import CachedSplit
from ssl_ctx.data.catalogue import DATASET_NAMES, cache_dir, dataset_names, default_size, parse_size
from ssl_ctx.data.command import prepare_command
from ssl_ctx.data.prepare import load_split, prepare
from ssl_ctx.data.roots import cache_root, data_root
from ssl_ctx.data.sources import extracted_root

__all__ = [
    "DATASET_NAMES",
    "CachedBatchLoader",
    "CachedSplit",
    "cache_dir",
    "cache_root",
    "data_root",
    "dataset_names",
    "default_size",
    "extract_archive",
    "extracted_root",
    "load_split",
    "parse_size",
    "prepare",
    "prepare_command",
]


def __getattr__(name: str) -> Any:
    # The loader imports torch; importing it lazily keeps `ssl-ctx data prepare` light.
    if name == "CachedBatchLoader":
        from ssl_ctx.data.loader import CachedBatchLoader

        return CachedBatchLoader
    raise AttributeError(f"module 'ssl_ctx.data' has no attribute '{name}'")
