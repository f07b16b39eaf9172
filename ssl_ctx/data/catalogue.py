"""Dataset names and cache names: which dataset a name means, and which cache folder a request maps to.

``get_spec(name)`` turns a dataset name (one of ``DATASET_NAMES``, or ``<prefix><path>`` for a prefix of
``FOLDER_DATASETS``) into its :class:`~ssl_ctx.data.datasets.DatasetSpec`; an unknown name is one line listing the
known ones. ``parse_size`` is the one parser of cache sizes (``64``, ``"64x64"``, ``[180, 240]``: the ``--size`` of
``ssl-ctx data prepare`` and ``data.cache_size``), ``check_limit`` the check of an images-per-split limit,
``resize_policy`` the resize policy a request means (``data.resize``, ``--resize``; None = the dataset's default),
and ``cache_dir`` the folder under ``cache_root()`` that a (name, size, limit, resize) is prepared into.

A folder dataset is read in place from ``<path>`` (relative paths are tried in ``data_root()`` too), in its
prefix's layout; its cache folder is ``<kind>-<folder name>-<hash of the absolute path>`` (:func:`folder_key`),
and ``prepare`` rebuilds it when the folder's files change.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssl_ctx.data.cache import size_tag
from ssl_ctx.data.datasets import (
    BUILTIN,
    IMAGEFOLDER_DEFAULT_RESIZE,
    IMAGEFOLDER_DEFAULT_SIZE,
    IMAGEFOLDER_LAYOUT,
    DatasetSpec,
    Layout,
)
from ssl_ctx.data.decode import RESIZE_POLICIES
from ssl_ctx.data.imagenet import IMAGENET_DEFAULT_RESIZE, IMAGENET_DEFAULT_SIZE, IMAGENET_LAYOUT
from ssl_ctx.data.roots import cache_root, data_root
from ssl_ctx.data.voc import VOC_DEFAULT_RESIZE, VOC_DEFAULT_SIZE, VOC_LAYOUT
from ssl_ctx.errors import UserError, unknown_name_error

DATASET_NAMES = tuple(BUILTIN)
IMAGEFOLDER_PREFIX = "imagefolder:"
MAX_SIDE = 4096


@dataclass(frozen=True)
class FolderDataset:
    """How a dataset named ``<prefix><path>`` is read: the layout of the folder, its default cache size and resize
    policy, and what the folder should hold (said when ``<path>`` is not a folder)."""

    what: str
    layout: Layout
    default_size: tuple[int, int]
    default_resize: str
    holds: str


FOLDER_DATASETS = {
    IMAGEFOLDER_PREFIX: FolderDataset(
        "image folder", IMAGEFOLDER_LAYOUT, IMAGEFOLDER_DEFAULT_SIZE, IMAGEFOLDER_DEFAULT_RESIZE,
        "<path> holds the images: straight in it (one unlabelled split 'all'), in <path>/<class>/, or in "
        "<path>/<split>/<class>/",
    ),
    "imagenet:": FolderDataset(
        "ImageNet folder", IMAGENET_LAYOUT, IMAGENET_DEFAULT_SIZE, IMAGENET_DEFAULT_RESIZE,
        "<path>/train/<wnid>/ and <path>/val/ hold ILSVRC-2012's images (ssl_ctx/data/imagenet.py)",
    ),
    "voc:": FolderDataset(
        "VOC folder", VOC_LAYOUT, VOC_DEFAULT_SIZE, VOC_DEFAULT_RESIZE,
        "<path>/Annotations/, <path>/JPEGImages/ and <path>/ImageSets/ hold PASCAL VOC as published, e.g. "
        "VOCdevkit/VOC2007 (ssl_ctx/data/voc.py)",
    ),
}


def dataset_names() -> list[str]:
    """Every accepted dataset name (the folder datasets as patterns, ``imagefolder:<path>``)."""
    return [*DATASET_NAMES, *(f"{prefix}<path>" for prefix in FOLDER_DATASETS)]


def folder_key(prefix: str, folder: Path) -> str:
    """Cache folder name of a folder dataset: ``<kind>-<folder name>-<hash of its absolute path>``, distinct per
    prefix and per folder (``imagefolder-photos-1a2b3c4d``)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", folder.name) or "root"
    digest = hashlib.sha1(str(folder).encode()).hexdigest()[:8]
    return f"{prefix.rstrip(':')}-{slug}-{digest}"


def folder_spec(prefix: str, raw: str) -> DatasetSpec:
    """The dataset ``<prefix><raw>`` of ``FOLDER_DATASETS``; a path that is no folder is a :class:`UserError`."""
    entry = FOLDER_DATASETS[prefix]
    folder = Path(raw).expanduser()
    if raw and not folder.is_absolute() and not folder.exists() and (data_root() / folder).is_dir():
        folder = data_root() / folder
    if not raw or not folder.is_dir():
        raise UserError(f"{entry.what} '{raw}' is not a folder; pass {prefix}<path> where {entry.holds}")
    folder = folder.resolve()
    return DatasetSpec(
        name=f"{prefix}{folder}",
        default_size=entry.default_size,
        default_resize=entry.default_resize,
        splits=(),
        layouts=(entry.layout,),
        cache_key=folder_key(prefix, folder),
        folder=folder,
    )


def folder_dataset(spec: DatasetSpec) -> tuple[str, FolderDataset]:
    """(prefix, entry of ``FOLDER_DATASETS``) of a folder dataset's spec: what messages call it and what it holds."""
    return next((prefix, entry) for prefix, entry in FOLDER_DATASETS.items() if spec.name.startswith(prefix))


def get_spec(name: str) -> DatasetSpec:
    """The dataset called ``name``; an unknown name is a :class:`UserError` listing the known ones."""
    for prefix in FOLDER_DATASETS:
        if name.startswith(prefix):
            return folder_spec(prefix, name[len(prefix) :])
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


def check_resize(spec: DatasetSpec, resize: str | None) -> str:
    """The resize policy ``resize`` asks for on ``spec`` (None = its default); an unknown one is a
    :class:`UserError` listing the policies."""
    if resize is None:
        return spec.default_resize
    if resize not in RESIZE_POLICIES:
        raise unknown_name_error("resize policy", str(resize), RESIZE_POLICIES)
    return resize


def resize_policy(name: str, resize: str | None = None) -> str:
    """The resize policy (one of ``decode.RESIZE_POLICIES``) that ``resize`` means for dataset ``name``: itself,
    or the dataset's default when None; an unknown one is a :class:`UserError` with a did-you-mean."""
    return check_resize(get_spec(name), resize)


def cache_tag(spec: DatasetSpec, size: tuple[int, int], limit: int | None, resize: str) -> str:
    """The name of the cache folder of ``spec`` at ``size`` with ``limit`` and the (checked) policy ``resize``:
    ``<H>x<W>[-limit<N>]`` for the dataset's default policy, ``<H>x<W>-<policy>[-limit<N>]`` for another."""
    return size_tag(size, limit, None if resize == spec.default_resize else resize)


def cache_dir(name: str, size: int | str | Sequence[int] | None = None, limit: int | None = None,
              resize: str | None = None) -> Path:
    """``cache_root()/<dataset>/<H>x<W>[-<policy>][-limit<N>]`` (:func:`cache_tag`): the folder ``prepare`` writes
    (it may not exist yet)."""
    spec = get_spec(name)
    tag = cache_tag(spec, parse_size(size) or spec.default_size, check_limit(limit), check_resize(spec, resize))
    return cache_root() / spec.key / tag
