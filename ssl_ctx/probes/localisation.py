"""Localisation probe: where is the object, and what is it? Closed-form read-outs of frozen features per layer.

For a dataset with one object box per image (Tiny-ImageNet: every training and validation image), each layer of
``probe.layer`` gets one multi-output ridge (:func:`~ssl_ctx.probes.linear_models.fit_ridge`) on the same pooled
frozen features as the classification probe (:mod:`~ssl_ctx.probes.features`, so a classification probe of the
same encoder and images has already extracted them): one-hot class targets and the box's relative corners
``(x0, y0, x1, y1)``, each block with its own penalty chosen on the held-out rows of train (the classes by
balanced accuracy, the box by mean IoU).

Scoring, on every evaluation image, as ILSVRC's classification-with-localisation task is scored but with
pycocotools' detection AP: the image yields ``GUESSES`` detections, the predicted box with each of the top
classes, scored by the class's ridge output; ``map50@<layer>`` is the mean over classes of AP at IoU 0.5 (the
VOC criterion) and ``map@<layer>`` AP averaged over IoU 0.5:0.95 (COCO), from
:func:`~ssl_ctx.probes.metrics.detection_map`. So the metric needs both the class and the box right. Without
classes: ``box_iou@<layer>``, the mean IoU of the predicted with the true box, and ``corloc@<layer>``, the
fraction of images whose box has IoU >= 0.5. The record also keeps what the training set's mean box alone scores
(the prior: Tiny-ImageNet's objects are large, so a box that knows nothing already overlaps them).

It is localisation, not detection: one object per image and its class, never a search over many objects.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ssl_ctx.errors import UserError, warn
from ssl_ctx.probes.classification import pooled_frozen_features
from ssl_ctx.probes.common import ProbeContext
from ssl_ctx.probes.linear_models import TargetBlock, balanced_accuracy_score, fit_ridge, one_hot
from ssl_ctx.probes.metrics import detection_map
from ssl_ctx.registry import PROBES

GUESSES = 5  # detections per image: the box with each of the top-5 classes (ILSVRC's five guesses)
CORLOC_IOU = 0.5  # a box is correct at IoU >= 0.5 (VOC)
SINGLE_BOX_DATASETS = "tiny-imagenet-200"


def single_boxes(split: Any) -> np.ndarray:
    """``(N, 4)`` relative xyxy: the one box of every image of ``split``; one line when an image has none or
    several (this probe localises one object per image)."""
    if split.boxes is None:
        raise UserError(f"{split.dataset}/{split.split} has no boxes; the localisation probe needs one box per "
                        f"image, as {SINGLE_BOX_DATASETS} has")
    counts = np.array([len(b) for b in split.boxes])
    if (counts != 1).any():
        bad = int(np.flatnonzero(counts != 1)[0])
        raise UserError(f"{split.dataset}/{split.split} image {bad} has {counts[bad]} boxes; the localisation "
                        f"probe needs exactly one box per image ({SINGLE_BOX_DATASETS}); for several objects per "
                        f"image use the detection probe")
    return np.concatenate(split.boxes).astype(np.float64)


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of ``a[i]`` with ``b[i]`` for ``(N, 4)`` xyxy boxes (torchvision's ``box_iou`` gives all N x N pairs)."""
    top_left = torch.maximum(a[:, :2], b[:, :2])
    bottom_right = torch.minimum(a[:, 2:], b[:, 2:])
    intersection = (bottom_right - top_left).clamp_min(0).prod(1)
    area = (a[:, 2:] - a[:, :2]).clamp_min(0).prod(1) + (b[:, 2:] - b[:, :2]).clamp_min(0).prod(1)
    return intersection / (area - intersection).clamp_min(1e-12)


def valid_boxes(corners: torch.Tensor) -> torch.Tensor:
    """Regressed relative corners -> boxes inside the image with x0 <= x1 and y0 <= y1."""
    corners = corners.clamp(0, 1)
    low = torch.minimum(corners[:, :2], corners[:, 2:])
    high = torch.maximum(corners[:, :2], corners[:, 2:])
    return torch.cat([low, high], 1)


def mean_iou_score(truth: np.ndarray):
    """The held-out score of the box block: mean IoU of the predicted boxes with ``truth`` (all rows)."""

    def score(outputs: torch.Tensor, rows: np.ndarray) -> float:
        return float(paired_iou(valid_boxes(outputs), torch.from_numpy(truth[rows])).mean())

    return score


