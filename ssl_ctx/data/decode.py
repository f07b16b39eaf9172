"""Decoding dataset files into cache arrays: images to resized RGB, label maps to resized class indices.

``decode_item`` turns one :class:`~ssl_ctx.data.datasets.Item` of a dataset's index into the arrays the cache
writer takes: the image decoded with PIL and converted to RGB (grayscale, CMYK, RGBA, palette, 16-bit), brought
to ``(H, W)`` by a resize policy (bilinear, antialiased), its label map taken through the same window with nearest
neighbour and mapped through the dataset's lookup table, and its boxes made relative and mapped into the window. A
file that cannot be used raises :class:`UnusableFile` naming it, with a one-line reason.

Resize policies (``RESIZE_POLICIES``, ``data.resize``, ``ssl-ctx data prepare --resize``; each dataset has its
default, ``DatasetSpec.default_resize``): ``shorter_side`` scales the image so that it covers ``H x W`` (its shorter
side fits), then keeps the centre (torchvision's ``Resize`` + ``CenterCrop``, the paper's released code);
``squeeze`` stretches the whole image to ``H x W``; ``center_crop`` keeps the centre ``H x W`` at the image's own
scale, scaling up (as ``shorter_side``) only an image smaller than that. :func:`crop_window` is the one computation
of where an image goes, used for its pixels, its label map and its boxes.

:class:`DecoderPool` runs ``decode_item`` in worker processes: the caller's process reads each item's files
(:func:`fetch_files`, from a folder or an archive held in memory) and the workers decode and resize them, the
part that takes the time, and write the pixels into the cache's files themselves (the rows they are handed,
:class:`~ssl_ctx.data.cache_writer.RowTargets`), so only a few numbers per image come back. Results come back in the
items' order whatever the number of workers, so a cache is the same byte for byte.
"""
from __future__ import annotations

import contextlib
import ctypes
import io
import multiprocessing
import signal
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ssl_ctx.data.archives import FileTree
from ssl_ctx.data.cache_writer import RowTargets, sum_pixels
from ssl_ctx.images import open_rgb

if TYPE_CHECKING:  # datasets.py reads the policies' names from here: no import of it at run time
    from ssl_ctx.data.datasets import Item

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies

SHORTER_SIDE, SQUEEZE, CENTER_CROP = "shorter_side", "squeeze", "center_crop"
RESIZE_POLICIES = (SHORTER_SIDE, SQUEEZE, CENTER_CROP)
UNRECORDED_RESIZE = SQUEEZE  # what a cache whose meta.json names no policy was made with (all, before policies)


# ------------------------------------------------------------------------------------------ geometry


@dataclass(frozen=True)
class Window:
    """Where an image goes in the cache: resized to ``scaled`` (width, height), then the ``size`` (H, W) whose
    top-left corner is (``left``, ``top``) kept."""

    scaled: tuple[int, int]
    left: int
    top: int
    size: tuple[int, int]

    @property
    def crops(self) -> bool:
        """Whether part of the (resized) image is cut off."""
        return self.scaled != (self.size[1], self.size[0])

    def apply(self, image: Image.Image, resample: Image.Resampling) -> Image.Image:
        """``image`` (of the original size) resized with ``resample`` and cropped to the window."""
        if image.size != self.scaled:
            image = image.resize(self.scaled, resample)
        if self.crops:
            height, width = self.size
            image = image.crop((self.left, self.top, self.left + width, self.top + height))
        return image


