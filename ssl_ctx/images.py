"""Image files -> 8-bit RGB: the one conversion used by the dataset caches and by ``ssl-ctx inpaint``.

Both read a file the same way, so a model sees at inpainting time the pixels it would have seen in training:
decode fully, turn the picture upright from its EXIF orientation tag, then :func:`to_rgb`.
Torch-free, so ``ssl-ctx data prepare`` stays light.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# 16 bits per sample. Pillow opens a 16-bit greyscale PNG or TIFF as "I;16" / "I;16B" (older versions: "I").
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> mode ``"RGB"``, 8 bits per channel.

    * 16-bit greyscale (``I;16*``, and ``I``, read as 0..65535): the top 8 bits (``v >> 8``), the same as
      Pillow's own reading of a 48-bit RGB PNG (which it opens as 8-bit ``RGB``), so a 16-bit photo keeps its
      content instead of clipping to white as ``convert("RGB")`` does.
    * ``F`` (floating point): read as 0..255, rounded to the nearest integer and clipped.
    * ``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``, and ``P`` with a transparent colour: the alpha channel is dropped
      (the colour under it is kept), as torchvision's image loader does; nothing is composited on a background.
    * ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBX``: Pillow's own conversion.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in SIXTEEN_BIT_MODES:
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535) >> 8
        return Image.fromarray(values.astype(np.uint8)).convert("RGB")
    if mode == "F":
        values = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255)
        return Image.fromarray(values.astype(np.uint8)).convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # Pillow warns when such an image goes straight to RGB
    elif mode == "La":
        image = image.convert("LA")  # Pillow has no direct La -> RGB conversion
    return image.convert("RGB")


def open_rgb(source: str | Path | bytes) -> Image.Image:
    """A file (path or its bytes) decoded in full, turned upright from its EXIF orientation, in mode ``RGB``.

    Pillow's exceptions pass through unchanged: callers turn them into their own messages.
    """
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with Image.open(stream) as opened:
        opened.load()  # decode now: a truncated file fails here, not later
        return to_rgb(ImageOps.exif_transpose(opened))


def read_rgb(source: str | Path | bytes) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB of a file (path or its bytes): :func:`open_rgb` as a writable array."""
    return np.array(open_rgb(source), dtype=np.uint8)
