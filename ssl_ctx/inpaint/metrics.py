"""Inpainting error metrics of the paper's inpainting table: mean L1, mean L2 and PSNR.

Exact definitions (used by ``ssl-ctx eval-inpaint`` and stated in the README):

* Pixel values are in ``[0, 1]`` (``uint8 / 255``), all three RGB channels, no colour conversion.
  Measuring on the model's ``[-1, 1]`` scale would inflate L1 by 2x and L2 by 4x (a known pitfall),
  so the functions here refuse values outside ``[0, 1]``.
* The pixels measured are those of the hole, ``Ω = {(i, j) : mask[i, j]}`` (``True`` = dropped, the
  paper's M̂ = 1), by default. The paper's table does not print the region and the released
  ``test.lua`` computes no metric at all; we measure the hole because (a) it is what the network is
  asked to produce, (b) every inpainter here copies the context unchanged, so whole-image numbers
  are the hole numbers scaled by the hole fraction and mostly measure the hole size, and (c) the
  paper's own numbers are consistent with it (L2 = 1.96 % is an RMS error of 0.14 per hole pixel,
  plausible for a blurry inpainting; over a whole image with a quarter dropped it would imply 0.28).
  ``region="image"`` measures every pixel instead, for comparison with works that do.
* Per image ``n`` with hole ``Ω_n`` (``|Ω_n|`` pixels, ``C = 3`` channels)::

      L1_n   = 1 / (C |Ω_n|) * Σ_{(i,j) ∈ Ω_n} Σ_c |x̂_n[i,j,c] − x_n[i,j,c]|
      L2_n   = 1 / (C |Ω_n|) * Σ_{(i,j) ∈ Ω_n} Σ_c (x̂_n[i,j,c] − x_n[i,j,c])²      (a mean squared error, not its root)
      PSNR_n = 10 · log10(1 / L2_n)  dB     (peak value 1), capped: min(PSNR_n, psnr_cap)

  and the table reports the means over images, ``mean_n L1_n``, ``mean_n L2_n`` and ``mean_n PSNR_n``
  (PSNR per image then averaged, as the issue asks; this is not ``10 log10(1 / mean L2)``). L1 and L2 are
  printed in percent (x 100) as in the paper.
* An image whose prediction equals the original on the measured pixels has ``L2_n = 0`` and an infinite
  PSNR; it is reported as ``psnr_cap`` (``InpaintConfig.psnr_cap``, 100 dB by default), so one perfect
  image cannot make the mean infinite. 100 dB lies far above any 8-bit error: one grey level of error on
  every pixel already gives 48.1 dB.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_PSNR_CAP = 100.0
REGIONS = ("hole", "image")


def to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 ``(..., H, W, 3)`` in 0..255 -> float64 in ``[0, 1]``."""
    if images.dtype != np.uint8:
        raise ValueError(f"to_unit expects uint8 images, got {images.dtype}")
    return images.astype(np.float64) / 255.0


def psnr_from_mse(mse: np.ndarray | float, psnr_cap: float = DEFAULT_PSNR_CAP) -> np.ndarray:
    """PSNR in dB for a peak value of 1: ``10 log10(1 / mse)``, with ``mse == 0`` (and anything above
    the cap) reported as ``psnr_cap``."""
    mse = np.asarray(mse, dtype=np.float64)
    with np.errstate(divide="ignore"):
        value = np.where(mse > 0, -10.0 * np.log10(np.where(mse > 0, mse, 1.0)), np.inf)
    return np.minimum(value, psnr_cap)


def _check_unit(name: str, array: np.ndarray) -> None:
    if array.size and (np.nanmin(array) < 0.0 or np.nanmax(array) > 1.0):
        raise ValueError(
            f"{name} must hold pixel values in [0, 1] (got min {np.nanmin(array):.3g}, max {np.nanmax(array):.3g}); "
            "convert uint8 with to_unit() and [-1, 1] model outputs with (x + 1) / 2"
        )


def per_image_metrics(
    prediction: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray | None = None,
    region: str = "hole",
    psnr_cap: float = DEFAULT_PSNR_CAP,
) -> dict[str, np.ndarray]:
    """L1, L2 (mean squared error) and PSNR of each image, as defined in the module docstring.

    Args:
        prediction, target: ``(N, H, W, C)`` or ``(H, W, C)`` floats in ``[0, 1]``.
        mask: ``(N, H, W)`` or ``(H, W)`` bool, ``True`` on hole pixels; required for ``region="hole"``.
        region: ``"hole"`` (pixels where ``mask``) or ``"image"`` (every pixel).
        psnr_cap: PSNR reported for identical images (dB).
    Returns:
        ``{"l1": (N,), "l2": (N,), "psnr": (N,)}`` float64; L1 and L2 as fractions (not percent).
    """
    prediction = np.asarray(prediction, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in shape")
    if prediction.ndim == 3:
        prediction, target = prediction[None], target[None]
        mask = None if mask is None else np.asarray(mask)[None]
    if prediction.ndim != 4:
        raise ValueError(f"expected (N, H, W, C) images, got shape {prediction.shape}")
    _check_unit("prediction", prediction)
    _check_unit("target", target)
    if region not in REGIONS:
        raise ValueError(f"unknown region '{region}'; known: {', '.join(REGIONS)}")
    n, h, w, c = prediction.shape
    if region == "image":
        weights = np.ones((n, h, w), dtype=np.float64)
    else:
        if mask is None:
            raise ValueError("region='hole' needs the mask")
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (n, h, w):
            raise ValueError(f"mask shape {mask.shape} does not match the images' (N, H, W) = {(n, h, w)}")
        weights = mask.astype(np.float64)
    count = weights.sum(axis=(1, 2)) * c
    if np.any(count == 0):
        raise ValueError("an image has an empty hole: nothing to measure")
    diff = prediction - target
    l1 = (np.abs(diff) * weights[..., None]).sum(axis=(1, 2, 3)) / count
    l2 = (diff * diff * weights[..., None]).sum(axis=(1, 2, 3)) / count
    return {"l1": l1, "l2": l2, "psnr": psnr_from_mse(l2, psnr_cap)}


@dataclass
class MetricAccumulator:
    """Collects per-image metrics over batches; ``summary()`` gives the table's means over images."""

    region: str = "hole"
    psnr_cap: float = DEFAULT_PSNR_CAP
    values: dict[str, list[np.ndarray]] = field(default_factory=lambda: {"l1": [], "l2": [], "psnr": []})

    def update(self, prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        for key, value in per_image_metrics(prediction, target, mask, self.region, self.psnr_cap).items():
            self.values[key].append(value)

    @property
    def count(self) -> int:
        return int(sum(len(v) for v in self.values["l1"]))

    def per_image(self) -> dict[str, np.ndarray]:
        return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in self.values.items()}

    def summary(self) -> dict[str, float]:
        """``{"l1_percent", "l2_percent", "psnr_db", "images"}``: means over images, L1/L2 in percent."""
        per_image = self.per_image()
        if not per_image["l1"].size:
            raise ValueError("no images were measured")
        return {
            "l1_percent": float(per_image["l1"].mean() * 100.0),
            "l2_percent": float(per_image["l2"].mean() * 100.0),
            "psnr_db": float(per_image["psnr"].mean()),
            "images": int(per_image["l1"].size),
        }
