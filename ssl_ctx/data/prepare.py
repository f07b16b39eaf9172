"""Writing the cache: dataset as published -> prepared cache of fixed-size uint8 arrays (``cache.py``'s layout).

``prepare(name, size, limit, workers=N, resize=P)`` locates the dataset (``sources.py``), indexes it
(``datasets.py``), decodes every file and brings it to the cache's size by the resize policy P (``decode.py``;
None = the dataset's default, and the cache's ``meta.json`` records it), in this process or in N worker processes
that write the pixels into the rows they are handed while this one reads the files and takes the results in the
dataset's order (so the cache is the same byte for byte whatever N), and writes each split with
:class:`~ssl_ctx.data.cache_writer.SplitWriter`; ``load_split`` opens one split, preparing it first when missing.
It is idempotent: a complete cache is left alone. It is resumable: the build goes on in a fixed-name partial folder
(:class:`~ssl_ctx.data.cache_writer.PartialBuild`) checkpointed every ``CHECKPOINT_SECONDS`` (or every
``$SSL_CTX_PREPARE_CHECKPOINT_EVERY`` images), so after a kill at any point, SIGKILL included, the same command
continues from the last checkpoint, and a finished split is not redone; a partial build of something else (other
files, size, limit, resize policy or format) is discarded with one line saying why.

A file that cannot be decoded is skipped and named in one warning line, with a count per split at the end; the
list also goes to the split's ``meta.json``. So is an item without a label map (or label set) in a split whose
other items have one: label maps and label sets are all-or-none per split. ``limit`` keeps N images per split:
for labelled datasets the first N of a round-robin over classes (:func:`stratified_order`, class order drawn
with a fixed seed), so every prefix is class-balanced and smaller limits are subsets of larger ones; a limited
cache is stored in that round-robin order. Unlabelled datasets keep their first N images.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from tqdm import tqdm

from ssl_ctx.data.archives import FileTree, FolderTree
from ssl_ctx.data.cache import FORMAT_VERSION, CachedSplit, is_complete, locked, read_cache_meta
from ssl_ctx.data.cache_writer import PartialBuild, SplitWriter, StaleBuild
from ssl_ctx.data.catalogue import cache_tag, check_limit, check_resize, folder_dataset, get_spec, parse_size
from ssl_ctx.data.datasets import DatasetIndex, DatasetSpec, Item, folder_listing
from ssl_ctx.data.decode import UNRECORDED_RESIZE, DecoderPool, UnusableFile, decode_item, describe_resize
from ssl_ctx.data.roots import cache_root
from ssl_ctx.data.sources import Source, locate_source
from ssl_ctx.data.status import counts_text, log_warning, say
from ssl_ctx.errors import UserError, warn
from ssl_ctx.files import output_errors
from ssl_ctx.host import cpu_cores

LIMIT_SEED = 0
CHECKPOINT_SECONDS = 10.0  # a kill loses at most this much decoding
CHECKPOINT_EVERY_VARIABLE = "SSL_CTX_PREPARE_CHECKPOINT_EVERY"  # images between checkpoints instead (tests)


def check_workers(workers: int | None) -> int:
    """The number of decoding processes: None = 1 (decode in this process); anything but a positive int is a
    :class:`UserError`."""
    if workers is None:
        return 1
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise UserError(f"bad number of workers {workers!r}; pass a positive number of processes "
                        f"(this machine lets this process use {cpu_cores()} cores)")
    return int(workers)


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


# -------------------------------------------------------------------------------------------- splits


@dataclass
class SplitPlan:
    """What one split stores: its items in cache order, the files skipped before decoding, which per-image
    targets it has (``label_sets``: their number of classes K, 0 = none) and its capacity."""

    items: list[Item]
    skipped: list[tuple[str, str]]
    label_maps: bool
    label_sets: int
    capacity: int


def plan_split(index: DatasetIndex, split: str, limit: int | None) -> SplitPlan:
    """The items of ``split`` to decode. Label maps and label sets are all-or-none per split: an item without
    one in a split whose other items have one is skipped, named."""
    items = index.splits[split]
    label_maps = index.label_lut is not None and any(item.label_map is not None for item in items)
    label_sets = len(index.class_names) if index.has_label_sets and any(
        item.label_set is not None for item in items) else 0
    needed = [(what, name) for what, name, wanted in (("label_map", "label map", label_maps),
                                                       ("label_set", "image-level label set", label_sets)) if wanted]
    kept, skipped = [], list(index.skipped.get(split, []))
    for item in items:
        missing = [name for what, name in needed if getattr(item, what) is None]
        if missing:
            skipped.append((item.path, f"no {' and no '.join(missing)}, which the other images of the split have"))
        else:
            kept.append(item)
    if limit is not None and index.has_labels:
        kept = [kept[i] for i in stratified_order([item.label for item in kept])]
    capacity = len(kept) if limit is None else min(limit, len(kept))
    return SplitPlan(kept, skipped, label_maps, label_sets, capacity)


def _decoded(items: Sequence[Item], tree: FileTree, size: tuple[int, int], label_lut: np.ndarray | None,
             pool: DecoderPool | None, writer: SplitWriter, resize: str) -> Iterator[dict[str, Any] | UnusableFile]:
    """:meth:`SplitWriter.add`'s arguments for each item in order (its :class:`UnusableFile` in its place): from
    :func:`decode_item` (under the policy ``resize``) in this process, or from ``pool``'s workers, which write the
    pixels into ``writer``'s files themselves."""
    if pool is not None:
        yield from pool.decode(items, tree, size, label_lut, writer.row_targets(), resize)
        return
    for item in items:
        try:
            yield decode_item(item, tree, size, label_lut, resize)
        except UnusableFile as err:
            yield err


