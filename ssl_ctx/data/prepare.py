"""Writing the cache: dataset as published -> prepared cache of fixed-size uint8 arrays (``cache.py``'s layout).

``prepare(name, size, limit)`` locates the dataset (``sources.py``), indexes it (``datasets.py``), decodes every
file (``decode.py``) and writes each split with :class:`~ssl_ctx.data.cache.SplitWriter`; ``load_split`` opens
one split, preparing it first when missing. It is idempotent: a complete cache is left alone. A file that
cannot be decoded is skipped and named in one warning line, with a count per split at the end; the list also
goes to the split's ``meta.json``. ``limit`` keeps N images per split: for labelled datasets the first N of a
round-robin over classes (:func:`stratified_order`, class order drawn with a fixed seed), so every prefix is
class-balanced and smaller limits are subsets of larger ones; a limited cache is stored in that round-robin
order. Unlabelled datasets keep their first N images.
"""
from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from tqdm import tqdm

from ssl_ctx.data.archives import FileTree, FolderTree
from ssl_ctx.data.cache import (
    FORMAT_VERSION,
    META_FILE,
    CachedSplit,
    SplitWriter,
    building,
    is_complete,
    locked,
    read_cache_meta,
    size_tag,
)
from ssl_ctx.data.catalogue import check_limit, get_spec, parse_size
from ssl_ctx.data.datasets import DatasetIndex, DatasetSpec, folder_listing
from ssl_ctx.data.decode import UnusableFile, decode_item
from ssl_ctx.data.roots import cache_root
from ssl_ctx.data.sources import Source, locate_source
from ssl_ctx.data.status import counts_text, log_warning, say
from ssl_ctx.errors import UserError, warn
from ssl_ctx.files import output_errors, write_json_atomic

LIMIT_SEED = 0


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
        log_warning(f"{spec.name} {split}: skipping '{_display(tree, path)}': {reason}")
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
                log_warning(f"{spec.name} {split}: skipping '{_display(tree, err.path)}': {err.reason}")
                skipped.append({"path": err.path, "reason": err.reason})
                continue
            writer.add(**sample)
            bar.update(1)
    if skipped:
        log_warning(f"{spec.name} {split}: skipped {len(skipped)} unusable file(s); "
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
    limit = check_limit(limit)
    tag = size_tag(size, limit)
    final = cache_root() / spec.key / tag
    source = locate_source(spec) if spec.folder is not None else None  # its tree is listed once, warnings too
    listing = folder_listing(source.tree) if source is not None else None
    if _up_to_date(spec, final, tag, listing, progress):
        return final
    source = source or locate_source(spec)
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
    say(f"{spec.name} {tag}: prepared {counts_text(counts)} in {seconds:.1f} s into {final}", progress)
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
        say(f"{spec.name} {tag}: already prepared in {final}; nothing to do", progress)
    return True


def _where(spec: DatasetSpec, source: Source) -> str:
    return f"image folder '{spec.folder}'" if spec.folder is not None else f"dataset '{spec.name}' ({source.path})"


def _bytes_needed(index: DatasetIndex, size: tuple[int, int], limit: int | None) -> int:
    """About the cache's size: RGB images plus label maps, per split (boxes and labels are small)."""
    per_image = size[0] * size[1] * (3 + (1 if index.label_lut is not None else 0))
    return sum(per_image * (len(items) if limit is None else min(limit, len(items))) for items in index.splits.values())


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
