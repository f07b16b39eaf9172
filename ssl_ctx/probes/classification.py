"""Classification probe: a linear classifier on frozen features of one layer, or full fine-tuning. Top-1.

Protocol (Zhang et al., Split-Brain, per-layer linear probes): the chosen feature map (``probe.layer``,
conv1 ... conv5 or pool5) is average-pooled to s x s so that it holds about ``probe.pooled_features``
(9,216) values (:func:`~ssl_ctx.probes.common.pooled_side`), flattened, standardised by a BatchNorm without
affine parameters, and fed to one linear layer. ``probe.mode=linear`` freezes the encoder (in eval mode);
``probe.mode=finetune`` trains every layer with the same head. Tiny-ImageNet: train -> val (in-domain);
CIFAR-10: train -> test (transfer).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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
    pooled_side,
    trainer_loaders,
)
from ssl_ctx.probes.metrics import top1_correct
from ssl_ctx.registry import PROBES


class PooledLinearHead(nn.Module):
    """``(B, C, H, W)`` -> adaptive average pool to ``pool`` -> flatten -> BatchNorm (no affine) -> ``(B, K)``."""

    def __init__(self, channels: int, pool: tuple[int, int], num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(pool)
        features = channels * pool[0] * pool[1]
        self.norm = nn.BatchNorm1d(features, affine=False)
        self.linear = nn.Linear(features, num_classes)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(self.pool(features).flatten(1)))


class ClassificationProbe(ProbeTask):
    """Encoder -> ``layer`` -> :class:`PooledLinearHead`. Input ``(B, 3, H, W)`` in [-1, 1] -> logits ``(B, K)``."""

    task_name = "classification"

    def __init__(self, encoder: nn.Module, layer: str, num_classes: int, input_size: tuple[int, int],
                 pooled_features: int = 9216, finetune: bool = False, encoder_name: str = "") -> None:
        super().__init__(encoder, finetune, encoder_name)
        shape = feature_shapes(encoder, input_size)[layer]
        self.layer = layer
        self.pool = pooled_side(shape.channels, shape.height, shape.width, pooled_features)
        self.feature_shape = shape
        self.head = PooledLinearHead(shape.channels, self.pool, num_classes)

    @property
    def num_features(self) -> int:
        return self.feature_shape.channels * self.pool[0] * self.pool[1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(images)[self.layer].float())

    def train_step(self, batch: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer],
                   step: int) -> dict[str, torch.Tensor]:
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        optimize(loss, optimizers["model"])
        accuracy = top1_correct(logits.detach(), batch["label"]).float() / batch["label"].numel()
        return {"loss": loss.detach(), "batch_accuracy": accuracy}

    @torch.no_grad()
    def evaluate(self, loader: Any, autocast: Any) -> dict[str, float]:
        """Top-1 accuracy over every image of ``loader``."""
        self.eval()
        correct = torch.zeros((), dtype=torch.long, device=next(self.parameters()).device)
        total = 0
        for batch in loader.batches(0):
            with autocast():
                logits = self(batch["image"])
            correct += top1_correct(logits.float(), batch["label"])
            total += batch["label"].numel()
        return {"top1": float(correct) / max(total, 1), "eval_images": float(total)}


@PROBES.register("classification")
def run_classification(config: Config, encoder: nn.Module, trainer: Any) -> dict[str, Any]:
    """Train the probe on ``data.train_split`` and measure top-1 on ``data.eval_split``."""
    finetune = check_mode(config.probe.mode)
    (layer,) = _one_layer(config.probe.layer, encoder)
    train_split, eval_split = annotated_splits(config, "labels", "classification", "tiny-imagenet-200 or cifar10")
    input_size = input_size_of(config, train_split)
    num_classes = num_classes_of(config, train_split)
    task = ClassificationProbe(encoder, layer, num_classes, input_size, config.probe.pooled_features, finetune,
                               config.model.encoder)
    train_loader, eval_loader = trainer_loaders(config, trainer, train_split, eval_split)
    metrics = trainer.fit(task, train_loader)
    metrics.update(task.evaluate(eval_loader, trainer.autocast))
    details = {
        "pooling": f"avg {task.pool[0]}x{task.pool[1]} of {layer} "
                   f"{task.feature_shape.channels}x{task.feature_shape.height}x{task.feature_shape.width} "
                   f"-> {task.num_features} features",
        "input_size": list(input_size),
        "num_classes": num_classes,
        "chance": {"top1": 1.0 / num_classes},
        "headline": ["top1"],
    }
    return {"metrics": metrics, "details": details}


def _one_layer(spec: str, encoder: nn.Module) -> list[str]:
    layers = parse_layers(spec, encoder)
    if len(layers) != 1:
        raise UserError(f"the classification probe reads one layer; probe.layer '{spec}' names {len(layers)}")
    return layers
