"""What each supported dataset holds: where its files are, its splits, classes, labels, boxes and label maps.

An indexer reads a dataset's published layout from a :class:`FileTree` (archive or folder) and returns a
:class:`DatasetIndex`: per split, the list of :class:`Item` to decode, in a fixed order. No image is decoded
here; ``prepare.py`` does that.

Datasets
- ``tiny-imagenet-200``: ``train/<wnid>/images/*.JPEG`` with one box per image from ``<wnid>_boxes.txt``,
  ``val/images/*.JPEG`` with class and box from ``val/val_annotations.txt``. Classes are the sorted wnids
  (``words.txt`` descriptions go to ``meta.json``). Boxes are inclusive pixel corners and become relative
  ``(x0 / w, y0 / h, (x1 + 1) / w, (y1 + 1) / h)``, so ``0 0 63 63`` on a 64-px image is the whole image.
- ``cifar10``: the official ``cifar-10-batches-py/`` pickles (``data_batch_1..5`` = train, ``test_batch`` =
  test; read with an unpickler that only admits numpy arrays) or the per-class JPEG folders
  ``cifar10-jpeg/{train,test}/<class>/*.jpg``; the pickles win when both are present, since their pixels are
  the original ones.
- ``camvid``: SegNet layout ``CamVid/{train,val,test}/<name>`` with ``{split}annot/<stem>.png``; label 11
  (void) and anything above it become 255 (ignore).
- ``cmp-facade``: base set ``base/cmp_b<nnnn>.{jpg,png,xml}``. Label PNG palette index 1..12 becomes class
  0..11 (0 and anything else: 255 = ignore); XML boxes are relative already and their labels become 0-based.
  The dataset has no official split, so a fixed one is used: in the sorted list of images, every 5th one
  (positions 4, 9, 14, ... counting from 0) is ``test`` and the rest is ``train`` (378 images -> 303 / 75).
- ``imagefolder:<path>``: ``<path>/<split>/<class>/**`` when every top folder is named like a split
  (train, val, valid, validation, test, all), otherwise ``<path>/<class>/**`` as split ``all``. Every
  non-hidden file under a class folder is tried as an image; a non-hidden file that the layout leaves out (at
  ``<path>``'s top beside class or split folders, or directly in ``<path>/<split>/``) is skipped, named, and when
  such files outnumber the images kept, one warning says how the folder was read and what to move. A folder
  with no sub-folders, only image files, is one unlabelled split ``all`` (enough for pretext training; probes
  need classes).

Each dataset has a default resize policy (``DatasetSpec.default_resize``, ``decode.RESIZE_POLICIES``):
``shorter_side`` for photos of any shape (image folders, ImageNet), ``squeeze`` where label maps or boxes cover the
whole image (camvid, cmp-facade, VOC) and for the square images of tiny-imagenet-200 and cifar10 (at a square size
every policy gives the same pixels, so their caches stay as they were built).
"""
from __future__ import annotations

import hashlib
import io
import pickle
import posixpath
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssl_ctx.data.archives import FileTree
from ssl_ctx.data.cache import IGNORE_INDEX
from ssl_ctx.data.decode import SHORTER_SIDE, SQUEEZE
from ssl_ctx.errors import warn

SPLIT_FOLDER_NAMES = ("train", "val", "valid", "validation", "test", "all")

CAMVID_CLASSES = [
    "sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian", "bicyclist",
]
FACADE_CLASSES = [
    "background", "facade", "window", "door", "cornice", "sill", "balcony", "blind", "deco", "molding", "pillar",
    "shop",
]
FACADE_TEST_EVERY = 5  # every 5th image in sorted order (positions 4, 9, ...) is the test split


@dataclass
class Item:
    """One image to decode.

    ``path``: the file in the tree (for pickled arrays, ``<batch file>[<row>]``). ``boxes (k, 4)`` are xyxy,
    in pixels of the original image when ``boxes_in_pixels`` (exclusive right/bottom edge), else relative;
    ``box_difficult (k,) bool`` flags the boxes marked difficult (None = none is). ``label_set (K,) int8`` over
    the dataset's classes: 1 present, 0 present only as difficult objects, -1 absent (VOC's
    ``ImageSets/Main/<class>_<split>.txt`` convention). ``pixels (h, w, 3) uint8`` is set when the image is
    already decoded (CIFAR-10 python batches).
    """

    path: str
    label: int | None = None
    label_map: str | None = None
    boxes: np.ndarray | None = None
    box_labels: np.ndarray | None = None
    boxes_in_pixels: bool = False
    pixels: np.ndarray | None = None
    label_set: np.ndarray | None = None
    box_difficult: np.ndarray | None = None


