"""Detection probe: torchvision's Faster R-CNN with the encoder as its backbone, on CMP Facade boxes.

The detector is torchvision's ``FasterRCNN``; the encoder enters it through :class:`FeatureMapBackbone`, a
thin adapter with ``out_channels`` that returns one feature map (``probe.layer``, conv5 by default: stride
8 for the 64/128-px AlexNets) in an ``OrderedDict``. Settings sized for small maps and a CPU budget:

- images are resized by Faster R-CNN's own transform to ``probe.detection_min_size`` (min and max side);
  they enter it in [0, 1] with mean 0.5 and std 0.5, i.e. in the [-1, 1] range encoders are trained on;
- anchors: one level, sizes from 4 px to half the image in powers of two, aspect ratios 0.5 / 1 / 2
  (CMP facade objects are small: median 8 x 6 px at 128 px);
- RoI pooling 4 x 4 with one bilinear sample per bin (most objects span 1-2 cells of the map), box head
  two 256-wide FC layers, 128 sampled RoIs per image; RPN keeps 600 proposals before NMS, 300 after;
- up to 300 detections per image (facades hold 87 boxes on average, up to 368), no score threshold
  (``probe.detection_score_threshold``), as mAP needs the whole ranking.

Data: ``cmp-facade`` train -> test (the data module's fixed split: every 5th image in sorted order is
test; 303 / 75), 12 classes (labels 0..11 here, 1..12 inside Faster R-CNN, whose class 0 is background).
Training augmentation is a horizontal flip of image and boxes; no crop (it would cut boxes). Boxes a
dataset marks ``difficult`` (PASCAL VOC's flag, ``split.box_difficult``; CMP Facade has none) are left out
of the training targets, as py-faster-rcnn does (``use_diff=False``), and kept, flagged, for evaluation.

Metrics, every one at most 300 detections per image (facades are crowded):

- ``map50_voc07_11point``: the VOC 2007 number, PASCAL VOC's rule (IoU >= 0.5, duplicates false
  positives, detections of difficult boxes ignored, recall over non-difficult boxes) with its 11-point
  interpolated AP, averaged over classes (:func:`~ssl_ctx.probes.metrics.voc_detection_ap`);
- ``map50_voc_area``: the same matching, AP as the area under the precision envelope (VOC 2010 on);
- ``map``, ``map50``, ``map75``, ``class_ap50``: pycocotools (:func:`~ssl_ctx.probes.metrics.detection_map`),
  COCO-style mAP@[.5:.95] and AP at IoU 0.5 / 0.75 with 101-point interpolation, from one COCOeval run with
  ``maxDets`` raised to 300. COCO has no ``difficult`` flag: these count difficult boxes as any other.

NMS and RoI pooling are torchvision's compiled operators (``torchvision.ops.nms`` and
``MultiScaleRoIAlign``); where they cannot load, building the detector says so in one line
(:func:`ssl_ctx.vision_ops.require_torchvision`).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ssl_ctx.engine.optim import optimize
from ssl_ctx.errors import UserError
from ssl_ctx.models import feature_shapes
from ssl_ctx.probes.common import ProbeContext, ProbeTask
from ssl_ctx.probes.metrics import detection_map, voc_detection_ap
from ssl_ctx.registry import PROBES
from ssl_ctx.vision_ops import require_torchvision

DETECTIONS_PER_IMAGE = 300
ROI_OUTPUT_SIZE = 4
ROI_SAMPLING_RATIO = 1
BOX_HEAD_WIDTH = 256
MIN_BOX_SIDE = 1.0  # pixels; thinner boxes (after resizing) are dropped from training targets


class FeatureMapBackbone(nn.Module):
    """The encoder as a torchvision detection backbone: ``x -> OrderedDict(["0", features[layer]])``.

    ``out_channels`` is the map's channel count; with ``frozen`` the encoder runs without a graph.
    """

    def __init__(self, encoder: nn.Module, layer: str, out_channels: int, frozen: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.layer = layer
        self.out_channels = out_channels
        self.frozen = frozen

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        if self.frozen:
            with torch.no_grad():
                return OrderedDict([("0", self.encoder(images)[self.layer])])
        return OrderedDict([("0", self.encoder(images)[self.layer])])


def anchor_sizes(image_size: int) -> tuple[int, ...]:
    """Powers of two from 4 px to half the image side: 128 -> (4, 8, 16, 32, 64)."""
    sizes, size = [], 4
    while size <= image_size // 2:
        sizes.append(size)
        size *= 2
    return tuple(sizes) or (image_size // 2,)


def build_detector(encoder: nn.Module, layer: str, num_classes: int, image_size: int, frozen: bool,
                   score_threshold: float = 0.0) -> nn.Module:
    """torchvision ``FasterRCNN`` on one encoder map; ``num_classes`` excludes background."""
    require_torchvision("the detection probe")
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    shape = feature_shapes(encoder, (image_size, image_size))[layer]
    backbone = FeatureMapBackbone(encoder, layer, shape.channels, frozen=frozen)
    sizes = anchor_sizes(image_size)
    anchors = AnchorGenerator(sizes=(sizes,), aspect_ratios=((0.5, 1.0, 2.0),))
    roi_pool = MultiScaleRoIAlign(["0"], output_size=ROI_OUTPUT_SIZE, sampling_ratio=ROI_SAMPLING_RATIO)
    box_head = TwoMLPHead(shape.channels * ROI_OUTPUT_SIZE**2, BOX_HEAD_WIDTH)
    return FasterRCNN(
        backbone,
        num_classes=None,
        min_size=image_size,
        max_size=image_size,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=600,
        rpn_post_nms_top_n_test=300,
        rpn_batch_size_per_image=256,
        box_roi_pool=roi_pool,
        box_head=box_head,
        box_predictor=FastRCNNPredictor(BOX_HEAD_WIDTH, num_classes + 1),
        box_score_thresh=score_threshold,
        box_detections_per_img=DETECTIONS_PER_IMAGE,
        box_batch_size_per_image=128,
    )


class BoxBatches:
    """Batches of a ``CachedBatchLoader`` (built without crop or flip) with each image's boxes added.

    Adds ``targets``: per image ``{"boxes": (k, 4) xyxy pixels of the batch's image size, "labels": (k,)
    1-based, "difficult": (k,) bool}`` (Faster R-CNN's convention, plus VOC's flag); with ``hflip`` each
    image and its boxes are flipped with probability 1/2, drawn from (seed, epoch, batch number) so a resumed
    run sees the same batches. Training targets (the defaults) leave out boxes thinner than ``min_side``
    pixels and difficult boxes; evaluation passes ``min_side=0`` and ``keep_difficult=True`` to keep every box.
    """

    def __init__(self, loader: Any, split: Any, seed: int, hflip: bool, min_side: float = MIN_BOX_SIDE,
                 keep_difficult: bool = False) -> None:
        if split.boxes is None:
            raise UserError(f"{split.dataset}/{split.split} has no boxes; the detection probe needs a dataset "
                            f"with boxes such as cmp-facade")
        self.loader = loader
        self.split = split
        self.seed = seed
        self.hflip = hflip
        self.min_side = min_side
        self.keep_difficult = keep_difficult

    def __len__(self) -> int:
        return len(self.loader)

    def batches(self, epoch: int, start: int = 0):
        for number, batch in enumerate(self.loader.batches(epoch, start), start=start):
            images = batch["image"]
            count, _, height, width = images.shape
            flips = np.zeros(count, dtype=bool)
            if self.hflip:
                flips = np.random.default_rng([self.seed, epoch, number, 13]).random(count) < 0.5
                flip_mask = torch.from_numpy(flips).to(images.device).view(-1, 1, 1, 1)
                images = torch.where(flip_mask, images.flip(-1), images)
            targets = [box_target(self.split, int(i), height, width, bool(f), images.device, self.min_side,
                                  self.keep_difficult)
                       for i, f in zip(batch["index"].tolist(), flips)]
            yield {**batch, "image": images, "targets": targets}


def box_target(split: Any, index: int, height: int, width: int, flip: bool = False,
               device: torch.device | str = "cpu", min_side: float = MIN_BOX_SIDE,
               keep_difficult: bool = False) -> dict[str, Tensor]:
    """Image ``index``'s boxes in pixels of a ``height x width`` image (optionally mirrored), labels 1-based,
    and their ``difficult`` flags; boxes thinner than ``min_side`` are left out, and so are difficult boxes
    unless ``keep_difficult``. A split without ``box_difficult`` (or with None there) has no difficult box."""
    boxes = np.asarray(split.boxes[index], dtype=np.float32).reshape(-1, 4) * np.array([width, height, width, height],
                                                                                         dtype=np.float32)
    labels = np.asarray(split.box_labels[index], dtype=np.int64).reshape(-1) + 1
    if flip:
        boxes = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)
    flags = getattr(split, "box_difficult", None)
    difficult = (np.asarray(flags[index], dtype=bool).reshape(-1) if flags is not None
                 else np.zeros(len(labels), dtype=bool))
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_side) & ((boxes[:, 3] - boxes[:, 1]) >= min_side)
    if not keep_difficult:
        keep &= ~difficult
    return {"boxes": torch.from_numpy(np.ascontiguousarray(boxes[keep])).to(device),
            "labels": torch.from_numpy(labels[keep]).to(device),
            "difficult": torch.from_numpy(difficult[keep]).to(device)}


class DetectionProbe(ProbeTask):
    """Faster R-CNN on the encoder. Batches: ``image (B, 3, S, S)`` in [-1, 1] and ``targets`` (:class:`BoxBatches`)."""

    name = "detection"

    def __init__(self, encoder: nn.Module, layer: str, num_classes: int, image_size: int, finetune: bool = False,
                 score_threshold: float = 0.0) -> None:
        super().__init__(encoder, finetune)
        self.layer = layer
        self.num_classes = num_classes
        self.detector = build_detector(encoder, layer, num_classes, image_size, frozen=not finetune,
                                       score_threshold=score_threshold)

    def train_step(self, batch: dict[str, Any], optimizers: dict[str, torch.optim.Optimizer],
                   step: int) -> dict[str, Tensor]:
        images = list(batch["image"] * 0.5 + 0.5)  # Faster R-CNN normalises [0, 1] with mean = std = 0.5
        losses = self.trained_call("model", self.detector, images, batch["targets"])
        loss = sum(losses.values())
        optimize(loss, optimizers["model"])
        return {"loss": loss.detach(), **{name: value.detach() for name, value in losses.items()}}

    @torch.no_grad()
    def predict(self, images: Tensor) -> list[dict[str, Tensor]]:
        """``images (B, 3, S, S)`` in [-1, 1] -> per image ``boxes`` (pixels), ``scores``, ``labels`` (0-based)."""
        self.eval()
        outputs = self.detector(list(images.float() * 0.5 + 0.5))
        return [{"boxes": o["boxes"].float(), "scores": o["scores"].float(), "labels": o["labels"] - 1}
                for o in outputs]

    def evaluation_step(self, batch: dict[str, Any], number: int) -> dict[str, list]:
        """This batch's detections and ground-truth boxes (labels 0-based, with their difficult flags), on the CPU."""
        predictions = [{key: value.cpu() for key, value in output.items()} for output in self.predict(batch["image"])]
        truths = [{"boxes": target["boxes"].cpu(), "labels": target["labels"].cpu() - 1,
                   "difficult": target["difficult"].cpu()} for target in batch["targets"]]
        return {"predictions": predictions, "truths": truths}

    def evaluation_summary(self, totals: dict[str, list], batches: int) -> dict[str, Any]:
        """COCO-style mAP and AP@0.5, and VOC's 11-point and area mAP, over every image evaluated."""
        predictions, truths = totals.get("predictions", []), totals.get("truths", [])
        scores = detection_map(predictions, truths, self.num_classes, max_detections=DETECTIONS_PER_IMAGE)
        voc = voc_detection_ap(predictions, truths, self.num_classes, iou_threshold=0.5)
        return {"map50": scores["map50"], "map": scores["map"], "map75": scores["map75"],
                "map50_voc07_11point": voc["map_voc07_11point"], "map50_voc_area": voc["map_voc_area"],
                "class_ap50": scores["class_ap50"], "eval_images": float(len(truths))}


