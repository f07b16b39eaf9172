"""Dataset as published (archive or extracted folder) -> prepared cache of fixed-size uint8 arrays.

``prepare(name, size, limit)`` finds the dataset in ``data_root()``, decodes every image with PIL, converts
it to RGB (grayscale, CMYK, RGBA, palette, 16-bit), resizes it to ``(H, W)`` (bilinear, antialiased; label
maps nearest), and writes the cache described in ``cache.py``. It is idempotent: a complete cache is left
alone. A file that cannot be decoded is skipped and named in one warning line, with a count per split at
the end; the list also goes to the split's ``meta.json``.

Where a dataset is looked for, in order, for each of its published forms (``datasets.py``): the extracted
folder in ``data_root()``, a copy extracted earlier under ``cache_root()/extracted/``, the archive in
``data_root()``. Archives are read member by member into memory (never written outside the cache), after
the safety check in ``archives.py``.

``limit`` keeps N images per split: for labelled datasets the first N of a round-robin over classes (class
order drawn with a fixed seed), so every prefix is class-balanced and smaller limits are subsets of larger
ones; a limited cache is stored in that round-robin order. Unlabelled datasets keep their first N images.
"""
from __future__ import annotations

import datetime
import io
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ssl_ctx.data.archives import EXTRACTED_MARKER, ArchiveTree, FileTree, FolderTree, archive_stem, extract_archive
from ssl_ctx.data.cache import (
    FORMAT_VERSION,
    META_FILE,
    CachedSplit,
    SplitWriter,
    building,
    is_complete,
    locked,
    size_tag,
)
from ssl_ctx.files import output_errors, write_json_atomic
from ssl_ctx.data.datasets import (
    BUILTIN,
    IMAGEFOLDER_DEFAULT_SIZE,
    IMAGEFOLDER_LAYOUT,
    DatasetIndex,
    DatasetSpec,
    Item,
    Layout,
    folder_listing,
    imagefolder_key,
)
from ssl_ctx.errors import UserError, unknown_name_error, warn
from ssl_ctx.images import open_rgb

logger = logging.getLogger("ssl_ctx.data")

DATASET_NAMES = tuple(BUILTIN)
IMAGEFOLDER_PREFIX = "imagefolder:"
LIMIT_SEED = 0
MAX_SIDE = 4096


# ------------------------------------------------------------------------------------ names, paths


def data_root() -> Path:
    """Where datasets are read from: ``$SSL_CTX_DATA`` or ``./data``."""
    return Path(os.environ.get("SSL_CTX_DATA") or "./data").expanduser()


def cache_root() -> Path:
    """Where prepared caches (and extracted copies) are written: ``$SSL_CTX_CACHE`` or ``./cache``."""
    return Path(os.environ.get("SSL_CTX_CACHE") or "./cache").expanduser()


def dataset_names() -> list[str]:
    """Every accepted dataset name (the last one is a pattern)."""
    return [*DATASET_NAMES, f"{IMAGEFOLDER_PREFIX}<path>"]


def get_spec(name: str) -> DatasetSpec:
    """The dataset called ``name``; an unknown name is a :class:`UserError` listing the known ones."""
    if name.startswith(IMAGEFOLDER_PREFIX):
        raw = name[len(IMAGEFOLDER_PREFIX) :]
        folder = Path(raw).expanduser()
        if raw and not folder.is_absolute() and not folder.exists() and (data_root() / folder).is_dir():
            folder = data_root() / folder
        if not raw or not folder.is_dir():
            raise UserError(
                f"image folder '{raw}' is not a folder; pass imagefolder:<path> where <path>/<class>/ "
                "or <path>/<split>/<class>/ holds the images"
            )
        folder = folder.resolve()
        return DatasetSpec(
            name=f"{IMAGEFOLDER_PREFIX}{folder}",
            default_size=IMAGEFOLDER_DEFAULT_SIZE,
            splits=(),
            layouts=(IMAGEFOLDER_LAYOUT,),
            cache_key=imagefolder_key(folder),
            folder=folder,
        )
    if name not in BUILTIN:
        raise unknown_name_error("dataset", name, dataset_names())
    return BUILTIN[name]