@dataclass
class DatasetIndex:
    """The items of every split, plus what is common to them.

    Label maps and label sets are per split: a split has them when its items do (all of them; an item without
    one in such a split is skipped, named). ``split_class_names``: a split's own class list where it differs
    from ``class_names`` (VOC's segmentation splits: ``["background", *classes]``); label sets always index
    ``class_names``.
    """

    splits: dict[str, list[Item]]
    class_names: list[str]
    has_labels: bool = False
    has_boxes: bool = False
    # (256,) uint8: raw label-map value -> stored class (255 = ignore); None = no label maps
    label_lut: np.ndarray | None = None
    # files found unusable while indexing (no annotation, bad XML, ...): split -> [(path, reason)]
    skipped: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    extra_meta: dict[str, Any] = field(default_factory=dict)
    has_label_sets: bool = False
    split_class_names: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Layout:
    """One published form of a dataset: its archive names, folder names, how to find its root, how to index it."""

    archives: tuple[str, ...]
    folders: tuple[str, ...]
    find_root: Callable[[list[str]], str | None]  # sorted file paths -> the dataset root ('' = top), or None
    index: Callable[[FileTree, str], DatasetIndex]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    default_size: tuple[int, int]
    splits: tuple[str, ...]
    layouts: tuple[Layout, ...]  # in order of preference
    cache_key: str = ""  # folder name under cache_root(); defaults to name
    folder: Path | None = None  # a folder dataset (<prefix><path>, catalogue.FOLDER_DATASETS): read in place
    default_resize: str = SQUEEZE  # the resize policy when none is asked for (decode.RESIZE_POLICIES)

    @property
    def key(self) -> str:
        return self.cache_key or self.name


# ---------------------------------------------------------------------------------------- helpers


def natural_key(text: str) -> list[Any]:
    """Sort key with numbers compared as numbers: ``img_2`` before ``img_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def tree_path(root: str, *parts: str) -> str:
    """A file's path in a tree: ``parts`` under the dataset's ``root`` ('' = the tree's top)."""
    return posixpath.join(root, *parts) if root else posixpath.join(*parts)


def tree_text(tree: FileTree, path: str) -> str:
    """A text file of a tree (UTF-8; a stray byte becomes U+FFFD rather than an error)."""
    return tree.read(path).decode("utf-8", errors="replace")


def _root_of(marker: Callable[[str], str | None]) -> Callable[[list[str]], str | None]:
    """A root finder: the shallowest root that ``marker(path)`` returns for any file."""

    def find(paths: list[str]) -> str | None:
        roots = [root for root in map(marker, paths) if root is not None]
        return min(roots, key=lambda r: (r.count("/") if r else -1, r)) if roots else None

    return find


def _parent_if_named(name: str) -> Callable[[str], str | None]:
    def marker(path: str) -> str | None:
        head, _, tail = path.rpartition("/")
        return head if tail == name else None

    return marker


def _is_hidden(path: str) -> bool:
    return any(part.startswith(".") for part in path.split("/"))


# ----------------------------------------------------------------------------------- tiny-imagenet


def _tiny_boxes(line_parts: list[str]) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in line_parts)
    return np.array([[x0, y0, x1 + 1, y1 + 1]], dtype=np.float32)  # inclusive corners -> exclusive edge


