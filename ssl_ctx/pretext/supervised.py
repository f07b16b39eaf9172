"""Upper-bound baseline: the encoder trained on class labels (Tiny-ImageNet's 200 classes)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_ctx.errors import UserError
from ssl_ctx.models import last_feature_shape
from ssl_ctx.pretext.base import PretextMethod
from ssl_ctx.registry import PRETEXT_METHODS


@PRETEXT_METHODS.register("supervised")
class Supervised(PretextMethod):
    """Encoder -> flatten -> dropout -> linear classifier, cross-entropy on the labels."""

    name = "supervised"
    needs_labels = True

    def build(self) -> None:
        super().build()
        data = self.data
        if not data.num_classes:
            raise UserError("method 'supervised' needs class labels, but its training data has none; use a "
                            "labelled dataset such as tiny-imagenet-200")
        deepest = last_feature_shape(self.encoder, data.input_size)
        self.feature_name = deepest.name
        features = deepest.channels * deepest.height * deepest.width
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(features, data.num_classes))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(images)[self.feature_name])

    def losses(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(self.logits(batch["image"]), batch["label"])}

    def evaluate_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        logits = self.logits(batch["image"])
        return {"cross_entropy": F.cross_entropy(logits, batch["label"]),
                "top1": (logits.argmax(1) == batch["label"]).float().mean()}
