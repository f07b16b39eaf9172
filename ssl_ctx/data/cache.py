"""The prepared cache: its layout, where it lives, and how training opens it (:class:`CachedSplit`).

Layout of one cache (``cache_root()/<dataset>/<H>x<W>[-<resize policy>][-limit<N>]/``, the policy named only when
it is not the dataset's default)::

    meta.json                 the cache is complete only once this file exists (it is the last file written)
    <split>/images.npy        (N, H, W, 3) uint8
    <split>/labels.npy        (N,) int64                       image classes, when the dataset has them
    <split>/label_sets.npy    (N, K) int8: 1 present, 0 difficult only, -1 absent   multi-label sets (VOC)
    <split>/label_maps.npy    (N, H, W) uint8, 255 = ignore    per-pixel classes, when the split has them
    <split>/boxes.npy         (B, 4) float32 relative xyxy     boxes of all images, image by image
    <split>/box_image_index.npy (B,) int64                     the image each box belongs to (non-decreasing)
    <split>/box_labels.npy    (B,) int64, 0-based
    <split>/box_difficult.npy (B,) bool                        boxes marked difficult (all False elsewhere)
    <split>/meta.json         class_names (the split's own), mean_rgb (0-255), count, size, source, skipped files

Label maps and label sets are per split (VOC has label maps only in its segmentation splits); label-set columns
follow the dataset's ``class_names`` in the top-level ``meta.json``. A cache written before ``box_difficult.npy``
or ``label_sets.npy`` existed opens with no difficult box and no label sets.

How a cache is written, resumably and never seen half-made, is :mod:`ssl_ctx.data.cache_writer`. Builders hold
a file lock (:func:`locked`) so that two processes sharing one cache folder do not build the same cache twice.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssl_ctx.errors import UserError

try:  # POSIX only; elsewhere builds are not serialised between processes.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

FORMAT_VERSION = 1
IGNORE_INDEX = 255
META_FILE = "meta.json"
PROGRESS_FILE = "progress.json"
CHECKPOINT_FILE = ".checkpoint.npz"


# ------------------------------------------------------------------------------------------- paths


def size_tag(size: tuple[int, int], limit: int | None, resize: str | None = None) -> str:
    """``(64, 64), None -> '64x64'``; ``(32, 32), 100 -> '32x32-limit100'``; ``(64, 64), 5, 'squeeze' ->
    '64x64-squeeze-limit5'``. ``resize``: the resize policy, given only when it is not the dataset's default (so
    a default cache keeps the name it had before policies existed)."""
    tag = f"{size[0]}x{size[1]}" + (f"-{resize}" if resize else "")
    return f"{tag}-limit{limit}" if limit is not None else tag


def is_complete(cache_dir: Path) -> bool:
    return (cache_dir / META_FILE).is_file()


def read_cache_meta(folder: Path) -> dict[str, Any]:
    """The ``meta.json`` of a cache (or of one of its splits) in ``folder``."""
    return json.loads((folder / META_FILE).read_text())


def make_dirs(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"cannot create the cache folder '{path}': {err.strerror or err} (set SSL_CTX_CACHE to a writable folder)"
        ) from None
    return path


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created if needed) for the duration of the block."""
    make_dirs(lock_path.parent)
    with open(lock_path, "a+") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------ reading


@dataclass
class CachedSplit:
    """One split of a prepared cache.

    ``images (N, H, W, 3) uint8`` read-only memory map; ``labels (N,) int64 | None``;
    ``label_maps (N, H, W) uint8 | None`` memory map (255 = ignore); ``boxes``: per image a ``(k, 4) float32``
    array of relative ``x0, y0, x1, y1`` in [0, 1], or None; ``box_labels``: per image ``(k,) int64``, 0-based;
    ``box_difficult``: per image ``(k,) bool`` (all False in a cache written before it existed), None without
    boxes; ``label_sets (N, K) int8 | None``: 1 present, 0 difficult only, -1 absent, over the dataset's classes
    (the top-level ``meta.json``'s ``class_names``); ``class_names`` (the split's own) index the labels,
    label-map values and box labels; ``mean_rgb`` is the split's mean pixel (0-255), used for example to fill
    dropped regions. ``selection``: which part of the cached split this is, where it is a part.
    """

    dataset: str
    split: str
    path: Path
    images: np.ndarray
    labels: np.ndarray | None
    label_maps: np.ndarray | None
    boxes: list[np.ndarray] | None
    box_labels: list[np.ndarray] | None
    class_names: list[str]
    mean_rgb: tuple[float, float, float] | None
    meta: dict[str, Any] = field(repr=False)
    label_sets: np.ndarray | None = None
    box_difficult: list[np.ndarray] | None = None
    # A part of the cached split rather than all of it (ssl_ctx.data.run_data: a held-out part of a single-split
    # dataset): which part, in words; it keys cached features apart from the whole split's.
    selection: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of every cached image."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def open(cls, folder: Path) -> CachedSplit:
        meta = read_cache_meta(folder)
        images = np.load(folder / "images.npy", mmap_mode="r")
        labels = np.load(folder / "labels.npy") if meta.get("has_labels") else None
        label_maps = np.load(folder / "label_maps.npy", mmap_mode="r") if meta.get("has_label_maps") else None
        label_sets = np.load(folder / "label_sets.npy") if meta.get("has_label_sets") else None
        boxes = box_labels = box_difficult = None
        if meta.get("has_boxes"):
            flat = np.load(folder / "boxes.npy")
            flat_labels = np.load(folder / "box_labels.npy")
            difficult_file = folder / "box_difficult.npy"
            flat_difficult = np.load(difficult_file) if difficult_file.is_file() else np.zeros(len(flat), bool)
            image_index = np.load(folder / "box_image_index.npy")
            cuts = np.searchsorted(image_index, np.arange(1, len(images)))
            boxes = np.split(flat, cuts)
            box_labels = np.split(flat_labels, cuts)
            box_difficult = np.split(flat_difficult, cuts)
        mean = meta.get("mean_rgb")
        return cls(
            dataset=meta.get("dataset", ""),
            split=meta.get("split", folder.name),
            path=folder,
            images=images,
            labels=labels,
            label_maps=label_maps,
            boxes=boxes,
            box_labels=box_labels,
            class_names=list(meta.get("class_names", [])),
            mean_rgb=tuple(mean) if mean is not None else None,
            meta=meta,
            label_sets=label_sets,
            box_difficult=box_difficult,
        )
