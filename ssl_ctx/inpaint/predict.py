"""`ssl-ctx inpaint IMAGE (--mask MASK.png | --region center|block|random) --checkpoint CKPT -o OUT.png`.

* Any image size: the network's resolution is reached by resizing, not tiling
  (:mod:`ssl_ctx.inpaint.model` documents how: the whole image for full-image models, a square window around
  the hole for the 128-px centre model); the prediction is resized back and pasted **only inside the hole**.
* Pixels outside the hole are the input's pixels, bit for bit, after decoding with :func:`ssl_ctx.images.open_rgb`
  (8-bit RGB, EXIF orientation applied), the same decoding as the dataset caches a model is trained on.
* ``-o`` / ``--figure``: the suffix picks the format. A lossless one (.png, .bmp, .tif/.tiff, .ppm, and .webp,
  which is saved in WebP's lossless mode) keeps those pixels in the file; a lossy one (.jpg/.jpeg, .gif) is
  written after one warning that they will change; any other name is an error before anything is done.
* ``--mask``: a greyscale or colour image of exactly the input's size; any non-zero pixel is a hole pixel.
* ``--region``: ``center`` = the central square of half the short side (a quarter of a square image) less the
  centre model's overlap border when the checkpoint is the 128-px centre model, so the hole is exactly the one
  it was trained on; ``block`` / ``random`` = the random-block / random-region masks of ``ssl_ctx.masks``
  drawn at the image's size from ``--seed`` (full-image checkpoints only).
* ``--figure``: input | masked input (hole in white) | output, side by side.
* An existing ``-o`` / ``--figure`` file is replaced only with ``--overwrite``, and never when it is the input
  image, the mask or the checkpoint (symbolic and hard links included): the command does not destroy its inputs.
* An image smaller than the model's input is upscaled to it, after one warning line.
Problems with the user's files (unreadable image, mask of the wrong size, empty mask) are one-line UserErrors.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ssl_ctx.config import MaskConfig
from ssl_ctx.errors import UserError, first_line, unknown_name_error, warn
from ssl_ctx.files import atomic_write, require_writable
from ssl_ctx.images import read_rgb
from ssl_ctx.inpaint.model import CheckpointInpainter

# Output suffix -> Pillow's save options. Lossless: every pixel is read back as written.
LOSSLESS_FORMATS: dict[str, dict] = {".png": {}, ".bmp": {}, ".tif": {}, ".tiff": {}, ".ppm": {},
                                     ".webp": {"lossless": True}}
LOSSY_FORMATS: dict[str, dict] = {".jpg": {}, ".jpeg": {}, ".gif": {}}
READ_ERRORS = (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError)


# ---------------------------------------------------------------------------------------------- io


def _read(path: str | Path, what: str, decode: Callable[[Path], np.ndarray], fix: str) -> np.ndarray:
    """``decode(path)``, with a missing or unreadable file turned into one UserError line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} '{path}' does not exist")
    try:
        return decode(path)
    except READ_ERRORS as err:
        raise UserError(f"cannot read {what} '{path}'; {fix}", detail=first_line(err)) from None


def _mask_values(path: Path) -> np.ndarray:
    """uint8 ``(H, W)`` greyscale of a mask file, turned upright the way the image is."""
    with Image.open(path) as image:
        return np.array(ImageOps.exif_transpose(image).convert("L"))


def read_image(path: str | Path) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB of an image file, decoded as the dataset caches are (:mod:`ssl_ctx.images`)."""
    return _read(path, "image", read_rgb, "pass a PNG, JPEG or other image file")


def read_mask(path: str | Path, height: int, width: int) -> np.ndarray:
    """bool ``(H, W)``, True where the mask image is non-zero; it must be ``height x width``."""
    mask = _read(path, "mask", _mask_values, "pass a PNG whose non-zero pixels mark the hole") > 0
    if mask.shape != (height, width):
        raise UserError(f"mask '{path}' is {mask.shape[1]}x{mask.shape[0]} (WxH) but the image is {width}x{height}; "
                        f"the mask must have the image's size")
    if not mask.any():
        raise UserError(f"mask '{path}' marks no pixel (all zero); non-zero pixels mark the hole to fill")
    return mask


def check_output_name(path: str | Path, what: str = "output") -> Path:
    """``path`` when its suffix names a format :func:`write_image` writes. A lossy format gets one warning line
    (the context pixels will change in the file); an unknown suffix is one UserError line."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in LOSSY_FORMATS:
        warn(f"{what} '{path}' is written as {suffix[1:].upper()}, a lossy format: the pixels outside the hole will "
             f"change in the file; use .png to keep them exactly")
    elif suffix not in LOSSLESS_FORMATS:
        known = ", ".join([*LOSSLESS_FORMATS, *LOSSY_FORMATS])
        ending = f"suffix '{path.suffix}'" if path.suffix else "no suffix"
        example = path.with_suffix(".png") if path.name not in ("", ".", "..") else "out.png"
        raise UserError(f"{what} '{path}' has {ending}, not a known image format; use .png (lossless), "
                        f"e.g. '{example}' (known: {known})")
    return path


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write uint8 ``(H, W, 3)`` in the format named by the suffix (see :func:`check_output_name`), atomically: a
    full disk or read-only folder is one line and leaves no partial file (``ssl_ctx.files.atomic_write``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    options = {**LOSSLESS_FORMATS, **LOSSY_FORMATS}.get(suffix, {})
    image_format = Image.registered_extensions().get(suffix)
    try:
        atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format=image_format, **options),
                     needed_bytes=image.nbytes)
    except (ValueError, KeyError, OSError) as err:  # a full disk or read-only folder is already a UserError
        raise UserError(f"cannot write '{path}'; use a .png file name", detail=first_line(err)) from None
    return path


