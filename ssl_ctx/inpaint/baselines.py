"""Classical inpainting baselines for the inpainting table.

Every baseline is an :class:`Inpainter`: ``inpainter(images, masks) -> images`` on uint8 ``(N, H, W, 3)`` RGB
images and bool ``(N, H, W)`` masks (``True`` = hole). Pixels outside the hole are returned unchanged, bit for
bit; only hole pixels are written.

* ``mean_fill``: every hole pixel gets the mean colour of that image's own context (its visible pixels).
* ``telea``: OpenCV ``cv2.inpaint(..., cv2.INPAINT_TELEA)`` (fast marching, Telea 2004), radius 3 px.
* ``navier_stokes``: OpenCV ``cv2.inpaint(..., cv2.INPAINT_NS)`` (Bertalmio et al. 2001), radius 3 px.
* ``biharmonic``: scikit-image ``restoration.inpaint_biharmonic`` (smooth biharmonic fill; slower, optional).
* ``nearest_neighbour``: the paper's NN-inpainting, the basis of Hays & Efros' scene completion: find the
  image of a search set (the training split of the same dataset, resized to the same size) whose context
  is nearest to the query's context and paste its pixels at the same place into the hole; no alignment search,
  no blending. The context feature is HOG (``skimage.feature.hog``: 9 orientations, 8x8-pixel cells,
  2x2-cell blocks, L2-Hys, over the RGB image with the per-channel maximum gradient), compared by squared
  Euclidean distance over the HOG blocks that contain no hole pixel (the hole is filled with the context mean
  before HOG so its gradients cannot leak into a neighbouring block). When no block is free of the hole
  (large scattered masks on small images) the distance falls back to the squared pixel difference over the
  context. ``feature="pixels"`` always uses that pixel distance.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import cv2
import numpy as np

from ssl_ctx.registry import Registry


class Inpainter(Protocol):
    """``(images uint8 (N, H, W, 3), masks bool (N, H, W)) -> uint8 (N, H, W, 3)``; context unchanged."""

    def __call__(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray: ...


BASELINES: Registry[Callable[..., Inpainter]] = Registry("inpainting baseline")


def _check(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images)
    masks = np.asarray(masks, dtype=bool)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if masks.shape != images.shape[:3]:
        raise ValueError(f"masks {masks.shape} must be (N, H, W) = {images.shape[:3]}")
    return images, masks


def paste(context: np.ndarray, filled: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``context`` with ``filled``'s pixels inside the hole only (any shapes ``(..., H, W, C)``, masks ``(..., H, W)``)."""
    return np.where(np.asarray(masks, dtype=bool)[..., None], filled, context).astype(context.dtype, copy=False)


