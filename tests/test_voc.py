"""PASCAL VOC as published (``voc:<path>``) on a devkit tree made from real photos (tests/voc_tree.py): the
reader agrees with torchvision's, keeps VOC's quirks (difficult objects, a person's parts, 255 borders), every
VOC probe reads the cache, and the VOC07 detection AP of a known set of detections is the hand-computed one."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

from ssl_ctx.cli import main
from ssl_ctx.data import load_split, prepare
from ssl_ctx.data.archives import FolderTree
from ssl_ctx.data.voc import VOC_CLASSES, index_voc, parse_voc_annotation
from ssl_ctx.errors import UserError
from tests.voc_tree import FACADE_ARCHIVE, VocTree, write_voc_tree

pytestmark = pytest.mark.slow
SIZE = 96


@pytest.fixture(scope="module")
def voc_tree(tmp_path_factory: pytest.TempPathFactory, real_data_env: dict[str, str]) -> VocTree:
    return write_voc_tree(tmp_path_factory.mktemp("voc"), Path(real_data_env["SSL_CTX_DATA"]) / FACADE_ARCHIVE,
                          count=40)


@pytest.fixture
def voc(voc_tree: VocTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_data_env) -> VocTree:
    monkeypatch.setenv("SSL_CTX_DATA", real_data_env["SSL_CTX_DATA"])
    monkeypatch.setenv("SSL_CTX_CACHE", real_data_env["SSL_CTX_CACHE"])  # one cache for the module's probes
    return voc_tree


def test_reader_agrees_with_torchvision(voc_tree: VocTree):
    """torchvision's VOCDetection parses the same XML into the same names, corners and difficult flags."""
    from torchvision.datasets import VOCDetection

    parsed = VOCDetection(str(voc_tree.root.parents[1]), year="2007", image_set="trainval")
    assert len(parsed.annotations) == len(voc_tree.splits["trainval"])
    for path in parsed.annotations:
        theirs = parsed.parse_voc_xml(ElementTree.parse(path).getroot())["annotation"]["object"]
        size, ours = parse_voc_annotation(Path(path).read_bytes())
        assert [o["name"] for o in theirs] == [o.name for o in ours]
        assert [bool(int(o["difficult"])) for o in theirs] == [o.difficult for o in ours]
        corners = [tuple(float(o["bndbox"][k]) for k in ("xmin", "ymin", "xmax", "ymax")) for o in theirs]
        assert [(x0 - 1, y0 - 1, x1, y1) for x0, y0, x1, y1 in corners] == [o.box for o in ours]


def test_every_split_with_boxes_class_sets_and_label_maps(voc: VocTree):
    folder = prepare(f"voc:{voc.root}", SIZE, progress=False)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["splits"] == {split: len(ids) for split, ids in voc.splits.items()}
    class_of = {name: i for i, name in enumerate(voc.class_names)}
    trainval = load_split(f"voc:{voc.root}", "trainval", SIZE)
    assert trainval.class_names == voc.class_names  # the facade's names, from the annotations
    for position, image_id in enumerate(voc.splits["trainval"]):
        objects = voc.objects[image_id]  # a person's head and hand are parts, not objects
        assert list(trainval.box_labels[position]) == [class_of[name] for name, _, _ in objects]
        assert list(trainval.box_difficult[position]) == [difficult for _, _, difficult in objects]
        width, height = voc.sizes[image_id]
        (x0, y0, x1, y1) = objects[0][1]
        np.testing.assert_allclose(trainval.boxes[position][0],
                                   [(x0 - 1) / width, (y0 - 1) / height, x1 / width, y1 / height], atol=1e-6)
        expected = np.full(len(voc.class_names), -1)
        for name, _, difficult in sorted(objects, key=lambda o: o[2], reverse=True):  # difficult first
            expected[class_of[name]] = 0 if difficult else 1
        assert list(trainval.label_sets[position]) == list(expected)
    assert any((trainval.label_sets == 0).any(1)), "a class present only as difficult objects"
    assert trainval.label_maps is None  # classification / detection splits have no label maps
    segmentation = load_split(f"voc:{voc.root}", "seg_val", SIZE)
    assert segmentation.class_names == ["background", *voc.class_names]
    values = np.unique(np.asarray(segmentation.label_maps))
    assert 255 in values and values[values != 255].max() <= len(voc.class_names)


def test_voc_class_names_by_default(tmp_path: Path):
    """An annotation set whose names are all VOC's gets VOC's 20 classes in the devkit's order."""
    root = tmp_path / "VOC2007"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "test.txt").write_text("000001\n")
    (root / "JPEGImages" / "000001.jpg").write_bytes(b"")
    (root / "Annotations" / "000001.xml").write_text(
        "<annotation><object><name>dog</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>10</xmax><ymax>10</ymax></bndbox></object></annotation>")
    index = index_voc(FolderTree(root), "")
    assert index.class_names == list(VOC_CLASSES)
    assert list(index.splits["test"][0].label_set) == [0 if c == "dog" else -1 for c in VOC_CLASSES]


def test_a_folder_without_voc_files_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SSL_CTX_CACHE", str(tmp_path / "cache"))
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="Annotations"):
        prepare(f"voc:{tmp_path / 'photos'}", SIZE, progress=False)


