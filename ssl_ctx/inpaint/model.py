"""A trained pretext checkpoint as an :class:`~ssl_ctx.inpaint.baselines.Inpainter` on images of any size.

A network works at one square resolution ``S`` (its ``DataInfo.input_size``); a user's image is ``H x W``.
:class:`CheckpointInpainter` maps between the two by resizing, never by tiling:

1. The hole's pixels are replaced by the context's mean colour *before* anything is resized or padded, so no
   original hole pixel can reach the network through interpolation or border reflection.
2. *Full-image models* (``context_encoder``: the output is a whole image, any mask): the image is resized to
   ``S x S`` (aspect ratio not kept) and the mask with it, conservatively (a model pixel touched by any hole
   pixel is a hole pixel).
   *Centre models* (``inpainting128``: one fixed central hole of ``hole_size`` px): a square window centred on
   the hole's bounding box, of the smallest side that makes the hole land inside the model's hole after
   resizing the window to ``S``, is cut out (reflect-padded past the image border) and resized to ``S``.
   A 128 x 128 image with the model's own central hole is used as it is, which is exactly the released
   ``test.lua`` protocol.
3. The network's output (float, ``[0, 1]``) is resized back to the original geometry (area interpolation when
   shrinking, bicubic when enlarging) and pasted into the hole **only**: every pixel outside the hole is the
   input pixel, bit for bit.

A method takes part through one of two methods: ``inpaint(images, mask) -> images`` (preferred) or
``reconstruct(images, mask) -> (output, masked)`` (the context encoder's); both on ``(B, 3, S, S)`` tensors in
``[-1, 1]`` with bool masks ``(B, 1, S, S)``. A class attribute ``inpaint_hole = "central"`` with
``hole_box = (top, left, size)`` declares a centre model; anything else is a full-image model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ssl_ctx.errors import UserError


# ------------------------------------------------------------------------------------------ resizing


def resize_float(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize float ``(H, W[, C])``: area interpolation when shrinking, bicubic when enlarging."""
    if array.shape[:2] == (height, width):
        return array.copy()
    shrinking = height <= array.shape[0] and width <= array.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(array, dtype=np.float32), (width, height), interpolation=interpolation)


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Conservative resize of a bool ``(H, W)`` mask: any output pixel that overlaps a hole pixel is a hole."""
    if mask.shape == (height, width):
        return mask.copy()
    shrinking = height <= mask.shape[0] and width <= mask.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(mask.astype(np.float32), (width, height), interpolation=interpolation) > 1e-6


def prefill(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)`` -> float32 in ``[0, 1]`` with the hole set to the context's mean colour."""
    unit = image.astype(np.float32) / 255.0
    if mask.any():
        visible = ~mask
        unit[mask] = unit[visible].mean(axis=0) if visible.any() else 0.5
    return unit


def to_uint8(unit: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------- geometry


@dataclass
class Window:
    """Where one image's model input came from: a ``side x side`` square at (top, left) of the image."""

    top: int
    left: int
    side_h: int
    side_w: int


def central_window(mask: np.ndarray, size: int, hole_box: tuple[int, int, int]) -> Window:
    """Smallest square window around the hole's bounding box whose hole, resized to ``size``, lies inside the
    model's hole ``hole_box = (top, left, side)``."""
    rows, cols = np.nonzero(mask)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    box = max(y1 - y0, x1 - x0)
    hole_top, hole_left, hole_side = hole_box
    model_hole = np.zeros((size, size), dtype=bool)
    model_hole[hole_top:hole_top + hole_side, hole_left:hole_left + hole_side] = True
    side = max(box, math.ceil(box * size / hole_side))
    for _ in range(64):
        top = int(y0 - (side - (y1 - y0)) // 2)
        left = int(x0 - (side - (x1 - x0)) // 2)
        window_mask = crop_padded(mask[..., None].astype(np.float32), top, left, side, side, mode="constant")[..., 0] > 0
        if not (resize_mask(window_mask, size, size) & ~model_hole).any():
            return Window(top, left, side, side)
        side += 1
    raise UserError("the hole cannot be fitted into the model's central hole; use a full-image checkpoint")


def crop_padded(array: np.ndarray, top: int, left: int, height: int, width: int, mode: str = "reflect") -> np.ndarray:
    """``array[top:top+height, left:left+width]`` of an ``(H, W, C)`` array, padded past the border."""
    h, w = array.shape[:2]
    pad_top, pad_left = max(0, -top), max(0, -left)
    pad_bottom, pad_right = max(0, top + height - h), max(0, left + width - w)
    if pad_top or pad_left or pad_bottom or pad_right:
        pad_mode = mode if (h > 1 and w > 1) or mode == "constant" else "edge"
        array = np.pad(array, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)), mode=pad_mode)
        top, left = top + pad_top, left + pad_left
    return array[top:top + height, left:left + width]


# ------------------------------------------------------------------------------------------ loading


def load_pretext_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, Any]:
    """(task in eval mode on ``device``, its Config) from a checkpoint written by ``ssl-ctx pretrain``.

    The checkpoint alone is enough: its ``data_info`` gives the input size and the training mean colour, so the
    hole is filled with the colour the model was trained with (``ssl_ctx.masks.fill_value``).
    """
    from ssl_ctx.config import load_config
    from ssl_ctx.engine.checkpoint import load_checkpoint
    from ssl_ctx.registry import PRETEXT_METHODS

    payload = load_checkpoint(path)
    if payload.get("kind") != "pretext" or "method" not in payload:
        raise UserError(f"checkpoint '{path}' is a {payload.get('kind', 'unknown')} checkpoint, not a pretext "
                        f"model; pass runs/<name>/checkpoints/last.pt of an `ssl-ctx pretrain` run")
    config = load_config(base=payload["config"])
    info = payload.get("data_info")
    data = _stored_data_info(info) if info is not None else _data_info_from_data(config.data)
    task = PRETEXT_METHODS.get(payload["method"]).from_config(config, data)
    try:
        task.load_state_dict(payload["model"])
    except RuntimeError as err:
        raise UserError(f"checkpoint '{path}' does not match its own method's model; pass a checkpoint written by "
                        f"`ssl-ctx pretrain` with this version of ssl_ctx", detail=str(err)) from None
    if not (hasattr(task, "inpaint") or hasattr(task, "reconstruct")):
        raise UserError(f"checkpoint '{path}' holds method '{payload['method']}', which does not inpaint; "
                        f"use a context_encoder or inpainting128 checkpoint")
    return task.to(device).eval(), config


