"""The data one run reads: its train and evaluation splits, at the size its network needs, and what its record says
about them.

- **Size.** ``data.cache_size`` when set; else an ``imagefolder:`` (photos have no size of their own) is cached at
  the network's input size (``data.input_size``, else the encoder's), so that a copy of a config built for 64-px
  inputs does not train on 128-px ones; other datasets keep their own default size (:func:`cache_size_for`).
- **Held out.** A dataset with the single split ``all`` (an image folder without split folders) has no ``train``
  and no ``val``: asked for them, a run splits ``all`` in two, holding out a seeded ``data.holdout_fraction`` of its
  images as ``val`` and training on the rest (:func:`holdout_rows`), so that a "held-out" number is measured on
  images the run never trained on. ``data.train_split=all data.eval_split=all`` trains and evaluates on every
  image, and the record says ``eval_on_training_images``.
- **Said.** A cache built on first use is announced (a bench's log shows it), and :meth:`RunData.describe` is the
  record's ``data`` block: dataset, splits, images, sizes, resize policy, what was held out.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssl_ctx.config import DataConfig
from ssl_ctx.data.cache import CachedSplit, is_complete, read_cache_meta
from ssl_ctx.data.catalogue import IMAGEFOLDER_PREFIX, cache_dir, get_spec, resize_policy
from ssl_ctx.data.prepare import prepare
from ssl_ctx.errors import UserError

SINGLE_SPLIT = "all"  # the one split of an image folder without split folders
HELD_OUT_SPLITS = ("train", "val")  # what a run asks for by default; made from SINGLE_SPLIT where it is alone


def cache_size_for(data: DataConfig, network_size: int | None) -> tuple[int, int] | None:
    """The cache size a run reads: ``data.cache_size``; else, for an ``imagefolder:``, ``data.input_size`` or the
    network's ``network_size``; else None (the dataset's default size)."""
    if data.cache_size:
        return (int(data.cache_size[0]), int(data.cache_size[-1]))
    side = data.input_size or network_size
    if side and data.dataset.startswith(IMAGEFOLDER_PREFIX):
        return (int(side), int(side))
    return None


def holdout_rows(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows trained on, rows held out) of a split of ``count`` images: a seeded ``fraction`` held out (at least
    one image, and at least one left to train on), each part in cache order."""
    if count < 2:
        raise UserError(f"cannot hold out part of a split of {count} image(s); add images, or train and evaluate "
                        f"on the same ones with data.train_split=all data.eval_split=all")
    held = min(count - 1, max(1, round(count * fraction)))
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[held:]), np.sort(order[:held])


def split_part(split: CachedSplit, rows: np.ndarray, name: str, selection: str) -> CachedSplit:
    """The images ``rows`` of ``split`` (read into memory) as a split called ``name``; its mean colour is its own,
    so that a hole is never filled with a colour computed on held-out images."""
    images = np.ascontiguousarray(split.images[rows])
    pick = (lambda values: None if values is None else [values[int(i)] for i in rows])
    return dataclasses.replace(
        split, split=name, images=images,
        labels=None if split.labels is None else split.labels[rows],
        label_maps=None if split.label_maps is None else np.ascontiguousarray(split.label_maps[rows]),
        label_sets=None if split.label_sets is None else split.label_sets[rows],
        boxes=pick(split.boxes), box_labels=pick(split.box_labels), box_difficult=pick(split.box_difficult),
        mean_rgb=tuple(float(v) for v in images.reshape(-1, 3).mean(axis=0, dtype=np.float64)),
        selection=selection)


@dataclass
class RunData:
    """A run's two splits and how they were chosen: ``held_out`` says which images ``eval`` holds (None where
    the dataset's own splits were used), ``eval_on_training_images`` whether they were trained on."""

    data: DataConfig
    train: CachedSplit
    eval: CachedSplit
    held_out: str | None = None

    @property
    def eval_on_training_images(self) -> bool:
        return self.held_out is None and self.train.split == self.eval.split

    def describe(self, input_size: tuple[int, int]) -> dict[str, Any]:
        """The record's ``data`` block."""
        return {"dataset": self.data.dataset, "train_split": self.train.split, "eval_split": self.eval.split,
                "train_images": len(self.train), "eval_images": len(self.eval),
                "input_size": [int(v) for v in input_size], "cache_size": list(self.train.size),
                "resize": resize_policy(self.data.dataset, self.data.resize),
                "held_out": self.held_out, "eval_on_training_images": self.eval_on_training_images}


