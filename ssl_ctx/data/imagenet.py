"""ImageNet (ILSVRC-2012 classification) as published, read in place as ``imagenet:<path>``.

Layout of ``<path>``::

    train/<wnid>/*.JPEG                          class folders (ILSVRC2012_img_train.tar's per-class tars, extracted)
    val/ILSVRC2012_val_00000001.JPEG ...         flat, as ILSVRC2012_img_val.tar holds them, labelled from one of:
      ILSVRC2012_devkit_t12/ or ILSVRC2012_devkit_t12.tar.gz   the original devkit: data/meta.mat and
                                                 data/ILSVRC2012_validation_ground_truth.txt
      LOC_val_solution.csv                       the later Kaggle release: ImageId,PredictionString (boxes; the first
                                                 token is the wnid), with LOC_synset_mapping.txt for the words
    val/<wnid>/*.JPEG                            or already sorted into class folders (as torchvision's ImageNet
                                                 leaves it), labelled by folder

Splits are ``train`` and ``val``, whichever are present. Classes are the sorted wnids of ``train/`` (the class
folders are indexed by :func:`~ssl_ctx.data.datasets.index_class_folders`, so index ``i`` is the ``i``-th wnid,
as torchvision's ``ImageFolder`` gives it); without ``train/``, those of ``val/<wnid>/``, else the devkit's (or
LOC's) 1,000. Their words ("kit fox, Vulpes macrotis") go to ``meta.json`` as ``class_descriptions``. The devkit is
preferred when both label sources are there (it is the original); ``val_labels`` in ``meta.json`` says which was
read. A flat val image with no label is skipped, named; one whose label is not a class of ``train/`` is a
:class:`UserError` (the probe's classes would not match), as is a flat ``val/`` with no label source at all.

The devkit's rules are torchvision's (``torchvision.datasets.imagenet.parse_devkit_archive``): the classes are
meta.mat's synsets with ``num_children == 0`` (the other 860 are WordNet ancestors no image is labelled with), and
ground-truth line ``n`` is the ``ILSVRC2012_ID`` of ``ILSVRC2012_val_<n>.JPEG``. Its parsers are not used: they
are local functions of ``parse_devkit_archive``, which only accepts the archive with its published MD5 and
writes ``meta.bin`` into the data folder (this package writes only into its cache), and they pair ground-truth
lines with the sorted file list, so one missing image would shift every later label. Here the files are read from
the folder or the archive in memory, and each image is paired with its line by the number in its name.

Default cache size: 256x256. The paper's encoder is AlexNet with a 227x227 input (Sec. 3.1, 5.2), and its
pretext crops come from images resized first, so the cache must be larger than 227: the paper does not give the
resize, and 256x256 is the one of the CaffeNet recipe its AlexNet follows, which ``configs/pretext/paper_227.yaml``
uses (random crops of ``crop_scale`` 0.887 = 227 / 256). All 1.33M images at 256x256 are about 260 GB: pass
``--size`` for less.
"""
from __future__ import annotations

import csv
import io
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ssl_ctx.data.archives import ArchiveTree, FileTree, FolderTree
from ssl_ctx.data.datasets import DatasetIndex, Item, Layout, index_class_folders, natural_key, tree_path
from ssl_ctx.data.decode import SHORTER_SIDE
from ssl_ctx.errors import UserError, first_line

IMAGENET_DEFAULT_SIZE = (256, 256)  # 227-px AlexNet crops come from 256-px images (module docstring)
IMAGENET_DEFAULT_RESIZE = SHORTER_SIDE  # photos: shorter side to 256, centre kept (the paper's released code too)
DEVKIT = "ILSVRC2012_devkit_t12"
DEVKIT_ARCHIVE = f"{DEVKIT}.tar.gz"
META_MAT = "data/meta.mat"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
LOC_SOLUTION = "LOC_val_solution.csv"
LOC_SYNSETS = "LOC_synset_mapping.txt"


def _stem(path: str) -> str:
    """``val/ILSVRC2012_val_00000001.JPEG -> ILSVRC2012_val_00000001``: how both label files name an image."""
    return posixpath.splitext(posixpath.basename(path))[0]


def val_image_name(number: int) -> str:
    """The stem of the ``number``-th validation image (1-based): ``ILSVRC2012_val_00000001``."""
    return f"ILSVRC2012_val_{number:08d}"


# ---------------------------------------------------------------------------------------------- devkit


