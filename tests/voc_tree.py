"""A PASCAL VOC devkit folder made from real photos: CMP Facade's images, boxes and label maps in VOC's layout.

PASCAL VOC itself is not in the shared data, so the VOC reader and the VOC protocols are tested on this tree,
which has VOC's files and quirks: ``Annotations/<id>.xml`` with 1-based inclusive ``bndbox`` corners,
``difficult`` objects (every 4th box), a ``person`` with ``part`` boxes (head, hand) that are not objects,
``ImageSets/Main`` and ``ImageSets/Segmentation`` lists, and palette-PNG label maps (0 background, k the k-th
class, 255 on the border between regions). The classes are the facade's, so the reader has to take them from
the annotations (a user's own set), not from VOC's 20.

``write_voc_tree(base, count)`` writes ``base/VOCdevkit/VOC2007`` (the folder torchvision's VOC datasets expect
too, so a test can compare both readings) and returns what it wrote.
"""
from __future__ import annotations

import io
import math
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ssl_ctx.data.datasets import FACADE_CLASSES, parse_facade_xml

FACADE_ARCHIVE = "CMP_facade_DB_base.tar.gz"
DIFFICULT_EVERY = 4  # every 4th object (in file order, over the whole tree) is marked difficult
PERSON_EVERY = 5  # every 5th image gets a person with part boxes
TEST_EVERY = 4  # every 4th image is test; the others alternate train / val


@dataclass
class VocTree:
    root: Path  # .../VOCdevkit/VOC2007
    class_names: list[str]
    splits: dict[str, list[str]]  # "train", "val", "trainval", "test", "seg_train", "seg_val" -> image ids
    objects: dict[str, list[tuple[str, tuple[int, int, int, int], bool]]] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (width, height)


def voc_palette() -> list[int]:
    """The devkit's colour map (VOCcolormap.m): index -> RGB, flattened for ``Image.putpalette``."""
    palette = []
    for index in range(256):
        red = green = blue = 0
        value = index
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette += [red, green, blue]
    return palette


def _pixel_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """Relative xyxy -> VOC's 1-based inclusive pixel corners."""
    x0, y0 = max(1, math.floor(box[0] * width) + 1), max(1, math.floor(box[1] * height) + 1)
    x1, y1 = min(width, max(x0, math.ceil(box[2] * width))), min(height, max(y0, math.ceil(box[3] * height)))
    return x0, y0, x1, y1


def _annotation_xml(image_id: str, size: tuple[int, int], objects: list, person: tuple | None) -> str:
    parts = [f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>",
             f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size><segmented>1</segmented>"]
    for name, (x0, y0, x1, y1), difficult in objects:
        inner = ""
        if name == "person" and person is not None:
            for part_name, (px0, py0, px1, py1) in person:
                inner += (f"<part><name>{part_name}</name><bndbox><xmin>{px0}</xmin><ymin>{py0}</ymin>"
                          f"<xmax>{px1}</xmax><ymax>{py1}</ymax></bndbox></part>")
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                     f"<difficult>{int(difficult)}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                     f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>{inner}</object>")
    return "".join(parts) + "</annotation>\n"


def _voc_label_map(facade_png: bytes, class_of: dict[str, int]) -> Image.Image:
    """CMP palette indices (1 background, 2..12 the facade classes) -> VOC's (0 background, k, 255 borders)."""
    raw = np.asarray(Image.open(io.BytesIO(facade_png)))
    lut = np.full(256, 255, dtype=np.uint8)
    lut[1] = 0
    for cmp_index, name in enumerate(FACADE_CLASSES[1:], start=2):
        if name in class_of:
            lut[cmp_index] = class_of[name] + 1
    labels = lut[raw]
    border = np.zeros(labels.shape, dtype=bool)  # VOC marks the outline between regions as void
    border[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    border[:-1, :] |= labels[:-1, :] != labels[1:, :]
    labels = np.where(border, 255, labels).astype(np.uint8)
    image = Image.fromarray(labels, "P")
    image.putpalette(voc_palette())
    return image


def write_voc_tree(base: Path, archive: Path, count: int = 40) -> VocTree:
    """Write ``count`` CMP Facade images (sorted order) as ``base/VOCdevkit/VOC2007`` and describe them."""
    root = base / "VOCdevkit" / "VOC2007"
    for folder in ("Annotations", "JPEGImages", "SegmentationClass", "ImageSets/Main", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = {m.name.rsplit("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
        stems = sorted(n[:-4] for n in members if n.startswith("cmp_b") and n.endswith(".jpg"))[:count]
        files = {stem: {ext: tar.extractfile(members[stem + ext]).read() for ext in (".jpg", ".png", ".xml")}
                 for stem in stems}
    tree_objects: dict[str, list] = {}
    persons: dict[str, tuple] = {}
    sizes: dict[str, tuple[int, int]] = {}
    object_number = 0
    for number, stem in enumerate(stems):
        image_id = f"{number + 1:06d}"
        width, height = Image.open(io.BytesIO(files[stem][".jpg"])).size
        sizes[image_id] = (width, height)
        boxes, labels = parse_facade_xml(files[stem][".xml"].decode())
        objects = []
        for box, label in zip(boxes, labels):
            if FACADE_CLASSES[label] == "background":
                continue
            objects.append((FACADE_CLASSES[label], _pixel_box(box, width, height),
                            object_number % DIFFICULT_EVERY == DIFFICULT_EVERY - 1))
            object_number += 1
        if number % PERSON_EVERY == 0:  # a person standing in front, with a head and a hand
            person = (width // 3, height // 3, 2 * width // 3, height - 1)
            objects.append(("person", person, False))
            persons[image_id] = (("head", (person[0] + 5, person[1], person[0] + 25, person[1] + 20)),
                                 ("hand", (person[0], person[1] + 40, person[0] + 10, person[1] + 50)))
        tree_objects[image_id] = objects
    class_names = sorted({name for objects in tree_objects.values() for name, _, _ in objects})
    class_of = {name: i for i, name in enumerate(class_names)}
    for number, stem in enumerate(stems):
        image_id = f"{number + 1:06d}"
        (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(files[stem][".jpg"])
        (root / "Annotations" / f"{image_id}.xml").write_text(
            _annotation_xml(image_id, sizes[image_id], tree_objects[image_id], persons.get(image_id)))
        _voc_label_map(files[stem][".png"], class_of).save(root / "SegmentationClass" / f"{image_id}.png")
    ids = [f"{n + 1:06d}" for n in range(len(stems))]
    test = [i for n, i in enumerate(ids) if n % TEST_EVERY == TEST_EVERY - 1]
    rest = [i for i in ids if i not in test]
    splits = {"train": rest[0::2], "val": rest[1::2], "test": test}
    splits["trainval"] = sorted(splits["train"] + splits["val"])
    splits["seg_train"], splits["seg_val"] = splits["train"][: len(splits["train"]) // 2 + 1], splits["val"]
    for split, folder in (("train", "Main"), ("val", "Main"), ("trainval", "Main"), ("test", "Main"),
                          ("seg_train", "Segmentation"), ("seg_val", "Segmentation")):
        name = split.removeprefix("seg_")
        (root / "ImageSets" / folder / f"{name}.txt").write_text("".join(f"{i}\n" for i in splits[split]))
    return VocTree(root, class_names, splits, tree_objects, sizes)
