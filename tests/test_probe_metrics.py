"""Probe metrics against hand-worked cases: detection mAP (pycocotools), confusion matrix, mIoU, pixel accuracy."""
import math

import numpy as np
import pytest
import torch

from ssl_ctx.probes.metrics import (
    confusion_matrix,
    detection_map,
    majority_baseline,
    segmentation_scores,
    top1_correct,
)

# COCOeval interpolates precision at 101 recall points 0, 0.01, ..., 1.
RECALL_POINTS = 101


def boxes(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def truth(rows, labels):
    return {"boxes": boxes(*rows), "labels": np.array(labels)}


def detections(rows, scores, labels):
    return {"boxes": boxes(*rows), "scores": np.array(scores, dtype=np.float64), "labels": np.array(labels)}


def test_perfect_detections_score_one():
    gts = [truth([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1]), truth([[5, 5, 30, 25]], [1])]
    preds = [detections([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], [0, 1]),
             detections([[5, 5, 30, 25]], [0.7], [1])]
    scores = detection_map(preds, gts, num_classes=3)
    assert scores["map50"] == pytest.approx(1.0)
    assert scores["map"] == pytest.approx(1.0)
    assert scores["class_ap50"][:2] == pytest.approx([1.0, 1.0])
    assert math.isnan(scores["class_ap50"][2])  # a class without ground truth is left out of the mean


def test_one_of_two_ground_truth_boxes_missed():
    # Recall reaches 0.5 at precision 1 and never more: precision is 1 at the 51 recall points 0..0.50, 0 after.
    gts = [truth([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 0])]
    preds = [detections([[0, 0, 10, 10]], [0.9], [0])]
    scores = detection_map(preds, gts, num_classes=1)
    assert scores["map50"] == pytest.approx(51 / RECALL_POINTS)
    assert scores["map"] == pytest.approx(51 / RECALL_POINTS)


def test_false_positive_ranked_first_halves_precision():
    # Ranking: FP (0.9), TP (0.8): precision 1/2 at recall 1, interpolated to every recall point.
    gts = [truth([[0, 0, 10, 10]], [0])]
    preds = [detections([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8], [0, 0])]
    assert detection_map(preds, gts, num_classes=1)["map50"] == pytest.approx(0.5)


def test_iou_thresholds_of_the_coco_average():
    # IoU 0.62 matches at thresholds 0.50, 0.55, 0.60 of the ten (0.50 ... 0.95): mAP@[.5:.95] = 3/10.
    gts = [truth([[0, 0, 10, 10]], [0])]
    preds = [detections([[0, 0, 10, 6.2]], [0.9], [0])]
    scores = detection_map(preds, gts, num_classes=1)
    assert scores["map50"] == pytest.approx(1.0)
    assert scores["map75"] == pytest.approx(0.0)
    assert scores["map"] == pytest.approx(0.3)


def test_wrong_class_and_no_detections_score_zero():
    gts = [truth([[0, 0, 10, 10]], [0])]
    assert detection_map([detections([[0, 0, 10, 10]], [0.9], [1])], gts, num_classes=2)["map50"] == 0.0
    assert detection_map([detections([], [], [])], gts, num_classes=2)["map50"] == 0.0


def test_mean_over_classes_with_ground_truth():
    # Class 0 found (AP 1), class 1 missed (AP 0): mean 0.5.
    gts = [truth([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1])]
    preds = [detections([[0, 0, 10, 10]], [0.9], [0])]
    scores = detection_map(preds, gts, num_classes=2)
    assert scores["class_ap50"] == pytest.approx([1.0, 0.0])
    assert scores["map50"] == pytest.approx(0.5)


def test_max_detections_caps_what_counts():
    # Three ground-truth boxes, three correct detections; with max_detections=2 only the best two count.
    rows = [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]
    gts = [truth(rows, [0, 0, 0])]
    preds = [detections(rows, [0.9, 0.8, 0.7], [0, 0, 0])]
    assert detection_map(preds, gts, 1, max_detections=3)["map50"] == pytest.approx(1.0)
    # Recall 2/3 at precision 1: recall points 0 .. 0.66 (67 of 101).
    assert detection_map(preds, gts, 1, max_detections=2)["map50"] == pytest.approx(67 / RECALL_POINTS)


def test_confusion_matrix_and_scores_by_hand():
    target = torch.tensor([[0, 0, 1], [1, 2, 255]])
    prediction = torch.tensor([[0, 1, 1], [1, 0, 2]])
    confusion = confusion_matrix(prediction, target, num_classes=4)
    expected = torch.zeros(4, 4, dtype=torch.long)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[2, 0] = 1, 1, 2, 1  # the 255 pixel is ignored
    assert torch.equal(confusion, expected)

    scores = segmentation_scores(confusion)
    # IoU: class 0 = 1 / (2 + 2 - 1), class 1 = 2 / (2 + 3 - 2), class 2 = 0 / 1; class 3 absent everywhere.
    assert scores["class_iou"][:3] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert math.isnan(scores["class_iou"][3])
    assert scores["miou"] == pytest.approx(1 / 3)
    assert scores["pixel_accuracy"] == pytest.approx(3 / 5)


def test_class_only_predicted_counts_in_the_mean():
    # Class 1 never in the ground truth but predicted once: IoU 0, and it is part of the mean.
    confusion = confusion_matrix(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 0]), num_classes=2)
    scores = segmentation_scores(confusion)
    assert scores["class_iou"] == pytest.approx([2 / 3, 0.0])
    assert scores["miou"] == pytest.approx(1 / 3)


def test_majority_baseline():
    confusion = torch.tensor([[6, 0, 0], [2, 0, 0], [0, 0, 2]])  # ground truth: 6, 2, 2 pixels
    baseline = majority_baseline(confusion)
    assert baseline["pixel_accuracy"] == pytest.approx(0.6)
    # Predicting class 0 everywhere: IoU 6/10 for class 0, 0 for classes 1 and 2.
    assert baseline["miou"] == pytest.approx(0.2)


def test_top1_correct():
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert int(top1_correct(logits, torch.tensor([1, 1, 1]))) == 2


def test_raised_detection_limit_counts_for_every_threshold():
    # 120 objects in one image, all found: COCO's 100-detection cap would stop recall at 100/120.
    rows = [[x * 10, y * 10, x * 10 + 8, y * 10 + 8] for x in range(12) for y in range(10)]
    gts = [truth(rows, [0] * 120)]
    preds = [detections(rows, list(np.linspace(1.0, 0.5, 120)), [0] * 120)]
    raised = detection_map(preds, gts, 1, max_detections=300)
    assert raised["map"] == pytest.approx(1.0) and raised["map50"] == pytest.approx(1.0)
    capped = detection_map(preds, gts, 1)
    # Recall 100/120 = 0.833 at precision 1: recall points 0 .. 0.83 (84 of 101), at every IoU threshold.
    assert capped["map"] == pytest.approx(84 / RECALL_POINTS) and capped["map50"] == pytest.approx(84 / RECALL_POINTS)