def _checkpoint_every() -> int | None:
    value = os.environ.get(CHECKPOINT_EVERY_VARIABLE)
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"bad {CHECKPOINT_EVERY_VARIABLE}={value!r}; set it to a positive number of images, or "
                        f"unset it")
    return int(value)


def _split_writer(spec: DatasetSpec, split: str, tree: FileTree, build: PartialBuild, size: tuple[int, int],
                  plan: SplitPlan, index: DatasetIndex, progress: bool) -> tuple[SplitWriter, dict[str, Any]]:
    """The writer of ``split`` and its state (items consumed, files skipped): reopened at the split's last
    checkpoint when it has a usable one, else new, the files skipped before decoding logged."""
    layout = dict(labels=index.has_labels, label_maps=plan.label_maps, boxes=index.has_boxes,
                  label_sets=plan.label_sets)
    state = build.splits.get(split)
    if state is not None:
        try:
            writer = SplitWriter(build.folder / split, plan.capacity, size, resume=True, count=state["count"],
                                 **layout)
            say(f"resuming the {split} split at image {writer.count} of {plan.capacity} ({build.folder})", progress)
            return writer, state
        except StaleBuild as err:
            warn(f"starting the {split} split of '{build.folder}' again: {err}")
    shutil.rmtree(build.folder / split, ignore_errors=True)
    state = {"consumed": 0, "skipped": []}
    for path, reason in plan.skipped:
        log_warning(f"{spec.name} {split}: skipping '{_display(tree, path)}': {reason}")
        state["skipped"].append({"path": path, "reason": reason})
    return SplitWriter(build.folder / split, plan.capacity, size, **layout), state