def crop_window(original: tuple[int, int], size: tuple[int, int], resize: str) -> Window:
    """The :class:`Window` of an image of ``original`` (width, height) in a cache of ``size`` (H, W) under the
    policy ``resize``: the one computation for its pixels, its label map and its boxes.

    ``shorter_side`` (and ``center_crop`` for an image smaller than ``size`` on a side) is torchvision's
    ``resize`` then ``center_crop``, roundings included: the side with the larger ratio gets its target exactly,
    the other ``int(target * side / that side)``, and the crop starts at ``int(round((scaled - target) / 2))``."""
    height, width = size
    w, h = original
    if resize == SQUEEZE or (resize == CENTER_CROP and w >= width and h >= height):
        scaled = (width, height) if resize == SQUEEZE else (w, h)
    elif resize in (SHORTER_SIDE, CENTER_CROP):
        if height * w >= width * h:  # the height's ratio is the larger: the height fits
            scaled = (max(width, int(height * w / h)), height)
        else:
            scaled = (width, max(height, int(width * h / w)))
    else:
        raise ValueError(f"unknown resize policy {resize!r}; known: {', '.join(RESIZE_POLICIES)}")
    return Window(scaled, int(round((scaled[0] - width) / 2.0)), int(round((scaled[1] - height) / 2.0)), size)


def window_boxes(window: Window, boxes: np.ndarray, *rows: np.ndarray | None) -> tuple[np.ndarray | None, ...]:
    """Relative xyxy ``boxes (k, 4)`` of the original image -> relative to the window, clipped to [0, 1]; a box
    left with no area is dropped, with its row of each array of ``rows`` (labels, difficult flags; None stays
    None). Returns ``(boxes, *rows)``; untouched when the window keeps the whole image."""
    if not window.crops:
        return (boxes, *rows)
    height, width = window.size
    scale = np.array([window.scaled[0], window.scaled[1]] * 2, dtype=np.float64)
    shift = np.array([window.left, window.top] * 2, dtype=np.float64)
    extent = np.array([width, height] * 2, dtype=np.float64)
    moved = np.clip((boxes.astype(np.float64) * scale - shift) / extent, 0.0, 1.0).astype(np.float32)
    keep = (moved[:, 2] > moved[:, 0]) & (moved[:, 3] > moved[:, 1])
    return (moved[keep], *(None if row is None else row[keep] for row in rows))


def describe_resize(resize: str, size: Sequence[int]) -> str:
    """The policy in words, for the lines that report a cache: ``resized by shorter_side (shorter side to 64, centre
    kept; the paper's; --resize squeeze stretches the whole image)``."""
    height, width = size
    target = f"{height}x{width}"
    words = {
        SHORTER_SIDE: (f"shorter side to {height}" if height == width else f"scaled to cover {target}")
                      + ", centre kept; the paper's; --resize squeeze stretches the whole image",
        SQUEEZE: f"whole image stretched to {target}, aspect ratio not kept; --resize shorter_side keeps it and "
                 f"crops",
        CENTER_CROP: f"centre {target} at the image's own scale, scaled up only where smaller; --resize "
                     f"shorter_side keeps more of the image",
    }[resize]
    return f"resized by {resize} ({words})"


def decode_image(data: bytes, size: tuple[int, int], resize: str = SQUEEZE) -> tuple[np.ndarray, tuple[int, int]]:
    """Encoded image -> ``(H, W, 3) uint8`` RGB brought to ``size`` = (H, W) by the policy ``resize``
    (:func:`crop_window`), and its unresized (width, height).

    Decoding is :func:`ssl_ctx.images.open_rgb` (16-bit, palette, CMYK, alpha, EXIF orientation), the same as
    ``ssl-ctx inpaint``'s, so a model is trained on the pixels it is later asked to fill. The size returned is
    the upright one: a label map must match it, and boxes in pixels are scaled by it.
    """
    image = open_rgb(data)
    original = image.size
    image = crop_window(original, size, resize).apply(image, Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8), original


def resize_pixels(pixels: np.ndarray, size: tuple[int, int], resize: str = SQUEEZE) -> np.ndarray:
    """``(h, w, 3) uint8`` -> ``(H, W, 3) uint8`` by the policy ``resize``."""
    if pixels.shape[:2] == tuple(size):  # every policy keeps an image of the cache's size as it is
        return pixels
    window = crop_window((pixels.shape[1], pixels.shape[0]), size, resize)
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    return np.asarray(window.apply(image, Image.Resampling.BILINEAR), dtype=np.uint8)


