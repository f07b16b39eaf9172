"""Reconstruction losses of the pretext methods, on the [-1, 1] pixel scale the networks work in."""
from __future__ import annotations

import torch
import torch.nn.functional as F


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


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Standard GAN BCE for the discriminator: real -> 1, fake -> 0. Logits ``(B,)``."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """L_adv for the generator: make the discriminator call the fake real. Logits ``(B,)``."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
