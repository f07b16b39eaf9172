"""Writing the prepared cache (:mod:`ssl_ctx.data.cache` has its layout): rows written as they are decoded, in a
build that survives being killed.

A cache is built in a fixed-name folder beside its final one, ``.<H>x<W>[-limit<N>].partial/``
(:class:`PartialBuild`), so that a build killed at any point (SIGKILL included) continues where it stopped: the
writer checkpoints every few seconds (:meth:`SplitWriter.checkpoint` syncs the image files and writes the
small per-image arrays decoded so far to ``<split>/.checkpoint.npz``; then ``progress.json`` records the items
consumed, images written and files skipped of the split, with a fingerprint of what is being built). A finished
split has its ``meta.json`` and is not redone. At the end the top-level ``meta.json`` is written into the
partial folder, which is then renamed into place: a reader never sees a half cache, and a failed rebuild leaves
the previous cache as it was. The arrays' blocks are reserved when they are created (:func:`reserve`), so a
full disk is an error, never a SIGBUS. Rows are written with ``os.pwrite`` (:class:`RowFile`), by the decoding
worker processes themselves where there are some (:class:`RowTargets`).
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssl_ctx.data.cache import (
    CHECKPOINT_FILE,
    FORMAT_VERSION,
    IGNORE_INDEX,
    META_FILE,
    PROGRESS_FILE,
    is_complete,
    make_dirs,
    read_cache_meta,
)
from ssl_ctx.files import temporary_sibling, write_json_atomic


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


def write_row(handle: int, offset: int, row_bytes: int, row: int, values: np.ndarray) -> None:
    """Write ``values`` (``row_bytes`` of uint8 once contiguous) as row ``row`` of the ``.npy`` file open as
    ``handle`` whose data start at ``offset``: one positional write, from any process."""
    view = memoryview(np.ascontiguousarray(values, np.uint8)).cast("B")
    if len(view) != row_bytes:
        raise ValueError(f"a row of {len(view)} bytes for a file of {row_bytes}-byte rows")
    position = offset + row * row_bytes
    while view:
        written = os.pwrite(handle, view, position)
        view, position = view[written:], position + written


def sum_pixels(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3) uint8`` -> ``(3,) int64``, summed by rows first in uint32 (exact up to 16 million rows): 16x
    faster than one int64 sum over ``(H * W, 3)``."""
    return image.sum(axis=0, dtype=np.uint32).sum(axis=0, dtype=np.int64)


@dataclass(frozen=True)
class RowTargets:
    """Where worker processes write decoded rows themselves: ``files`` = ``{name: (path, offset, row_bytes)}`` of a
    split's row files, the item at ``position`` (from where the writer stands) going to row ``first + position``
    while that is below ``capacity`` (:meth:`SplitWriter.add` moves it when files were skipped meanwhile)."""

    files: dict[str, tuple[str, int, int]]
    first: int
    capacity: int

    def row(self, position: int) -> int | None:
        row = self.first + position
        return row if row < self.capacity else None

    def write(self, row: int, arrays: dict[str, np.ndarray]) -> None:
        """In a worker: write ``arrays`` (by file name) as ``row`` of their files."""
        for name, (path, offset, row_bytes) in self.files.items():
            handle = os.open(path, os.O_WRONLY)
            try:
                write_row(handle, offset, row_bytes, row, arrays[name])
            finally:
                os.close(handle)


