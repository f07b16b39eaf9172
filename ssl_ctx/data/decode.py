"""Decoding one dataset file into cache arrays: images to resized RGB, label maps to resized class indices.

``decode_item`` turns one :class:`~ssl_ctx.data.datasets.Item` of a dataset's index into the arrays the cache
writer takes: the image decoded with PIL and converted to RGB (grayscale, CMYK, RGBA, palette, 16-bit), resized
to ``(H, W)`` (bilinear, antialiased), its label map resized with nearest neighbour and mapped through the
dataset's lookup table, and boxes in pixels made relative. A file that cannot be used raises
:class:`UnusableFile` naming it, with a one-line reason.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ssl_ctx.data.archives import FileTree
from ssl_ctx.data.datasets import Item
from ssl_ctx.images import open_rgb


def decode_image(data: bytes, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Encoded image -> ``(H, W, 3) uint8`` RGB resized to ``size`` = (H, W), and its unresized (width, height).

    Decoding is :func:`ssl_ctx.images.open_rgb` (16-bit, palette, CMYK, alpha, EXIF orientation), the same as
    ``ssl-ctx inpaint``'s, so a model is trained on the pixels it is later asked to fill. The size returned is
    the upright one: a label map must match it, and boxes in pixels are scaled by it.
    """
    height, width = size
    image = open_rgb(data)
    original = image.size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8), original


def resize_pixels(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(h, w, 3) uint8`` -> ``(H, W, 3) uint8``."""
    if pixels.shape[:2] == tuple(size):
        return pixels
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BILINEAR), dtype=np.uint8)


def decode_label_map(data: bytes, size: tuple[int, int], image_size: tuple[int, int]) -> np.ndarray:
    """Index PNG (palette or grayscale) -> raw values ``(H, W) uint8``, resized with nearest neighbour."""
    height, width = size
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
        if label.size != (width, height):
            label = label.resize((width, height), Image.Resampling.NEAREST)
        return np.asarray(label, dtype=np.uint8)


class UnusableFile(Exception):
    """A file of the dataset that cannot be used; ``path`` names it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


def _one_line(err: BaseException) -> str:
    if isinstance(err, UnidentifiedImageError):  # its message names a BytesIO object, not the file
        return "not an image (unknown format or corrupt header)"
    text = " ".join(str(err).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(err).__name__)


def decode_item(item: Item, tree: FileTree, size: tuple[int, int], label_lut: np.ndarray | None) -> dict[str, Any]:
    """One :class:`Item` -> the arguments of :meth:`SplitWriter.add`; :class:`UnusableFile` when it cannot be read."""
    try:
        if item.pixels is not None:
            image, original = resize_pixels(item.pixels, size), (item.pixels.shape[1], item.pixels.shape[0])
        else:
            image, original = decode_image(tree.read(item.path), size)
    except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files; each is a skip
        raise UnusableFile(item.path, _one_line(err)) from None
    label_map = None
    if label_lut is not None:
        try:
            label_map = label_lut[decode_label_map(tree.read(item.label_map), size, original)]
        except Exception as err:  # noqa: BLE001
            raise UnusableFile(item.label_map, _one_line(err)) from None
    boxes = item.boxes
    if boxes is not None and item.boxes_in_pixels:
        scale = np.array([original[0], original[1], original[0], original[1]], dtype=np.float32)
        boxes = np.clip(boxes / scale, 0.0, 1.0).astype(np.float32)
    return {"image": image, "label": item.label, "label_map": label_map, "boxes": boxes, "box_labels": item.box_labels}