def index_tiny_imagenet(tree: FileTree, root: str) -> DatasetIndex:
    wnids = sorted(tree_text(tree, tree_path(root, "wnids.txt")).split())
    class_of = {wnid: i for i, wnid in enumerate(wnids)}
    descriptions = {}
    if tree.exists(tree_path(root, "words.txt")):
        for line in tree_text(tree, tree_path(root, "words.txt")).splitlines():
            wnid, _, words = line.partition("\t")
            if wnid in class_of:
                descriptions[wnid] = words.strip()
    skipped: dict[str, list[tuple[str, str]]] = {"train": [], "val": []}

    train = []
    for wnid in wnids:
        boxes = {}
        boxes_file = tree_path(root, "train", wnid, f"{wnid}_boxes.txt")
        if tree.exists(boxes_file):
            for line in tree_text(tree, boxes_file).splitlines():
                parts = line.split()
                if len(parts) == 5:
                    boxes[parts[0]] = _tiny_boxes(parts[1:])
        folder = tree_path(root, "train", wnid, "images")
        for name in sorted(tree.listdir(folder), key=natural_key):
            if _is_hidden(name):
                continue
            box = boxes.get(name, np.zeros((0, 4), np.float32))
            train.append(Item(
                tree_path(folder, name), label=class_of[wnid], boxes=box,
                box_labels=np.full(len(box), class_of[wnid], np.int64), boxes_in_pixels=True,
            ))

    annotations = {}
    annotations_file = tree_path(root, "val", "val_annotations.txt")
    if tree.exists(annotations_file):
        for line in tree_text(tree, annotations_file).splitlines():
            parts = line.split()
            if len(parts) == 6 and parts[1] in class_of:
                annotations[parts[0]] = (class_of[parts[1]], _tiny_boxes(parts[2:]))
    val = []
    folder = tree_path(root, "val", "images")
    for name in sorted(tree.listdir(folder), key=natural_key):
        if _is_hidden(name):
            continue
        if name not in annotations:
            skipped["val"].append((tree_path(folder, name), "no class in val/val_annotations.txt"))
            continue
        label, box = annotations[name]
        val.append(Item(
            tree_path(folder, name), label=label, boxes=box, box_labels=np.full(1, label, np.int64),
            boxes_in_pixels=True,
        ))
    return DatasetIndex(
        splits={"train": train, "val": val}, class_names=wnids, has_labels=True, has_boxes=True, skipped=skipped,
        extra_meta={"class_descriptions": [descriptions.get(w, "") for w in wnids]},
    )


# ----------------------------------------------------------------------------------------- cifar10


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays, nothing else (a pickle can otherwise run code)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load '{module}.{name}' from a data pickle")
        if module.startswith("numpy.core"):  # numpy >= 2 moved numpy.core to numpy._core
            module = module.replace("numpy.core", "numpy._core", 1)
        return super().find_class(module, name)


def load_array_pickle(data: bytes) -> dict[str, Any]:
    """A CIFAR-style batch (Python 2 pickle) -> dict with ``str`` keys."""
    values = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    if not isinstance(values, dict):
        raise pickle.UnpicklingError("expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in values.items()}


def index_cifar_python(tree: FileTree, root: str) -> DatasetIndex:
    meta = load_array_pickle(tree.read(tree_path(root, "batches.meta")))
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta["label_names"]]
    names = tree.listdir(root)
    batches = {
        "train": sorted((n for n in names if re.fullmatch(r"data_batch_\d+", n)), key=natural_key),
        "test": [n for n in names if n == "test_batch"],
    }
    splits: dict[str, list[Item]] = {}
    skipped: dict[str, list[tuple[str, str]]] = {}
    for split, files in batches.items():
        splits[split], skipped[split] = [], []
        for name in files:
            path = tree_path(root, name)
            try:
                batch = load_array_pickle(tree.read(path))
                data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                labels = np.asarray(batch["labels"], dtype=np.int64)
                if len(labels) != len(data):
                    raise ValueError(f"{len(data)} images but {len(labels)} labels")
            except Exception as err:  # noqa: BLE001 - any broken batch is skipped and named
                skipped[split].append((path, f"unreadable batch: {err}"))
                continue
            splits[split].extend(
                Item(f"{path}[{i}]", label=int(labels[i]), pixels=data[i]) for i in range(len(data))
            )
    return DatasetIndex(splits=splits, class_names=class_names, has_labels=True, skipped=skipped)


def _cifar_jpeg_root(path: str) -> str | None:
    parts = path.split("/")
    if len(parts) >= 3 and parts[-3] in ("train", "test"):
        return "/".join(parts[:-3])
    return None


