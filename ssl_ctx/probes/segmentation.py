"""Segmentation probe: an FCN-style head on encoder features, upsampled to the input, with mIoU / pixel accuracy.

Head (Long et al.'s FCN score layers): one 1x1 convolution per chosen map (``probe.layer``, e.g. ``conv5``
or ``conv3+conv5`` for a skip connection) to class scores; the scores are bilinearly upsampled to the
largest chosen map, summed, and bilinearly upsampled to the input size. ``probe.mode=finetune`` trains the
encoder with the head (the paper's protocol); ``linear`` keeps it frozen. Loss: per-pixel cross-entropy,
void pixels (255) ignored. Datasets: CamVid (11 classes, void ignored; train -> test) and CMP Facade label
maps (12 classes; train -> test, the fixed split). Metrics are computed on the evaluation split at the
network's input size (labels resized with nearest neighbour when the cache was made): one confusion
matrix over all pixels -> mIoU over the classes present in ground truth or prediction, and pixel accuracy
(:mod:`ssl_ctx.probes.metrics`).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_ctx.config import Config
from ssl_ctx.engine.optim import optimize
from ssl_ctx.errors import UserError
from ssl_ctx.models import feature_shapes
from ssl_ctx.probes.common import (
    annotated_splits,
    ProbeTask,
    check_mode,
    input_size_of,
    num_classes_of,
    parse_layers,
    trainer_loaders,
)
from ssl_ctx.probes.metrics import IGNORE_INDEX, confusion_matrix, majority_baseline, segmentation_scores
from ssl_ctx.registry import PROBES


class FCNHead(nn.Module):
    """Per-layer 1x1 score convolutions, summed at the finest map's resolution, upsampled to ``output_size``.

    ``features``: dict of ``(B, C_l, H_l, W_l)`` maps -> logits ``(B, K, H, W)`` at ``output_size``.
    """

    def __init__(self, channels: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.layers = list(channels)
        self.score = nn.ModuleDict({name: nn.Conv2d(c, num_classes, kernel_size=1) for name, c in channels.items()})
        for conv in self.score.values():
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: dict[str, Tensor], output_size: tuple[int, int]) -> Tensor:
        finest = max((features[name].shape[-2:] for name in self.layers), key=lambda s: s[0] * s[1])
        logits = None
        for name in self.layers:
            score = self.score[name](features[name].float())
            if tuple(score.shape[-2:]) != tuple(finest):
                score = F.interpolate(score, size=finest, mode="bilinear", align_corners=False)
            logits = score if logits is None else logits + score
        return F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)


class SegmentationProbe(ProbeTask):
    """Encoder -> :class:`FCNHead`. ``image (B, 3, H, W)`` in [-1, 1] -> logits ``(B, K, H, W)``."""

    task_name = "segmentation"

    def __init__(self, encoder: nn.Module, layers: list[str], num_classes: int, input_size: tuple[int, int],
                 finetune: bool = True, encoder_name: str = "") -> None:
        super().__init__(encoder, finetune, encoder_name)
        shapes = feature_shapes(encoder, input_size)
        self.layers = layers
        self.num_classes = num_classes
        self.feature_sizes = {name: (shapes[name].height, shapes[name].width) for name in layers}
        self.head = FCNHead({name: shapes[name].channels for name in layers}, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.encode(images), tuple(images.shape[-2:]))

    def train_step(self, batch: dict[str, Tensor], optimizers: dict[str, torch.optim.Optimizer],
                   step: int) -> dict[str, Tensor]:
        logits = self(batch["image"])
        target = batch["label_map"]
        loss = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)
        optimize(loss, optimizers["model"])
        valid = target != IGNORE_INDEX
        correct = ((logits.detach().argmax(1) == target) & valid).sum()
        return {"loss": loss.detach(), "batch_pixel_accuracy": correct.float() / valid.sum().clamp(min=1)}

    @torch.no_grad()
    def evaluate(self, loader: Any, autocast: Any) -> dict[str, Any]:
        """mIoU and pixel accuracy from one confusion matrix over every image of ``loader``."""
        self.eval()
        confusion = None
        images = 0
        for batch in loader.batches(0):
            with autocast():
                logits = self(batch["image"])
            batch_confusion = confusion_matrix(logits.argmax(1), batch["label_map"], self.num_classes)
            confusion = batch_confusion if confusion is None else confusion + batch_confusion
            images += batch["image"].shape[0]
        if confusion is None:
            raise UserError("the evaluation split is empty; raise data.eval_limit")
        scores = segmentation_scores(confusion.cpu())
        baseline = majority_baseline(confusion.cpu())
        return {"miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"],
                "class_iou": scores["class_iou"], "eval_images": float(images),
                "majority_miou": baseline["miou"], "majority_pixel_accuracy": baseline["pixel_accuracy"]}


@PROBES.register("segmentation")
def run_segmentation(config: Config, encoder: nn.Module, trainer: Any) -> dict[str, Any]:
    """Train the FCN head (and the encoder when fine-tuning) on label maps; mIoU on ``data.eval_split``."""
    finetune = check_mode(config.probe.mode)
    layers = parse_layers(config.probe.layer, encoder)
    train_split, eval_split = annotated_splits(config, "label_maps", "segmentation", "camvid or cmp-facade")
    input_size = input_size_of(config, train_split)
    num_classes = num_classes_of(config, train_split)
    task = SegmentationProbe(encoder, layers, num_classes, input_size, finetune, config.model.encoder)
    train_loader, eval_loader = trainer_loaders(config, trainer, train_split, eval_split)
    metrics = trainer.fit(task, train_loader)
    metrics.update(task.evaluate(eval_loader, trainer.autocast))
    maps = ", ".join(f"{name} {h}x{w}" for name, (h, w) in task.feature_sizes.items())
    details = {
        "pooling": f"FCN 1x1 score convs on {maps}, bilinear upsampling to {input_size[0]}x{input_size[1]}",
        "input_size": list(input_size),
        "num_classes": num_classes,
        # Chance level: the most frequent ground-truth class predicted everywhere.
        "chance": {"miou": metrics["majority_miou"], "pixel_accuracy": metrics["majority_pixel_accuracy"]},
        "headline": ["miou", "pixel_accuracy"],
    }
    return {"metrics": metrics, "details": details}