def _prepared(data: DataConfig, size: tuple[int, int] | None, limit: int | None) -> tuple[Path, list[str]]:
    """(cache folder, its splits) of ``data`` at ``size`` with ``limit``, prepared here when missing: then a line
    before and after says so, so that a bench's log shows where the time went."""
    folder = cache_dir(data.dataset, size, limit, data.resize)
    first_use = not is_complete(folder)
    if first_use:
        print(f"data: preparing {get_spec(data.dataset).name} at {folder.name} "
              f"({resize_policy(data.dataset, data.resize)}) on first use into {folder}; `ssl-ctx data prepare` does "
              f"it ahead of time", flush=True)
    started = time.perf_counter()
    folder = prepare(data.dataset, size, limit, progress=False, resize=data.resize)
    if first_use:
        print(f"data: prepared {data.dataset} in {time.perf_counter() - started:.1f} s", flush=True)
    return folder, list(read_cache_meta(folder)["splits"])


def _missing_splits(data: DataConfig, missing: list[str], splits: list[str]) -> UserError:
    fix = (f"a folder of images without split folders has only '{SINGLE_SPLIT}': use data.train_split=train "
           f"data.eval_split=val (a seeded data.holdout_fraction of it held out) or data.train_split=all "
           f"data.eval_split=all (evaluated on the training images)") if splits == [SINGLE_SPLIT] \
        else "set data.train_split / data.eval_split to one of them"
    named = f"split '{missing[0]}'" if len(missing) == 1 else f"splits {', '.join(repr(m) for m in missing)}"
    return UserError(f"dataset '{get_spec(data.dataset).name}' has no {named}; splits: {', '.join(splits)}; {fix}")


def load_run_data(data: DataConfig, network_size: int | None = None, evaluation: bool = True) -> RunData:
    """The train split (and, with ``evaluation``, the evaluation split) of ``data`` as the module docstring says;
    ``network_size``: the side of the encoder's input, which an image folder's cache follows. Without
    ``evaluation`` the evaluation split is the train split (for a caller that reads only the training images)."""
    size = cache_size_for(data, network_size)
    folder, splits = _prepared(data, size, data.limit)
    wanted = (data.train_split, data.eval_split) if evaluation else (data.train_split,)
    if splits == [SINGLE_SPLIT] and all(name in HELD_OUT_SPLITS for name in wanted):
        return _held_out(data, CachedSplit.open(folder / SINGLE_SPLIT))
    missing = [name for name in dict.fromkeys(wanted) if name not in splits]
    if missing:
        raise _missing_splits(data, missing, splits)
    train = CachedSplit.open(folder / data.train_split)
    if not evaluation or (data.eval_split == data.train_split and data.eval_limit == data.limit):
        return RunData(data, train, train)
    if data.eval_limit != data.limit:  # another cache: at most data.eval_limit images per split
        folder, splits = _prepared(data, size, data.eval_limit)
    return RunData(data, train, CachedSplit.open(folder / data.eval_split))


def _held_out(data: DataConfig, whole: CachedSplit) -> RunData:
    kept, held = holdout_rows(len(whole), data.holdout_fraction, data.holdout_seed)
    if data.eval_limit is not None:
        held = held[:data.eval_limit]
    how = f"data.holdout_fraction={data.holdout_fraction:g}, data.holdout_seed={data.holdout_seed}"
    held_out = f"{len(held)} of the {len(whole)} images of '{SINGLE_SPLIT}' ({how})"
    train = split_part(whole, kept, "train", f"'{SINGLE_SPLIT}' less {held_out}")
    evaluation = split_part(whole, held, "val", f"held out: {held_out}")
    print(f"data: {get_spec(data.dataset).name} has one split '{SINGLE_SPLIT}': training on {len(kept)} images, "
          f"holding out {len(held)} as 'val' ({how})", flush=True)
    return RunData(data, train, evaluation, held_out=held_out)