def check_target(path: str | Path, what: str, inputs: dict[str, str | None], overwrite: bool) -> Path:
    """``path`` when the command may write ``what`` there: never over one of its ``inputs`` (name -> file), and
    over another existing file only with ``overwrite``; else one UserError line."""
    path = Path(path)
    for name, source in inputs.items():
        if source is not None and _same_file(path, Path(source)):
            suggestion = path.with_name(f"{path.stem}-{'inpainted' if what == 'output' else what}{path.suffix}")
            raise UserError(f"{what} '{path}' is the {name} '{source}', which the command never writes over (even "
                            f"with --overwrite); write the {what} elsewhere, e.g. '{suggestion}'")
    if os.path.lexists(path) and not overwrite:
        raise UserError(f"{what} '{path}' already exists; pass --overwrite to replace it, or choose another name")
    return path


def _same_file(path: Path, other: Path) -> bool:
    """Whether ``path`` and ``other`` are one file (links resolved; hard links too when both exist)."""
    try:
        return os.path.samefile(path, other)
    except OSError:  # one of them does not exist (yet)
        return path.resolve() == other.resolve()


# ------------------------------------------------------------------------------------------- masks


def region_kind(region: str) -> str:
    """The mask type (``ssl_ctx.masks.MASK_TYPES``) whose ``--region`` word is ``region``."""
    from ssl_ctx.masks import MASK_TYPES

    kinds = {mask_kind.region: name for name, mask_kind in MASK_TYPES.items() if mask_kind.region}
    if region not in kinds:
        raise unknown_name_error("--region", region, tuple(kinds))
    return kinds[region]


def region_mask(region: str, height: int, width: int, inpainter: CheckpointInpainter, mask: MaskConfig,
                seed: int = 0) -> np.ndarray:
    """bool ``(H, W)`` for ``--region center|block|random`` (see the module docstring); ``mask``: the checkpoint's
    mask settings, which shape the random blocks and regions."""
    from ssl_ctx.masks import central_mask, make_masks

    kind = region_kind(region)
    if not inpainter.supports(kind):
        raise UserError(f"--region {region}: this checkpoint is the 128-px centre model, which fills only a "
                        f"central hole; use --region center, a --mask, or a context_encoder checkpoint")
    if kind == "central" and inpainter.central:
        # The centre model's own hole, scaled to the short side of the image.
        _, _, side = inpainter.hole_box
        return central_mask(1, height, width, side / inpainter.size)[0, 0].numpy()
    mask_config = dataclasses.replace(mask, type=kind, per_sample=True)
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

    figure_path = getattr(args, "figure", None)
    inputs = {"input image": args.image, "mask": args.mask, "checkpoint": args.checkpoint}
    overwrite = getattr(args, "overwrite", False)
    check_target(check_output_name(args.output, "output"), "output", inputs, overwrite)
    if args.region:
        region_kind(args.region)
    if figure_path:
        if _same_file(Path(figure_path), Path(args.output)):
            raise UserError(f"--figure '{figure_path}' is also the -o output; give the figure a name of its own")
        check_target(check_output_name(figure_path, "figure"), "figure", inputs, overwrite)
    for target in (args.output, figure_path):
        if target:
            require_writable(Path(target).parent)
    image = read_image(args.image)
    height, width = image.shape[:2]
    mask = read_mask(args.mask, height, width) if args.mask else None
    task, config = load_pretext_model(args.checkpoint, resolve_device("auto"))
    inpainter = CheckpointInpainter(task, batch_size=1)
    if height < inpainter.size or width < inpainter.size:
        side = f"{inpainter.size}x{inpainter.size}"
        warn(f"image '{args.image}' is {width}x{height}, smaller than the model's {side} input: it is upscaled from "
             f"{width}x{height} to {side}, so the fill holds no more detail than the image")
    if mask is None:
        mask = region_mask(args.region, height, width, inpainter, config.mask, getattr(args, "seed", 0))
    result = inpaint_image(image, mask, inpainter)
    output = write_image(args.output, result)
    message = f"inpainted {int(mask.sum())} of {height * width} pixels of {args.image} -> {output}"
    if getattr(args, "figure", None):
        figure = write_image(args.figure, side_by_side([image, show_hole(image, mask), result]))
        message += f" (figure: {figure})"
    print(message)
    return output
