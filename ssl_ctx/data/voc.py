"""PASCAL VOC as published: a ``VOCdevkit/VOC2007``-style folder read as ``voc:<path>``.

Layout (the devkit's; VOC 2007 and 2012 alike, and a user's own detection set written the same way)::

    <path>/Annotations/<id>.xml              one <annotation> per image: <size>, top-level <object>s with <name>,
                                             <difficult>, <truncated>, <bndbox> (1-based inclusive pixel corners);
                                             a person's <part> boxes (head, hand, foot) are parts, not objects
    <path>/JPEGImages/<id>.jpg
    <path>/ImageSets/Main/{train,val,trainval,test}.txt          image ids, one per line
    <path>/ImageSets/Segmentation/{train,val,trainval,test}.txt  the images that have label maps
    <path>/SegmentationClass/<id>.png        palette indices: 0 background, k = the k-th class, 255 the void border

Splits: each ``ImageSets/Main/<split>.txt`` present is split ``<split>`` (images with boxes and per-image class
sets); each ``ImageSets/Segmentation/<split>.txt`` present is split ``seg_<split>`` (the same plus label maps).
VOC 2007's trainval and test (from the two published tar files extracted into one folder) therefore give
``trainval`` and ``test`` for classification and detection, and VOC 2012's ``seg_train`` / ``seg_val`` give the
segmentation benchmark. ``trainval`` is cached on its own (its images are also in ``train`` and ``val``): the
protocols read one split each.

What each image carries (:class:`~ssl_ctx.data.datasets.Item`):
- ``boxes``: every object's box in pixels, ``xmin - 1, ymin - 1, xmax, ymax`` (0-based, exclusive right edge,
  the convention of the other readers), ``box_labels`` its class, ``box_difficult`` VOC's ``difficult`` flag
  (the VOC rule ignores those objects when scoring, and detectors are not trained on them);
- ``label_set``: per class 1 (a non-difficult object of the class), 0 (difficult objects only) or -1 (none),
  exactly what the devkit's ``ImageSets/Main/<class>_<split>.txt`` files hold, derived from the annotations so
  that a set without those files works too;
- ``label_map`` (segmentation splits): the PNG's palette index, values above the class count made 255.

Classes are VOC's 20 in the devkit's order when every object's name is one of them, otherwise the sorted names
found in the annotations (a user's own set); segmentation splits have ``background`` first.

torchvision's ``VOCDetection`` / ``VOCSegmentation`` parse the same files, but only inside a folder named
``VOCdevkit/VOC<year>`` with a year from a fixed list, they decode each image when indexed, and their XML
parser is a method of a dataset object; the few lines of ``parse_voc_annotation`` read the same fields from
any folder or archive without decoding (a test checks both readings agree on a real tree).
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

import numpy as np

from ssl_ctx.data.archives import FileTree
from ssl_ctx.data.cache import IGNORE_INDEX
from ssl_ctx.data.datasets import DatasetIndex, Item, Layout, tree_path, tree_text
from ssl_ctx.data.decode import SQUEEZE

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
SPLIT_NAMES = ("train", "val", "trainval", "test")
SEGMENTATION_PREFIX = "seg_"
BACKGROUND = "background"
VOC_DEFAULT_SIZE = (256, 256)  # the protocols crop or resize to 227 px from here (AlexNet's input)
VOC_DEFAULT_RESIZE = SQUEEZE  # the whole image: its boxes and label maps cover all of it


@dataclass
class VocObject:
    """One top-level ``<object>`` of an annotation; ``box`` is 0-based xyxy in pixels, exclusive right edge."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool
    truncated: bool