def build_split(
    spec: DatasetSpec,
    split: str,
    index: DatasetIndex,
    tree: FileTree,
    build: PartialBuild,
    size: tuple[int, int],
    plan: SplitPlan,
    base_meta: dict[str, Any],
    pool: DecoderPool | None,
    progress: bool,
    every: int | None = None,
) -> tuple[dict[str, Any], int]:
    """Decode and write one split into the partial build, from its last checkpoint when it has one; returns its
    meta (written last by the writer) and the number of images written by this call. Checkpoints come every
    ``every`` items (None: every ``CHECKPOINT_SECONDS``)."""
    finished = build.finished(split)
    if finished is not None:
        return finished, 0
    writer, state = _split_writer(spec, split, tree, build, size, plan, index, progress)
    consumed, skipped, start = state["consumed"], list(state["skipped"]), writer.count
    last = time.monotonic()

    def checkpoint() -> None:
        writer.checkpoint()
        build.record(split, consumed, writer.count, skipped)

    bar = tqdm(
        total=plan.capacity, initial=writer.count, desc=f"{spec.name} {split}", unit="img", disable=not progress,
        file=sys.stderr, leave=False, mininterval=0.5, dynamic_ncols=True,
    )
    with bar:
        for result in _decoded(plan.items[consumed:], tree, size, index.label_lut, pool, writer,
                               base_meta["resize"]):
            if writer.full:
                break
            consumed += 1
            if isinstance(result, UnusableFile):
                log_warning(f"{spec.name} {split}: skipping '{_display(tree, result.path)}': {result.reason}")
                skipped.append({"path": result.path, "reason": result.reason})
            else:
                writer.add(**result)
                bar.update(1)
            if (consumed % every == 0) if every else time.monotonic() - last >= CHECKPOINT_SECONDS:
                checkpoint()
                last = time.monotonic()
    checkpoint()  # a kill while the split is finished goes on from here
    if skipped:
        log_warning(f"{spec.name} {split}: skipped {len(skipped)} unusable file(s); "
                    f"kept {writer.count} images (the list is in {split}/meta.json)")
    meta = dict(base_meta, split=split, class_names=index.split_class_names.get(split, index.class_names),
                skipped=skipped)
    return writer.finish(meta), writer.count - start


# -------------------------------------------------------------------------------------------- caches