def default_size(name: str) -> tuple[int, int]:
    """The cache resolution (height, width) used when ``size`` is None."""
    return get_spec(name).default_size


def parse_size(size: int | str | Sequence[int] | None) -> tuple[int, int] | None:
    """``64``, ``"64"``, ``"180x240"``, ``[180, 240]`` -> (height, width); None -> None."""
    if size is None:
        return None
    try:
        if isinstance(size, str):
            parts = [int(p) for p in size.lower().replace(",", "x").split("x")]
        elif isinstance(size, (int, np.integer)) and not isinstance(size, bool):
            parts = [int(size)]
        else:
            parts = [int(p) for p in size]
    except (TypeError, ValueError):
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(1 <= p <= MAX_SIDE for p in parts):
        raise UserError(f"bad cache size {size!r}; write HxW such as 64x64 (each side 1..{MAX_SIDE})")
    return parts[0], parts[1]


def _check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise UserError(f"bad limit {limit!r}; pass a positive number of images per split, or none for all")
    return int(limit)


def cache_dir(name: str, size: int | str | Sequence[int] | None = None, limit: int | None = None) -> Path:
    """``cache_root()/<dataset>/<H>x<W>[-limit<N>]``: the folder ``prepare`` writes (it may not exist yet)."""
    spec = get_spec(name)
    return cache_root() / spec.key / size_tag(parse_size(size) or spec.default_size, _check_limit(limit))


# ------------------------------------------------------------------------------------------ sources


@dataclass
class Source:
    """Where a dataset was found: an archive or a folder, in one of its published layouts."""

    kind: str  # "archive" | "folder"
    path: Path
    layout: Layout
    tree: FileTree | None = None
    root: str | None = None

    def open(self, progress: bool = False) -> tuple[FileTree, str]:
        """The file tree and the dataset's root inside it (reads an archive into memory)."""
        if self.tree is None:
            _say(f"reading {self.path}", progress)
            self.tree = ArchiveTree(self.path)
            self.root = self.layout.find_root(self.tree.files())
            if self.root is None:
                raise UserError(
                    f"archive '{self.path}' does not hold the expected layout; download the original file again"
                )
        return self.tree, self.root or ""

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "path": str(self.path)}


def _folder_source(path: Path, layout: Layout) -> Source | None:
    if not path.is_dir():
        return None
    tree = FolderTree(path)
    root = layout.find_root(tree.files())
    return Source("folder", path, layout, tree, root) if root is not None else None


def locate_source(spec: DatasetSpec) -> Source:
    """The first published form of ``spec`` found; a :class:`UserError` saying what to put where otherwise."""
    if spec.folder is not None:
        tree = FolderTree(spec.folder)
        return Source("folder", spec.folder, IMAGEFOLDER_LAYOUT, tree, "")
    data = data_root()
    for layout in spec.layouts:
        for folder in layout.folders:
            found = _folder_source(data / folder, layout)
            if found:
                return found
        for archive in layout.archives:
            extracted = cache_root() / "extracted" / archive_stem(Path(archive))
            if (extracted / EXTRACTED_MARKER).is_file():
                found = _folder_source(extracted, layout)
                if found:
                    return found
        for archive in layout.archives:
            if (data / archive).is_file():
                return Source("archive", data / archive, layout)
    archives = " or ".join(layout.archives[0] for layout in spec.layouts)
    folders = " or ".join(f"{layout.folders[0]}/" for layout in spec.layouts)
    raise UserError(
        f"dataset '{spec.name}' not found: put {archives} (or the extracted {folders} folder) in "
        f"{data.absolute()} (set SSL_CTX_DATA to change the folder)"
    )