@PROBES.register("detection")
def run_detection(context: ProbeContext) -> dict[str, Any]:
    """Fine-tune Faster R-CNN on ``data.train_split`` boxes; mAP on ``data.eval_split``."""
    probe, data = context.probe, context.data
    layers = context.layers()
    if len(layers) != 1:
        raise UserError(f"the detection probe reads one feature map; probe.layer '{probe.layer}' names "
                        f"{len(layers)}")
    if data.crop_scale != 1.0:
        raise UserError(f"the detection probe does not crop (boxes would be cut); set data.crop_scale=1.0 "
                        f"instead of {data.crop_scale}")
    train_split, eval_split = context.splits()
    input_size = context.input_size(train_split)
    num_classes = context.num_classes(train_split)
    image_size = probe.detection_min_size
    task = DetectionProbe(context.encoder, layers[0], num_classes, image_size, context.finetune,
                          probe.detection_score_threshold)
    train_loader, eval_loader = context.loaders(train_split, eval_split, crop_scale=1.0, hflip=False)
    seed = context.train.seed
    metrics = context.trainer.fit(task, BoxBatches(train_loader, train_split, seed, data.hflip))
    metrics.update(task.evaluate(BoxBatches(eval_loader, eval_split, seed, hflip=False, min_side=0.0,
                                            keep_difficult=True), context.trainer.autocast))
    details = {
        "pooling": f"RoIAlign {ROI_OUTPUT_SIZE}x{ROI_OUTPUT_SIZE} on {layers[0]}",
        "input_size": list(input_size),
        "detector_size": image_size,
        "anchor_sizes": list(anchor_sizes(image_size)),
        "num_classes": num_classes,
        "roi_pool": type(task.detector.roi_heads.box_roi_pool).__name__,
        "chance": {"map50": 0.0, "map": 0.0, "map50_voc07_11point": 0.0, "map50_voc_area": 0.0},
        "headline": ["map50", "map", "map50_voc07_11point", "map50_voc_area"],
    }
    return {"metrics": metrics, "details": details}