def decode_label_map(data: bytes, size: tuple[int, int], image_size: tuple[int, int],
                     resize: str = SQUEEZE) -> np.ndarray:
    """Index PNG (palette or grayscale) -> raw values ``(H, W) uint8``, through its image's window
    (:func:`crop_window` of ``image_size``) with nearest neighbour."""
    with Image.open(io.BytesIO(data)) as label:
        label.load()
        if label.mode not in ("L", "P"):
            if not (label.mode.startswith("I;16") or label.mode == "I"):
                raise ValueError(f"label map has mode {label.mode}; expected one class index per pixel (palette PNG)")
            values = np.asarray(label)
            if values.max(initial=0) > 255 or values.min(initial=0) < 0:
                raise ValueError("label map has values outside 0..255")
            label = Image.fromarray(values.astype(np.uint8), "L")
        if label.size != image_size:
            raise ValueError(f"label map is {label.size[0]}x{label.size[1]} but its image is "
                             f"{image_size[0]}x{image_size[1]}")
        return np.asarray(crop_window(image_size, size, resize).apply(label, Image.Resampling.NEAREST),
                          dtype=np.uint8)


class UnusableFile(Exception):
    """A file of the dataset that cannot be used; ``path`` names it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:  # comes back from a worker process whole
        return UnusableFile, (self.path, self.reason)


def _one_line(err: BaseException) -> str:
    if isinstance(err, UnidentifiedImageError):  # its message names a BytesIO object, not the file
        return "not an image (unknown format or corrupt header)"
    text = " ".join(str(err).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(err).__name__)


def decode_item(item: Item, tree: FileTree, size: tuple[int, int], label_lut: np.ndarray | None,
                resize: str = SQUEEZE) -> dict[str, Any]:
    """One :class:`Item` -> the arguments of :meth:`SplitWriter.add`; :class:`UnusableFile` when it cannot be read.

    The image, its label map and its boxes go through one window (:func:`crop_window` under the policy
    ``resize``); a box the window leaves with no area is dropped with its label and difficult flag. The label map
    is read when the dataset has a lookup table and the item a label map (a split without label maps has none in
    any item)."""
    try:
        if item.pixels is not None:
            image, original = resize_pixels(item.pixels, size, resize), (item.pixels.shape[1], item.pixels.shape[0])
        else:
            image, original = decode_image(tree.read(item.path), size, resize)
    except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files; each is a skip
        raise UnusableFile(item.path, _one_line(err)) from None
    label_map = None
    if label_lut is not None and item.label_map is not None:
        try:
            label_map = label_lut[decode_label_map(tree.read(item.label_map), size, original, resize)]
        except Exception as err:  # noqa: BLE001
            raise UnusableFile(item.label_map, _one_line(err)) from None
    boxes, box_labels, box_difficult = item.boxes, item.box_labels, item.box_difficult
    if boxes is not None and item.boxes_in_pixels:
        scale = np.array([original[0], original[1], original[0], original[1]], dtype=np.float32)
        boxes = np.clip(boxes / scale, 0.0, 1.0).astype(np.float32)
    if boxes is not None:
        boxes, box_labels, box_difficult = window_boxes(crop_window(original, size, resize), boxes, box_labels,
                                                        box_difficult)
    return {"image": image, "label": item.label, "label_map": label_map, "boxes": boxes, "box_labels": box_labels,
            "label_set": item.label_set, "box_difficult": box_difficult}


# ------------------------------------------------------------------------------------ worker processes


class FetchedFiles(FileTree):
    """The files one item needs, read in the parent process and sent to a worker; a file that could not be read
    holds the error, raised when the worker reads it (so the item is skipped with the same reason)."""

    def __init__(self, files: dict[str, bytes | OSError]) -> None:
        super().__init__("fetched files")
        self._data = files

    def files(self) -> list[str]:
        return sorted(self._data)

    def read(self, path: str) -> bytes:
        data = self._data[path]
        if isinstance(data, OSError):
            raise data
        return data


def fetch_files(item: Item, tree: FileTree, label_lut: np.ndarray | None) -> FetchedFiles:
    """The bytes of the files :func:`decode_item` reads for ``item``."""
    paths = [] if item.pixels is not None else [item.path]
    if label_lut is not None and item.label_map is not None:
        paths.append(item.label_map)
    files: dict[str, bytes | OSError] = {}
    for path in paths:
        try:
            files[path] = tree.read(path)
        except Exception as err:  # noqa: BLE001 - a skip, like a file PIL cannot decode
            files[path] = OSError(_one_line(err))
    return FetchedFiles(files)


def _decode_chunk(tasks: list[tuple[Item, FetchedFiles, int | None]], size: tuple[int, int],
                  label_lut: np.ndarray | None, targets: RowTargets | None,
                  resize: str = SQUEEZE) -> list[dict[str, Any] | UnusableFile]:
    """In a worker: :func:`decode_item` over a chunk; an unusable file is returned, not raised, in its place. An
    item with a row writes its image and label map there itself (``targets``) and returns the rest, so that the
    arrays do not travel back through a pipe to the one process that every image passes through."""
    results: list[dict[str, Any] | UnusableFile] = []
    for item, files, row in tasks:
        try:
            result = decode_item(item, files, size, label_lut, resize)
        except UnusableFile as err:
            results.append(err)
            continue
        if row is not None:
            image, label_map = result.pop("image"), result.pop("label_map")
            targets.write(row, {"images.npy": image, "label_maps.npy": label_map})
            result.update(row=row, pixel_sum=sum_pixels(image))
        results.append(result)
    return results


def _start_worker() -> None:
    """Ctrl-C reaches the whole process group; the parent stops the workers itself, without their tracebacks. And
    a worker dies with the forkserver that forked it, which dies with the preparing process: a worker of a killed
    build cannot go on writing rows while the same command, run again, resumes it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):  # Linux only: elsewhere a worker ends at its next task
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class DecoderPool:
    """``workers`` processes that decode items, results in order (:meth:`decode`); a context manager.

    The workers start with ``forkserver`` (``spawn`` where there is none), never a plain fork: the caller may
    be a training process that has imported torch and started threads, which a forked child would inherit in an
    unknown state. Items go out in chunks of ``chunk`` and at most ``depth`` chunks are in flight, so memory
    holds a bounded number of files however large the dataset (``Pool.imap`` would read its whole input ahead).
    """

    def __init__(self, workers: int, chunk: int = 8, depth: int = 4) -> None:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        if method == "forkserver":  # each worker is forked with the decoders imported already
            context.set_forkserver_preload([__name__])
        self.workers = workers
        self.chunk = chunk
        self.depth = depth * workers
        self._pool = context.Pool(workers, initializer=_start_worker)

    def decode(self, items: Sequence[Item], tree: FileTree, size: tuple[int, int], label_lut: np.ndarray | None,
               targets: RowTargets | None = None, resize: str = SQUEEZE) -> Iterator[dict[str, Any] | UnusableFile]:
        """For each item in order: the arguments of :meth:`SplitWriter.add` (:func:`decode_item`'s under the
        policy ``resize``, or, where ``targets`` has a row for it, that row, the image and label map written there
        already), or the :class:`UnusableFile` it raised. This process reads the files while the workers decode."""
        pending: deque = deque()
        for start in range(0, len(items), self.chunk):
            tasks = [(item, fetch_files(item, tree, label_lut), targets.row(start + offset) if targets else None)
                     for offset, item in enumerate(items[start : start + self.chunk])]
            pending.append(self._pool.apply_async(_decode_chunk, (tasks, size, label_lut, targets, resize)))
            if len(pending) >= self.depth:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()

    def __enter__(self) -> DecoderPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.terminate()  # any chunk still in flight is not needed
        self._pool.join()
