"""Dropped-region masks: central square, random blocks, random regions.

Every function returns a bool tensor ``(B, 1, H, W)``, ``True`` on dropped pixels (the paper's M̂ = 1),
made on ``device`` from ``generator`` so a run is reproducible from its seed. Nothing here synchronises
with the host, so masks can be made on the GPU inside the training step.
"""
from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssl_ctx.config import MaskConfig
from ssl_ctx.errors import UserError, unknown_name_error

# The released code's fill value, RGB (117, 104, 123): Caffe's BGR ImageNet mean (104, 117, 123), channels permuted.
IMAGENET_MEAN_RGB = (117.0, 104.0, 123.0)
# The released code draws noise at 0.06 cells per pixel for its 128-px crops; we keep that many cells across
# the image at every size, so masks at 64 or 227 px have the same shapes as the code's at 128 px.
_CODE_FINE_SIZE = 128
_REGION_CANDIDATES = 8


def central_square(height: int, width: int, fraction: float = 0.5, border: int = 0) -> tuple[int, int, int]:
    """``(top, left, side)`` of the centred square hole: side ``fraction`` x the short side, less ``border``
    pixels on each side (the 128-px inpainting model's overlap: its prediction covers that border of known
    context, so its hole is 64 - 2·4 = 56 px). The one place the centred hole is computed."""
    side = max(1, round(min(height, width) * fraction)) - 2 * border
    if side <= 0:
        raise UserError(f"a central hole of {fraction:g} of {min(height, width)} px less a {border}-px border "
                        f"on each side is empty; lower the border (model.overlap) or raise mask.central_fraction")
    return (height - side) // 2, (width - side) // 2, side


def central_mask(batch: int, height: int, width: int, fraction: float = 0.5, device: torch.device | str = "cpu",
                 border: int = 0) -> torch.Tensor:
    """One centred square (:func:`central_square`; 0.5 -> 1/4 of a square image) per sample."""
    top, left, side = central_square(height, width, fraction, border)
    mask = torch.zeros(batch, 1, height, width, dtype=torch.bool, device=device)
    mask[:, :, top:top + side, left:left + side] = True
    return mask


