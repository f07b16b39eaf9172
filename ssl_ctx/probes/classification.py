"""Classification probe: linear read-outs of frozen features per layer, or full fine-tuning. Top-1.

Protocol (Zhang et al., Split-Brain, per-layer linear probes): each chosen feature map (``probe.layer``,
``conv1+conv2+...`` for several) is average-pooled to s x s so that it holds about ``probe.pooled_features``
values (:func:`~ssl_ctx.probes.common.pooled_side`) and flattened.

- ``probe.mode=linear`` with ``probe.solver=ridge`` (the default for a frozen encoder): the pooled features of
  every training and evaluation image are extracted once (:mod:`~ssl_ctx.probes.features`, cached and reused),
  then one closed-form ridge classifier per layer is fitted to its optimum, its penalty chosen on a held-out
  part of train (:func:`~ssl_ctx.probes.linear_models.fit_ridge_classifier`). Metrics ``top1@<layer>``.
- ``probe.solver=sgd``: one layer, standardised by a BatchNorm without affine parameters and fed to one linear
  layer trained by the shared Trainer for ``train.epochs``; ``probe.mode=finetune`` trains every layer with
  the same head. Metric ``top1``.

Tiny-ImageNet: train -> val (in-domain); CIFAR-10: train -> test (transfer).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssl_ctx.engine.optim import optimize
from ssl_ctx.errors import UserError, warn
from ssl_ctx.models import feature_shapes
from ssl_ctx.probes.common import ProbeContext, ProbeTask, parse_layers, pooled_side
from ssl_ctx.probes.features import FeatureSpec
from ssl_ctx.probes.linear_models import fit_ridge_classifier, stratified_holdout
from ssl_ctx.probes.metrics import top1_correct
from ssl_ctx.registry import PROBES

LABELLED_DATASETS = "tiny-imagenet-200 or cifar10"  # named when a dataset without class labels is given


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

    name = "classification"

    def __init__(self, encoder: nn.Module, layer: str, num_classes: int, input_size: tuple[int, int],
                 pooled_features: int = 9216, finetune: bool = False) -> None:
        super().__init__(encoder, finetune)
        shape = feature_shapes(encoder, input_size)[layer]
        self.layer = layer
        self.pool = pooled_side(shape.channels, shape.height, shape.width, pooled_features)
        self.feature_shape = shape
        self.head = PooledLinearHead(shape.channels, self.pool, num_classes)

    @property
    def num_features(self) -> int:
        return self.feature_shape.channels * self.pool[0] * self.pool[1]

    def pooling_description(self) -> str:
        """``avg 3x3 of conv5 128x6x6 -> 1152 features``: what the record says the head reads."""
        shape = self.feature_shape
        return (f"avg {self.pool[0]}x{self.pool[1]} of {self.layer} {shape.channels}x{shape.height}x{shape.width} "
                f"-> {self.num_features} features")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(images)[self.layer].float())

    def train_step(self, batch: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer],
                   step: int) -> dict[str, torch.Tensor]:
        logits = self.trained_call("model", self, batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        optimize(loss, optimizers["model"])
        accuracy = top1_correct(logits.detach(), batch["label"]).float() / batch["label"].numel()
        return {"loss": loss.detach(), "batch_accuracy": accuracy}

    def evaluation_step(self, batch: dict[str, torch.Tensor], number: int) -> dict[str, Any]:
        return {"correct": top1_correct(self(batch["image"]).float(), batch["label"]),
                "images": batch["label"].numel()}

    def evaluation_summary(self, totals: dict[str, Any], batches: int) -> dict[str, float]:
        """Top-1 accuracy over every image evaluated."""
        images = totals.get("images", 0)
        return {"top1": float(totals.get("correct", 0)) / max(images, 1), "eval_images": float(images)}


@PROBES.register("classification", frozen_solver="ridge")
def run_classification(context: ProbeContext) -> dict[str, Any]:
    """Fit the probe on ``data.train_split`` and measure top-1 on ``data.eval_split``."""
    probe = context.probe
    if context.solver == "ridge":
        protocol = (f"frozen encoder, closed-form ridge per layer on avg-pooled features (~{probe.pooled_features}"
                    f" per layer), penalty chosen on {probe.holdout_fraction:.0%} of train")
        return per_layer_classifier_probe(context, ridge_classifier(probe.ridge_alphas), protocol)
    metrics, details, _ = train_pooled_head(context, ClassificationProbe, "labels", LABELLED_DATASETS)
    details.update(chance={"top1": 1.0 / details["num_classes"]}, headline=["top1"])
    return {"metrics": metrics, "details": details}


def train_pooled_head(context: ProbeContext, probe_class: type[ClassificationProbe], annotation: str,
                      examples: str) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Train ``probe_class`` (a pooled linear head on one layer, the encoder frozen or fine-tuned) on
    ``data.train_split`` and evaluate it on every image of ``data.eval_split``: (metrics, what the record keeps,
    the eval split). ``annotation``: what both splits must have (``labels``, ``label_sets``)."""
    train_split, eval_split = context.splits(annotation, examples)
    input_size = context.input_size(train_split)
    num_classes = context.num_classes(train_split)
    layer = one_layer(context.probe.layer, context.encoder, probe_class.name)
    task = probe_class(context.encoder, layer, num_classes, input_size, context.probe.pooled_features,
                       context.finetune)
    train_loader, eval_loader = context.loaders(train_split, eval_split)
    metrics = context.trainer.fit(task, train_loader)
    metrics.update(task.evaluate(eval_loader, context.trainer.autocast))
    details = {"pooling": task.pooling_description(), "input_size": list(input_size), "num_classes": num_classes}
    return metrics, details, eval_split


