"""Rotation prediction (Gidaris et al., ICLR 2018) as an ssl_ctx pretext method, living outside the core package.

Each image is rotated by 0, 90, 180 or 270 degrees and the encoder, with a small head, predicts which.
Install this folder (``pip install -e plugins/rotation_pretext``) and ``ssl-ctx list`` shows ``rotation``;
benchmark it with ``method.name: rotation`` like any built-in method.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_ctx.models import last_feature_shape
from ssl_ctx.pretext import PretextMethod
from ssl_ctx.registry import PRETEXT_METHODS

ROTATIONS = 4


@PRETEXT_METHODS.register("rotation")
class RotationPrediction(PretextMethod):
    """Encoder -> global average pool -> linear head over the four rotations. Images must be square."""

    name = "rotation"

    def build(self) -> None:
        super().build()  # self.encoder, from model.*
        deepest = last_feature_shape(self.encoder, self.data.input_size)
        self.feature_name = deepest.name
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(deepest.channels, ROTATIONS))

    def rotate(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(rotated images, rotation index): one random multiple of 90 degrees per sample, no host sync."""
        turns = torch.randint(0, ROTATIONS, (images.shape[0],), generator=generator, device=images.device)
        every = torch.stack([torch.rot90(images, k, dims=(2, 3)) for k in range(ROTATIONS)], dim=1)
        return every[torch.arange(images.shape[0], device=images.device), turns], turns

    def losses(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        rotated, turns = self.rotate(batch["image"], generator)
        logits = self.head(self.encoder(rotated)[self.feature_name])
        return {"loss": F.cross_entropy(logits, turns),
                "accuracy": (logits.argmax(1) == turns).float().mean()}
