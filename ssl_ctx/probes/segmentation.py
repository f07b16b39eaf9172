"""Segmentation probe: per-pixel linear read-outs of frozen features, or an FCN head fine-tuned with the encoder.

Head (Long et al.'s FCN score layers): one 1x1 convolution per chosen map (``probe.layer``, e.g. ``conv5``
or ``conv3+conv5`` for a skip connection) to class scores; the scores are bilinearly upsampled to the
largest chosen map, summed, and bilinearly upsampled to the input size. A 1x1 convolution followed by
bilinear upsampling equals the same linear map applied to the upsampled features, so this is a per-pixel
linear classifier on upsampled (hyper-column) features.

- ``probe.mode=linear`` with ``probe.solver=ridge`` (the default for a frozen encoder): the maps of every
  image are extracted once (:mod:`~ssl_ctx.probes.features`, cached), ``probe.pixels_per_image`` labelled
  pixels per training image (a fixed sample) get their bilinearly upsampled features, and a closed-form ridge
  classifier is fitted on them (:func:`~ssl_ctx.probes.linear_models.fit_ridge_classifier`, penalty chosen on
  the pixels of held-out training images); it is then applied to every pixel of the evaluation images as the
  head above.
- ``probe.solver=sgd``: the head is trained by the shared Trainer with per-pixel cross-entropy, void pixels
  (255) ignored; ``probe.mode=finetune`` trains the encoder with it (the paper's protocol).

Datasets: CamVid (11 classes, void ignored; train -> test) and CMP Facade label maps (12 classes; train ->
test, the fixed split). Metrics are computed on the evaluation split at the network's input size (labels
resized with nearest neighbour when the cache was made): one confusion matrix over all pixels -> mIoU over the
classes present in ground truth or prediction, and pixel accuracy (:mod:`ssl_ctx.probes.metrics`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_ctx.engine.optim import optimize
from ssl_ctx.errors import UserError, warn
from ssl_ctx.models import feature_shapes
from ssl_ctx.probes.common import ProbeContext, ProbeTask
from ssl_ctx.probes.features import FeatureSpec
from ssl_ctx.probes.linear_models import fit_ridge_classifier, group_holdout
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

    name = "segmentation"

    def __init__(self, encoder: nn.Module, layers: list[str], num_classes: int, input_size: tuple[int, int],
                 finetune: bool = True) -> None:
        super().__init__(encoder, finetune)
        shapes = feature_shapes(encoder, input_size)
        self.layers = layers
        self.num_classes = num_classes
        self.feature_sizes = {name: (shapes[name].height, shapes[name].width) for name in layers}
        self.head = FCNHead({name: shapes[name].channels for name in layers}, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.encode(images), tuple(images.shape[-2:]))

    def train_step(self, batch: dict[str, Tensor], optimizers: dict[str, torch.optim.Optimizer],
                   step: int) -> dict[str, Tensor]:
        logits = self.trained_call("model", self, batch["image"])
        target = batch["label_map"]
        loss = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)
        optimize(loss, optimizers["model"])
        valid = target != IGNORE_INDEX
        correct = ((logits.detach().argmax(1) == target) & valid).sum()
        return {"loss": loss.detach(), "batch_pixel_accuracy": correct.float() / valid.sum().clamp(min=1)}

    def evaluation_step(self, batch: dict[str, Tensor], number: int) -> dict[str, Any]:
        return {"confusion": confusion_matrix(self(batch["image"]).argmax(1), batch["label_map"], self.num_classes),
                "images": batch["image"].shape[0]}

    def evaluation_summary(self, totals: dict[str, Any], batches: int) -> dict[str, Any]:
        """mIoU and pixel accuracy from one confusion matrix over every image evaluated."""
        if "confusion" not in totals:
            raise UserError("the evaluation split is empty; raise data.eval_limit")
        confusion = totals["confusion"].cpu()
        scores, baseline = segmentation_scores(confusion), majority_baseline(confusion)
        return {"miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"],
                "class_iou": scores["class_iou"], "eval_images": float(totals["images"]),
                "majority_miou": baseline["miou"], "majority_pixel_accuracy": baseline["pixel_accuracy"]}


@PROBES.register("segmentation", frozen_solver="ridge")
def run_segmentation(context: ProbeContext) -> dict[str, Any]:
    """Fit the FCN head (and the encoder when fine-tuning) on label maps; mIoU on ``data.eval_split``."""
    layers = context.layers()
    train_split, eval_split = context.splits("label_maps", "camvid or cmp-facade")
    input_size = context.input_size(train_split)
    num_classes = context.num_classes(train_split)
    if context.solver == "ridge":
        return _ridge_probe(context, layers, train_split, eval_split, input_size, num_classes)
    task = SegmentationProbe(context.encoder, layers, num_classes, input_size, context.finetune)
    train_loader, eval_loader = context.loaders(train_split, eval_split)
    metrics = context.trainer.fit(task, train_loader)
    metrics.update(task.evaluate(eval_loader, context.trainer.autocast))
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


def _upsampled_at(maps: dict[str, Tensor], rows: Tensor, cols: Tensor, size: tuple[int, int]) -> Tensor:
    """Features of ``maps`` (each ``(B, C_l, h_l, w_l)``) bilinearly upsampled to ``size`` and read at the pixels
    ``(rows, cols)`` (each ``(B, P)``), exactly as ``F.interpolate(align_corners=False)`` would give them:
    ``(B, P, sum C_l)``."""
    height, width = size
    grid = torch.stack([(cols.float() + 0.5) / width * 2 - 1, (rows.float() + 0.5) / height * 2 - 1], dim=-1)
    sampled = [F.grid_sample(m.float(), grid[:, None], mode="bilinear", padding_mode="border",
                             align_corners=False)[:, :, 0] for m in maps.values()]
    return torch.cat(sampled, dim=1).transpose(1, 2)


def sample_pixels(label_maps: np.ndarray, per_image: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(rows, cols) ``(N, P)`` of ``per_image`` labelled pixels per map (with replacement only where an image
    has fewer), from a fixed seed: every encoder is fitted on the same pixels."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for label_map in label_maps:
        labelled = np.flatnonzero(np.asarray(label_map).reshape(-1) != IGNORE_INDEX)
        if len(labelled) == 0:
            labelled = np.arange(label_map.size)
        chosen = rng.choice(labelled, size=per_image, replace=len(labelled) < per_image)
        rows.append(chosen // label_map.shape[1])
        cols.append(chosen % label_map.shape[1])
    return torch.from_numpy(np.stack(rows)), torch.from_numpy(np.stack(cols))


def _ridge_probe(context: ProbeContext, layers: list[str], train_split: Any, eval_split: Any,
                 input_size: tuple[int, int], num_classes: int) -> dict[str, Any]:
    """A per-pixel ridge classifier on upsampled frozen features, fitted on sampled training pixels; mIoU on
    every pixel of the eval split."""
    probe = context.probe
    spec = FeatureSpec(tuple(layers), tuple(None for _ in layers), tuple(input_size))
    (train_maps, eval_maps), cache = context.frozen_features(spec, train_split, eval_split)
    train_labels = np.concatenate([labels_at(train_split, part, input_size).numpy().astype(np.uint8)
                                   for part in _slices(len(train_split))])
    rows, cols = sample_pixels(train_labels, probe.pixels_per_image)
    inputs, targets = [], []
    for part in _slices(len(train_split)):
        maps = {name: torch.from_numpy(np.array(train_maps[name][part])) for name in layers}
        inputs.append(_upsampled_at(maps, rows[part], cols[part], input_size).flatten(0, 1))
        labels = torch.from_numpy(train_labels[part]).long()
        targets.append(labels[torch.arange(len(labels))[:, None], rows[part], cols[part]].reshape(-1))
    features, labels = torch.cat(inputs).numpy(), torch.cat(targets).numpy()
    image_of_pixel = np.repeat(np.arange(len(train_split)), probe.pixels_per_image)
    labelled = labels != IGNORE_INDEX
    fit = fit_ridge_classifier(features[labelled], labels[labelled], num_classes, probe.ridge_alphas,
                               group_holdout(image_of_pixel[labelled], probe.holdout_fraction, probe.holdout_seed))
    if warning := fit.grid_edge_warning("segmentation probe"):
        warn(warning)

    # Per layer: a 1x1 convolution with its rows of the classifier (standardisation folded in), then bilinear
    # upsampling, summed: the same linear map as on the upsampled features, at the maps' own resolution.
    weight = (fit.weight / fit.scale.double()[:, None]).float()  # (D, K)
    bias = (fit.bias - (fit.mean.double() / fit.scale.double()) @ fit.weight).float()
    per_layer = torch.split(weight, [int(train_maps[name].shape[1]) for name in layers])
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for part in _slices(len(eval_split)):
        logits = bias.view(1, -1, 1, 1)
        for name, layer_weight in zip(layers, per_layer):
            maps = torch.from_numpy(np.array(eval_maps[name][part])).float()
            scores = torch.einsum("dk,bdhw->bkhw", layer_weight, maps)
            logits = logits + F.interpolate(scores, size=input_size, mode="bilinear", align_corners=False)
        confusion += confusion_matrix(logits.argmax(1), labels_at(eval_split, part, input_size), num_classes)
    scores, baseline = segmentation_scores(confusion), majority_baseline(confusion)
    metrics = {"miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"], "class_iou": scores["class_iou"],
               "eval_images": float(len(eval_split)), "fit_pixels": float(labelled.sum())}
    details = {
        "protocol": f"frozen encoder, closed-form per-pixel ridge on bilinearly upsampled {'+'.join(layers)} "
                    f"features ({probe.pixels_per_image} labelled pixels per training image), penalty chosen on "
                    f"the pixels of {probe.holdout_fraction:.0%} of the training images",
        "ridge": {"alpha": fit.alpha, "holdout_balanced_accuracy": {str(a): v for a, v in fit.holdout_accuracy.items()}},
        "features": cache,
        "input_size": list(input_size),
        "num_classes": num_classes,
        "chance": {"miou": baseline["miou"], "pixel_accuracy": baseline["pixel_accuracy"]},
        "headline": ["miou", "pixel_accuracy"],
    }
    return {"metrics": metrics, "details": details}


def labels_at(split: Any, part: slice, size: tuple[int, int]) -> Tensor:
    """The label maps of images ``part`` at the network's input ``size`` (nearest neighbour, as the loader
    resizes them), long ``(B, H, W)``: the pixels the features are read at when the cache is larger."""
    labels = torch.from_numpy(np.array(split.label_maps[part])).long()
    if tuple(labels.shape[-2:]) != tuple(size):
        labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
    return labels


def _slices(count: int, size: int = 32) -> list[slice]:
    return [slice(start, start + size) for start in range(0, count, size)]