def parse_voc_annotation(text: bytes | str) -> tuple[tuple[int, int] | None, list[VocObject]]:
    """An ``Annotations/<id>.xml`` -> ((width, height) from ``<size>`` or None, its objects in file order).

    Only the annotation's own ``<object>`` children count: a person's ``<part>`` boxes are nested inside it.
    Raises ``ValueError`` naming what is wrong (no bndbox, a coordinate that is not a number).
    """
    root = ElementTree.fromstring(text)
    size = None
    width, height = root.findtext("size/width"), root.findtext("size/height")
    if width and height and float(width) > 0 and float(height) > 0:
        size = (int(float(width)), int(float(height)))
    objects = []
    for element in root.findall("object"):
        name = (element.findtext("name") or "").strip()
        box = element.find("bndbox")
        if not name or box is None:
            raise ValueError(f"object {len(objects) + 1} has no {'name' if not name else 'bndbox'}")
        try:
            x0, y0, x1, y1 = (float(box.findtext(key) or "nan") for key in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as err:
            raise ValueError(f"object '{name}' has a bndbox value that is not a number ({err})") from None
        if not x0 <= x1 or not y0 <= y1:  # also catches a missing (NaN) coordinate
            raise ValueError(f"object '{name}' has the bndbox {x0:g},{y0:g},{x1:g},{y1:g}; expected xmin <= xmax, "
                             f"ymin <= ymax")
        objects.append(VocObject(
            name=name, box=(x0 - 1.0, y0 - 1.0, x1, y1),  # 1-based inclusive -> 0-based, exclusive right edge
            difficult=_flag(element, "difficult"), truncated=_flag(element, "truncated"),
        ))
    return size, objects


def _flag(element: ElementTree.Element, tag: str) -> bool:
    return (element.findtext(tag) or "0").strip() not in ("0", "")


def class_names_of(objects: list[VocObject]) -> list[str]:
    """VOC's 20 classes when every name is one of them, else the sorted names that occur."""
    names = {obj.name for obj in objects}
    return list(VOC_CLASSES) if names <= set(VOC_CLASSES) else sorted(names)


def label_set(objects: list[VocObject], class_of: dict[str, int]) -> np.ndarray:
    """``(K,) int8``: 1 where a non-difficult object of the class is present, 0 where only difficult ones, -1 else."""
    values = np.full(len(class_of), -1, dtype=np.int8)
    for obj in objects:
        if obj.difficult:
            values[class_of[obj.name]] = max(values[class_of[obj.name]], 0)
        else:
            values[class_of[obj.name]] = 1
    return values


def _ids(tree: FileTree, path: str) -> list[str]:
    """The image ids of an ImageSets list (first word of each line; the per-class lists have a second one)."""
    return [line.split()[0] for line in tree_text(tree, path).splitlines() if line.strip()]


def find_voc_root(paths: list[str]) -> str | None:
    """The folder holding ``Annotations/`` and ``JPEGImages/`` (the shallowest one), or None."""
    roots = {path.rsplit("/", 2)[0] if path.count("/") >= 2 else "" for path in paths
             if re.search(r"(^|/)Annotations/[^/]+\.xml$", path)}
    images = {path.rsplit("/", 2)[0] if path.count("/") >= 2 else "" for path in paths
              if re.search(r"(^|/)JPEGImages/[^/]+$", path)}
    found = sorted(roots & images, key=lambda root: (root.count("/") if root else -1, root))
    return found[0] if found else None


def index_voc(tree: FileTree, root: str) -> DatasetIndex:
    """Every ImageSets list of the folder -> its split's items (see the module docstring)."""
    lists = {split: tree_path(root, "ImageSets", "Main", f"{split}.txt") for split in SPLIT_NAMES}
    lists.update({SEGMENTATION_PREFIX + split: tree_path(root, "ImageSets", "Segmentation", f"{split}.txt")
                  for split in SPLIT_NAMES})
    split_ids = {split: _ids(tree, path) for split, path in lists.items() if tree.exists(path)}
    annotations: dict[str, list[VocObject]] = {}
    problems: dict[str, str] = {}
    for image_id in dict.fromkeys(i for ids in split_ids.values() for i in ids):
        path = tree_path(root, "Annotations", f"{image_id}.xml")
        if not tree.exists(path):
            problems[image_id] = f"no annotation {path}"
            continue
        try:
            annotations[image_id] = parse_voc_annotation(tree.read(path))[1]
        except (ElementTree.ParseError, ValueError) as err:
            problems[image_id] = f"bad annotation {path}: {err}"
    class_names = class_names_of([obj for objects in annotations.values() for obj in objects])
    class_of = {name: i for i, name in enumerate(class_names)}
    segmentation_classes = [BACKGROUND, *class_names]
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[: len(segmentation_classes)] = np.arange(len(segmentation_classes))

    splits: dict[str, list[Item]] = {}
    skipped: dict[str, list[tuple[str, str]]] = {}
    for split, ids in split_ids.items():
        splits[split], skipped[split] = [], []
        segmentation = split.startswith(SEGMENTATION_PREFIX)
        for image_id in ids:
            image = tree_path(root, "JPEGImages", f"{image_id}.jpg")
            if image_id in problems:
                skipped[split].append((image, problems[image_id]))
                continue
            objects = annotations[image_id]
            item = Item(
                image, boxes=np.asarray([obj.box for obj in objects], dtype=np.float32).reshape(-1, 4),
                box_labels=np.asarray([class_of[obj.name] for obj in objects], dtype=np.int64),
                box_difficult=np.asarray([obj.difficult for obj in objects], dtype=bool),
                boxes_in_pixels=True, label_set=label_set(objects, class_of),
            )
            if segmentation:
                item.label_map = tree_path(root, "SegmentationClass", f"{image_id}.png")
                if not tree.exists(item.label_map):
                    skipped[split].append((image, f"no label map {item.label_map}"))
                    continue
            splits[split].append(item)
    return DatasetIndex(
        splits=splits, class_names=class_names, has_boxes=True, has_label_sets=True, label_lut=lut,
        skipped=skipped,
        split_class_names={s: segmentation_classes for s in splits if s.startswith(SEGMENTATION_PREFIX)},
        extra_meta={"layout": "PASCAL VOC devkit", "box_convention": "VOC 1-based inclusive pixels -> 0-based, "
                                                                    "exclusive right edge"},
    )


VOC_LAYOUT = Layout(archives=(), folders=(), find_root=find_voc_root, index=index_voc)