def random_block_mask(batch: int, height: int, width: int, block_fraction: float = 0.25, max_area: float = 0.25,
                      generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Several smaller, possibly overlapping squares per sample, their union at most ``max_area`` of the image.

    Squares of side ``block_fraction`` x the short side are dropped at random places; a square is kept only
    if the union stays within ``max_area``, so every sample has at least one square and at most the cap.
    """
    side = max(1, round(min(height, width) * block_fraction))
    candidates = max(2, math.ceil(2 * max_area * height * width / side**2))
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    union = torch.zeros(batch, height, width, dtype=torch.bool, device=device)
    limit = max_area * height * width
    for _ in range(candidates):
        top = torch.randint(0, height - side + 1, (batch, 1, 1), generator=generator, device=device)
        left = torch.randint(0, width - side + 1, (batch, 1, 1), generator=generator, device=device)
        square = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        grown = union | square
        fits = grown.flatten(1).sum(1).view(batch, 1, 1) <= limit
        union = torch.where(fits, grown, union)
    return union.unsqueeze(1)


def _without_autocast(device_type: str) -> AbstractContextManager:
    """Switch autocast off (it would round matrix products to bf16) where it is on for ``device_type``."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type without autocast (meta)
        enabled = False
    return torch.autocast(device_type, enabled=False) if enabled else nullcontext()


def bicubic_matrix(in_size: int, out_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(out_size, in_size)`` matrix ``U`` with ``U @ v`` = 1-D bicubic upsampling of ``v`` as ``F.interpolate``
    does it (``align_corners=False``, borders clamped). Built by interpolating the unit vectors."""
    basis = torch.eye(in_size, device=device).view(in_size, 1, in_size, 1)
    columns = F.interpolate(basis, size=(out_size, 1), mode="bicubic", align_corners=False)
    return columns.view(in_size, out_size).T


def random_region_mask(batch: int, height: int, width: int, noise_resolution: float = 0.06, density: float = 0.25,
                       min_area: float = 0.20, max_area: float = 0.30, generator: torch.Generator | None = None,
                       device: torch.device | str = "cpu") -> torch.Tensor:
    """Arbitrary shapes from thresholded, bicubically upsampled uniform noise (released code, train_random.lua).

    The code thresholds the noise at ``density`` and redraws until 20-30 % of the window is masked. To avoid a
    host-synchronising loop we draw several candidates per sample at once and keep the first whose area is in
    ``[min_area, max_area]``; a sample with no such candidate (rare) thresholds its first candidate at the
    quantile that gives the middle of the range, so every mask's area is always in range.
    """
    cells = max(2, round(noise_resolution * _CODE_FINE_SIZE))
    grid = (max(2, round(cells * height / max(height, width))), max(2, round(cells * width / max(height, width))))
    noise = torch.rand(batch * _REGION_CANDIDATES, *grid, generator=generator, device=device)
    # Bicubic upsampling is separable and linear: rows then columns as two small matrix products, the same
    # numbers as F.interpolate(mode="bicubic") at a fraction of its cost on a CPU.
    with _without_autocast(torch.device(device).type):  # float32 noise whatever the step's precision
        smooth = bicubic_matrix(grid[0], height, device) @ noise @ bicubic_matrix(grid[1], width, device).T
    smooth = smooth.view(batch, _REGION_CANDIDATES, height * width)
    candidates = smooth < density
    area = candidates.float().mean(-1)
    accepted = (area >= min_area) & (area <= max_area)
    # First accepted candidate per sample (argmax of a bool picks the first True; index 0 when none).
    first = accepted.int().argmax(1)
    chosen = candidates[torch.arange(batch, device=device), first]
    # Fallback: quantile threshold on candidate 0, for samples without an accepted candidate.
    target = (min_area + max_area) / 2
    rank = max(1, round(target * height * width))
    threshold = smooth[:, 0].kthvalue(rank, dim=-1, keepdim=True).values
    fallback = smooth[:, 0] <= threshold
    chosen = torch.where(accepted.any(1, keepdim=True), chosen, fallback)
    return chosen.view(batch, 1, height, width)


@dataclass(frozen=True)
class MaskType:
    """One kind of dropped region: its name in configs (``mask.type``, ``inpaint.masks``), its word for
    ``ssl-ctx inpaint --region`` and its title in tables (None / empty: it drops nothing)."""

    name: str
    region: str | None
    title: str


# The mask vocabulary: every name a config, the inpainting table or the inpaint command uses.
MASK_TYPES: dict[str, MaskType] = {kind.name: kind for kind in (
    MaskType("central", "center", "central"),
    MaskType("random_block", "block", "random block"),
    MaskType("random_region", "random", "random region"),
    MaskType("none", None, ""),
)}
# The kinds that drop a region, which inpainting is measured on.
HOLE_TYPES = tuple(name for name, kind in MASK_TYPES.items() if kind.region is not None)


def mask_type(name: str, allowed: tuple[str, ...] | None = None, what: str = "mask type") -> MaskType:
    """The :class:`MaskType` called ``name`` (among ``allowed``), or a UserError listing the known names."""
    known = allowed if allowed is not None else tuple(MASK_TYPES)
    if name not in known:
        raise unknown_name_error(what, name, known)
    return MASK_TYPES[name]


def make_masks(config: MaskConfig, batch: int, height: int, width: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Masks of ``config.type`` for a batch: bool ``(B, 1, H, W)`` on ``device``."""
    count = batch if config.per_sample else 1
    kind = mask_type(config.type).name
    if kind == "central":
        mask = central_mask(count, height, width, config.central_fraction, device)
    elif kind == "random_block":
        mask = random_block_mask(count, height, width, config.block_fraction, config.block_max_area, generator,
                                 device)
    elif kind == "random_region":
        mask = random_region_mask(count, height, width, config.noise_resolution, config.density,
                                  config.min_area, config.max_area, generator, device)
    else:
        mask = torch.zeros(count, 1, height, width, dtype=torch.bool, device=device)
    return mask.expand(batch, -1, -1, -1) if count != batch else mask


def fill_value(config: MaskConfig, dataset_mean_rgb: tuple[float, float, float] | None,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """The hole's fill as a ``(1, 3, 1, 1)`` tensor on the ``[-1, 1]`` scale."""
    if config.fill == "dataset_mean":
        rgb = dataset_mean_rgb if dataset_mean_rgb is not None else IMAGENET_MEAN_RGB
    elif config.fill == "imagenet_mean":
        rgb = IMAGENET_MEAN_RGB
    elif config.fill == "zero":
        rgb = (127.5, 127.5, 127.5)  # 0 on the [-1, 1] scale
    else:
        raise unknown_name_error("mask fill", config.fill, ("dataset_mean", "imagenet_mean", "zero"))
    return (torch.tensor(rgb, device=device) / 127.5 - 1).view(1, 3, 1, 1)


def apply_mask(images: torch.Tensor, mask: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Replace dropped pixels by ``fill``. images ``(B, 3, H, W)``, mask bool ``(B, 1, H, W)``, fill ``(1, 3, 1, 1)``."""
    return torch.where(mask, fill.to(images.dtype), images)
