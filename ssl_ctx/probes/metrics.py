"""Probe metrics: top-1 accuracy, confusion matrix -> mIoU / pixel accuracy, detection mAP (pycocotools).

Conventions
- Confusion matrix: rows are ground truth, columns prediction; pixels labelled ``ignore_index`` (255) are
  left out. mIoU is the mean IoU over the classes present in the ground truth *or* the prediction of the
  evaluated set (a class absent from both has no defined IoU and is skipped, as in FCN's ``score.py``);
  pixel accuracy is correct pixels / labelled pixels.
- Detection: COCO-style mAP@[.5:.95] and AP at IoU 0.5 come from one ``pycocotools.cocoeval.COCOeval`` run
  (``evaluate`` + ``accumulate``; its precision array averaged as ``summarize`` does: 101-point interpolated
  precision, the 100 best detections per image unless raised, all object sizes). The "VOC mAP@0.5"
  reported by the probes is that AP at IoU 0.5 averaged over the classes that have ground truth: the VOC
  criterion (IoU >= 0.5, one match per ground-truth box) with COCO's 101-point interpolation rather than
  VOC 2007's 11 points. Classes without ground-truth boxes are left out of the mean.
"""
from __future__ import annotations

import collections
import contextlib
import io
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

IGNORE_INDEX = 255


# ----------------------------------------------------------------------------------- classification


def top1_correct(logits: Tensor, labels: Tensor) -> Tensor:
    """Number of samples whose arg-max class is the label. logits ``(B, K)``, labels ``(B,)`` -> long scalar."""
    return (logits.argmax(dim=1) == labels).sum()


# ------------------------------------------------------------------------------------- segmentation