def index_class_folders(tree: FileTree, root: str, splits: tuple[str, ...]) -> DatasetIndex:
    """``root/<split>/<class>/**`` -> labelled items; classes are the sorted union over splits."""
    class_names = sorted({c for split in splits for c in tree.subfolders(tree_path(root, split))
                          if not c.startswith(".")})
    class_of = {c: i for i, c in enumerate(class_names)}
    by_split: dict[str, list[Item]] = {}
    for split in splits:
        items = []
        split_root = tree_path(root, split)
        prefix_len = len(split_root) + 1 if split_root else 0
        for path in tree.files():
            if not path.startswith(split_root + "/" if split_root else ""):
                continue
            rel = path[prefix_len:]
            cls, sep, _ = rel.partition("/")
            if sep and cls in class_of and not _is_hidden(rel):
                items.append(Item(path, label=class_of[cls]))
        items.sort(key=lambda item: (item.label, natural_key(item.path)))
        by_split[split] = items
    return DatasetIndex(splits=by_split, class_names=class_names, has_labels=True)


def index_cifar_jpeg(tree: FileTree, root: str) -> DatasetIndex:
    return index_class_folders(tree, root, ("train", "test"))


# ------------------------------------------------------------------------------------------ camvid


def _camvid_root(path: str) -> str | None:
    parts = path.split("/")
    if len(parts) >= 2 and parts[-2] in ("trainannot", "valannot", "testannot"):
        return "/".join(parts[:-2])
    return None


def index_camvid(tree: FileTree, root: str) -> DatasetIndex:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[: len(CAMVID_CLASSES)] = np.arange(len(CAMVID_CLASSES))  # 11 (void) and above stay 255
    splits: dict[str, list[Item]] = {}
    skipped: dict[str, list[tuple[str, str]]] = {}
    for split in ("train", "val", "test"):
        splits[split], skipped[split] = [], []
        annotations = set(tree.listdir(tree_path(root, f"{split}annot")))
        for name in sorted(tree.listdir(tree_path(root, split)), key=natural_key):
            if _is_hidden(name):
                continue
            label_name = posixpath.splitext(name)[0] + ".png"
            if label_name not in annotations:
                skipped[split].append((tree_path(root, split, name), f"no label map {split}annot/{label_name}"))
                continue
            splits[split].append(Item(tree_path(root, split, name),
                                      label_map=tree_path(root, f"{split}annot", label_name)))
    return DatasetIndex(splits=splits, class_names=list(CAMVID_CLASSES), label_lut=lut, skipped=skipped)


# -------------------------------------------------------------------------------------- cmp-facade


def _facade_root(path: str) -> str | None:
    head, _, tail = path.rpartition("/")
    return head if re.fullmatch(r"cmp_b\d+\.jpg", tail) else None


def parse_facade_xml(text: str) -> tuple[np.ndarray, np.ndarray]:
    """CMP facade XML (a sequence of ``<object>`` without a root element) -> boxes (k, 4) relative xyxy, labels (k,).

    Labels 1..12 become 0..11; objects with another label are dropped. Coordinates are clipped to [0, 1].
    """
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)
    document = ElementTree.fromstring(f"<annotation>{text}</annotation>")
    boxes, labels = [], []
    for obj in document.iter("object"):
        xs = [float(x.text) for x in obj.iter("x")]
        ys = [float(y.text) for y in obj.iter("y")]
        label = int(float((obj.findtext("label") or "0").strip()))
        if len(xs) < 2 or len(ys) < 2 or not 1 <= label <= len(FACADE_CLASSES):
            continue
        boxes.append([min(xs), min(ys), max(xs), max(ys)])
        labels.append(label - 1)
    box_array = np.clip(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), 0.0, 1.0)
    return box_array, np.asarray(labels, dtype=np.int64)


