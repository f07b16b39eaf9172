"""`ssl-ctx inpaint IMAGE (--mask MASK.png | --region center|block|random) --checkpoint CKPT -o OUT.png`.

* Any image size: the network's resolution is reached by resizing, not tiling
  (:mod:`ssl_ctx.inpaint.model` documents how: the whole image for full-image models, a square window around
  the hole for the 128-px centre model); the prediction is resized back and pasted **only inside the hole**.
* Pixels outside the hole are the input's pixels, bit for bit (after decoding: RGB, 8 bits per channel, EXIF
  orientation applied). Write a lossless format (PNG) to keep them so in the file; JPEG would re-compress.
* ``--mask``: a greyscale or colour image of exactly the input's size; any non-zero pixel is a hole pixel.
* ``--region``: ``center`` = the central square of half the short side (a quarter of a square image) less the
  centre model's overlap border when the checkpoint is the 128-px centre model, so the hole is exactly the one
  it was trained on; ``block`` / ``random`` = the random-block / random-region masks of ``ssl_ctx.masks``
  drawn at the image's size from ``--seed`` (full-image checkpoints only).
* ``--figure``: input | masked input (hole in white) | output, side by side.
Problems with the user's files (unreadable image, mask of the wrong size, empty mask) are one-line UserErrors.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ssl_ctx.errors import UserError
from ssl_ctx.inpaint.model import CheckpointInpainter

REGION_TO_MASK = {"center": "central", "block": "random_block", "random": "random_region"}


# ---------------------------------------------------------------------------------------------- io


def _open_image(path: str | Path, what: str, mode: str, fix: str) -> np.ndarray:
    """The file at ``path`` converted to PIL ``mode`` (EXIF orientation applied); one UserError line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} '{path}' does not exist")
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert(mode)).copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"cannot read {what} '{path}' ({reason}); {fix}") from None


def read_image(path: str | Path) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB of an image file (EXIF orientation applied); UserError when it cannot be read."""
    return _open_image(path, "image", "RGB", "pass a PNG, JPEG or other image file").astype(np.uint8)


def read_mask(path: str | Path, height: int, width: int) -> np.ndarray:
    """bool ``(H, W)``, True where the mask image is non-zero; it must be ``height x width``."""
    mask = _open_image(path, "mask", "L", "pass a PNG whose non-zero pixels mark the hole") > 0
    if mask.shape != (height, width):
        raise UserError(f"mask '{path}' is {mask.shape[1]}x{mask.shape[0]} (WxH) but the image is {width}x{height}; "
                        f"the mask must have the image's size")
    if not mask.any():
        raise UserError(f"mask '{path}' marks no pixel (all zero); non-zero pixels mark the hole to fill")
    return mask


def write_image(path: str | Path, image: np.ndarray) -> Path:
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(image).save(path)
    except (ValueError, OSError) as err:
        raise UserError(f"cannot write '{path}' ({str(err).splitlines()[0]}); use a .png file name") from None
    return path


# ------------------------------------------------------------------------------------------- masks


def region_mask(region: str, height: int, width: int, inpainter: CheckpointInpainter, config, seed: int = 0) -> np.ndarray:
    """bool ``(H, W)`` for ``--region center|block|random`` (see the module docstring)."""
    from ssl_ctx.masks import make_masks

    kind = REGION_TO_MASK[region]
    if not inpainter.supports(kind):
        raise UserError(f"--region {region}: this checkpoint is the 128-px centre model, which fills only a "
                        f"central hole; use --region center, a --mask, or a context_encoder checkpoint")
    if kind == "central" and inpainter.central:
        # The centre model's own hole, scaled to the short side of the image.
        top, left, side = inpainter.hole_box
        side = max(1, round(min(height, width) * side / inpainter.size))
        mask = np.zeros((height, width), dtype=bool)
        y, x = (height - side) // 2, (width - side) // 2
        mask[y:y + side, x:x + side] = True
        return mask
    mask_config = dataclasses.replace(config.mask, type=kind, per_sample=True)
    generator = torch.Generator().manual_seed(seed)
    return make_masks(mask_config, 1, height, width, "cpu", generator)[0, 0].numpy()


# ------------------------------------------------------------------------------------------ figure


def show_hole(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with its hole painted white, as in the paper's figures."""
    shown = image.copy()
    shown[mask] = 255
    return shown


def side_by_side(images: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """uint8 ``(H, W, 3)`` images of one height -> one row with white gaps."""
    height = images[0].shape[0]
    spacer = np.full((height, gap, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for image in images:
        parts += [image, spacer]
    return np.concatenate(parts[:-1], axis=1)


# ------------------------------------------------------------------------------------------ command


def inpaint_image(image: np.ndarray, mask: np.ndarray, inpainter: CheckpointInpainter) -> np.ndarray:
    """Inpaint one uint8 ``(H, W, 3)`` image inside bool ``(H, W)`` ``mask``; the context is returned exactly."""
    return inpainter(image[None], mask[None])[0]


def inpaint_command(args: argparse.Namespace) -> Path:
    """The ``ssl-ctx inpaint`` verb (arguments: image, mask | region, checkpoint, output, figure, seed)."""
    from ssl_ctx.engine.device import resolve_device
    from ssl_ctx.inpaint.model import load_pretext_model

    image = read_image(args.image)
    height, width = image.shape[:2]
    mask = read_mask(args.mask, height, width) if args.mask else None
    task, config = load_pretext_model(args.checkpoint, resolve_device("auto"))
    inpainter = CheckpointInpainter(task, batch_size=1)
    if mask is None:
        mask = region_mask(args.region, height, width, inpainter, config, getattr(args, "seed", 0))
    result = inpaint_image(image, mask, inpainter)
    output = write_image(args.output, result)
    message = f"inpainted {int(mask.sum())} of {height * width} pixels of {args.image} -> {output}"
    if getattr(args, "figure", None):
        figure = write_image(args.figure, side_by_side([image, show_hole(image, mask), result]))
        message += f" (figure: {figure})"
    print(message)
    return output
