"""Probe task modules on synthetic batches: pooling sizes, frozen vs fine-tuned encoders, heads, detection pieces."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ssl_ctx.config import OptimConfig
from ssl_ctx.data.loader import CachedBatchLoader
from ssl_ctx.errors import UserError
from ssl_ctx.models import build_encoder
from ssl_ctx.probes.classification import ClassificationProbe
from ssl_ctx.probes.common import layer_names, parse_layers, pooled_side
from ssl_ctx.probes.detection import BoxBatches, DetectionProbe, box_target, build_detector
from ssl_ctx.probes.segmentation import SegmentationProbe

REPO = Path(__file__).resolve().parents[1]

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
        parse_layers("comv5", small_encoder())
    with pytest.raises(UserError) as caught:  # another number is no typo: the known layers say which there are
        parse_layers("conv6", small_encoder())
    assert "did you mean" not in str(caught.value) and str(caught.value).endswith("; known: " + ", ".join(
        layer_names(small_encoder())))
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


def test_detector_runs_torchvisions_compiled_operators():
    """NMS and RoI pooling are torchvision's own kernels: no pure-PyTorch stand-in is left in the package."""
    from torchvision.ops import MultiScaleRoIAlign

    detector = build_detector(small_encoder(), "conv5", num_classes=3, image_size=32, frozen=True)
    assert type(detector.roi_heads.box_roi_pool) is MultiScaleRoIAlign
    assert torch.ops.torchvision.nms.default.has_kernel_for_dispatch_key(torch._C.DispatchKey.CPU)
    assert torch.ops.torchvision.roi_align.default.has_kernel_for_dispatch_key(torch._C.DispatchKey.CPU)


def test_torchvision_without_its_operators_is_one_line(monkeypatch):
    import torchvision.extension

    monkeypatch.setattr(torchvision.extension, "_has_ops", lambda: False)
    with pytest.raises(UserError) as error:
        build_detector(small_encoder(), "conv5", num_classes=3, image_size=32, frozen=True)
    message = str(error.value)
    assert "\n" not in message and "the detection probe needs torchvision's operators" in message
    assert "pip install torch==" in message and "torchvision==" in message


def test_no_module_of_the_package_patches_another_library():
    """Importing every module registers no operator and loads no library of someone else's."""
    forbidden = ("torch.library.Library(", "torch.ops.load_library(", "_LIBRARY", "ensure_torchvision")
    for path in sorted((REPO / "ssl_ctx").rglob("*.py")):
        text = path.read_text()
        assert not [word for word in forbidden if word in text], path


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
