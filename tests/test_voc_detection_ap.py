"""VOC detection AP (VOC 2007 11-point and VOC 2010 area) against hand-worked rankings and a loop-by-loop reading
of the devkit's ``VOCevaldet.m`` / ``VOCap.m``."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from ssl_ctx.probes.detection import DetectionProbe, box_target
from ssl_ctx.probes.metrics import voc_detection_ap
from test_probe_metrics import boxes, detections
from test_probe_tasks import small_encoder

EXACT = 1e-12


def truth(rows, labels, difficult=None):
    return {"boxes": boxes(*rows), "labels": np.array(labels),
            "difficult": None if difficult is None else np.array(difficult, dtype=bool)}


# Three images, three classes. Class 0 ("a"): A1 and A2 (difficult) in image 1, A3 and A4 in image 2. Class 1 ("b"):
# B3 in image 1 (never found), B1 and B2 in image 3 (IoU 0.43 with each other). Class 2: only C1, difficult.
TRUTHS = [
    truth([[0, 0, 10, 10], [20, 0, 30, 10], [30, 30, 40, 40]], [0, 0, 1], [False, True, False]),
    truth([[0, 0, 10, 10], [40, 40, 50, 50], [80, 80, 90, 90]], [0, 0, 2], [False, False, True]),
    truth([[0, 0, 10, 10], [4, 0, 14, 10]], [1, 1], [False, False]),
]
PREDICTIONS = [
    detections([[0, 0, 10, 10],     # d1 0.9  -> A1, IoU 1
                [20, 0, 30, 10],    # d2 0.8  -> A2, difficult
                [0, 0, 10, 9]],     # d3 0.8  -> A1 again (IoU 0.9): duplicate
               [0.9, 0.8, 0.8], [0, 0, 0]),
    detections([[0, 0, 10, 10],     # d4 0.7  -> A3
                [60, 60, 70, 70],   # d6 0.6  -> nothing
                [40, 40, 50, 55],   # d7 0.5  -> A4, IoU 100/150
                [0, 0, 10, 10],     # e4 0.9  class 1 on A3 (class 0): nothing of class 1 here
                [80, 80, 90, 90]],  # f1 0.99 class 2 on C1 (difficult)
               [0.7, 0.6, 0.5, 0.9, 0.99], [0, 0, 0, 1, 2]),
    detections([[0, 0, 10, 10],     # d5 0.7  class 0: no class-0 box in image 3
                [0, 0, 10, 10],     # e1 0.95 -> B1, IoU 1
                [1, 0, 11, 10],     # e2 0.85 -> B1 (IoU 90/110) over B2 (70/130), B1 already taken
                [4, 0, 14, 5]],     # e3 0.75 -> B2, IoU 50/100 = 0.5 exactly
               [0.7, 0.95, 0.85, 0.75], [0, 1, 1, 1]),
]

# Class 0, three non-difficult boxes (A1, A3, A4). Ranked by score, ties in the order given (image, then detection):
#   rank  det  score  image  outcome               TP  FP  recall  precision
#   1     d1   0.9    1      A1                     1   0   1/3     1
#   -     d2   0.8    1      A2 difficult: ignored  -   -   -       -
#   2     d3   0.8    1      A1 again: duplicate    1   1   1/3     1/2
#   3     d4   0.7    2      A3                     2   1   2/3     2/3
#   4     d5   0.7    3      no box of class 0      2   2   2/3     1/2
#   5     d6   0.6    2      no overlap             2   3   2/3     2/5
#   6     d7   0.5    2      A4                     3   3   1       1/2
# Envelope (best precision at this rank or below): 1, 2/3, 2/3, 1/2, 1/2, 1/2.
# 11 points: t = 0, .1, .2, .3 reach rank 1 (recall 1/3): 1; t = .4, .5, .6 reach rank 3 (2/3): 2/3;
#   t = .7, .8, .9, 1 reach rank 6 (1): 1/2.  AP = (4 + 3 * 2/3 + 4 * 1/2) / 11 = 8/11.
# Area: recall steps 1/3 at rank 1 (x 1), 1/3 at rank 3 (x 2/3), 1/3 at rank 6 (x 1/2) = 1/3 + 2/9 + 1/6 = 13/18.
CLASS0_11POINT, CLASS0_AREA = 8 / 11, 13 / 18

# Class 1, three boxes (B1, B2, B3):
#   1     e1   0.95   3      B1                     1   0   1/3     1
#   2     e4   0.9    2      no box of class 1      1   1   1/3     1/2
#   3     e2   0.85   3      B1 again: duplicate    1   2   1/3     1/3
#   4     e3   0.75   3      B2 at IoU 0.5 (>=)     2   2   2/3     1/2
# (e2 overlaps B2 by 0.54: matching the best *unmatched* box, as COCO does, would make it a true positive; the
# devkit takes the best box, matched or not.) Envelope: 1, 1/2, 1/2, 1/2.
# 11 points: t <= .3: 1 (4 levels); t = .4, .5, .6: 1/2 (3 levels); recall never reaches .7: 0 (4 levels).
#   AP = (4 + 3/2) / 11 = 1/2.  Area: 1/3 * 1 + 1/3 * 1/2 = 1/2.
# With IoU > 0.5 (py-faster-rcnn's rule) e3 is a false positive: 11 points 4/11, area 1/3.
CLASS1_11POINT, CLASS1_AREA = 1 / 2, 1 / 2

# Class 2 has no non-difficult box: NaN, left out of the mean; f1 on C1 is ignored.


def test_hand_worked_ranking():
    scores = voc_detection_ap(PREDICTIONS, TRUTHS, num_classes=3)
    assert scores["class_ap_voc07_11point"][:2] == pytest.approx([CLASS0_11POINT, CLASS1_11POINT], abs=EXACT)
    assert scores["class_ap_voc_area"][:2] == pytest.approx([CLASS0_AREA, CLASS1_AREA], abs=EXACT)
    assert math.isnan(scores["class_ap_voc07_11point"][2]) and math.isnan(scores["class_ap_voc_area"][2])
    assert scores["map_voc07_11point"] == pytest.approx((8 / 11 + 1 / 2) / 2, abs=EXACT)  # 27/44
    assert scores["map_voc_area"] == pytest.approx((13 / 18 + 1 / 2) / 2, abs=EXACT)  # 11/18


def test_tensors_are_read_like_arrays():
    as_tensors = [{key: None if value is None else torch.as_tensor(value) for key, value in entry.items()}
                  for entry in TRUTHS]
    predictions = [{key: torch.as_tensor(value) for key, value in entry.items()} for entry in PREDICTIONS]
    from_tensors, from_arrays = voc_detection_ap(predictions, as_tensors, 3), voc_detection_ap(PREDICTIONS, TRUTHS, 3)
    for key, value in from_arrays.items():
        assert from_tensors[key] == pytest.approx(value, nan_ok=True), key


def test_iou_equal_to_the_threshold_counts():
    # Just above 0.5, e3 (IoU 0.5 exactly) becomes a false positive: the ranking of class 1 is TP, FP, FP, FP,
    # recall 1/3 throughout: 11 points (4 levels x 1) / 11; area 1/3.
    above = voc_detection_ap(PREDICTIONS, TRUTHS, num_classes=3, iou_threshold=float(np.nextafter(0.5, 1.0)))
    assert above["class_ap_voc07_11point"][1] == pytest.approx(4 / 11, abs=EXACT)
    assert above["class_ap_voc_area"][1] == pytest.approx(1 / 3, abs=EXACT)


def test_difficult_boxes_counted_as_ordinary_ones():
    # Flags dropped: A2 and C1 count. Class 0 has four boxes and d2 becomes a true positive:
    #   d1 TP, d2 TP, d3 FP, d4 TP, d5 FP, d6 FP, d7 TP
    #   recall 1/4, 1/2, 1/2, 3/4, 3/4, 3/4, 1; precision 1, 1, 2/3, 3/4, 3/5, 1/2, 4/7
    #   envelope 1, 1, 3/4, 3/4, 4/7, 4/7, 4/7
    #   11 points: t <= .5 -> 1 (6 levels), t = .6, .7 -> 3/4, t = .8, .9, 1 -> 4/7: (6 + 3/2 + 12/7) / 11 = 129/154
    #   area: 1/4 (1 + 1 + 3/4 + 4/7) = 93/112
    # Class 2: f1 finds C1 first, AP 1. Class 1 has no difficult box and keeps 1/2.
    plain = [{**entry, "difficult": None} for entry in TRUTHS]
    scores = voc_detection_ap(PREDICTIONS, plain, num_classes=3)
    assert scores["class_ap_voc07_11point"] == pytest.approx([129 / 154, 1 / 2, 1.0], abs=EXACT)
    assert scores["class_ap_voc_area"] == pytest.approx([93 / 112, 1 / 2, 1.0], abs=EXACT)
    assert scores["map_voc07_11point"] == pytest.approx(60 / 77, abs=EXACT)
    assert scores["map_voc_area"] == pytest.approx(87 / 112, abs=EXACT)


def test_ties_keep_the_order_given():
    # Images 2 and 3 swapped: d5 (image 3, 0.7) now ranks before d4 (0.7). Class 0 becomes
    #   d1 TP, d3 FP, d5 FP, d4 TP, d6 FP, d7 TP: precision 1, 1/2, 1/3, 1/2, 2/5, 1/2; envelope 1, then 1/2
    #   11 points: (4 x 1 + 7 x 1/2) / 11 = 15/22; area: 1/3 + 1/3 * 1/2 + 1/3 * 1/2 = 2/3
    order = [0, 2, 1]
    scores = voc_detection_ap([PREDICTIONS[i] for i in order], [TRUTHS[i] for i in order], num_classes=3)
    assert scores["class_ap_voc07_11point"][0] == pytest.approx(15 / 22, abs=EXACT)
    assert scores["class_ap_voc_area"][0] == pytest.approx(2 / 3, abs=EXACT)


def test_perfect_detections_score_one_and_none_score_zero():
    perfect = [{"boxes": entry["boxes"], "scores": np.ones(len(entry["labels"])), "labels": entry["labels"]}
               for entry in TRUTHS]
    scores = voc_detection_ap(perfect, TRUTHS, num_classes=3)
    assert scores["map_voc07_11point"] == 1.0 and scores["map_voc_area"] == 1.0
    empty = [detections([], [], []) for _ in TRUTHS]
    scores = voc_detection_ap(empty, TRUTHS, num_classes=3)
    assert scores["class_ap_voc07_11point"][:2] == [0.0, 0.0] and scores["class_ap_voc_area"][:2] == [0.0, 0.0]
    assert scores["map_voc07_11point"] == 0.0 and scores["map_voc_area"] == 0.0
    assert voc_detection_ap([], [], num_classes=2)["map_voc_area"] == 0.0


def test_area_equals_sklearns_average_precision_where_precision_only_falls():
    # Every box found, and precision at each true positive is the envelope there: the area under the envelope is
    # sklearn's sum of (recall step) x precision. Ranking TP, TP, FP, TP, FP: 1/3 (1 + 1 + 3/4) = 11/12.
    gts = [truth([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], [0, 0, 0])]
    rows = [[0, 0, 10, 10], [20, 0, 30, 10], [60, 0, 70, 10], [40, 0, 50, 10], [80, 0, 90, 10]]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    area = voc_detection_ap([detections(rows, scores, [0] * 5)], gts, 1)["map_voc_area"]
    assert area == pytest.approx(average_precision_score([1, 1, 0, 1, 0], scores), abs=EXACT)
    assert area == pytest.approx(11 / 12, abs=EXACT)


def test_boxes_are_continuous_not_inclusive_pixels():
    # 2 x 2 boxes one pixel apart: IoU 2/6 here; the devkit's inclusive widths (+1) would give 6/12 = 0.5, a match.
    scores = voc_detection_ap([detections([[1, 0, 3, 2]], [0.9], [0])], [truth([[0, 0, 2, 2]], [0])], 1)
    assert scores["map_voc07_11point"] == 0.0


def devkit_ap(predictions, truths, num_classes, threshold=0.5):
    """VOCevaldet.m and VOCap.m read loop by loop (widths without the +1; MATLAB's ``max`` skips NaN, as
    ``np.fmax`` does): per class the 11-point and the area AP."""
    results = []
    for category in range(num_classes):
        found = [[boxes_[labels == category], difficult[labels == category], [False] * int((labels == category).sum())]
                 for boxes_, labels, difficult in ((t["boxes"], t["labels"], t["difficult"]) for t in truths)]
        positives = sum(int((~difficult).sum()) for _, difficult, _ in found)
        ranked = [(score, image, box) for image, p in enumerate(predictions)
                  for box, score, label in zip(p["boxes"], p["scores"], p["labels"]) if label == category]
        ranked = sorted(ranked, key=lambda entry: -entry[0])  # Python's sort is stable, as MATLAB's
        tp, fp = np.zeros(len(ranked)), np.zeros(len(ranked))
        for d, (_, image, box) in enumerate(ranked):
            gt_boxes, difficult, matched = found[image]
            best, best_j = -math.inf, None
            for j, gt in enumerate(gt_boxes):
                iw, ih = min(box[2], gt[2]) - max(box[0], gt[0]), min(box[3], gt[3]) - max(box[1], gt[1])
                if iw > 0 and ih > 0:
                    union = (box[2] - box[0]) * (box[3] - box[1]) + (gt[2] - gt[0]) * (gt[3] - gt[1]) - iw * ih
                    if iw * ih / union > best:
                        best, best_j = iw * ih / union, j
            if best >= threshold:
                if not difficult[best_j]:
                    if not matched[best_j]:
                        tp[d], matched[best_j] = 1, True
                    else:
                        fp[d] = 1
            else:
                fp[d] = 1
        if positives == 0:
            results.append((math.nan, math.nan))
            continue
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        recall = tp / positives
        with np.errstate(invalid="ignore"):
            precision = tp / (tp + fp)
        eleven = 0.0
        for t in np.arange(11) / 10:
            reached = precision[recall >= t]
            eleven += (np.fmax.reduce(reached) if reached.size and not np.isnan(reached).all() else 0.0) / 11
        mrec, mpre = np.concatenate([[0.0], recall, [1.0]]), np.concatenate([[0.0], precision, [0.0]])
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = np.fmax(mpre[i], mpre[i + 1])
        steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
        results.append((eleven, float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))))
    return results


@pytest.mark.parametrize("seed", range(5))
def test_random_scenes_agree_with_the_devkits_loops(seed):
    """Random integer boxes on a 40 px grid, scores from five values (many ties), a quarter of boxes difficult."""
    rng = np.random.default_rng(seed)

    def random_boxes(count):
        corner = rng.integers(0, 30, (count, 2))
        return np.concatenate([corner, corner + rng.integers(2, 12, (count, 2))], axis=1).astype(np.float64)

    truths, predictions = [], []
    for _ in range(6):
        count = int(rng.integers(0, 6))
        truths.append({"boxes": random_boxes(count), "labels": rng.integers(0, 3, count),
                       "difficult": rng.random(count) < 0.25})
        found = int(rng.integers(0, 12))
        jittered = np.concatenate([truths[-1]["boxes"] + rng.integers(-2, 3, (count, 4)), random_boxes(found)])
        predictions.append({"boxes": jittered, "scores": rng.integers(1, 6, count + found) / 5,
                            "labels": np.concatenate([truths[-1]["labels"], rng.integers(0, 3, found)])})
    scores = voc_detection_ap(predictions, truths, num_classes=3)
    expected = devkit_ap(predictions, truths, num_classes=3)
    assert scores["class_ap_voc07_11point"] == pytest.approx([e for e, _ in expected], abs=EXACT, nan_ok=True)
    assert scores["class_ap_voc_area"] == pytest.approx([a for _, a in expected], abs=EXACT, nan_ok=True)


def test_training_targets_leave_out_difficult_boxes_and_evaluation_flags_them():
    split = SimpleNamespace(boxes=[np.array([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], np.float32)],
                            box_labels=[np.array([0, 1])], box_difficult=[np.array([False, True])])
    training = box_target(split, 0, 100, 100)
    assert training["labels"].tolist() == [1] and training["difficult"].tolist() == [False]
    evaluation = box_target(split, 0, 100, 100, min_side=0.0, keep_difficult=True)
    assert evaluation["labels"].tolist() == [1, 2] and evaluation["difficult"].tolist() == [False, True]
    split.box_difficult = None  # a dataset without the flag (CMP Facade): every box counts
    assert box_target(split, 0, 100, 100)["difficult"].tolist() == [False, False]


def test_detection_probe_reports_voc_and_coco_numbers():
    task = DetectionProbe(small_encoder(), "conv5", num_classes=3, image_size=32)
    truths = [{key: torch.as_tensor(value) for key, value in entry.items()} for entry in TRUTHS]
    predictions = [{key: torch.as_tensor(value) for key, value in entry.items()} for entry in PREDICTIONS]
    metrics = task.evaluation_summary({"predictions": predictions, "truths": truths}, batches=1)
    assert metrics["map50_voc07_11point"] == pytest.approx(27 / 44, abs=EXACT)
    assert metrics["map50_voc_area"] == pytest.approx(11 / 18, abs=EXACT)
    assert {"map", "map50", "map75", "class_ap50", "eval_images"} <= set(metrics)