def extracted_root(name: str) -> Path:
    """The dataset's folder on disk, as published; an archive is first extracted (safely, once) under
    ``cache_root()/extracted/``."""
    spec = get_spec(name)
    source = locate_source(spec)
    if source.kind == "folder":
        return source.path / (source.root or "")
    target = extract_archive(source.path, cache_root() / "extracted" / archive_stem(source.path))
    root = source.layout.find_root(FolderTree(target).files())
    if root is None:
        raise UserError(f"archive '{source.path}' does not hold the expected layout; download it again")
    return target / root


# ---------------------------------------------------------------------------------------- decoding


def decode_image(data: bytes, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Encoded image -> ``(H, W, 3) uint8`` RGB resized to ``size`` = (H, W), and its unresized (width, height).

    Decoding is :func:`ssl_ctx.images.open_rgb` (16-bit, palette, CMYK, alpha, EXIF orientation), the same as
    ``ssl-ctx inpaint``'s, so a model is trained on the pixels it is later asked to fill. The size returned is
    the upright one: a label map must match it, and boxes in pixels are scaled by it.
    """
    height, width = size
    image = open_rgb(data)
    original = image.size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8), original


def resize_pixels(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(h, w, 3) uint8`` -> ``(H, W, 3) uint8``."""
    if pixels.shape[:2] == tuple(size):
        return pixels
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BILINEAR), dtype=np.uint8)


def decode_label_map(data: bytes, size: tuple[int, int], image_size: tuple[int, int]) -> np.ndarray:
    """Index PNG (palette or grayscale) -> raw values ``(H, W) uint8``, resized with nearest neighbour."""
    height, width = size
    with Image.open(io.BytesIO(data)) as label:
        label.load()
        if label.mode not in ("L", "P"):
            if not (label.mode.startswith("I;16") or label.mode == "I"):
                raise ValueError(f"label map has mode {label.mode}; expected one class index per pixel (palette PNG)")
            values = np.asarray(label)
            if values.max(initial=0) > 255 or values.min(initial=0) < 0:
                raise ValueError("label map has values outside 0..255")
            label = Image.fromarray(values.astype(np.uint8), "L")
        if label.size != image_size:
            raise ValueError(f"label map is {label.size[0]}x{label.size[1]} but its image is "
                             f"{image_size[0]}x{image_size[1]}")
        if label.size != (width, height):
            label = label.resize((width, height), Image.Resampling.NEAREST)
        return np.asarray(label, dtype=np.uint8)