# A classifier of one layer's frozen features: (layer, train features (N, D), train labels (N,), eval features (M, D),
# classes, held-out rows of train (N,) bool) -> (eval predictions (M,), what the record keeps of the fit).
LayerClassifier = Callable[[str, np.ndarray, np.ndarray, np.ndarray, int, np.ndarray], tuple[np.ndarray, dict]]


def ridge_classifier(alphas: list[float]) -> LayerClassifier:
    """Closed-form ridge (:func:`~ssl_ctx.probes.linear_models.fit_ridge_classifier`), its penalty among
    ``alphas`` chosen on the held-out rows."""

    def classify(layer: str, train: np.ndarray, labels: np.ndarray, evaluation: np.ndarray, num_classes: int,
                 holdout: np.ndarray) -> tuple[np.ndarray, dict]:
        fit = fit_ridge_classifier(train, labels, num_classes, alphas, holdout)
        if warning := fit.grid_edge_warning(f"classification probe at {layer}"):
            warn(warning)
        return fit.predict(evaluation), {"alpha": fit.alpha,
                                         "holdout_top1": {str(a): v for a, v in fit.holdout_accuracy.items()}}

    return classify


@dataclass
class PooledFeatures:
    """Every layer's pooled frozen features of a labelled train and eval split, what the per-layer read-outs fit."""

    train_split: Any
    eval_split: Any
    input_size: tuple[int, int]
    num_classes: int
    layers: list[str]
    descriptions: dict[str, str]  # layer -> "avg 3x3 of 128x6x6 -> 1152"
    train: dict[str, np.ndarray]  # layer -> (N, D)
    eval: dict[str, np.ndarray]  # layer -> (M, D)
    cache: dict[str, Any]  # what the record keeps about the feature cache
    holdout: np.ndarray | None  # (N,) bool: the held-out training rows that choose the penalties (class labels)