class RowFile:
    """A ``uint8`` ``.npy`` file of ``shape`` written row by row with positional writes (:func:`write_row`).

    Writing through a memory map faults in every new page (about 0.3 ms for a 227-px image on ext4); a positional
    write copies into the page cache directly (about 0.06 ms). ``create``: a new file, its space reserved
    (:func:`reserve`); else an existing file of the same row shape.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], create: bool = True) -> None:
        if create:
            header = _npy_header(shape, np.dtype(np.uint8))
            with open(path, "wb") as handle:
                handle.write(header)
                handle.truncate(len(header) + int(np.prod(shape, dtype=np.int64)))
            reserve(path)
        array = np.load(path, mmap_mode="r")
        self.path, self.shape, self.offset, self.dtype = path, array.shape, array.offset, array.dtype
        del array
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64))
        self._handle = open(path, "r+b", buffering=0)  # noqa: SIM115 - closed by close(), or with the object

    def write(self, row: int, values: np.ndarray) -> None:
        if np.shape(values) != self.shape[1:]:
            raise ValueError(f"{self.path.name}: a row is {self.shape[1:]}, not {np.shape(values)}")
        write_row(self._handle.fileno(), self.offset, self.row_bytes, row, values)

    def move(self, source: int, target: int) -> None:
        """Copy row ``source`` to row ``target``."""
        data = os.pread(self._handle.fileno(), self.row_bytes, self.offset + source * self.row_bytes)
        write_row(self._handle.fileno(), self.offset, self.row_bytes, target, np.frombuffer(data, np.uint8))

    def sync(self) -> None:
        """Rows written so far (by any process) reach the disk. A killed process loses nothing written anyway,
        since the rows are in the page cache; this is for a machine that goes down."""
        os.fdatasync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The header ``np.save`` writes for an array of ``shape`` and ``dtype``."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    return header.getvalue()


def shrink_npy(path: Path, rows: int) -> None:
    """Keep the first ``rows`` rows of the ``.npy`` file at ``path``; its bytes become those ``np.save`` writes.

    When the shorter shape's header has the old header's length (it is padded to 64 bytes, so it nearly always
    has) it is written over the old one and the file truncated: no copy, however large the array. Otherwise the
    rows are copied into a new file.
    """
    array = np.load(path, mmap_mode="r")
    shape, dtype, offset = (rows, *array.shape[1:]), array.dtype, array.offset
    size = offset + rows * dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
    header = _npy_header(shape, dtype)
    if len(header) == offset:
        del array
        with open(path, "r+b") as handle:
            handle.write(header)
            handle.truncate(size)
        return
    tmp = path.with_name(f".{path.name}.compact")
    compact = new_memmap(tmp, dtype, shape)
    for start in range(0, rows, 4096):
        compact[start : start + 4096] = array[start : min(start + 4096, rows)]
    compact.flush()
    del compact, array
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------ writing


class StaleBuild(Exception):
    """A split of a partial build that cannot be continued (a file missing, another shape); the reason says why."""


class _Rows:
    """The rows of one small per-image array, appended image by image.

    ``array()`` concatenates what arrived since its last call onto what it concatenated before, so a checkpoint
    costs the new rows, not a pass over a list of every image's array.
    """

    def __init__(self, dtype: Any, width: tuple[int, ...] = ()) -> None:
        self._array = np.zeros((0, *width), dtype)
        self._new: list[np.ndarray] = []

    def append(self, rows: Any) -> None:
        self._new.append(np.asarray(rows, self._array.dtype).reshape(-1, *self._array.shape[1:]))

    def array(self) -> np.ndarray:
        if self._new:
            self._array = np.concatenate([self._array, *self._new])
            self._new = []
        return self._array

    def restore(self, array: np.ndarray) -> None:
        self._array, self._new = np.ascontiguousarray(array, self._array.dtype), []


class SplitWriter:
    """Append decoded images (and their targets) of one split into ``.npy`` files of a fixed capacity.

    ``images.npy`` and ``label_maps.npy`` are written row by row (:class:`RowFile`) so a split never has to fit in
    memory; when fewer images than ``capacity`` arrive (skipped files) they are shrunk at the end
    (:func:`shrink_npy`). The small per-image arrays (labels, label sets, boxes, pixel sums) are kept in memory
    and saved by :meth:`checkpoint`; ``resume=True`` reopens a split written up to ``count`` images (its last
    checkpoint) to go on from there, or raises :class:`StaleBuild`.
    """

    def __init__(
        self,
        folder: Path,
        capacity: int,
        size: tuple[int, int],
        labels: bool = False,
        label_maps: bool = False,
        boxes: bool = False,
        label_sets: int = 0,
        resume: bool = False,
        count: int = 0,
    ) -> None:
        """``label_sets``: the number of classes K of the split's ``(N, K) int8`` label sets (0 = none)."""
        self.folder = folder
        self.capacity = capacity
        self.size = size
        height, width = size
        files = {"images.npy": (capacity, height, width, 3)}
        if label_maps:
            files["label_maps.npy"] = (capacity, height, width)
        self._rows = {"pixel_sums": _Rows(np.int64, (3,))}
        if labels:
            self._rows["labels"] = _Rows(np.int64)
        if label_sets:
            self._rows["label_sets"] = _Rows(np.int8, (label_sets,))
        if boxes:
            self._rows.update(box_counts=_Rows(np.int64), boxes=_Rows(np.float32, (4,)), box_labels=_Rows(np.int64),
                              box_difficult=_Rows(np.bool_))
        self.count = count if resume else 0
        if resume:
            self._files = {name: _reopen(folder / name, shape, self.count) for name, shape in files.items()}
            self._restore()
        else:
            folder.mkdir(parents=True, exist_ok=True)
            self._files = {name: RowFile(folder / name, shape) for name, shape in files.items()}

    @property
    def full(self) -> bool:
        return self.count >= self.capacity

    def row_targets(self) -> RowTargets:
        """Where worker processes may write the rows of the next images themselves (``add(row=...)``)."""
        files = {name: (str(file.path), file.offset, file.row_bytes) for name, file in self._files.items()}
        return RowTargets(files, self.count, self.capacity)

    def add(
        self,
        image: np.ndarray | None = None,
        label: int | None = None,
        label_map: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        box_labels: np.ndarray | None = None,
        label_set: np.ndarray | None = None,
        box_difficult: np.ndarray | None = None,
        row: int | None = None,
        pixel_sum: np.ndarray | None = None,
    ) -> None:
        """``image (H, W, 3) uint8``; ``label_map (H, W) uint8``; ``boxes (k, 4)`` relative xyxy; ``box_labels (k,)``;
        ``box_difficult (k,) bool`` (None = none is); ``label_set (K,) int8``. Or, instead of the image and label
        map, ``row`` where a worker wrote them (:meth:`row_targets`) and the image's ``pixel_sum``: they are moved
        to this image's row when it is another (files were skipped since the targets were handed out)."""
        index = self.count
        if row is None:
            self._files["images.npy"].write(index, image)
            if "label_maps.npy" in self._files:
                self._files["label_maps.npy"].write(index, label_map)
            pixel_sum = sum_pixels(image)
        elif row != index:
            for file in self._files.values():
                file.move(row, index)
        self._rows["pixel_sums"].append(pixel_sum)
        if "labels" in self._rows:
            self._rows["labels"].append(int(label))
        if "label_sets" in self._rows:
            self._rows["label_sets"].append(label_set)
        if "boxes" in self._rows:
            boxes = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
            self._rows["box_counts"].append(len(boxes))
            self._rows["boxes"].append(boxes)
            self._rows["box_labels"].append(np.zeros(len(boxes)) if box_labels is None else box_labels)
            self._rows["box_difficult"].append(
                np.zeros(len(boxes), bool) if box_difficult is None else np.asarray(box_difficult).reshape(len(boxes)))
        self.count += 1

    def checkpoint(self) -> None:
        """Make the images added so far survive a kill: sync the row files, then save the small arrays atomically."""
        for file in self._files.values():
            file.sync()
        path = self.folder / CHECKPOINT_FILE
        tmp = temporary_sibling(path)
        try:
            with open(tmp, "wb") as handle:
                arrays = {name: rows.array() for name, rows in self._rows.items()}
                np.savez(handle, count=np.int64(self.count), **arrays)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _restore(self) -> None:
        """The small arrays of the first ``count`` images, from the last checkpoint (which may hold more)."""
        try:
            with np.load(self.folder / CHECKPOINT_FILE, allow_pickle=False) as saved:
                stored = {name: saved[name] for name in saved.files}
        except (OSError, ValueError, KeyError) as err:
            raise StaleBuild(f"its checkpoint cannot be read ({err})") from None
        if int(stored.get("count", -1)) < self.count or set(self._rows) - set(stored):
            raise StaleBuild("its checkpoint is older than its progress record or holds other arrays")
        box_total = int(stored["box_counts"][: self.count].sum()) if "box_counts" in stored else 0
        for name, rows in self._rows.items():
            rows.restore(stored[name][: box_total if name in ("boxes", "box_labels", "box_difficult") else self.count])

    def finish(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Flush everything, then write the split's ``meta.json`` (last). Returns the meta written."""
        names = list(self._files)
        for file in self._files.values():
            file.close()
        self._files = {}
        for name in names:
            shrink_npy(self.folder / name, self.count)
        arrays = {name: rows.array() for name, rows in self._rows.items()}
        for name in ("labels", "label_sets", "boxes", "box_labels", "box_difficult"):
            if name in arrays:
                np.save(self.folder / f"{name}.npy", arrays[name])
        if "boxes" in arrays:
            np.save(self.folder / "box_image_index.npy",
                    np.repeat(np.arange(self.count, dtype=np.int64), arrays["box_counts"]))
        pixels = self.count * self.size[0] * self.size[1]
        meta = dict(meta)
        meta.update(
            format=FORMAT_VERSION,
            count=self.count,
            size=list(self.size),
            mean_rgb=[round(float(v), 4) for v in arrays["pixel_sums"].sum(axis=0) / pixels] if pixels else None,
            has_labels="labels" in arrays,
            has_label_maps="label_maps.npy" in names,
            has_boxes="boxes" in arrays,
            has_label_sets="label_sets" in arrays,
            ignore_index=IGNORE_INDEX,
        )
        write_json_atomic(self.folder / META_FILE, meta)
        (self.folder / CHECKPOINT_FILE).unlink(missing_ok=True)
        return meta


def _reopen(path: Path, shape: tuple[int, ...], count: int) -> RowFile:
    """The row file of a partial build's ``path`` for writing after row ``count``; :class:`StaleBuild` when it is
    missing or not of ``shape`` (or, after its split was shrunk at the end, of ``count`` rows)."""
    try:
        file = RowFile(path, shape, create=False)
    except (OSError, ValueError) as err:
        raise StaleBuild(f"{path.name} cannot be read ({err})") from None
    if file.dtype != np.uint8 or file.shape[1:] != shape[1:] or file.shape[0] not in (shape[0], count):
        file.close()
        raise StaleBuild(f"{path.name} is {file.shape}, not {shape}")
    return file


class PartialBuild:
    """A cache under construction in ``.<tag>.partial/`` beside its final folder, resumable after a kill.

    ``progress.json`` holds the ``fingerprint`` of what is being built (dataset, size, limit, source files,
    format) and, per split under way, its last checkpoint: ``{"consumed": items read, "count": images written,
    "skipped": [{"path", "reason"}]}``. :meth:`open` keeps a partial build with the same fingerprint and discards
    any other; ``discarded`` then says why ("" when there was nothing to resume), for the caller to tell.
    :meth:`complete` writes the top-level ``meta.json`` into the folder and renames it into place.
    """

    def __init__(self, final: Path, fingerprint: dict[str, Any]) -> None:
        self.final = final
        self.folder = final.parent / f".{final.name}.partial"
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self.digest = hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()[:16]
        self.splits: dict[str, dict[str, Any]] = {}
        self.discarded: str | None = None
        self.resumable = False  # a checkpoint has been recorded: something to continue from

    @classmethod
    def open(cls, final: Path, fingerprint: dict[str, Any]) -> PartialBuild:
        """The partial build of ``final`` (the caller holds its lock): the one left by a killed build when it was
        building the same thing, else a new one. Leftovers of earlier builds (temporary siblings) are removed."""
        build = cls(final, fingerprint)
        parent = make_dirs(final.parent)
        for stale in parent.glob(f".{final.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if build.folder.exists():
            build.discarded = build._load()
            if build.discarded is not None:
                shutil.rmtree(build.folder)
        build.folder.mkdir(exist_ok=True)
        for leftover in build.folder.rglob("*.tmp-*"):  # a write killed half-way
            leftover.unlink()
        return build

    def _load(self) -> str | None:
        """Read the progress of the partial build found; None when it continues, else why it cannot."""
        if is_complete(self.folder):  # killed between its last write and its rename
            if read_cache_meta(self.folder).get("fingerprint") == self.digest:
                self.resumable = True
                return None
            return "it was built from other files or settings"
        try:
            progress = json.loads((self.folder / PROGRESS_FILE).read_text())
        except FileNotFoundError:
            return ""  # killed before its first checkpoint: nothing to continue from
        except (OSError, ValueError) as err:
            return f"its {PROGRESS_FILE} cannot be read ({err})"
        before = progress.get("fingerprint") if isinstance(progress, dict) else None
        if not isinstance(before, dict) or not isinstance(progress.get("splits"), dict):
            return f"its {PROGRESS_FILE} is not a progress record"
        changed = sorted(key for key in self.fingerprint.keys() | before.keys()
                         if self.fingerprint.get(key) != before.get(key))
        if changed:
            return f"it was started with another {', '.join(changed)}"
        self.splits = progress["splits"]
        self.resumable = True
        return None

    def finished(self, split: str) -> dict[str, Any] | None:
        """The meta of ``split`` when it was finished (it is not redone), else None."""
        folder = self.folder / split
        if not is_complete(folder):
            return None
        (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
        return read_cache_meta(folder)

    def record(self, split: str, consumed: int, count: int, skipped: list[dict[str, str]]) -> None:
        """Record ``split``'s checkpoint (after :meth:`SplitWriter.checkpoint`): what a restart continues from."""
        self.splits[split] = {"consumed": consumed, "count": count, "skipped": skipped}
        write_json_atomic(self.folder / PROGRESS_FILE,
                          {"format": FORMAT_VERSION, "fingerprint": self.fingerprint, "splits": self.splits})
        self.resumable = True

    def complete(self, meta: dict[str, Any]) -> Path:
        """Write the top-level ``meta.json`` (with the fingerprint's digest) and move the cache into place."""
        if not is_complete(self.folder):
            write_json_atomic(self.folder / META_FILE, {**meta, "fingerprint": self.digest})
        (self.folder / PROGRESS_FILE).unlink(missing_ok=True)
        if self.final.exists():  # an incomplete or outdated cache: replaced only now that the new one is built
            trash = temporary_sibling(self.final)
            os.replace(self.final, trash)
            os.replace(self.folder, self.final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.folder, self.final)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