def localisation_scores(class_scores: torch.Tensor, boxes: torch.Tensor, labels: np.ndarray,
                        truth: np.ndarray, size: tuple[int, int]) -> dict[str, float]:
    """Metrics of per-image class scores ``(N, K)`` and predicted relative boxes ``(N, 4)`` against the true
    classes ``(N,)`` and boxes ``(N, 4)``; AP is computed in pixels of an ``size`` (H, W) image."""
    num_classes = class_scores.shape[1]
    scale = torch.tensor([size[1], size[0], size[1], size[0]], dtype=torch.float64)
    top_scores, top_classes = class_scores.topk(min(GUESSES, num_classes), dim=1)
    predictions = [{"boxes": (box * scale).expand(len(classes), 4), "scores": scores, "labels": classes}
                   for box, scores, classes in zip(boxes, top_scores, top_classes)]
    truths = [{"boxes": (torch.from_numpy(box) * scale)[None], "labels": np.array([label])}
              for box, label in zip(truth, labels)]
    ap = detection_map(predictions, truths, num_classes, max_detections=GUESSES)
    iou = paired_iou(boxes, torch.from_numpy(truth))
    return {"map50": ap["map50"], "map": ap["map"], "box_iou": float(iou.mean()),
            "corloc": float((iou >= CORLOC_IOU).double().mean()),
            "top1": float((class_scores.argmax(1).numpy() == labels).mean())}


@PROBES.register("localisation", frozen_solver="ridge", trains=False)
def run_localisation(context: ProbeContext) -> dict[str, Any]:
    """Per layer: a ridge read-out of class and box from frozen pooled features of ``data.train_split``; AP,
    box IoU and CorLoc on ``data.eval_split`` (module docstring)."""
    probe = context.probe
    pooled = pooled_frozen_features(context, SINGLE_BOX_DATASETS)
    train_split, eval_split, num_classes = pooled.train_split, pooled.eval_split, pooled.num_classes
    train_boxes, eval_boxes = single_boxes(train_split), single_boxes(eval_split)
    targets = np.concatenate([one_hot(train_split.labels, num_classes), train_boxes], axis=1)
    blocks = [TargetBlock("class", slice(0, num_classes), balanced_accuracy_score(train_split.labels, num_classes)),
              TargetBlock("box", slice(num_classes, num_classes + 4), mean_iou_score(train_boxes))]

    prior = torch.from_numpy(train_boxes.mean(0)).expand(len(eval_boxes), 4)
    prior_iou = paired_iou(prior, torch.from_numpy(eval_boxes))
    prior_corloc = float((prior_iou >= CORLOC_IOU).double().mean())
    metrics: dict[str, Any] = {}
    fits: dict[str, Any] = {}
    for name in pooled.layers:
        fit = fit_ridge(pooled.train[name], targets, blocks, probe.ridge_alphas, pooled.holdout)
        for block, result in fit.items():
            if warning := result.grid_edge_warning(f"localisation probe ({block}) at {name}"):
                warn(warning)
        scores = localisation_scores(fit["class"].outputs(pooled.eval[name]),
                                     valid_boxes(fit["box"].outputs(pooled.eval[name])),
                                     eval_split.labels, eval_boxes, pooled.input_size)
        metrics.update({f"{metric}@{name}": value for metric, value in scores.items()})
        fits[name] = {"features": pooled.descriptions[name],
                      **{f"{block}_alpha": result.alpha for block, result in fit.items()},
                      "holdout_box_iou": {str(a): v for a, v in fit["box"].holdout_scores.items()}}
    metrics["eval_images"] = float(len(eval_split))
    metrics["train_images"] = float(len(train_split))
    details = {
        "protocol": f"frozen encoder, closed-form ridge per layer on avg-pooled features (~{probe.pooled_features} "
                    f"per layer) to the class and the box's corners, penalties chosen on "
                    f"{probe.holdout_fraction:.0%} of train; one box per image with its top-{GUESSES} classes, "
                    f"AP by pycocotools",
        "layers": fits,
        "features": pooled.cache,
        "input_size": list(pooled.input_size),
        "num_classes": num_classes,
        "prior_box": {"box": train_boxes.mean(0).tolist(), "box_iou": float(prior_iou.mean()), "corloc": prior_corloc},
        "chance": {f"corloc@{name}": prior_corloc for name in pooled.layers},
        "headline": [f"map50@{name}" for name in pooled.layers] + [f"corloc@{name}" for name in pooled.layers],
    }
    return {"metrics": metrics, "details": details}