def index_facade(tree: FileTree, root: str) -> DatasetIndex:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[1 : len(FACADE_CLASSES) + 1] = np.arange(len(FACADE_CLASSES))
    names = tree.listdir(root)
    available = set(names)
    stems = sorted((n[:-4] for n in names if re.fullmatch(r"cmp_b\d+\.jpg", n)), key=natural_key)
    splits: dict[str, list[Item]] = {"train": [], "test": []}
    skipped: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for position, stem in enumerate(stems):
        # The split depends on the position among all images, so a broken file never moves another image.
        split = "test" if position % FACADE_TEST_EVERY == FACADE_TEST_EVERY - 1 else "train"
        image = tree_path(root, stem + ".jpg")
        missing = [f"{stem}{ext}" for ext in (".png", ".xml") if f"{stem}{ext}" not in available]
        if missing:
            skipped[split].append((image, f"missing {' and '.join(missing)}"))
            continue
        try:
            boxes, labels = parse_facade_xml(tree_text(tree, tree_path(root, stem + ".xml")))
        except (ElementTree.ParseError, ValueError) as err:
            skipped[split].append((tree_path(root, stem + ".xml"), f"bad box XML: {err}"))
            continue
        splits[split].append(Item(image, label_map=tree_path(root, stem + ".png"), boxes=boxes, box_labels=labels))
    return DatasetIndex(
        splits=splits, class_names=list(FACADE_CLASSES), has_boxes=True, label_lut=lut, skipped=skipped,
        extra_meta={"split_rule": "sorted images; every 5th (positions 4, 9, ...) is test, the rest train"},
    )


# ------------------------------------------------------------------------------------- imagefolder


def imagefolder_splits(tree: FileTree) -> tuple[str, ...]:
    """The split names of an ImageFolder tree: its top folders when all are named like splits, else ('all',)."""
    top = [name for name in tree.subfolders("") if not name.startswith(".")]
    if top and all(name.lower() in SPLIT_FOLDER_NAMES for name in top):
        return tuple(top)
    return ("all",)


CLASS_READING = "a folder with sub-folders is read as one class per sub-folder"
SPLIT_READING = "a folder whose sub-folders are all named like splits is read as <path>/<split>/<class>/"
UNLABELLED_READING = "a folder of images alone is one unlabelled split 'all'"


def index_imagefolder(tree: FileTree, root: str) -> DatasetIndex:
    """An image folder in whichever layout it has (module docstring). A non-hidden file that the layout leaves
    out is skipped, named; when they outnumber the images kept, one warning says how the folder was read and how
    to have them read."""
    splits = imagefolder_splits(tree)
    if splits == ("all",):
        index = _index_flat_classes(tree)
        where, reading, fix = ("at its top, outside the class folders", CLASS_READING,
                               "move the sub-folders out")
    else:
        index = index_class_folders(tree, root, splits)
        index.skipped = {split: _files_in(tree, tree_path(root, split), f"directly in <path>/{split}/, outside "
                                          f"every class folder <path>/{split}/<class>/") for split in splits}
        index.skipped[splits[0]][:0] = _files_in(tree, root, f"at the folder's top, outside every split folder "
                                                             f"<path>/<split>/<class>/ ({SPLIT_READING})")
        where, reading, fix = (f"outside the class folders of its split folders {'/, '.join(splits)}/",
                               SPLIT_READING, "put them in <path>/<split>/<class>/, or in a folder of their own")
    left_out, kept = sum(map(len, index.skipped.values())), sum(map(len, index.splits.values()))
    if left_out > kept:
        classes = ", ".join(index.class_names[:5]) + (", ..." if len(index.class_names) > 5 else "")
        warn(f"most of the files of image folder '{tree.description}' ({left_out} of {left_out + kept}) are {where} "
             f"[{classes}] and are left out ({reading}): if they are your images, {fix} ({UNLABELLED_READING})")
    return index


def _files_in(tree: FileTree, folder: str, reason: str) -> list[tuple[str, str]]:
    """The non-hidden files directly in ``folder``, each with ``reason``: the files a layout leaves out."""
    return [(tree_path(folder, name), reason) for name in sorted(tree.listdir(folder), key=natural_key)
            if not _is_hidden(name)]


