"""Reconstruction losses of the pretext methods, on the [-1, 1] pixel scale the networks work in."""
from __future__ import annotations

import torch


def masked_l2(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalised masked L2 (the paper's L_rec): mean squared error over the dropped pixels only.

    Args:
        prediction: ``(B, C, H, W)`` the network's output.
        target: ``(B, C, H, W)`` the original image.
        mask: bool ``(B, 1, H, W)``, ``True`` on dropped pixels (M̂ = 1).

    Returns:
        scalar: ``sum(M̂ ⊙ (x - F(x))²) / (C · sum(M̂))``, so the value does not depend on the hole's size.
        Pixels outside the hole contribute nothing, in value or in gradient.
    """
    weight = mask.to(prediction.dtype)
    squared = (prediction.float() - target.float()).pow(2) * weight
    dropped = weight.sum() * prediction.shape[1]
    return squared.sum() / dropped.clamp_min(1.0)