def _stored_data_info(info: dict[str, Any]) -> Any:
    """The DataInfo a checkpoint stored (``PretextMethod.checkpoint_metadata``'s ``data_info``)."""
    from ssl_ctx.pretext.base import DataInfo

    mean = info.get("mean_rgb")
    return DataInfo(input_size=tuple(int(v) for v in info["input_size"]),
                    mean_rgb=tuple(float(v) for v in mean) if mean is not None else None,
                    num_classes=info.get("num_classes"))


def _data_info_from_data(data: Any) -> Any:
    """DataInfo for a checkpoint written before checkpoints stored ``data_info``: the input size from its ``data``
    settings, the fill colour from the training split's cache (so it needs the training data; prepared on first
    use)."""
    from ssl_ctx.data.loader import input_size_of
    from ssl_ctx.data.run_data import load_run_data
    from ssl_ctx.pretext.base import DataInfo

    split = load_run_data(data, evaluation=False).train
    return DataInfo(input_size=input_size_of(data.input_size, split), mean_rgb=tuple(split.mean_rgb))


# ---------------------------------------------------------------------------------------- inpainter


class CheckpointInpainter:
    """A trained model as an Inpainter: uint8 ``(N, H, W, 3)`` + bool ``(N, H, W)`` -> uint8, context exact.

    Args:
        task: a pretext method with ``inpaint`` or ``reconstruct`` (see the module docstring).
        batch_size: images per forward pass.
    """

    def __init__(self, task: torch.nn.Module, batch_size: int = 32) -> None:
        self.task = task.eval()
        self.batch_size = batch_size
        self.device = next(task.parameters()).device
        self.size = int(task.data.input_size[0])
        self.central = getattr(task, "inpaint_hole", "any") == "central"
        self.hole_box: tuple[int, int, int] | None = tuple(task.hole_box) if self.central else None

    def supports(self, mask_kind: str) -> bool:
        """Centre models answer only the central mask; full-image models answer every mask."""
        return mask_kind == "central" or not self.central

    @torch.no_grad()
    def _forward(self, inputs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """float ``(B, S, S, 3)`` in [0, 1] + bool ``(B, S, S)`` -> the model's float ``(B, S, S, 3)`` in [0, 1]."""
        images = torch.from_numpy(inputs).permute(0, 3, 1, 2).to(self.device) * 2.0 - 1.0
        mask = torch.from_numpy(masks)[:, None].to(self.device)
        if hasattr(self.task, "inpaint"):
            output = self.task.inpaint(images, mask)
        else:
            output = self.task.reconstruct(images, mask)[0]
        output = output.float().clamp(-1, 1) * 0.5 + 0.5
        return output.permute(0, 2, 3, 1).cpu().numpy()

    def _prepare(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, Window]:
        unit = prefill(image, mask)
        height, width = mask.shape
        if self.central:
            window = central_window(mask, self.size, self.hole_box)
            crop = crop_padded(unit, window.top, window.left, window.side_h, window.side_w)
            crop_mask = crop_padded(mask[..., None].astype(np.float32), window.top, window.left,
                                    window.side_h, window.side_w, mode="constant")[..., 0] > 0
        else:
            window = Window(0, 0, height, width)
            crop, crop_mask = unit, mask
        return resize_float(crop, self.size, self.size), resize_mask(crop_mask, self.size, self.size), window

    def _paste(self, image: np.ndarray, mask: np.ndarray, output: np.ndarray, window: Window) -> np.ndarray:
        back = resize_float(output, window.side_h, window.side_w)
        height, width = mask.shape
        canvas = np.zeros((height, width, 3), dtype=np.float32)
        # The window's part that lies inside the image.
        y0, x0 = max(0, window.top), max(0, window.left)
        y1, x1 = min(height, window.top + window.side_h), min(width, window.left + window.side_w)
        canvas[y0:y1, x0:x1] = back[y0 - window.top:y1 - window.top, x0 - window.left:x1 - window.left]
        return np.where(mask[..., None], to_uint8(canvas), image)

    def __call__(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        masks = np.asarray(masks, dtype=bool)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or masks.shape != images.shape[:3]:
            raise ValueError(f"expected uint8 (N, H, W, 3) images and bool (N, H, W) masks, got "
                             f"{images.dtype} {images.shape} and {masks.shape}")
        out = images.copy()
        todo = [i for i in range(len(images)) if masks[i].any()]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            prepared = [self._prepare(images[i], masks[i]) for i in chunk]
            outputs = self._forward(np.stack([p[0] for p in prepared]), np.stack([p[1] for p in prepared]))
            for i, (_, _, window), output in zip(chunk, prepared, outputs):
                out[i] = self._paste(images[i], masks[i], output, window)
        return out