def confusion_matrix(prediction: Tensor, target: Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Pixel counts ``(num_classes, num_classes)`` int64, rows = ground truth, columns = prediction.

    prediction, target: integer tensors of one shape (e.g. ``(B, H, W)``); target pixels equal to
    ``ignore_index`` (or outside ``[0, num_classes)``) are not counted.
    """
    target = target.reshape(-1).long()
    prediction = prediction.reshape(-1).long()
    valid = (target != ignore_index) & (target >= 0) & (target < num_classes)
    flat = target[valid] * num_classes + prediction[valid]
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def segmentation_scores(confusion: Tensor) -> dict[str, float | list[float]]:
    """mIoU, pixel accuracy and per-class IoU (NaN for a class absent from ground truth and prediction)."""
    confusion = confusion.double()
    true_positive = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    present = union > 0
    iou = torch.where(present, true_positive / union.clamp(min=1), torch.full_like(union, float("nan")))
    total = confusion.sum()
    return {
        "miou": float(iou[present].mean()) if bool(present.any()) else 0.0,
        "pixel_accuracy": float(true_positive.sum() / total) if total > 0 else 0.0,
        "class_iou": [float(v) for v in iou],
    }


def majority_baseline(confusion: Tensor) -> dict[str, float]:
    """Scores of predicting the most frequent ground-truth class everywhere (a chance level for the table)."""
    counts = confusion.sum(1).double()
    total = counts.sum()
    if total == 0:
        return {"miou": 0.0, "pixel_accuracy": 0.0}
    accuracy = float(counts.max() / total)
    # The one predicted class has IoU = its share of pixels; every other class present in GT has IoU 0.
    present = int((counts > 0).sum())
    return {"miou": accuracy / present, "pixel_accuracy": accuracy}


# ---------------------------------------------------------------------------------------- detection


def _xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _class_precision(evaluator, category: int, image_ids: set[int]) -> np.ndarray:
    """COCOeval's precision ``(IoU thresholds, recall points)`` of one category, evaluated on the images that hold
    its ground truth or its detections only. COCOeval scores every category on its own and skips the images
    without either, so this is exactly its full evaluation's slice; looping over every image for every category
    instead costs seconds per thousand images with a few hundred classes (Tiny-ImageNet's 200)."""
    params = evaluator.params
    if not image_ids:
        return np.full((len(params.iouThrs), len(params.recThrs)), -1.0)
    params.catIds, params.imgIds = [category], sorted(image_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    return evaluator.eval["precision"][:, :, 0, 0, -1]


def detection_map(
    predictions: Sequence[dict[str, np.ndarray | Tensor]],
    ground_truths: Sequence[dict[str, np.ndarray | Tensor]],
    num_classes: int,
    max_detections: int = 100,
) -> dict[str, float | list[float]]:
    """COCO-style box mAP with pycocotools.

    predictions[i]: ``boxes (n, 4)`` xyxy in pixels, ``scores (n,)``, ``labels (n,)`` 0-based;
    ground_truths[i]: ``boxes (k, 4)`` xyxy in pixels, ``labels (k,)`` 0-based; one entry per image, same order.
    ``max_detections``: the highest-scoring detections per image that count (COCO's 100 by default).
    Returns ``map`` (mAP@[.5:.95]), ``map50`` (AP at IoU 0.5, the VOC criterion), ``map75``, and
    ``class_ap50`` (NaN for classes without ground truth).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def arrays(entry: dict, *keys: str) -> list[np.ndarray]:
        return [entry[k].detach().cpu().numpy() if isinstance(entry[k], Tensor) else np.asarray(entry[k])
                for k in keys]

    images, annotations, detections = [], [], []
    images_of: dict[int, set[int]] = collections.defaultdict(set)  # category -> the images holding it
    for image_id, (prediction, truth) in enumerate(zip(predictions, ground_truths, strict=True), start=1):
        images.append({"id": image_id})
        boxes, labels = arrays(truth, "boxes", "labels")
        for box, label in zip(_xyxy_to_xywh(boxes), labels.reshape(-1)):
            images_of[int(label) + 1].add(image_id)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label) + 1,
                                "bbox": [float(v) for v in box], "area": float(box[2] * box[3]), "iscrowd": 0})
        boxes, scores, labels = arrays(prediction, "boxes", "scores", "labels")
        for box, score, label in zip(_xyxy_to_xywh(boxes), scores.reshape(-1), labels.reshape(-1)):
            images_of[int(label) + 1].add(image_id)
            detections.append({"image_id": image_id, "category_id": int(label) + 1,
                               "bbox": [float(v) for v in box], "score": float(score)})
    nan_classes = [float("nan")] * num_classes
    if not annotations:
        return {"map": 0.0, "map50": 0.0, "map75": 0.0, "class_ap50": nan_classes}
    if not detections:  # COCO.loadRes cannot take an empty list; no detection means AP 0 for every class
        present = {a["category_id"] - 1 for a in annotations}
        return {"map": 0.0, "map50": 0.0, "map75": 0.0,
                "class_ap50": [0.0 if c in present else float("nan") for c in range(num_classes)]}

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and its summary table
        truth_api = COCO()
        truth_api.dataset = {"images": images, "annotations": annotations,
                             "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)]}
        truth_api.createIndex()
        detection_api = truth_api.loadRes(detections)
        evaluator = COCOeval(truth_api, detection_api, iouType="bbox")
        # evaluate() sorts maxDets; the last entry is the one that counts below.
        evaluator.params.maxDets = [min(1, max_detections), min(10, max_detections), max_detections]
        # Only area "all" is read below; the small/medium/large ranges would quadruple the time of evaluate().
        evaluator.params.areaRng, evaluator.params.areaRngLbl = evaluator.params.areaRng[:1], ["all"]
        precision = np.stack([_class_precision(evaluator, category, images_of[category])
                              for category in range(1, num_classes + 1)], axis=2)
    thresholds = evaluator.params.iouThrs

    def mean_precision(values: np.ndarray) -> float:
        scored = values[values > -1]
        return float(scored.mean()) if scored.size else 0.0

    at_50 = precision[np.isclose(thresholds, 0.5)][0]
    at_75 = precision[np.isclose(thresholds, 0.75)][0]
    class_ap50 = [mean_precision(at_50[:, k]) if (at_50[:, k] > -1).any() else float("nan")
                  for k in range(num_classes)]
    return {"map": mean_precision(precision), "map50": mean_precision(at_50), "map75": mean_precision(at_75),
            "class_ap50": class_ap50}