def context_mean(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean colour (float, per channel) of the visible pixels of one ``(H, W, 3)`` image; the image mean when
    nothing is visible."""
    visible = ~mask
    if not visible.any():
        return image.reshape(-1, image.shape[-1]).mean(axis=0)
    return image[visible].mean(axis=0)


@BASELINES.register("mean_fill")
class MeanFill:
    """Fill the hole with the mean colour of the image's own context."""

    def __call__(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        images, masks = _check(images, masks)
        out = images.copy()
        for image, mask, result in zip(images, masks, out):
            result[mask] = np.round(context_mean(image, mask)).astype(np.uint8)
        return out


class _OpenCVInpaint:
    flag: int = cv2.INPAINT_TELEA

    def __init__(self, radius: float = 3.0) -> None:
        self.radius = radius

    def __call__(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        images, masks = _check(images, masks)
        out = images.copy()
        for i, (image, mask) in enumerate(zip(images, masks)):
            if mask.any():
                filled = cv2.inpaint(np.ascontiguousarray(image), mask.astype(np.uint8) * 255, self.radius, self.flag)
                out[i] = paste(image, filled, mask)
        return out


@BASELINES.register("telea")
class TeleaInpaint(_OpenCVInpaint):
    """OpenCV fast-marching inpainting (Telea 2004), radius 3 px by default."""

    flag = cv2.INPAINT_TELEA


@BASELINES.register("navier_stokes")
class NavierStokesInpaint(_OpenCVInpaint):
    """OpenCV Navier-Stokes inpainting (Bertalmio, Bertozzi & Sapiro 2001), radius 3 px by default."""

    flag = cv2.INPAINT_NS


@BASELINES.register("biharmonic")
class BiharmonicInpaint:
    """scikit-image biharmonic inpainting (smooth; several seconds per large hole)."""

    def __call__(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        from skimage.restoration import inpaint_biharmonic

        images, masks = _check(images, masks)
        out = images.copy()
        for i, (image, mask) in enumerate(zip(images, masks)):
            if mask.any():
                filled = inpaint_biharmonic(image.astype(np.float64) / 255.0, mask, channel_axis=-1)
                filled = np.clip(np.round(filled * 255.0), 0, 255).astype(np.uint8)
                out[i] = paste(image, filled, mask)
        return out


# ----------------------------------------------------------------------------------- nearest neighbour

HOG_PARAMS: dict[str, Any] = dict(
    orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L2-Hys", feature_vector=False
)


def hog_blocks(image: np.ndarray) -> np.ndarray:
    """HOG of one uint8 ``(H, W, 3)`` image as ``(blocks_y, blocks_x, F)`` float32 (``HOG_PARAMS``)."""
    from skimage.feature import hog

    features = hog(image, channel_axis=-1, **HOG_PARAMS)
    by, bx = features.shape[:2]
    return features.reshape(by, bx, -1).astype(np.float32)


def hole_free_blocks(mask: np.ndarray) -> np.ndarray:
    """``(blocks_y, blocks_x)`` bool: HOG blocks of ``HOG_PARAMS`` that contain no hole pixel of ``mask (H, W)``."""
    cell_y, cell_x = HOG_PARAMS["pixels_per_cell"]
    block_y, block_x = HOG_PARAMS["cells_per_block"]
    cells_y, cells_x = mask.shape[0] // cell_y, mask.shape[1] // cell_x
    cell_has_hole = mask[: cells_y * cell_y, : cells_x * cell_x].reshape(cells_y, cell_y, cells_x, cell_x).any(axis=(1, 3))
    blocks_y, blocks_x = cells_y - block_y + 1, cells_x - block_x + 1
    free = np.ones((blocks_y, blocks_x), dtype=bool)
    for dy in range(block_y):
        for dx in range(block_x):
            free &= ~cell_has_hole[dy : dy + blocks_y, dx : dx + blocks_x]
    return free


@BASELINES.register("nearest_neighbour")
class NearestNeighbourInpaint:
    """Paste the hole from the training image whose context is nearest in HOG (or pixel) space.

    See the module docstring for the exact feature and distance.

    Args:
        search_images: uint8 ``(M, H, W, 3)``, the training split at the evaluation size.
        feature: ``"hog"`` (default, the paper's NN-inpainting with HOG features) or ``"pixels"``.
    """

    def __init__(self, search_images: np.ndarray | None = None, feature: str = "hog") -> None:
        if search_images is None or len(search_images) == 0:
            raise ValueError("nearest_neighbour needs search_images: the training split at the evaluation size")
        if feature not in ("hog", "pixels"):
            raise ValueError(f"unknown nearest-neighbour feature '{feature}'; known: hog, pixels")
        self.search = np.ascontiguousarray(search_images)
        self.feature = feature
        self._search_float = self.search.astype(np.float32)
        self._search_hog = np.stack([hog_blocks(image) for image in self.search]) if feature == "hog" else None
        self.last_indices: list[int] = []  # the neighbour chosen for each image of the last call

    def _pixel_distances(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        visible = (~mask).astype(np.float32)[None, :, :, None]
        diff = self._search_float - image.astype(np.float32)[None]
        return (diff * diff * visible).sum(axis=(1, 2, 3))

    def nearest(self, image: np.ndarray, mask: np.ndarray) -> int:
        """Index into ``search_images`` of the nearest context of one ``(H, W, 3)`` image."""
        if image.shape != self.search.shape[1:]:
            raise ValueError(f"image {image.shape} and search images {self.search.shape[1:]} differ in size")
        if self.feature == "hog":
            free = hole_free_blocks(mask)
            if free.any():
                query = image.copy()
                query[mask] = np.round(context_mean(image, mask)).astype(np.uint8)
                diff = self._search_hog[:, free] - hog_blocks(query)[free][None]
                return int(np.argmin((diff * diff).sum(axis=(1, 2))))
        return int(np.argmin(self._pixel_distances(image, mask)))

    def __call__(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        images, masks = _check(images, masks)
        out = images.copy()
        self.last_indices = []
        for i, (image, mask) in enumerate(zip(images, masks)):
            index = self.nearest(image, mask)
            self.last_indices.append(index)
            out[i] = paste(image, self.search[index], mask)
        return out


def build_baseline(name: str, search_images: np.ndarray | None = None, **kwargs: Any) -> Inpainter:
    """Build a baseline by name; ``search_images`` is passed only to those that need it."""
    builder = BASELINES.get(name)
    if builder is NearestNeighbourInpaint:
        return builder(search_images=search_images, **kwargs)
    return builder(**kwargs)