def prepare(
    name: str,
    size: int | str | Sequence[int] | None = None,
    limit: int | None = None,
    progress: bool = True,
    workers: int | None = None,
    resize: str | None = None,
) -> Path:
    """Prepare the cache of dataset ``name`` at ``size`` (H, W; None = :func:`default_size`) and return its folder.

    ``limit``: at most this many images per split (see the module docstring). ``resize``: how an image becomes
    ``size`` (``decode.RESIZE_POLICIES``; None = the dataset's default, whose cache folder does not name it,
    :func:`~ssl_ctx.data.catalogue.cache_tag`). ``workers``: processes that decode; None = 1, decoding in this
    process, as ``load_split`` does (it runs inside training processes, and the datasets it prepares on first use
    are small); ``ssl-ctx data prepare`` uses every core by default (:func:`~ssl_ctx.host.cpu_cores`). As with any
    ``multiprocessing`` pool, a script that asks for more than one worker calls this under ``if __name__ ==
    "__main__":`` (the workers import the script). Idempotent: an existing complete cache is returned untouched,
    except the cache of an ``imagefolder:`` whose files changed since it was built (added, removed or rewritten:
    :func:`~ssl_ctx.data.datasets.folder_listing`), and a cache made with another resize policy than the one asked
    for (a default cache written before a dataset's default changed; a cache without a recorded policy was
    squeezed), which are rebuilt after one warning line. Resumable: an interrupted or killed build continues from
    its last checkpoint (see the module docstring). A split with no usable image is refused, and a full or read-only
    cache folder is one line naming the space needed; either way nothing is left behind and other caches are
    untouched. ``progress``: progress bars and status lines on stderr.
    """
    spec = get_spec(name)
    size = parse_size(size) or spec.default_size
    limit = check_limit(limit)
    resize = check_resize(spec, resize)
    workers = check_workers(workers)
    every = _checkpoint_every()
    tag = cache_tag(spec, size, limit, resize)
    final = cache_root() / spec.key / tag
    source = locate_source(spec) if spec.folder is not None else None  # its tree is listed once, warnings too
    listing = folder_listing(source.tree) if source is not None else None
    if _up_to_date(spec, final, tag, listing, resize, progress):
        return final
    source = source or locate_source(spec)
    with locked(final.parent / f".{final.name}.lock"):
        if _up_to_date(spec, final, tag, listing, resize, progress, quiet=True):  # another process finished it
            return final
        started = time.perf_counter()
        tree, root = source.open(progress)
        index = source.layout.index(tree, root)
        described = {**source.describe(), **({"listing": listing} if listing else {})}
        if not any(index.splits.values()):
            raise UserError(f"{_where(spec, source)} holds no images; put them in <folder>/<class>/ (or straight in "
                            f"the folder for unlabelled pretext training)")
        plans = {split: plan_split(index, split, limit) for split in index.splits}
        with output_errors(final.parent, _bytes_needed(plans, size),
                           "free some space or set SSL_CTX_CACHE to another folder"):
            build = PartialBuild.open(final, _fingerprint(spec, size, limit, resize, source, described, index))
            if build.discarded:
                warn(f"discarding the unfinished build in '{build.folder}': {build.discarded}; starting again")
            try:
                meta = _build(spec, index, tree, build, size, plans, source, described, workers, progress, every)
                seconds = time.perf_counter() - started
                decoded = meta.pop("images_this_run")
                rate = decoded / seconds
                meta.update(seconds=round(seconds, 2), images_per_second=round(rate, 1), workers=workers)
                build.complete(meta)
            except KeyboardInterrupt:
                if build.resumable:
                    say(f"{spec.name} {tag}: stopped; what was prepared is kept in {build.folder}, and the same "
                        f"command continues from there", progress)
                else:
                    build.discard()
                raise
            except BaseException:
                build.discard()
                raise
    resumed = f" ({decoded} of them in this run)" if decoded < sum(meta["splits"].values()) else ""
    say(f"{spec.name} {tag}: prepared {counts_text(meta['splits'])}{resumed} in {seconds:.1f} s ({rate:.0f} images/s, "
        f"{workers} worker{'s' if workers > 1 else ''}) into {final}; {describe_resize(resize, size)}", progress)
    return final


def _build(spec: DatasetSpec, index: DatasetIndex, tree: FileTree, build: PartialBuild, size: tuple[int, int],
           plans: dict[str, SplitPlan], source: Source, described: dict[str, str], workers: int,
           progress: bool, every: int | None) -> dict[str, Any]:
    """Build every split of the partial build; returns the top-level meta, less this run's timing."""
    limit, resize = build.fingerprint["limit"], build.fingerprint["resize"]
    base_meta = {"dataset": spec.name, "limit": limit, "resize": resize, "class_names": index.class_names,
                 "source": described, **index.extra_meta}
    counts, skipped, written = {}, 0, 0
    decoding = workers > 1 and not all(is_complete(build.folder / split) for split in plans)
    with DecoderPool(workers) if decoding else contextlib.nullcontext() as pool:
        for split, plan in plans.items():
            meta, written_now = build_split(spec, split, index, tree, build, size, plan, base_meta, pool, progress,
                                            every)
            if meta["count"] == 0:
                raise UserError(f"{_where(spec, source)}: split '{split}' has no usable image (of "
                                f"{len(index.splits[split])} files, all skipped); nothing was cached")
            counts[split] = meta["count"]
            skipped += len(meta["skipped"])
            written += written_now
    return {
        "format": FORMAT_VERSION,
        "dataset": spec.name,
        "size": list(size),
        "limit": limit,
        "resize": resize,
        "splits": counts,
        "skipped": skipped,
        "class_names": index.class_names,
        **({"split_class_names": index.split_class_names} if index.split_class_names else {}),
        "has_label_sets": index.has_label_sets,
        "source": described,
        "images_this_run": written,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"pillow": PIL.__version__, "numpy": np.__version__},
    }


