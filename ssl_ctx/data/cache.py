"""The prepared cache: fixed-size uint8 arrays that training memory-maps, and how they are written.

Layout of one cache (``cache_root()/<dataset>/<H>x<W>[-limit<N>]/``)::

    meta.json                 written last: the cache is complete only once this file exists
    <split>/images.npy        (N, H, W, 3) uint8
    <split>/labels.npy        (N,) int64                       image classes, when the dataset has them
    <split>/label_maps.npy    (N, H, W) uint8, 255 = ignore    per-pixel classes, when the dataset has them
    <split>/boxes.npy         (K, 4) float32 relative xyxy     boxes of all images, image by image
    <split>/box_image_index.npy (K,) int64                     the image each box belongs to (non-decreasing)
    <split>/box_labels.npy    (K,) int64, 0-based
    <split>/meta.json         class_names, mean_rgb (0-255), count, size, source, skipped files

A cache is built in a temporary sibling folder (``.<H>x<W>.tmp-<pid>-<hex>``), moved into place with
``os.replace``, and only then is the top-level ``meta.json`` written; an interrupted build therefore never
leaves a folder that looks complete, and a failed rebuild leaves the previous cache as it was. The arrays'
blocks are reserved when they are created (:func:`reserve`), so a full disk is an error, never a SIGBUS. Builders hold a file lock so that two processes sharing one cache
folder do not build the same cache twice.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssl_ctx.errors import UserError
from ssl_ctx.files import temporary_sibling, write_json_atomic

try:  # POSIX only; elsewhere builds are not serialised between processes.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

FORMAT_VERSION = 1
IGNORE_INDEX = 255
META_FILE = "meta.json"


# ------------------------------------------------------------------------------------------- paths


def size_tag(size: tuple[int, int], limit: int | None) -> str:
    """``(64, 64), None -> '64x64'``; ``(32, 32), 100 -> '32x32-limit100'``."""
    tag = f"{size[0]}x{size[1]}"
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


@contextlib.contextmanager
def building(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary sibling of ``final``; on success it replaces ``final``, on any error it is removed.

    The caller holds the lock of ``final``, so leftovers of earlier, killed builds (an incomplete ``final``,
    stale temporary siblings) are removed first.
    """
    parent = make_dirs(final.parent)
    for stale in parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = temporary_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():  # an incomplete or outdated cache: replaced only once the new one is built
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def reserve(path: Path) -> None:
    """Allocate a new file's blocks now. A memory map of a sparse file dies with SIGBUS at its first page write
    once the disk is full; a reservation fails here instead, with an ``OSError`` (ENOSPC) that becomes one line."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without fallocate: map as before
                raise


def new_memmap(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.memmap:
    """A new ``.npy`` file of ``shape`` mapped for writing, its space reserved (:func:`reserve`)."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    reserve(path)
    return array


# ------------------------------------------------------------------------------------------ writing


