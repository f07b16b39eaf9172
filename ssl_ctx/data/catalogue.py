"""Dataset names and cache names: which dataset a name means, and which cache folder a request maps to.

``get_spec(name)`` turns a dataset name (one of ``DATASET_NAMES`` or ``imagefolder:<path>``) into its
:class:`~ssl_ctx.data.datasets.DatasetSpec`; an unknown name is one line listing the known ones. ``parse_size``
is the one parser of cache sizes (``64``, ``"64x64"``, ``[180, 240]``: the ``--size`` of ``ssl-ctx data
prepare`` and ``data.cache_size``), ``check_limit`` the check of an images-per-split limit, and ``cache_dir``
the folder under ``cache_root()`` that a (name, size, limit) is prepared into.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssl_ctx.data.cache import size_tag
from ssl_ctx.data.datasets import BUILTIN, IMAGEFOLDER_DEFAULT_SIZE, IMAGEFOLDER_LAYOUT, DatasetSpec, imagefolder_key
from ssl_ctx.data.roots import cache_root, data_root
from ssl_ctx.errors import UserError, unknown_name_error

DATASET_NAMES = tuple(BUILTIN)
IMAGEFOLDER_PREFIX = "imagefolder:"
MAX_SIDE = 4096


def dataset_names() -> list[str]:
    """Every accepted dataset name (the last one is a pattern)."""
    return [*DATASET_NAMES, f"{IMAGEFOLDER_PREFIX}<path>"]


def get_spec(name: str) -> DatasetSpec:
    """The dataset called ``name``; an unknown name is a :class:`UserError` listing the known ones."""
    if name.startswith(IMAGEFOLDER_PREFIX):
        raw = name[len(IMAGEFOLDER_PREFIX) :]
        folder = Path(raw).expanduser()
        if raw and not folder.is_absolute() and not folder.exists() and (data_root() / folder).is_dir():
            folder = data_root() / folder
        if not raw or not folder.is_dir():
            raise UserError(
                f"image folder '{raw}' is not a folder; pass imagefolder:<path> where <path>/<class>/ "
                "or <path>/<split>/<class>/ holds the images"
            )
        folder = folder.resolve()
        return DatasetSpec(
            name=f"{IMAGEFOLDER_PREFIX}{folder}",
            default_size=IMAGEFOLDER_DEFAULT_SIZE,
            splits=(),
            layouts=(IMAGEFOLDER_LAYOUT,),
            cache_key=imagefolder_key(folder),
            folder=folder,
        )
    if name not in BUILTIN:
        raise unknown_name_error("dataset", name, dataset_names())
    return BUILTIN[name]


def default_size(name: str) -> tuple[int, int]:
    """The cache resolution (height, width) used when ``size`` is None."""
    return get_spec(name).default_size


def parse_size(size: int | str | Sequence[int] | None) -> tuple[int, int] | None:
    """``64``, ``"64"``, ``"180x240"``, ``[180, 240]`` -> (height, width); None -> None."""
    if size is None:
        return None
    try:
        if isinstance(size, str):
            parts = [int(p) for p in size.lower().replace(",", "x").split("x")]
        elif isinstance(size, (int, np.integer)) and not isinstance(size, bool):
            parts = [int(size)]
        else:
            parts = [int(p) for p in size]
    except (TypeError, ValueError):
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(1 <= p <= MAX_SIDE for p in parts):
        raise UserError(f"bad cache size {size!r}; write HxW such as 64x64 (each side 1..{MAX_SIDE})")
    return parts[0], parts[1]


def check_limit(limit: int | None) -> int | None:
    """A limit of images per split as an ``int`` (None = all); anything else is a :class:`UserError`."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise UserError(f"bad limit {limit!r}; pass a positive number of images per split, or none for all")
    return int(limit)


def cache_dir(name: str, size: int | str | Sequence[int] | None = None, limit: int | None = None) -> Path:
    """``cache_root()/<dataset>/<H>x<W>[-limit<N>]``: the folder ``prepare`` writes (it may not exist yet)."""
    spec = get_spec(name)
    return cache_root() / spec.key / size_tag(parse_size(size) or spec.default_size, check_limit(limit))
