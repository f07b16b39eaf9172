"""Probe task modules on synthetic batches: pooling sizes, frozen vs fine-tuned encoders, heads, detection pieces."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ssl_ctx.config import OptimConfig
from ssl_ctx.data.loader import CachedBatchLoader
from ssl_ctx.errors import UserError
from ssl_ctx.models import build_encoder
from ssl_ctx.probes.classification import ClassificationProbe
from ssl_ctx.probes.common import parse_layers, pooled_side
from ssl_ctx.probes.detection import BoxBatches, DetectionProbe, box_target, grid_sample_roi_align
from ssl_ctx.probes.segmentation import SegmentationProbe
from ssl_ctx.torchvision_compat import ensure_torchvision, nms_reference

OPTIM = OptimConfig(lr=1e-2, betas=[0.9, 0.999])


def small_encoder(norm: str = "batch") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_encoder("alexnet32", norm=norm, width=0.25)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> list[str]:
    return [k for k, v in module.state_dict().items() if not torch.equal(before[k], v)]


@pytest.mark.parametrize(("channels", "side", "values"), [(96, 10, 9600), (256, 6, 9216), (384, 5, 9600)])
def test_pooled_side_follows_split_brain(channels, side, values):
    assert pooled_side(channels, 13, 13, 9216) == (side, side)
    assert channels * side * side == values


def test_pooled_side_never_upsamples():
    assert pooled_side(256, 4, 4, 9216) == (4, 4)


def test_unknown_layer_is_one_line():
    with pytest.raises(UserError, match="did you mean 'conv5'"):
        parse_layers("conv6", small_encoder())
    assert parse_layers("conv3+conv5", small_encoder()) == ["conv3", "conv5"]


def classification_batch(count: int = 8, size: int = 32) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {"image": torch.rand(count, 3, size, size, generator=generator) * 2 - 1,
            "label": torch.randint(0, 5, (count,), generator=generator)}


def test_linear_probe_trains_only_the_head_and_keeps_encoder_statistics():
    encoder = small_encoder(norm="batch")
    task = ClassificationProbe(encoder, "conv3", 5, (32, 32), 9216, finetune=False)
    before = snapshot(task.encoder)
    head_before = snapshot(task.head)
    optimizers = task.configure_optimizers(OPTIM)
    task.train()
    assert not task.encoder.training  # frozen: BatchNorm statistics are part of the features
    losses = task.train_step(classification_batch(), optimizers, 0)
    assert torch.isfinite(losses["loss"])
    assert changed(before, task.encoder) == []
    assert changed(head_before, task.head)
    assert all(not p.requires_grad for p in task.encoder.parameters())


def test_finetune_trains_the_encoder():
    task = ClassificationProbe(small_encoder(), "conv5", 5, (32, 32), 9216, finetune=True)
    before = snapshot(task.encoder)
    task.train()
    task.train_step(classification_batch(), task.configure_optimizers(OPTIM), 0)
    assert changed(before, task.encoder)


def test_classification_pools_to_about_9k_values():
    task = ClassificationProbe(build_encoder("alexnet32", norm="none"), "conv2", 10, (32, 32), 9216)
    assert task.pool == (6, 6) and task.num_features == 9216  # conv2: 256 x 16 x 16 -> 256 x 6 x 6
    assert task(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_segmentation_head_upsamples_to_the_input_and_ignores_void():
    task = SegmentationProbe(small_encoder(), ["conv2", "conv5"], 4, (32, 48))
    images = torch.rand(2, 3, 32, 48) * 2 - 1
    assert task(images).shape == (2, 4, 32, 48)
    label_map = torch.randint(0, 4, (2, 32, 48))
    label_map[:, :10] = 255
    losses = task.train_step({"image": images, "label_map": label_map}, task.configure_optimizers(OPTIM), 0)
    assert torch.isfinite(losses["loss"])


def test_nms_reference_matches_greedy_definition():
    generator = torch.Generator().manual_seed(0)
    boxes = torch.rand(200, 4, generator=generator) * 50
    boxes[:, 2:] += boxes[:, :2] + 1
    scores = torch.rand(200, generator=generator)
    kept = []
    for i in torch.argsort(scores, descending=True).tolist():
        x0, y0, x1, y1 = boxes[i].tolist()
        def iou(j):
            a0, b0, a1, b1 = boxes[j].tolist()
            inter = max(0, min(x1, a1) - max(x0, a0)) * max(0, min(y1, b1) - max(y0, b0))
            return inter / ((x1 - x0) * (y1 - y0) + (a1 - a0) * (b1 - b0) - inter)
        if all(iou(j) <= 0.5 for j in kept):
            kept.append(i)
    assert nms_reference(boxes, scores, 0.5).tolist() == kept
    ensure_torchvision()
    import torchvision

    assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == kept


def test_grid_sample_roi_align_matches_torchvision():
    ensure_torchvision()
    from torchvision.ops.roi_align import _roi_align

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 5, 16, 16, generator=generator)
    proposals = [torch.tensor([[3.0, 5, 60, 90], [0, 0, 127, 127], [10.5, 20.25, 12, 23]]),
                 torch.tensor([[40.0, 30, 100, 64]])]
    rois = torch.cat([torch.cat([torch.full((len(p), 1), float(i)), p], 1) for i, p in enumerate(proposals)])
    for ratio in (1, 2):
        # torchvision's pure-PyTorch roi_align, called without its torch.compile wrapper
        expected = _roi_align.__wrapped__(features, rois, 16 / 128, 4, 4, ratio, False)
        ours = grid_sample_roi_align(features, proposals, [(128, 128), (128, 128)], 4, ratio)
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def box_split(count: int = 4, size: int = 32) -> SimpleNamespace:
    """Black images, each with one white box whose relative position is in ``boxes``."""
    images = np.zeros((count, size, size, 3), np.uint8)
    boxes, labels = [], []
    for i in range(count):
        x0, y0 = 2 + i, 4
        images[i, y0:y0 + 8, x0:x0 + 6] = 255
        boxes.append(np.array([[x0, y0, x0 + 6, y0 + 8]], np.float32) / size)
        labels.append(np.array([i % 3]))
    return SimpleNamespace(images=images, boxes=boxes, box_labels=labels, dataset="synthetic", split="train")


def test_box_batches_flip_boxes_with_their_images():
    split = box_split()
    loader = BoxBatches(CachedBatchLoader(split, 4, "cpu", seed=0, train=True, hflip=False), split, seed=3,
                        hflip=True)
    flipped = 0
    for epoch in range(3):
        for batch in loader.batches(epoch):
            for image, target, index in zip(batch["image"], batch["targets"], batch["index"].tolist()):
                x0, y0, x1, y1 = target["boxes"][0].round().long().tolist()
                assert target["labels"].tolist() == [index % 3 + 1]  # 1-based inside Faster R-CNN
                assert bool((image[:, y0:y1, x0:x1] > 0.9).all())  # the white box is where the target says
                flipped += x0 != 2 + index
    assert flipped > 0


def test_box_target_drops_degenerate_boxes():
    split = SimpleNamespace(boxes=[np.array([[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.2001, 0.6]], np.float32)],
                            box_labels=[np.array([0, 1])])
    target = box_target(split, 0, 100, 100)
    assert target["boxes"].shape == (1, 4)
    assert target["boxes"][0].tolist() == pytest.approx([10.0, 10.0, 50.0, 50.0])
    assert target["labels"].tolist() == [1]


def test_detection_probe_trains_and_predicts():
    split = box_split()
    torch.manual_seed(0)
    task = DetectionProbe(small_encoder(), "conv5", num_classes=3, image_size=32, finetune=True)
    loader = BoxBatches(CachedBatchLoader(split, 2, "cpu", seed=0, train=True, hflip=False), split, 0, True)
    optimizers = task.configure_optimizers(OPTIM)
    before = snapshot(task.encoder)
    task.train()
    losses = task.train_step(next(loader.batches(0)), optimizers, 0)
    assert torch.isfinite(losses["loss"]) and "loss_objectness" in losses
    assert changed(before, task.encoder)
    predictions = task.predict(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert len(predictions) == 2 and predictions[0]["boxes"].shape[1] == 4
    assert all(((p["labels"] >= 0) & (p["labels"] < 3)).all() for p in predictions)