def parse_meta_mat(data: bytes) -> tuple[dict[int, str], dict[str, str]]:
    """The devkit's ``data/meta.mat`` -> (ILSVRC2012_ID -> wnid, wnid -> words) of its leaf synsets (the classes)."""
    import scipy.io  # late: only a devkit's meta.mat needs it

    synsets = np.atleast_1d(scipy.io.loadmat(io.BytesIO(data), squeeze_me=True)["synsets"])
    leaves = [synset for synset in synsets if int(synset["num_children"]) == 0]
    return ({int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in leaves},
            {str(s["WNID"]): str(s["words"]) for s in leaves})


def parse_ground_truth(text: str, wnid_of_id: dict[int, str]) -> dict[str, str]:
    """``ILSVRC2012_validation_ground_truth.txt`` (line ``n``: the class ID of image ``n``) -> image stem -> wnid."""
    labels = {}
    for number, line in enumerate(text.split(), start=1):
        wnid = wnid_of_id.get(int(line))
        if wnid is None:
            raise ValueError(f"line {number} names ILSVRC2012_ID {line}, which is no leaf synset of {META_MAT}")
        labels[val_image_name(number)] = wnid
    return labels


def _devkit_files(tree: FileTree, root: str) -> tuple[dict[str, bytes], str] | None:
    """meta.mat and the ground truth by their devkit path, and where they were read; None when there is no devkit."""
    archive = tree_path(root, DEVKIT_ARCHIVE)
    if tree.exists(tree_path(root, DEVKIT, META_MAT)):
        devkit, folder, where = tree, tree_path(root, DEVKIT), f"{DEVKIT}/"
    elif tree.exists(archive) and isinstance(tree, FolderTree):  # imagenet:<path> is always a folder on disk
        devkit, folder, where = ArchiveTree(tree.root / archive), DEVKIT, DEVKIT_ARCHIVE  # 2.5 MB, read in memory
    else:
        return None
    paths = {name: tree_path(folder, name) for name in (META_MAT, GROUND_TRUTH)}
    return {name: devkit.read(path) for name, path in paths.items() if devkit.exists(path)}, where


# ------------------------------------------------------------------------------------------------ LOC


def parse_loc_solution(text: str) -> dict[str, str]:
    """``LOC_val_solution.csv`` -> image stem -> wnid (the first token of PredictionString; the rest are boxes)."""
    labels = {}
    for row in csv.reader(text.splitlines()):
        if len(row) >= 2 and row[0] != "ImageId" and row[1].split():
            labels[row[0].strip()] = row[1].split()[0]
    return labels


def parse_synset_mapping(text: str) -> dict[str, str]:
    """``LOC_synset_mapping.txt`` (``n01440764 tench, Tinca tinca``) -> wnid -> words."""
    pairs = (line.strip().partition(" ") for line in text.splitlines() if line.strip())
    return {wnid: words.strip() for wnid, _, words in pairs}


# ---------------------------------------------------------------------------------------------- labels