class SplitWriter:
    """Append decoded images (and their targets) of one split into ``.npy`` files of a fixed capacity.

    ``images.npy`` and ``label_maps.npy`` are written through ``np.lib.format.open_memmap`` so a split never
    has to fit in memory; when fewer images than ``capacity`` arrive (skipped files) they are compacted.
    """

    def __init__(
        self,
        folder: Path,
        capacity: int,
        size: tuple[int, int],
        labels: bool = False,
        label_maps: bool = False,
        boxes: bool = False,
    ) -> None:
        self.folder = folder
        self.capacity = capacity
        self.size = size
        folder.mkdir(parents=True, exist_ok=True)
        height, width = size
        self._images = new_memmap(folder / "images.npy", np.uint8, (capacity, height, width, 3))
        self._label_maps = (
            new_memmap(folder / "label_maps.npy", np.uint8, (capacity, height, width)) if label_maps else None
        )
        self._labels: list[int] | None = [] if labels else None
        self._boxes: list[np.ndarray] | None = [] if boxes else None
        self._box_labels: list[np.ndarray] = []
        self._pixel_sum = np.zeros(3, dtype=np.float64)
        self.count = 0

    @property
    def full(self) -> bool:
        return self.count >= self.capacity

    def add(
        self,
        image: np.ndarray,
        label: int | None = None,
        label_map: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        box_labels: np.ndarray | None = None,
    ) -> None:
        """``image (H, W, 3) uint8``; ``label_map (H, W) uint8``; ``boxes (k, 4)`` relative xyxy; ``box_labels (k,)``.
        """
        index = self.count
        self._images[index] = image
        self._pixel_sum += image.reshape(-1, 3).sum(axis=0, dtype=np.int64)
        if self._labels is not None:
            self._labels.append(int(label))
        if self._label_maps is not None:
            self._label_maps[index] = label_map
        if self._boxes is not None:
            boxes = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
            self._boxes.append(boxes)
            self._box_labels.append(
                np.zeros(len(boxes), np.int64) if box_labels is None else np.asarray(box_labels, np.int64)
            )
        self.count += 1

    def _compact(self, name: str, array: np.memmap) -> None:
        """Rewrite ``name`` with only the first ``count`` rows (the header's shape cannot shrink in place)."""
        path = self.folder / name
        tmp = self.folder / f".{name}.compact"
        compact = new_memmap(tmp, array.dtype, (self.count, *array.shape[1:]))
        for start in range(0, self.count, 4096):
            stop = min(start + 4096, self.count)
            compact[start:stop] = array[start:stop]
        compact.flush()
        del compact
        os.replace(tmp, path)

    def finish(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Flush everything, then write the split's ``meta.json`` (last). Returns the meta written."""
        has_label_maps = self._label_maps is not None
        for name, array in (("images.npy", self._images), ("label_maps.npy", self._label_maps)):
            if array is None:
                continue
            array.flush()
            if self.count < self.capacity:
                self._compact(name, array)
        self._images = self._label_maps = None
        if self._labels is not None:
            np.save(self.folder / "labels.npy", np.asarray(self._labels, dtype=np.int64))
        if self._boxes is not None:
            counts = [len(b) for b in self._boxes]
            np.save(
                self.folder / "boxes.npy",
                np.concatenate(self._boxes).astype(np.float32) if self._boxes else np.zeros((0, 4), np.float32),
            )
            np.save(self.folder / "box_image_index.npy", np.repeat(np.arange(self.count, dtype=np.int64), counts))
            np.save(
                self.folder / "box_labels.npy",
                np.concatenate(self._box_labels).astype(np.int64) if self._box_labels else np.zeros(0, np.int64),
            )
        pixels = self.count * self.size[0] * self.size[1]
        meta = dict(meta)
        meta.update(
            format=FORMAT_VERSION,
            count=self.count,
            size=list(self.size),
            mean_rgb=[round(float(v), 4) for v in self._pixel_sum / pixels] if pixels else None,
            has_labels=self._labels is not None,
            has_label_maps=has_label_maps,
            has_boxes=self._boxes is not None,
            ignore_index=IGNORE_INDEX,
        )
        write_json_atomic(self.folder / META_FILE, meta)
        return meta


# ------------------------------------------------------------------------------------------ reading


@dataclass
class CachedSplit:
    """One split of a prepared cache.

    ``images (N, H, W, 3) uint8`` read-only memory map; ``labels (N,) int64 | None``;
    ``label_maps (N, H, W) uint8 | None`` memory map (255 = ignore); ``boxes``: per image a ``(k, 4) float32``
    array of relative ``x0, y0, x1, y1`` in [0, 1], or None; ``box_labels``: per image ``(k,) int64``, 0-based;
    ``class_names`` index the labels, label-map values and box labels; ``mean_rgb`` is the split's mean pixel
    (0-255), used for example to fill dropped regions.
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
        boxes = box_labels = None
        if meta.get("has_boxes"):
            flat = np.load(folder / "boxes.npy")
            flat_labels = np.load(folder / "box_labels.npy")
            image_index = np.load(folder / "box_image_index.npy")
            cuts = np.searchsorted(image_index, np.arange(1, len(images)))
            boxes = np.split(flat, cuts)
            box_labels = np.split(flat_labels, cuts)
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
        )
