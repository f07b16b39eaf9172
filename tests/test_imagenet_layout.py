"""``imagenet:<path>``: ILSVRC-2012's published layout, read on a small tree of real images.

The tree is built once from Tiny-ImageNet (real ImageNet photos at 64 px, each val image with its true wnid in
``val/val_annotations.txt``): 5 wnids x 4 train images as ``train/<wnid>/<wnid>_<i>.JPEG`` and 16 val images as
``val/ILSVRC2012_val_<n>.JPEG``, labelled by a devkit (``meta.mat`` written with scipy in the devkit's structure,
non-leaf synsets included, IDs in another order than the sorted wnids) or by Kaggle's ``LOC_val_solution.csv``.
Image 9 is absent (its ground-truth line must not shift the later ones) and image 17 has no label (skipped).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torchvision

from ssl_ctx.cli import main
from ssl_ctx.data import load_split, prepare
from ssl_ctx.data.archives import FolderTree
from ssl_ctx.data.catalogue import get_spec
from ssl_ctx.data.imagenet import index_imagenet, parse_meta_mat, val_image_name
from ssl_ctx.errors import UserError
from ssl_ctx.images import open_rgb
from ssl_ctx.results.records import read_record

pytestmark = pytest.mark.slow
SHARED_DATA = Path(os.environ.get("SSL_CTX_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
TINY = SHARED_DATA / "tiny-imagenet-200.tar.gz"
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "probe"
TRAIN_PER_CLASS, VAL_PER_CLASS = 4, 3
VAL_NUMBERS = [*range(1, 9), *range(10, 17)]  # the 15 labelled images; 9 is absent, 17 has no label
UNLABELLED = 17
LEAF_IDS = [3, 5, 1, 4, 2]  # ILSVRC2012_ID of the sorted wnids: the devkit's ID order is not the sorted one
NON_LEAVES = [("n00001740", "entity", [7, 8]), ("n00021939", "artifact, artefact", [3, 5]),
              ("n00002684", "object, physical object", [1, 4, 2, 6])]
SIZE = "64"  # Tiny-ImageNet's own size: cached pixels are the decoded files, untouched


class ImagenetSample:
    """What the trees are made of: per wnid its train JPEGs, the val JPEGs by number with their true wnids."""

    def __init__(self) -> None:
        members: dict[str, bytes] = {}
        with tarfile.open(TINY, "r|gz") as tar:  # one pass; the val images come after val_annotations.txt
            for member in tar:
                name = member.name.removeprefix("tiny-imagenet-200/")
                wanted = name in ("wnids.txt", "words.txt", "val/val_annotations.txt") or name.startswith("val/")
                if member.isfile() and (wanted or name.endswith(tuple(f"_{i}.JPEG" for i in range(TRAIN_PER_CLASS)))):
                    members[name] = tar.extractfile(member).read()
        all_wnids = sorted(members["wnids.txt"].decode().split())
        self.wnids = all_wnids[::40][:5]
        self.extra_wnid = all_wnids[1]  # a synset of the devkit with no train folder
        words = dict(line.split("\t", 1) for line in members["words.txt"].decode().splitlines())
        self.words = {wnid: words[wnid].strip() for wnid in [*self.wnids, self.extra_wnid]}
        self.train = {wnid: [members[f"train/{wnid}/images/{wnid}_{i}.JPEG"] for i in range(TRAIN_PER_CLASS)]
                      for wnid in self.wnids}
        by_wnid: dict[str, list[str]] = {}
        for line in members["val/val_annotations.txt"].decode().splitlines():
            name, wnid = line.split("\t")[:2]
            by_wnid.setdefault(wnid, []).append(name)
        picked = [(by_wnid[w][i], w) for w in self.wnids for i in range(VAL_PER_CLASS)]
        picked.append((by_wnid[self.wnids[0]][-1], self.wnids[0]))  # the image left without a label
        order = np.random.default_rng(0).permutation(len(picked) - 1).tolist() + [len(picked) - 1]
        numbers = [*VAL_NUMBERS, UNLABELLED]
        self.val = {numbers[k]: members[f"val/images/{picked[i][0]}"] for k, i in enumerate(order)}
        self.val_wnid = {numbers[k]: picked[i][1] for k, i in enumerate(order)}

    def expected_val_labels(self) -> list[int]:
        return [self.wnids.index(self.val_wnid[n]) for n in VAL_NUMBERS]


def meta_mat(sample: ImagenetSample) -> bytes:
    """``data/meta.mat`` as the devkit has it: ``synsets``, leaves first (IDs 1..), then WordNet ancestors."""
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    leaves = sorted([(i, w, sample.words[w], [], 0) for i, w in zip(LEAF_IDS, sample.wnids)]
                    + [(6, sample.extra_wnid, sample.words[sample.extra_wnid], [], 0)])
    rows = leaves + [(7 + k, w, words, children, 1 + k) for k, (w, words, children) in enumerate(NON_LEAVES)]
    synsets = np.zeros((len(rows), 1), dtype=[(f, "O") for f in fields])
    for row, (number, wnid, words, children, height) in enumerate(rows):
        values = [float(number), wnid, words, f"a gloss of {words}", float(len(children)),
                  np.asarray(children, dtype=float).reshape(1, -1), float(height), 0.0 if children else 500.0]
        for field, value in zip(fields, values):
            synsets[row, 0][field] = value
    out = io.BytesIO()
    scipy.io.savemat(out, {"synsets": synsets})
    return out.getvalue()


def write_common(folder: Path, sample: ImagenetSample, val_in_folders: bool = False) -> Path:
    """The images of every form: ``train/<wnid>/``, and ``val/`` flat or (``val_in_folders``) in ``val/<wnid>/``."""
    for wnid, images in sample.train.items():
        for i, data in enumerate(images):
            (folder / "train" / wnid).mkdir(parents=True, exist_ok=True)
            (folder / "train" / wnid / f"{wnid}_{i}.JPEG").write_bytes(data)
    for number, data in sample.val.items():
        sub = sample.val_wnid[number] if val_in_folders else ""
        if val_in_folders and number == UNLABELLED:
            continue
        (folder / "val" / sub).mkdir(parents=True, exist_ok=True)
        (folder / "val" / sub / f"{val_image_name(number)}.JPEG").write_bytes(data)
    return folder


def devkit_files(sample: ImagenetSample) -> dict[str, bytes]:
    """``ILSVRC2012_devkit_t12/``'s files by path: meta.mat and one ground-truth line per image 1..16."""
    id_of = dict(zip(sample.wnids, LEAF_IDS))
    lines = [str(id_of[sample.val_wnid[n]]) if n in sample.val_wnid else str(id_of[sample.wnids[2]])
             for n in range(1, UNLABELLED)]  # line 9 names a class; its image is absent
    return {"ILSVRC2012_devkit_t12/data/meta.mat": meta_mat(sample),
            "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": "\n".join(lines).encode() + b"\n",
            "ILSVRC2012_devkit_t12/COPYING": b"devkit\n"}