class UnusableFile(Exception):
    """A file of the dataset that cannot be used; ``path`` names it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


def _one_line(err: BaseException) -> str:
    if isinstance(err, UnidentifiedImageError):  # its message names a BytesIO object, not the file
        return "not an image (unknown format or corrupt header)"
    text = " ".join(str(err).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(err).__name__)


def decode_item(item: Item, tree: FileTree, size: tuple[int, int], label_lut: np.ndarray | None) -> dict[str, Any]:
    """One :class:`Item` -> the arguments of :meth:`SplitWriter.add`; :class:`UnusableFile` when it cannot be read."""
    try:
        if item.pixels is not None:
            image, original = resize_pixels(item.pixels, size), (item.pixels.shape[1], item.pixels.shape[0])
        else:
            image, original = decode_image(tree.read(item.path), size)
    except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files; each is a skip
        raise UnusableFile(item.path, _one_line(err)) from None
    label_map = None
    if label_lut is not None:
        try:
            label_map = label_lut[decode_label_map(tree.read(item.label_map), size, original)]
        except Exception as err:  # noqa: BLE001
            raise UnusableFile(item.label_map, _one_line(err)) from None
    boxes = item.boxes
    if boxes is not None and item.boxes_in_pixels:
        scale = np.array([original[0], original[1], original[0], original[1]], dtype=np.float32)
        boxes = np.clip(boxes / scale, 0.0, 1.0).astype(np.float32)
    return {"image": image, "label": item.label, "label_map": label_map, "boxes": boxes, "box_labels": item.box_labels}


# ------------------------------------------------------------------------------------------ writing


def stratified_order(labels: Sequence[int], seed: int = LIMIT_SEED) -> list[int]:
    """Indices in a round-robin over classes (class order drawn with ``seed``, each class in its own order).

    Every prefix is as class-balanced as possible, so a limit of N takes the first N.
    """
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    classes = sorted(by_class)
    order = [classes[i] for i in np.random.default_rng(seed).permutation(len(classes))]
    result = []
    for rank in range(max((len(v) for v in by_class.values()), default=0)):
        result.extend(by_class[c][rank] for c in order if rank < len(by_class[c]))
    return result


def _say(message: str, progress: bool) -> None:
    """Status line: on stderr when the caller asked for progress output, otherwise to the log."""
    if progress:
        tqdm.write(message, file=sys.stderr)
    else:
        logger.info(message)


def _warn(message: str) -> None:
    with tqdm.external_write_mode(file=sys.stderr):  # keep a running progress bar intact
        logger.warning(message)


def _display(tree: FileTree, path: str) -> str:
    return str(tree.root / path) if isinstance(tree, FolderTree) else f"{tree.description}:{path}"


def build_split(
    spec: DatasetSpec,
    split: str,
    index: DatasetIndex,
    tree: FileTree,
    folder: Path,
    size: tuple[int, int],
    limit: int | None,
    base_meta: dict[str, Any],
    progress: bool,
) -> dict[str, Any]:
    """Decode and write one split into ``folder``; returns its meta (written last by the writer)."""
    items = index.splits[split]
    if limit is not None and index.has_labels:
        items = [items[i] for i in stratified_order([item.label for item in items])]
    capacity = len(items) if limit is None else min(limit, len(items))
    writer = SplitWriter(
        folder, capacity, size, labels=index.has_labels, label_maps=index.label_lut is not None,
        boxes=index.has_boxes,
    )
    skipped = []
    for path, reason in index.skipped.get(split, []):
        _warn(f"{spec.name} {split}: skipping '{_display(tree, path)}': {reason}")
        skipped.append({"path": path, "reason": reason})
    bar = tqdm(
        total=capacity, desc=f"{spec.name} {split}", unit="img", disable=not progress, file=sys.stderr,
        leave=False, mininterval=0.5, dynamic_ncols=True,
    )
    with bar:
        for item in items:
            if writer.full:
                break
            try:
                sample = decode_item(item, tree, size, index.label_lut)
            except UnusableFile as err:
                _warn(f"{spec.name} {split}: skipping '{_display(tree, err.path)}': {err.reason}")
                skipped.append({"path": err.path, "reason": err.reason})
                continue
            writer.add(**sample)
            bar.update(1)
    if skipped:
        _warn(f"{spec.name} {split}: skipped {len(skipped)} unusable file(s); "
              f"kept {writer.count} images (the list is in {folder.name}/meta.json)")
    meta = dict(base_meta, split=split, skipped=skipped)
    return writer.finish(meta)


def prepare(
    name: str,
    size: int | str | Sequence[int] | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> Path:
    """Prepare the cache of dataset ``name`` at ``size`` (H, W; None = :func:`default_size`) and return its folder.

    ``limit``: at most this many images per split (see the module docstring). Idempotent: an existing
    complete cache is returned untouched, except the cache of an ``imagefolder:`` whose files changed since it
    was built (added, removed or rewritten: :func:`~ssl_ctx.data.datasets.folder_listing`), which is rebuilt after
    one warning line. A split with no usable image is refused, and a full or read-only cache folder is one line
    naming the space needed; either way nothing is left behind and other caches are untouched.
    ``progress``: progress bars and status lines on stderr.
    """
    spec = get_spec(name)
    size = parse_size(size) or spec.default_size
    limit = _check_limit(limit)
    tag = size_tag(size, limit)
    final = cache_root() / spec.key / tag
    listing = folder_listing(FolderTree(spec.folder)) if spec.folder is not None else None
    if _up_to_date(spec, final, tag, listing, progress):
        return final
    source = locate_source(spec)
    with locked(final.parent / f".{final.name}.lock"):
        if _up_to_date(spec, final, tag, listing, progress, quiet=True):  # another process finished it meanwhile
            return final
        started = time.perf_counter()
        tree, root = source.open(progress)
        index = source.layout.index(tree, root)
        described = {**source.describe(), **({"listing": listing} if listing else {})}
        base_meta = {
            "dataset": spec.name,
            "limit": limit,
            "class_names": index.class_names,
            "source": described,
            **index.extra_meta,
        }
        if not any(index.splits.values()):
            raise UserError(f"{_where(spec, source)} holds no images; put them in <folder>/<class>/ (or straight in "
                            f"the folder for unlabelled pretext training)")
        counts, skipped = {}, 0
        with output_errors(final.parent, _bytes_needed(index, size, limit),
                           "free some space or set SSL_CTX_CACHE to another folder"), building(final) as tmp:
            for split in index.splits:
                meta = build_split(spec, split, index, tree, tmp / split, size, limit, base_meta, progress)
                if meta["count"] == 0:
                    raise UserError(f"{_where(spec, source)}: split '{split}' has no usable image (of "
                                    f"{len(index.splits[split])} files, all skipped); nothing was cached")
                counts[split] = meta["count"]
                skipped += len(meta["skipped"])
        seconds = time.perf_counter() - started
        write_json_atomic(final / META_FILE, {
            "format": FORMAT_VERSION,
            "dataset": spec.name,
            "size": list(size),
            "limit": limit,
            "splits": counts,
            "skipped": skipped,
            "class_names": index.class_names,
            "source": described,
            "seconds": round(seconds, 2),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "versions": {"pillow": PIL.__version__, "numpy": np.__version__},
        })
    _say(f"{spec.name} {tag}: prepared {_counts_text(counts)} in {seconds:.1f} s into {final}", progress)
    return final


def _up_to_date(spec: DatasetSpec, final: Path, tag: str, listing: str | None, progress: bool,
                quiet: bool = False) -> bool:
    """True when ``final`` is complete and, for an image folder, built from the files it holds now."""
    if not is_complete(final):
        return False
    built_from = read_cache_meta(final).get("source", {}).get("listing")
    if listing is not None and built_from != listing:
        if not quiet:
            warn(f"image folder '{spec.folder}' changed since its {tag} cache was built ({built_from or 'unknown'} "
                 f"then, {listing} now); rebuilding the cache")
        return False
    if not quiet:
        _say(f"{spec.name} {tag}: already prepared in {final}; nothing to do", progress)
    return True


def _where(spec: DatasetSpec, source: Source) -> str:
    return f"image folder '{spec.folder}'" if spec.folder is not None else f"dataset '{spec.name}' ({source.path})"


def _bytes_needed(index: DatasetIndex, size: tuple[int, int], limit: int | None) -> int:
    """About the cache's size: RGB images plus label maps, per split (boxes and labels are small)."""
    per_image = size[0] * size[1] * (3 + (1 if index.label_lut is not None else 0))
    return sum(per_image * (len(items) if limit is None else min(limit, len(items))) for items in index.splits.values())


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{split} {count}" for split, count in counts.items())


def read_cache_meta(path: Path) -> dict[str, Any]:
    return json.loads((path / META_FILE).read_text())


def load_split(
    name: str,
    split: str,
    size: int | str | Sequence[int] | None = None,
    limit: int | None = None,
) -> CachedSplit:
    """One split of the cache of ``name`` (prepared first when missing)."""
    folder = prepare(name, size, limit, progress=False)  # at once when prepared and (image folders) unchanged
    splits = read_cache_meta(folder)["splits"]
    if split not in splits:
        raise UserError(f"dataset '{get_spec(name).name}' has no split '{split}'; splits: {', '.join(splits)}")
    return CachedSplit.open(folder / split)


def prepare_command(
    name: str,
    size: int | str | Sequence[int] | None = None,
    limit: int | None = None,
) -> Path:
    """``ssl-ctx data prepare``: prepare, then print one summary line (folder, images per split, skipped files)."""
    folder = prepare(name, size, limit, progress=True)
    meta = read_cache_meta(folder)
    print(f"{folder}: {_counts_text(meta['splits'])} images; {meta['skipped']} file(s) skipped")
    return folder