@contextmanager
def _reading(tree: FileTree, name: str) -> Iterator[None]:
    """A label file that cannot be parsed is one line naming it."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - scipy and the parsers raise many types for a broken file
        raise UserError(f"cannot read {name} in ImageNet folder '{tree.description}': {first_line(err)}; "
                        "download it again") from None


def read_val_labels(tree: FileTree, root: str) -> tuple[dict[str, str] | None, dict[str, str], str]:
    """(image stem -> wnid, None when no label file is there; wnid -> words; the label file read).

    The devkit wins over LOC when both are there; the words come from meta.mat, else LOC_synset_mapping.txt.
    """
    labels, words, source = None, {}, ""
    devkit = _devkit_files(tree, root)
    if devkit is not None:
        files, where = devkit
        with _reading(tree, f"{where} {META_MAT}"):
            wnid_of_id, words = parse_meta_mat(files[META_MAT])
        if GROUND_TRUTH in files:
            source = f"{where} {GROUND_TRUTH}"
            with _reading(tree, source):
                labels = parse_ground_truth(files[GROUND_TRUTH].decode(), wnid_of_id)
    if not words and tree.exists(tree_path(root, LOC_SYNSETS)):
        with _reading(tree, LOC_SYNSETS):
            words = parse_synset_mapping(tree.read(tree_path(root, LOC_SYNSETS)).decode())
    if labels is None and tree.exists(tree_path(root, LOC_SOLUTION)):
        source = LOC_SOLUTION
        with _reading(tree, source):
            labels = parse_loc_solution(tree.read(tree_path(root, LOC_SOLUTION)).decode())
    return labels, words, source


def _check_classes(labels: dict[str, str], class_of: dict[str, int], source: str, tree: FileTree) -> None:
    """A label that is not a class is one line naming it (the probe's classes would not match train's)."""
    unknown = sorted(stem for stem, wnid in labels.items() if wnid not in class_of)
    if unknown:
        first = labels[unknown[0]]
        raise UserError(
            f"{source} labels {len(unknown)} val image(s) with a wnid that is no class of ImageNet folder "
            f"'{tree.description}' (e.g. {unknown[0]}: {first}, and there is no train/{first}/); add the class "
            f"folders to train/ or remove those images from val/"
        )


# ----------------------------------------------------------------------------------------------- index


def _check_folders(tree: FileTree, root: str, train_classes: list[str], val_classes: list[str]) -> None:
    """Two ways a folder is not yet ImageNet as published, each one line saying what to do."""
    if not train_classes and any(n.endswith(".tar") for n in tree.listdir(tree_path(root, "train"))):
        raise UserError(f"train/ in ImageNet folder '{tree.description}' holds per-class .tar files; extract each "
                        f"train/<wnid>.tar into train/<wnid>/")
    extra = sorted(set(val_classes) - set(train_classes)) if train_classes else []
    if extra:
        raise UserError(f"val/{extra[0]}/ in ImageNet folder '{tree.description}' is no class of train/ "
                        f"({len(extra)} such folder(s)); add train/{extra[0]}/ or remove val/{extra[0]}/")


def _label_flat_val(
    tree: FileTree, root: str, names: list[str], labels: dict[str, str], class_of: dict[str, int], source: str,
) -> tuple[list[Item], list[tuple[str, str]]]:
    """The images straight in ``val/``, in file order, labelled from ``labels``; (items, skipped with a reason)."""
    present = {_stem(name): labels[_stem(name)] for name in names if _stem(name) in labels}
    _check_classes(present, class_of, source, tree)
    items, skipped = [], []
    for name in sorted(names, key=natural_key):
        path = tree_path(root, "val", name)
        if _stem(name) in present:
            items.append(Item(path, label=class_of[present[_stem(name)]]))
        else:
            skipped.append((path, f"no label in {source}"))
    return items, skipped


def index_imagenet(tree: FileTree, root: str) -> DatasetIndex:
    """The ILSVRC-2012 folder at ``root`` -> its ``train`` and ``val`` items (see the module docstring)."""
    train_classes = [c for c in tree.subfolders(tree_path(root, "train")) if not c.startswith(".")]
    val_classes = [c for c in tree.subfolders(tree_path(root, "val")) if not c.startswith(".")]
    flat_val = [n for n in tree.listdir(tree_path(root, "val")) if not n.startswith(".")]
    _check_folders(tree, root, train_classes, val_classes)
    folder_splits = tuple(s for s, classes in (("train", train_classes), ("val", val_classes)) if classes)
    by_folder = index_class_folders(tree, root, folder_splits)
    labels, words, source = read_val_labels(tree, root)
    if flat_val and labels is None:
        raise UserError(f"val/ in ImageNet folder '{tree.description}' holds {len(flat_val)} images but no labels; "
                        f"put {DEVKIT_ARCHIVE} (or its extracted {DEVKIT}/) or {LOC_SOLUTION} in that folder")
    class_names = by_folder.class_names or sorted(words or set((labels or {}).values()))
    splits = {split: by_folder.splits[split] for split in folder_splits}
    skipped: dict[str, list[tuple[str, str]]] = {"train": [], "val": []}
    if flat_val:
        class_of = {wnid: i for i, wnid in enumerate(class_names)}
        items, skipped["val"] = _label_flat_val(tree, root, flat_val, labels, class_of, source)
        splits.setdefault("val", []).extend(items)
    if not splits:
        raise UserError(f"ImageNet folder '{tree.description}' holds neither train/<wnid>/ nor val/ images; pass "
                        f"imagenet:<path> where <path>/train/ and <path>/val/ hold ILSVRC-2012's images")
    val_labels = source if flat_val else ("val/<wnid>/ folders" if val_classes else None)
    return DatasetIndex(
        splits=splits, class_names=class_names, has_labels=True, skipped=skipped,
        extra_meta={"class_descriptions": [words.get(wnid, "") for wnid in class_names], "val_labels": val_labels},
    )


# imagenet:<path> names the folder that holds train/ and val/: the top of the tree.
IMAGENET_LAYOUT = Layout(archives=(), folders=(), find_root=lambda paths: "", index=index_imagenet)
