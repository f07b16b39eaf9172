"""Probe metrics: top-1 accuracy, multi-label mean AP, confusion matrix -> mIoU / pixel accuracy, detection mAP
(pycocotools, and the PASCAL VOC rule).

Conventions
- Confusion matrix: rows are ground truth, columns prediction; pixels labelled ``ignore_index`` (255) are
  left out. mIoU is the mean IoU over the classes present in the ground truth *or* the prediction of the
  evaluated set (a class absent from both has no defined IoU and is skipped, as in FCN's ``score.py``);
  pixel accuracy is correct pixels / labelled pixels.
- Detection: COCO-style mAP@[.5:.95] and AP at IoU 0.5 come from one ``pycocotools.cocoeval.COCOeval`` run
  (``evaluate`` + ``accumulate``; its precision array averaged as ``summarize`` does: 101-point interpolated
  precision, the 100 best detections per image unless raised, all object sizes). Its AP at IoU 0.5
  (``map50``) applies the VOC overlap criterion with COCO's matching (the best still unmatched box) and
  101-point interpolation, and knows no ``difficult`` flag. PASCAL VOC's own rule, with difficult boxes
  ignored and VOC 2007's 11-point or VOC 2010's area AP, is :func:`voc_detection_ap` (NumPy, no
  pycocotools). Both average over the classes that have ground truth; the others are left out of the mean.
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


def multilabel_mean_ap(scores: np.ndarray | Tensor, targets: np.ndarray | Tensor) -> dict[str, float | list[float]]:
    """Multi-label classification mAP as VISSL scores VOC07 (its ``svm_utils/evaluate.py``): per class, the
    average precision of ranking the images by score; ``map`` is their mean.

    scores ``(M, K)``: higher means more likely present; targets ``(M, K)``: > 0 present, < 0 absent, 0 difficult
    only (VOC's encoding), an image left out of that class's AP. The AP is VOC's area AP (devkit 2010 on, as in
    :func:`voc_detection_ap`): precision raised to the best at that recall or beyond, summed over the recall
    steps; not VOC 2007's 11-point average, and at least scikit-learn's ``average_precision_score`` (raw
    precision; the two agree when precision never rises down the ranking). Tied scores rank in image order (a
    stable sort, as the devkit's ``VOCevalcls.m``; VISSL's ``argsort`` leaves their order unspecified;
    real-valued SVM scores do not tie). Returns ``map`` (over the classes with a present image) and ``class_ap``
    (NaN for a class without one).
    """
    scores = torch.as_tensor(scores).detach().cpu().double().numpy()
    targets = torch.as_tensor(targets).detach().cpu().numpy()
    class_ap = []
    for k in range(scores.shape[1]):
        kept = targets[:, k] != 0
        present = targets[kept, k][np.argsort(-scores[kept, k], kind="stable")] > 0
        class_ap.append(_voc_ap(present, int(present.sum()))[1] if present.any() else float("nan"))
    scored = [ap for ap in class_ap if not np.isnan(ap)]
    return {"map": float(np.mean(scored)) if scored else 0.0, "class_ap": class_ap}


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


def _numpy(entry: dict, *keys: str) -> list[np.ndarray]:
    """``entry[key]`` for each key as a NumPy array (tensors are detached and moved to the CPU)."""
    return [entry[k].detach().cpu().numpy() if isinstance(entry[k], Tensor) else np.asarray(entry[k]) for k in keys]


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
    ground_truths[i]: ``boxes (k, 4)`` xyxy in pixels, ``labels (k,)`` 0-based (any other key, such as VOC's
    ``difficult``, is not read); one entry per image, same order.
    ``max_detections``: the highest-scoring detections per image that count (COCO's 100 by default).
    Returns ``map`` (mAP@[.5:.95]), ``map50`` (AP at IoU 0.5, the VOC criterion), ``map75``, and
    ``class_ap50`` (NaN for classes without ground truth).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, detections = [], [], []
    images_of: dict[int, set[int]] = collections.defaultdict(set)  # category -> the images holding it
    for image_id, (prediction, truth) in enumerate(zip(predictions, ground_truths, strict=True), start=1):
        images.append({"id": image_id})
        boxes, labels = _numpy(truth, "boxes", "labels")
        for box, label in zip(_xyxy_to_xywh(boxes), labels.reshape(-1)):
            images_of[int(label) + 1].add(image_id)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label) + 1,
                                "bbox": [float(v) for v in box], "area": float(box[2] * box[3]), "iscrowd": 0})
        boxes, scores, labels = _numpy(prediction, "boxes", "scores", "labels")
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


# The 11 recall levels of VOC 2007's AP, each the double nearest i/10, so that a recall of exactly 3/10 reaches the
# level 0.3 (np.arange(0., 1.1, 0.1), as py-faster-rcnn writes it, holds 0.30000000000000004 there).
VOC07_RECALL_LEVELS = np.arange(11) / 10


def _box_overlaps(detections: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """IoU ``(n, k)`` of continuous xyxy boxes ``(n, 4)`` and ``(k, 4)``; -inf where two boxes do not overlap
    (the devkit leaves such a pair out of its arg-max, which matters only for an IoU threshold of 0)."""
    low = np.maximum(detections[:, None, :2], truths[None, :, :2])
    high = np.minimum(detections[:, None, 2:], truths[None, :, 2:])
    sides = high - low
    overlapping = (sides > 0).all(axis=2)
    intersection = np.where(overlapping, sides.prod(axis=2), 0.0)

    def area(boxes: np.ndarray) -> np.ndarray:
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    union = area(detections)[:, None] + area(truths)[None, :] - intersection
    return np.where(overlapping, intersection / np.where(overlapping, union, 1.0), -np.inf)


def _voc_ap(hits: np.ndarray, positives: int) -> tuple[float, float]:
    """(VOC 2007 11-point AP, area AP) of a ranking: ``hits (n,) bool`` true positives in rank order (ignored
    detections already left out), ``positives`` the ground-truth boxes that count."""
    if hits.size == 0:
        return 0.0, 0.0
    true_positives = np.cumsum(hits)
    recall = true_positives / positives
    precision = true_positives / np.arange(1, hits.size + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # the best precision at this recall or beyond
    first = np.searchsorted(recall, VOC07_RECALL_LEVELS, side="left")  # recall never decreases down the ranks
    eleven_point = np.where(first < hits.size, envelope[np.minimum(first, hits.size - 1)], 0.0).mean()
    # Recall grows only at a true positive: each step times the envelope there. The devkit's end point (recall 1,
    # precision 0) adds nothing.
    area = np.sum(np.diff(recall, prepend=0.0) * envelope)
    return float(eleven_point), float(area)


def voc_detection_ap(predictions: Sequence[dict[str, np.ndarray | Tensor]],
                     ground_truths: Sequence[dict[str, np.ndarray | Tensor]], num_classes: int,
                     iou_threshold: float = 0.5) -> dict[str, float | list[float]]:
    """Box AP by the PASCAL VOC rule (the devkit's ``VOCevaldet.m``; py-faster-rcnn's ``voc_eval.py``).

    ``predictions`` and ``ground_truths`` as for :func:`detection_map`; a ground truth may also hold
    ``difficult (k,)`` bool, VOC's flag (absent or None: no box is difficult).

    Per class, the detections of every image are ranked by score, ties in the order given (image, then detection:
    a stable sort, as MATLAB's ``sort`` in the devkit). Down the ranks each detection takes the ground-truth box
    of its class and image it overlaps most (IoU; the first box on a tie), matched or not. IoU >= ``iou_threshold``
    (the devkit's ``>=``; py-faster-rcnn and detectron2 use ``>``): a difficult box makes the detection neither
    a true nor a false positive, an unmatched box makes it a true positive and matched, an already matched box
    makes it a false positive (a duplicate). Below the threshold, or with no box of its class in the image, it is
    a false positive. Recall counts the non-difficult boxes of the class; precision at a rank is true / (true +
    false) positives so far. Ignored detections are left out of the ranking, which changes nothing: the devkit
    keeps them as ranks that repeat the point above, or, above the first true or false positive, have precision
    0/0 = NaN, which MATLAB's ``max`` skips.

    - ``*_voc07_11point``: VOC 2007's AP, the mean over recall levels t = 0, 0.1, ..., 1 of the highest precision
      at recall >= t (0 where recall never reaches t). The levels are i/10 exactly (see ``VOC07_RECALL_LEVELS``).
    - ``*_voc_area``: VOC 2010's AP, the area under the precision envelope (precision made non-increasing in
      recall), summed over the recall steps.

    Departure from the devkit: boxes are continuous (pixels of the resized image, right edge exclusive), so a
    box's width is ``x1 - x0``, not the devkit's inclusive-pixel ``x1 - x0 + 1``. IoU is invariant to a per-axis
    resize of image and boxes, so that "+1" is the only difference from scoring the original annotations.

    Returns ``map_voc07_11point`` and ``map_voc_area``, means over the classes with non-difficult ground truth
    (0.0 where no class has any), and ``class_ap_voc07_11point`` / ``class_ap_voc_area`` per class (NaN for a
    class without non-difficult ground truth).
    """
    labels_of, scores_of, truth_of, overlap_of = [], [], [], []
    truth_labels, truth_difficult = [], []
    offset = 0  # the index of this image's first box among every image's boxes
    for prediction, truth in zip(predictions, ground_truths, strict=True):
        boxes, labels = _numpy(truth, "boxes", "labels")
        boxes, labels = boxes.astype(np.float64).reshape(-1, 4), labels.astype(np.int64).reshape(-1)
        difficult = (_numpy(truth, "difficult")[0].astype(bool).reshape(-1) if truth.get("difficult") is not None
                     else np.zeros(len(labels), dtype=bool))
        found, scores, found_labels = _numpy(prediction, "boxes", "scores", "labels")
        found, found_labels = found.astype(np.float64).reshape(-1, 4), found_labels.astype(np.int64).reshape(-1)
        overlaps = _box_overlaps(found, boxes)
        overlaps[found_labels[:, None] != labels[None, :]] = -np.inf
        best = overlaps.argmax(axis=1) if labels.size else np.zeros(len(found), dtype=np.int64)
        truth_of.append(best + offset)
        offset += labels.size
        overlap_of.append(overlaps[np.arange(len(found)), best] if labels.size else np.full(len(found), -np.inf))
        labels_of.append(found_labels)
        scores_of.append(scores.astype(np.float64).reshape(-1))
        truth_labels.append(labels)
        truth_difficult.append(difficult)

    def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    labels, scores, truth, overlap = (joined(labels_of, np.int64), joined(scores_of, np.float64),
                                      joined(truth_of, np.int64), joined(overlap_of, np.float64))
    truth_labels, truth_difficult = joined(truth_labels, np.int64), joined(truth_difficult, bool)
    hit = overlap >= iou_threshold
    ignored = np.zeros_like(hit)
    ignored[hit] = truth_difficult[truth[hit]]
    counted = truth_labels[~truth_difficult]
    positives = np.bincount(counted[(counted >= 0) & (counted < num_classes)], minlength=num_classes)
    ranking = np.argsort(-scores, kind="stable")

    eleven_point, area = [float("nan")] * num_classes, [float("nan")] * num_classes
    for category in np.flatnonzero(positives):
        ranked = ranking[(labels[ranking] == category) & ~ignored[ranking]]
        ranked_hits = np.flatnonzero(hit[ranked])
        # A box's first detection down the ranks is the true positive; later ones are duplicates.
        _, first = np.unique(truth[ranked[ranked_hits]], return_index=True)
        true_positive = np.zeros(len(ranked), dtype=bool)
        true_positive[ranked_hits[first]] = True
        eleven_point[category], area[category] = _voc_ap(true_positive, int(positives[category]))

    def mean(values: list[float]) -> float:
        present = [v for v in values if not np.isnan(v)]
        return float(np.mean(present)) if present else 0.0

    return {"map_voc07_11point": mean(eleven_point), "map_voc_area": mean(area),
            "class_ap_voc07_11point": eleven_point, "class_ap_voc_area": area}