PROBE_SIZES = ["data.cache_size=[96,96]", "model.encoder=alexnet64", "model.width=0.25", "model.norm=batch",
               "model.groups=1", "probe.bn_images=32", "train.batch_size=8", "train.device=cpu"]


def _probe(tmp_path: Path, config: str, *overrides: str) -> dict:
    status = main(["probe", config, f"output_dir={tmp_path}", "name=voc", *PROBE_SIZES, *overrides])
    assert status == 0
    return json.loads((tmp_path / "voc" / "record.json").read_text())


def test_frozen_svm_classification_reads_voc(voc: VocTree, tmp_path: Path):
    record = _probe(tmp_path, "configs/probe/voc07_classification_frozen.yaml", f"data.dataset=voc:{voc.root}",
                    "data.train_split=trainval", "data.input_size=96", "probe.layer=conv1+conv5",
                    "probe.pooled_features=256", "probe.svm_costs=[0.01,1.0]", "probe.svm_folds=2")
    metrics = record["metrics"]
    assert metrics["eval_images"] == len(voc.splits["test"])
    assert 0.0 <= metrics["map@conv1"] <= 1.0 and 0.0 <= metrics["map@conv5"] <= 1.0
    assert record["chance"]["map@conv1"] > 0


def test_finetuned_classification_reads_voc(voc: VocTree, tmp_path: Path):
    record = _probe(tmp_path, "configs/probe/voc07_classification_finetune.yaml", f"data.dataset=voc:{voc.root}",
                    "data.input_size=80", "train.max_steps=2", "train.epochs=1")
    assert record["metrics"]["eval_images"] == len(voc.splits["test"]) and 0.0 <= record["metrics"]["map"] <= 1.0


def test_detection_reads_voc_with_the_voc07_rule(voc: VocTree, tmp_path: Path):
    record = _probe(tmp_path, "configs/probe/voc07_detection.yaml", f"data.dataset=voc:{voc.root}",
                    "data.input_size=96", "probe.detection_min_size=96", "train.max_steps=2", "train.epochs=1",
                    "train.batch_size=4")
    metrics = record["metrics"]
    assert {"map50_voc07_11point", "map50_voc_area", "map50"} <= set(metrics)
    assert metrics["eval_images"] == len(voc.splits["test"])


def test_segmentation_reads_voc(voc: VocTree, tmp_path: Path):
    record = _probe(tmp_path, "configs/probe/voc12_segmentation.yaml", f"data.dataset=voc:{voc.root}",
                    "data.input_size=80", "probe.mode=linear", "probe.solver=ridge", "probe.layer=conv2+conv5")
    assert record["probe"]["num_classes"] == len(voc.class_names) + 1  # background + the classes
    assert record["metrics"]["eval_images"] == len(voc.splits["seg_val"]) and 0.0 <= record["metrics"]["miou"] <= 1.0


def test_voc07_ap_of_known_detections_on_the_tree(voc: VocTree):
    """The people of the test split (two, none difficult) against four detections, scored by hand:

    ranked by score: hit on image A (TP), a box on image B overlapping its person by less than 0.5 (FP), hit on
    image B (TP), a second hit on image A (FP: the person is taken). Precision / recall down the ranks: 1/.5,
    .5/.5, 2/3/1, .5/1. 11-point AP: recall thresholds 0 ... .5 (6 points) reach precision 1, .6 ... 1 (5 points)
    reach 2/3: (6 + 5 * 2/3) / 11 = 28/33. Area AP: the precision envelope is 1 up to recall .5, then 2/3:
    .5 * 1 + .5 * 2/3 = 5/6.
    """
    from ssl_ctx.probes.metrics import voc_detection_ap

    test = load_split(f"voc:{voc.root}", "test", SIZE)
    person = voc.class_names.index("person")
    scale = np.array([SIZE, SIZE, SIZE, SIZE], dtype=np.float32)
    truths = [{"boxes": test.boxes[i] * scale, "labels": test.box_labels[i], "difficult": test.box_difficult[i]}
              for i in range(len(test))]
    holders = [i for i in range(len(test)) if person in test.box_labels[i]]
    assert len(holders) == 2
    a, b = holders
    box_a = truths[a]["boxes"][list(truths[a]["labels"]).index(person)]
    box_b = truths[b]["boxes"][list(truths[b]["labels"]).index(person)]
    shifted = box_b + np.array([0.6, 0.0, 0.6, 0.0], dtype=np.float32) * (box_b[2] - box_b[0])  # IoU 0.25
    detections = {a: [(box_a, 0.9), (box_a, 0.6)], b: [(shifted, 0.8), (box_b, 0.7)]}
    predictions = []
    for i in range(len(test)):
        found = detections.get(i, [])
        predictions.append({"boxes": np.array([box for box, _ in found], np.float32).reshape(-1, 4),
                            "scores": np.array([score for _, score in found], np.float32),
                            "labels": np.full(len(found), person)})
    scores = voc_detection_ap(predictions, truths, len(voc.class_names))
    assert scores["class_ap_voc07_11point"][person] == pytest.approx(28 / 33, abs=1e-12)
    assert scores["class_ap_voc_area"][person] == pytest.approx(5 / 6, abs=1e-12)