def _fingerprint(spec: DatasetSpec, size: tuple[int, int], limit: int | None, resize: str, source: Source,
                 described: dict[str, str], index: DatasetIndex) -> dict[str, Any]:
    """What a partial build is a build of: a partial build with another fingerprint is not continued."""
    fingerprint = {"format": FORMAT_VERSION, "dataset": spec.name, "size": list(size), "limit": limit,
                   "resize": resize, "source": described, "items": items_digest(index)}
    if source.kind == "archive":
        stat = source.path.stat()
        fingerprint["archive"] = f"{stat.st_size} bytes, modified {stat.st_mtime_ns}"
    return fingerprint


def items_digest(index: DatasetIndex) -> str:
    """A hash of the index: classes, and every split's items with their files and targets (not decoded pixels)."""
    digest = hashlib.sha256(repr((index.class_names, sorted(index.split_class_names.items()))).encode())
    for split, items in index.splits.items():
        digest.update(f"{split}\0{len(items)}\n".encode())
        for item in items:
            digest.update(f"{item.path}\0{item.label}\0{item.label_map}\0{item.boxes_in_pixels}\n".encode())
            for array in (item.boxes, item.box_labels, item.box_difficult, item.label_set):
                if array is not None:
                    digest.update(np.ascontiguousarray(array).tobytes())
    return f"{sum(map(len, index.splits.values()))} items, sha256 {digest.hexdigest()[:16]}"


def _up_to_date(spec: DatasetSpec, final: Path, tag: str, listing: str | None, resize: str, progress: bool,
                quiet: bool = False) -> bool:
    """True when ``final`` is complete, made with the policy ``resize`` and, for a folder dataset, built from the
    files it holds now."""
    if not is_complete(final):
        return False
    meta = read_cache_meta(final)
    built_from = meta.get("source", {}).get("listing")
    if listing is not None and built_from != listing:
        if not quiet:
            warn(f"{_folder_kind(spec)} '{spec.folder}' changed since its {tag} cache was built "
                 f"({built_from or 'unknown'} then, {listing} now); rebuilding the cache")
        return False
    made_with = meta.get("resize", UNRECORDED_RESIZE)
    if made_with != resize:
        if not quiet:
            recorded = "" if "resize" in meta else ", before resize policies were recorded"
            warn(f"the {tag} cache of {spec.name} was resized by {made_with}{recorded}, and {resize} is asked for "
                 f"now; rebuilding the cache")
        return False
    if not quiet:
        say(f"{spec.name} {tag}: already prepared in {final}; nothing to do", progress)
    return True


def _where(spec: DatasetSpec, source: Source) -> str:
    if spec.folder is not None:
        return f"{_folder_kind(spec)} '{spec.folder}'"
    return f"dataset '{spec.name}' ({source.path})"


def _folder_kind(spec: DatasetSpec) -> str:
    """What a folder dataset is called in messages: ``image folder``, ``VOC folder``, ..."""
    return folder_dataset(spec)[1].what


def _bytes_needed(plans: dict[str, SplitPlan], size: tuple[int, int]) -> int:
    """About the cache's size: RGB images plus label maps, per split (boxes, labels and label sets are small)."""
    return sum(size[0] * size[1] * (3 + plan.label_maps) * plan.capacity for plan in plans.values())


def load_split(
    name: str,
    split: str,
    size: int | str | Sequence[int] | None = None,
    limit: int | None = None,
    resize: str | None = None,
) -> CachedSplit:
    """One split of the cache of ``name`` with the resize policy ``resize`` (None = the dataset's default),
    prepared first when missing, decoding in this process."""
    folder = prepare(name, size, limit, progress=False, resize=resize)  # at once when prepared and unchanged
    splits = read_cache_meta(folder)["splits"]
    if split not in splits:
        raise UserError(f"dataset '{get_spec(name).name}' has no split '{split}'; splits: {', '.join(splits)}")
    return CachedSplit.open(folder / split)