def pooled_frozen_features(context: ProbeContext, examples: str = LABELLED_DATASETS,
                           annotation: str = "labels") -> PooledFeatures:
    """The cached pooled features of ``probe.layer`` (each map average-pooled to about ``probe.pooled_features``
    values) for ``data.train_split`` and ``data.eval_split``; every probe reading them with the same layers, pooling
    and images shares one cache (:mod:`~ssl_ctx.probes.features`). ``annotation``: what the splits must have
    (``labels``, or ``label_sets`` for multi-label classes); a class-stratified holdout is drawn for labels."""
    probe = context.probe
    train_split, eval_split = context.splits(annotation, examples)
    input_size = context.input_size(train_split)
    layers = context.layers()
    shapes = feature_shapes(context.encoder, input_size)
    pools = [pooled_side(shapes[name].channels, shapes[name].height, shapes[name].width, probe.pooled_features)
             for name in layers]
    spec = FeatureSpec(tuple(layers), tuple(pools), tuple(input_size))
    (train_features, eval_features), cache = context.frozen_features(spec, train_split, eval_split)
    descriptions = {name: f"avg {pool[0]}x{pool[1]} of {shapes[name].channels}x{shapes[name].height}x"
                          f"{shapes[name].width} -> {train_features[name].shape[1]}"
                    for name, pool in zip(layers, pools)}
    return PooledFeatures(train_split, eval_split, tuple(input_size), context.num_classes(train_split), layers,
                          descriptions, train_features, eval_features, cache,
                          stratified_holdout(train_split.labels, probe.holdout_fraction, probe.holdout_seed)
                          if annotation == "labels" else None)


def per_layer_classifier_probe(context: ProbeContext, classify: LayerClassifier, protocol: str) -> dict[str, Any]:
    """One classifier per layer of ``probe.layer`` on cached pooled frozen features (:func:`pooled_frozen_features`);
    ``top1@<layer>`` on the eval split. ``protocol``: the sentence the tables print for the probe. A frozen-feature
    classification probe (ridge here, k-NN in a plug-in) is this with its ``classify``."""
    pooled = pooled_frozen_features(context)
    labels = pooled.eval_split.labels
    scores: dict[str, float] = {}
    fits: dict[str, Any] = {}
    for name in pooled.layers:
        predicted, fit = classify(name, pooled.train[name], pooled.train_split.labels, pooled.eval[name],
                                  pooled.num_classes, pooled.holdout)
        scores[name] = float((predicted == labels).mean())
        fits[name] = {"features": pooled.descriptions[name], **fit}
    return per_layer_outcome(pooled, "top1", scores, fits, 1.0 / pooled.num_classes, protocol)


def per_layer_outcome(pooled: PooledFeatures, metric: str, scores: dict[str, float], fits: dict[str, Any],
                      chance: float, protocol: str) -> dict[str, Any]:
    """A per-layer read-out's result: ``<metric>@<layer>`` for every layer of ``pooled``, the image counts, and what
    the record keeps (``fits``: per layer, what its read-out was fitted with)."""
    metrics: dict[str, Any] = {f"{metric}@{name}": scores[name] for name in pooled.layers}
    metrics["eval_images"] = float(len(pooled.eval_split))
    metrics["train_images"] = float(len(pooled.train_split))
    details = {
        "protocol": protocol,
        "layers": fits,
        "features": pooled.cache,
        "input_size": list(pooled.input_size),
        "num_classes": pooled.num_classes,
        "chance": {f"{metric}@{name}": chance for name in pooled.layers},
        "headline": [f"{metric}@{name}" for name in pooled.layers],
    }
    return {"metrics": metrics, "details": details}


def one_layer(spec: str, encoder: nn.Module, probe_name: str) -> str:
    """The one layer an SGD-trained head reads; several are one line pointing at the per-layer frozen solver."""
    layers = parse_layers(spec, encoder)
    if len(layers) != 1:
        raise UserError(f"the {probe_name} probe with probe.solver=sgd reads one layer; probe.layer '{spec}' "
                        f"names {len(layers)}: use probe.mode=linear probe.solver=auto for one probe per layer")
    return layers[0]