def _index_flat_classes(tree: FileTree) -> DatasetIndex:
    class_names = [c for c in tree.subfolders("") if not c.startswith(".")]
    if not class_names:  # images straight in the folder: one unlabelled split
        items = [Item(path) for path in tree.listdir("") if not _is_hidden(path)]
        return DatasetIndex(splits={"all": sorted(items, key=lambda item: natural_key(item.path))},
                            class_names=[], has_labels=False)
    class_of = {c: i for i, c in enumerate(class_names)}
    items = []
    for path in tree.files():
        cls, sep, rest = path.partition("/")
        if sep and cls in class_of and not _is_hidden(path):
            items.append(Item(path, label=class_of[cls]))
    items.sort(key=lambda item: (item.label, natural_key(item.path)))
    skipped = _files_in(tree, "", f"at the folder's top, outside every class folder <path>/<class>/ ({CLASS_READING})")
    return DatasetIndex(splits={"all": items}, class_names=class_names, has_labels=True, skipped={"all": skipped})


def folder_listing(tree: FileTree) -> str:
    """A hash of every file's relative path, size and modification time: it changes when a file is added, removed
    or rewritten, and costs one ``stat`` per file (nothing is decoded)."""
    digest = hashlib.sha256()
    for path in tree.files():
        try:
            info = (tree.root / path).stat()
        except OSError:  # a link that loops or points to nothing: skipped when the cache is built, still counted
            info = (tree.root / path).lstat()
        digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return f"{len(tree.files())} files, sha256 {digest.hexdigest()[:16]}"


# ----------------------------------------------------------------------------------------- catalog


TINY_IMAGENET = DatasetSpec(
    name="tiny-imagenet-200",
    default_size=(64, 64),
    default_resize=SQUEEZE,  # square images: every policy gives the same pixels; caches stay as built
    splits=("train", "val"),
    layouts=(
        Layout(
            archives=("tiny-imagenet-200.tar.gz", "tiny-imagenet-200.tgz", "tiny-imagenet-200.tar",
                      "tiny-imagenet-200.zip"),
            folders=("tiny-imagenet-200",),
            find_root=_root_of(_parent_if_named("wnids.txt")),
            index=index_tiny_imagenet,
        ),
    ),
)
CIFAR10 = DatasetSpec(
    name="cifar10",
    default_size=(32, 32),
    default_resize=SQUEEZE,  # square images: every policy gives the same pixels; caches stay as built
    splits=("train", "test"),
    layouts=(
        Layout(
            archives=("cifar-10-python.tar.gz", "cifar-10-python.tgz", "cifar-10-python.tar"),
            folders=("cifar-10-batches-py",),
            find_root=_root_of(_parent_if_named("batches.meta")),
            index=index_cifar_python,
        ),
        Layout(
            archives=("cifar10-jpeg.tar.gz", "cifar10-jpeg.tgz", "cifar10-jpeg.tar", "cifar10-jpeg.zip"),
            folders=("cifar10-jpeg",),
            find_root=_root_of(_cifar_jpeg_root),
            index=index_cifar_jpeg,
        ),
    ),
)
CAMVID = DatasetSpec(
    name="camvid",
    default_size=(180, 240),
    default_resize=SQUEEZE,
    splits=("train", "val", "test"),
    layouts=(
        Layout(
            archives=("CamVid.tar.gz", "CamVid.tgz", "CamVid.tar", "CamVid.zip"),
            folders=("CamVid", "camvid"),
            find_root=_root_of(_camvid_root),
            index=index_camvid,
        ),
    ),
)
CMP_FACADE = DatasetSpec(
    name="cmp-facade",
    default_size=(256, 256),
    default_resize=SQUEEZE,
    splits=("train", "test"),
    layouts=(
        Layout(
            archives=("CMP_facade_DB_base.tar.gz", "CMP_facade_DB_base.tgz", "CMP_facade_DB_base.tar",
                      "CMP_facade_DB_base.zip"),
            folders=("CMP_facade_DB_base", "base"),
            find_root=_root_of(_facade_root),
            index=index_facade,
        ),
    ),
)
IMAGEFOLDER_DEFAULT_SIZE = (128, 128)
IMAGEFOLDER_DEFAULT_RESIZE = SHORTER_SIDE  # photos: aspect kept, the centre cached
IMAGEFOLDER_LAYOUT = Layout(archives=(), folders=(), find_root=lambda paths: "", index=index_imagefolder)

BUILTIN = {spec.name: spec for spec in (TINY_IMAGENET, CIFAR10, CAMVID, CMP_FACADE)}
