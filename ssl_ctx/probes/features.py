"""Frozen features, extracted once per (encoder weights and input, images, layers, pooling), kept on disk for reuse.

A frozen probe never changes the encoder, so its features are a function of the encoder's weights (BatchNorm
statistics included, after :mod:`~ssl_ctx.probes.batch_norm`), the input it is fed (gray or rgb), the images and
how each map is reduced. They are
computed in one pass per split (every layer from the same forward pass) and stored as float16 arrays under
``<root>/<key>/<layer>.npy`` (with ``meta.json`` saying what they are) where ``key`` hashes all of the above
and the split; a second probe of the same
encoder, another seed or another solver setting reads them back instead of running the encoder again. The
root is the ``features/`` folder beside the checkpoint that was probed (or the probe's own run folder for
``random`` and ``timm:`` encoders). A folder appears by an atomic rename once complete, so an interrupted
extraction is redone rather than half read.

Arrays: a pooled layer is ``(N, C·s·t)`` (adaptive average pool to ``s x t``, flattened channel-major as
``torch.flatten``); a layer kept whole is ``(N, C, h, w)``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ssl_ctx.data.cache_writer import new_memmap
from ssl_ctx.files import exclusive_lock, output_errors, temporary_sibling, write_json_atomic
from ssl_ctx.models.encoder_input import RGB, encoder_input_of

FORMAT = "ssl_ctx.features/1"
_extractions = 0  # encoder passes over a split in this process (tests count them)


def extraction_count() -> int:
    """How many splits this process has run an encoder over (cached reads do not count)."""
    return _extractions


@dataclass(frozen=True)
class FeatureSpec:
    """Which maps to keep and how: ``pools[i]`` is the (s, t) average-pool of ``layers[i]``, or None for the map."""

    layers: tuple[str, ...]
    pools: tuple[tuple[int, int] | None, ...]
    input_size: tuple[int, int]


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (names, dtypes, shapes, values): the encoder's identity."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(encoder: nn.Module, spec: FeatureSpec, split: Any) -> str:
    images = {"dataset": split.dataset, "split": split.split, "cache": str(split.path), "count": len(split)}
    if getattr(split, "selection", ""):  # a part of a cached split (a held-out part): keyed apart from the whole
        images["selection"] = split.selection
    identity = {"format": FORMAT, "weights": weights_digest(encoder), "spec": asdict(spec), "images": images}
    # The same weights fed gray images give other features; rgb adds nothing, so existing keys stay valid.
    if encoder_input_of(encoder) != RGB:
        identity["encoder_input"] = encoder_input_of(encoder)
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def _reduce(feature: torch.Tensor, pool: tuple[int, int] | None) -> torch.Tensor:
    feature = feature.float()
    return F.adaptive_avg_pool2d(feature, pool).flatten(1) if pool is not None else feature


@torch.no_grad()
def _extract(encoder: nn.Module, spec: FeatureSpec, batches: Callable[[], Any], count: int, folder: Path,
             autocast: Callable[[], Any], label: str) -> None:
    """Run ``encoder`` over every batch and write one float16 ``.npy`` per layer into ``folder``."""
    global _extractions
    encoder.eval()
    arrays: dict[str, np.ndarray] = {}
    row = 0
    progress = tqdm(total=count, desc=label, unit="img", dynamic_ncols=True, leave=False)
    for batch in batches():
        with autocast():
            maps = encoder(batch["image"])
        for layer, pool in zip(spec.layers, spec.pools):
            values = _reduce(maps[layer], pool).cpu().numpy().astype(np.float16)
            if layer not in arrays:
                arrays[layer] = new_memmap(folder / f"{layer}.npy", np.float16, (count, *values.shape[1:]))
            arrays[layer][row:row + len(values)] = values
        row += len(batch["image"])
        progress.update(len(batch["image"]))
    progress.close()
    for array in arrays.values():
        array.flush()
    _extractions += 1


def cached_features(encoder: nn.Module, spec: FeatureSpec, split: Any, loader: Any, root: Path,
                    autocast: Callable[[], Any]) -> tuple[dict[str, np.ndarray], Path, bool]:
    """(layer -> read-only array, folder, reused) for every image of ``split`` served in order by ``loader``.

    ``loader`` must yield every image of ``split`` once, in order, at ``spec.input_size`` (an evaluation loader).
    """
    key = cache_key(encoder, spec, split)
    folder = root / key
    # Two probes of one encoder running side by side (bench --workers) would extract the same features twice:
    # the second waits for the first and reads its copy. The lock file goes once the folder is there (a process
    # that missed the lock that way still finds the folder, or writes a copy that the rename below resolves).
    lock = root / f".{key}.lock"
    with exclusive_lock(lock, f"feature cache '{folder}'", wait=True):
        reused = (folder / "meta.json").is_file()
        if not reused:
            _extract_into(encoder, spec, split, loader, folder, root, autocast)
        lock.unlink(missing_ok=True)
    arrays = {layer: np.load(folder / f"{layer}.npy", mmap_mode="r") for layer in spec.layers}
    return arrays, folder, reused


def _extract_into(encoder: nn.Module, spec: FeatureSpec, split: Any, loader: Any, folder: Path, root: Path,
                  autocast: Callable[[], Any]) -> None:
    """Extract into a temporary sibling of ``folder`` and rename it into place once complete."""
    tmp = temporary_sibling(folder)
    with output_errors(root, fix="free some space, or set probe.keep_features=false to delete the features of "
                                 "earlier probes"):
        tmp.mkdir(parents=True)
        try:
            _extract(encoder, spec, lambda: loader.batches(0), len(split), tmp, autocast,
                     f"features {split.dataset}/{split.split}")
            write_json_atomic(tmp / "meta.json", {"format": FORMAT, "spec": asdict(spec),
                                                  "dataset": split.dataset, "split": split.split,
                                                  "images": len(split)})
            if folder.exists():  # a concurrent writer finished first: keep its copy
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
