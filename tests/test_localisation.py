"""The localisation probe: box read-out, IoU, pycocotools AP per class, and one feature cache with classification."""
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from ssl_ctx.config import load_config
from ssl_ctx.errors import UserError
from ssl_ctx.probes import run_probe
from ssl_ctx.probes.features import extraction_count
from ssl_ctx.probes.linear_models import TargetBlock, fit_ridge, one_hot
from ssl_ctx.probes.localisation import localisation_scores, mean_iou_score, paired_iou, single_boxes, valid_boxes
from ssl_ctx.probes.metrics import detection_map
from tests.helpers import random_split
from tests.test_probe_end_to_end import CONFIGS, QUICK


def random_boxes(count, generator):
    corners = torch.rand(count, 2, 2, generator=generator, dtype=torch.float64)
    return torch.cat([corners.min(1).values, corners.max(1).values], 1)


def test_paired_iou_is_the_diagonal_of_torchvisions_box_iou():
    generator = torch.Generator().manual_seed(0)
    a, b = random_boxes(50, generator), random_boxes(50, generator)
    assert torch.allclose(paired_iou(a, b), box_iou(a, b).diagonal(), atol=1e-12)
    assert torch.allclose(paired_iou(a, a), torch.ones(50, dtype=torch.float64))


def test_regressed_corners_become_valid_boxes():
    boxes = valid_boxes(torch.tensor([[0.8, -0.2, 0.1, 1.3]], dtype=torch.float64))
    assert boxes.tolist() == [[0.1, 0.0, 0.8, 1.0]]


def test_per_class_evaluation_equals_one_full_cocoeval():
    """detection_map evaluates each class on its own images; pycocotools' own loop over every image and class
    must give the same AP (a pure restructuring: exact up to float summation order)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(1)
    classes, images = 6, 40
    truths, predictions = [], []
    for _ in range(images):
        count = int(rng.integers(0, 3))
        truths.append({"boxes": random_boxes(count, generator).numpy() * 64, "labels": rng.integers(0, classes, count)})
        count = int(rng.integers(0, 4))
        predictions.append({"boxes": random_boxes(count, generator).numpy() * 64, "scores": rng.random(count),
                            "labels": rng.integers(0, classes, count)})
    ours = detection_map(predictions, truths, classes)

    images_list, annotations, detections = [], [], []
    for image_id, (prediction, truth) in enumerate(zip(predictions, truths), start=1):
        images_list.append({"id": image_id})
        for box, label in zip(truth["boxes"], truth["labels"]):
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label) + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        for box, score, label in zip(prediction["boxes"], prediction["scores"], prediction["labels"]):
            x0, y0, x1, y1 = (float(v) for v in box)
            detections.append({"image_id": image_id, "category_id": int(label) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                               "score": float(score)})
    truth_api = COCO()
    truth_api.dataset = {"images": images_list, "annotations": annotations,
                         "categories": [{"id": c + 1} for c in range(classes)]}
    truth_api.createIndex()
    evaluator = COCOeval(truth_api, truth_api.loadRes(detections), iouType="bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert ours["map"] == pytest.approx(evaluator.stats[0], abs=1e-12)
    assert ours["map50"] == pytest.approx(evaluator.stats[1], abs=1e-12)
    assert ours["map75"] == pytest.approx(evaluator.stats[2], abs=1e-12)


def test_scores_know_a_perfect_a_wrong_class_and_a_wrong_box():
    truth = np.array([[0.1, 0.1, 0.6, 0.7], [0.3, 0.2, 0.9, 0.9], [0.0, 0.0, 0.5, 0.5]])
    labels = np.array([0, 1, 2])
    right = torch.eye(3, dtype=torch.float64)
    perfect = localisation_scores(right, torch.from_numpy(truth), labels, truth, (64, 64))
    assert perfect == pytest.approx({"map50": 1.0, "map": 1.0, "box_iou": 1.0, "corloc": 1.0, "top1": 1.0}, abs=1e-12)
    # Every class ranked last of three: still among the top-5 guesses, so AP stays 1 at one detection per class.
    wrong_class = localisation_scores(1 - right, torch.from_numpy(truth), labels, truth, (64, 64))
    assert wrong_class["top1"] == 0.0 and wrong_class["corloc"] == 1.0
    shifted = torch.from_numpy(truth).roll(1, 0)  # every image gets another image's box
    wrong_box = localisation_scores(right, shifted, labels, truth, (64, 64))
    assert wrong_box["corloc"] < 1.0 and wrong_box["map50"] < 1.0 and wrong_box["top1"] == 1.0


def test_the_box_block_recovers_boxes_that_features_encode_linearly():
    rng = np.random.default_rng(0)
    boxes = random_boxes(600, torch.Generator().manual_seed(2)).numpy()
    labels = rng.integers(0, 3, 600)
    features = np.concatenate([boxes @ rng.normal(size=(4, 12)), rng.normal(size=(600, 20))], 1)
    features += 0.001 * rng.normal(size=features.shape)
    blocks = [TargetBlock("box", slice(3, 7), mean_iou_score(boxes))]
    holdout = rng.random(600) < 0.2
    fit = fit_ridge(features, np.concatenate([one_hot(labels, 3), boxes], 1), blocks, [1e-4, 1e-2, 1.0, 100.0],
                    holdout)["box"]
    iou = paired_iou(valid_boxes(fit.outputs(features)), torch.from_numpy(boxes))
    assert fit.alpha < 100.0 and float(iou.mean()) > 0.9
    assert fit.holdout_scores[min(fit.holdout_scores, key=lambda a: -fit.holdout_scores[a])] > fit.holdout_scores[100.0]


def test_images_without_exactly_one_box_are_refused_in_one_line():
    split = random_split(4)
    with pytest.raises(UserError, match="has no boxes; the localisation probe needs one box per image"):
        single_boxes(split)
    split.boxes = [np.zeros((1, 4), np.float32), np.zeros((2, 4), np.float32)] + [np.zeros((1, 4), np.float32)] * 2
    with pytest.raises(UserError, match="image 1 has 2 boxes") as refused:
        single_boxes(split)
    assert "\n" not in str(refused.value)


@pytest.mark.slow
def test_localisation_reads_the_classification_probes_features(real_data, tmp_path):
    """On real Tiny-ImageNet images: the probe shares the classification probe's cache (no second extraction of
    either split) and scores every layer."""
    from tests.test_probe_encoder_loading import save_pretext_checkpoint

    checkpoint, _ = save_pretext_checkpoint(tmp_path, "model.encoder=alexnet64", "model.width=0.5",
                                            "model.norm=batch")
    common = [f"output_dir={tmp_path}", f"probe.init={checkpoint}", *QUICK, "data.limit=64", "data.eval_limit=32"]
    run_probe(load_config(CONFIGS / "classification_tiny_frozen.yaml", [*common, "name=cls"]))
    before = extraction_count()
    metrics = run_probe(load_config(CONFIGS / "localisation_tiny_frozen.yaml", [*common, "name=loc"]))
    assert extraction_count() == before
    for layer in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        assert 0.0 <= metrics[f"map@{layer}"] <= metrics[f"map50@{layer}"] <= 1.0
        assert 0.0 < metrics[f"box_iou@{layer}"] <= 1.0