def loc_solution(sample: ImagenetSample, override: dict[int, str] | None = None) -> str:
    """``LOC_val_solution.csv`` for images 1..16 (rows in another order, wnid then box, as Kaggle's)."""
    wnid_of = {**{n: w for n, w in sample.val_wnid.items() if n != UNLABELLED}, 9: sample.wnids[2], **(override or {})}
    rows = [f"{val_image_name(n)},{w} 10 12 50 60 {w} 0 0 63 63" for n, w in sorted(wnid_of.items(), reverse=True)]
    return "ImageId,PredictionString\n" + "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def sample() -> ImagenetSample:
    if not TINY.is_file():
        pytest.skip(f"{TINY.name} not in {SHARED_DATA}")
    return ImagenetSample()


@pytest.fixture(scope="module")
def trees(sample: ImagenetSample, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same images in each published form: devkit folder, devkit archive, LOC csv, val sorted into folders."""
    data = tmp_path_factory.mktemp("data")
    devkit = write_common(data / "devkit", sample)
    for name, content in devkit_files(sample).items():
        (devkit / name).parent.mkdir(parents=True, exist_ok=True)
        (devkit / name).write_bytes(content)
    archive = write_common(data / "archive", sample)
    with tarfile.open(archive / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        for name, content in devkit_files(sample).items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    loc = write_common(data / "loc", sample)
    (loc / "LOC_val_solution.csv").write_text(loc_solution(sample))
    (loc / "LOC_synset_mapping.txt").write_text("".join(f"{w} {sample.words[w]}\n" for w in sorted(sample.words)))
    return {"devkit": devkit, "archive": archive, "loc": loc, "folders": write_common(data / "folders", sample, True)}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def env(trees: dict[str, Path], cache: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("SSL_CTX_DATA", str(trees["devkit"].parent))
    monkeypatch.setenv("SSL_CTX_CACHE", str(cache))
    return trees


def test_devkit_labels_every_val_image_with_its_true_wnid(env: dict[str, Path], sample: ImagenetSample) -> None:
    name = f"imagenet:{env['devkit']}"
    val = load_split(name, "val", size=SIZE)
    assert val.class_names == sorted(sample.wnids) == sample.wnids
    assert val.class_names == torchvision.datasets.ImageFolder(env["devkit"] / "train").classes
    assert val.labels.tolist() == sample.expected_val_labels()
    for row, number in enumerate(VAL_NUMBERS):  # each row is its file, so each label is its file's
        assert np.array_equal(val.images[row], np.asarray(open_rgb(sample.val[number])))
    assert [entry["path"] for entry in val.meta["skipped"]] == [f"val/{val_image_name(UNLABELLED)}.JPEG"]
    assert "no label in ILSVRC2012_devkit_t12/ data/ILSVRC2012_validation_ground_truth.txt" in \
        val.meta["skipped"][0]["reason"]
    assert val.meta["class_descriptions"] == [sample.words[w] for w in sample.wnids]
    train = load_split(name, "train", size=SIZE)
    assert train.labels.tolist() == torchvision.datasets.ImageFolder(env["devkit"] / "train").targets
    assert train.labels.tolist() == [c for c in range(5) for _ in range(TRAIN_PER_CLASS)]


@pytest.mark.parametrize("form", ["archive", "loc", "folders"])
def test_every_label_source_gives_the_same_cache(env: dict[str, Path], form: str) -> None:
    reference = {s: load_split(f"imagenet:{env['devkit']}", s, size=SIZE) for s in ("train", "val")}
    other = {s: load_split(f"imagenet:{env[form]}", s, size=SIZE) for s in ("train", "val")}
    assert np.array_equal(other["train"].images, reference["train"].images)
    assert other["val"].class_names == reference["val"].class_names
    pairs = [sorted((int(label), image.tobytes()) for label, image in zip(split.labels, split.images))
             for split in (reference["val"], other["val"])]
    assert pairs[0] == pairs[1]  # sorted: val/<wnid>/ folders come in class order, flat val in file order
    if form != "folders":
        assert np.array_equal(other["val"].labels, reference["val"].labels)
        assert np.array_equal(other["val"].images, reference["val"].images)
        assert other["val"].meta["class_descriptions"] == reference["val"].meta["class_descriptions"]
        assert len(other["val"].meta["skipped"]) == 1
    assert other["val"].meta["val_labels"] == {
        "archive": "ILSVRC2012_devkit_t12.tar.gz data/ILSVRC2012_validation_ground_truth.txt",
        "loc": "LOC_val_solution.csv", "folders": "val/<wnid>/ folders"}[form]


def test_meta_mat_leaves_and_a_val_only_folder(env: dict[str, Path], sample: ImagenetSample,
                                               tmp_path: Path) -> None:
    wnid_of_id, words = parse_meta_mat(meta_mat(sample))
    assert wnid_of_id == {**dict(zip(LEAF_IDS, sample.wnids)), 6: sample.extra_wnid}  # no ancestor synset
    assert words[sample.extra_wnid] == sample.words[sample.extra_wnid]
    shutil.copytree(env["devkit"], tmp_path / "val-only", ignore=shutil.ignore_patterns("train"))
    index = index_imagenet(FolderTree(tmp_path / "val-only"), "")
    assert index.class_names == sorted([*sample.wnids, sample.extra_wnid]) and list(index.splits) == ["val"]
    assert [index.class_names[item.label] for item in index.splits["val"]] == [sample.val_wnid[n]
                                                                               for n in VAL_NUMBERS]


def test_a_label_outside_the_train_classes_is_one_line(env: dict[str, Path], sample: ImagenetSample,
                                                       tmp_path: Path) -> None:
    bad = shutil.copytree(env["loc"], tmp_path / "bad")
    (bad / "LOC_val_solution.csv").write_text(loc_solution(sample, {4: sample.extra_wnid}))
    with pytest.raises(UserError) as caught:
        prepare(f"imagenet:{bad}", size=SIZE, progress=False)
    message = str(caught.value)
    assert "\n" not in message and sample.extra_wnid in message and val_image_name(4) in message
    (bad / "LOC_val_solution.csv").unlink()
    with pytest.raises(UserError, match="holds 16 images but no labels; put ILSVRC2012_devkit_t12.tar.gz"):
        prepare(f"imagenet:{bad}", size=SIZE, progress=False)


def test_prepare_command_resolves_names_and_rebuilds_on_change(env: dict[str, Path], sample: ImagenetSample,
                                                               tmp_path: Path, capsys) -> None:
    assert get_spec("imagenet:devkit").key == get_spec(f"imagenet:{env['devkit']}").key  # relative: SSL_CTX_DATA
    assert get_spec(f"imagenet:{env['devkit']}").key.startswith("imagenet-devkit-")
    assert get_spec(f"imagenet:{env['devkit']}").key != get_spec(f"imagefolder:{env['devkit']}").key
    assert get_spec("imagenet:devkit").default_size == (256, 256)
    copy = shutil.copytree(env["devkit"], tmp_path / "copy")
    assert main(["data", "prepare", f"imagenet:{copy}", "--size", SIZE]) == 0
    out = capsys.readouterr().out.strip()
    folder = Path(out.split(": ")[0])
    assert out.startswith(f"{folder}: train 20, val 15 images; 1 file(s) skipped; resized by shorter_side")
    assert folder.parent.name.startswith("imagenet-copy-")
    assert json.loads((folder / "meta.json").read_text())["splits"] == {"train": 20, "val": 15}
    truth = copy / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text(truth.read_text() + f"{LEAF_IDS[0]}\n")  # image 17 gets a label (the first class)
    assert main(["data", "prepare", f"imagenet:{copy}", "--size", SIZE]) == 0
    assert capsys.readouterr().out.strip().startswith(f"{folder}: train 20, val 16 images; 0 file(s) skipped;")
    assert load_split(f"imagenet:{copy}", "val", size=SIZE).labels.tolist()[-1] == 0


def test_a_frozen_probe_scores_on_imagenet_val(env: dict[str, Path], tmp_path: Path) -> None:
    code = main(["probe", str(CONFIGS / "classification_tiny_frozen.yaml"), f"data.dataset=imagenet:{env['devkit']}",
                 "data.train_split=train", "data.eval_split=val", "data.limit=null", "data.eval_limit=null",
                 f"data.cache_size=[{SIZE}, {SIZE}]", "probe.init=random", "probe.layer=conv5",
                 f"output_dir={tmp_path}", "name=imagenet", "train.batch_size=8", "train.progress=false",
                 "train.device=cpu"])
    assert code == 0
    record = read_record(tmp_path / "imagenet" / "record.json")
    assert record["metrics"]["eval_images"] == len(VAL_NUMBERS)
    assert 0.0 <= record["metrics"]["top1@conv5"] <= 1.0
