"""Pieces every probe shares: what a probe runs with (:class:`ProbeContext`), the task base (:class:`ProbeTask`),
layer and solver choices, pooling.

A probe is one function registered in ``PROBES`` (``@PROBES.register("name", frozen_solver=...)``) that takes a
:class:`ProbeContext` and returns ``{"metrics": {...}, "details": {...}}`` (``details``: what the record keeps
beside the metrics; ``chance`` and ``headline`` are read by the printed result). A probe that trains a head is
a :class:`ProbeTask` trained by the context's trainer; it holds the encoder as ``self.encoder`` so its
checkpoints can be loaded back as an encoder.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_ctx.config import DataConfig, ProbeConfig, TrainConfig
from ssl_ctx.engine.task import TrainingTask
from ssl_ctx.errors import UserError, suggest
from ssl_ctx.registry import PROBES

MODES = ("linear", "finetune")
SGD = "sgd"  # the solver that trains a head (and a fine-tuned encoder) with the shared Trainer


def layer_names(encoder: nn.Module) -> list[str]:
    return [info["module"] for info in encoder.feature_info]


def parse_layers(spec: str, encoder: nn.Module) -> list[str]:
    """``"conv5"`` or ``"conv3+conv5"`` -> checked list of feature-map names of ``encoder``.

    ``|`` separates alternatives for encoders of other architectures, the first whose maps the encoder all has
    being read: ``conv1+conv2+conv3+conv4+conv5|blocks_0+blocks_1+blocks_2`` probes an AlexNet's convolutions and
    a ViT's blocks with one probe config (a bench comparing both)."""
    known = layer_names(encoder)
    alternatives = [[name.strip() for name in part.split("+") if name.strip()] for part in spec.split("|")]
    if not any(alternatives):
        raise UserError(f"probe.layer is empty; pass one of {', '.join(known)}")
    for layers in alternatives:
        if layers and all(name in known for name in layers):
            return layers
    if len(alternatives) > 1:
        raise UserError(f"no alternative of probe.layer '{spec}' names only feature maps of this encoder; add one "
                        f"('|' then maps joined by '+') from: {', '.join(known)}")
    name = next(name for name in alternatives[0] if name not in known)
    raise UserError(f"probe.layer '{name}' is not a feature map of this encoder{suggest(name, known)}; "
                    f"known: {', '.join(known)}")


def check_mode(mode: str) -> bool:
    """``probe.mode`` -> True when the encoder is fine-tuned."""
    if mode not in MODES:
        raise UserError(f"unknown probe.mode '{mode}'{suggest(mode, MODES)}; known: {', '.join(MODES)}")
    return mode == "finetune"


def resolve_solver(probe: ProbeConfig) -> str:
    """``probe.solver`` made concrete: ``sgd``, or the solver the task registered for frozen features
    (``frozen_solver``, e.g. ``ridge``), which ``auto`` picks for a frozen encoder."""
    info = PROBES.info(probe.task)
    frozen_solver = info.get("frozen_solver")
    trains = info.get("trains", True)  # False: the probe has no SGD head (it only reads frozen features)
    solvers = ("auto", *((SGD,) if trains else ()), *((frozen_solver,) if frozen_solver else ()))
    if probe.solver not in solvers:
        raise UserError(f"unknown probe.solver '{probe.solver}' for the {probe.task} probe"
                        f"{suggest(probe.solver, solvers)}; known: {', '.join(solvers)}")
    finetune = check_mode(probe.mode)
    if finetune and not trains:
        raise UserError(f"the {probe.task} probe reads frozen features only; set probe.mode=linear")
    if probe.solver == "auto":
        return SGD if finetune or not frozen_solver else frozen_solver
    if finetune and probe.solver != SGD:
        raise UserError(f"probe.solver={probe.solver} fits frozen features of the {probe.task} probe only; this "
                        f"is probe.mode={probe.mode}: use probe.solver=auto or sgd, or probe.mode=linear")
    return probe.solver


def probe_kind(probe: ProbeConfig) -> str:
    """``frozen`` or ``fine-tuned``: the word every table uses for the probe's treatment of the encoder."""
    return "fine-tuned" if check_mode(probe.mode) else "frozen"


def feature_root(init: str, run_dir: Path) -> Path:
    """Where frozen features of encoder ``init`` are cached: ``features/`` beside the probed checkpoint's run
    (``runs/<name>/checkpoints/last.pt`` -> ``runs/<name>/features``), else in the probe's own ``run_dir``."""
    checkpoint = Path(init)
    if checkpoint.is_file():
        run = checkpoint.resolve().parent
        return (run.parent if run.name == "checkpoints" else run) / "features"
    return run_dir / "features"


def pooled_side(channels: int, height: int, width: int, pooled_features: int) -> tuple[int, int]:
    """Side s of the adaptive average pool so that channels * s * s ~ ``pooled_features`` (Split-Brain's ~9k).

    s = round(sqrt(pooled_features / channels)), at least 1 and never above the map's own side (a map
    smaller than s is kept as it is rather than upsampled). AlexNet: conv1 10x10x96 = 9600, conv2 6x6x256 =
    9216, conv3/conv4 5x5x384 = 9600, conv5 6x6x256 = 9216 (when the map is that large).
    """
    side = max(1, round(math.sqrt(pooled_features / channels)))
    return min(side, height), min(side, width)


@dataclass
class ProbeContext:
    """What a probe runs with: the encoder it measures, the shared trainer, and the config sections it reads.

    ``probe``: the probe's settings; ``data``: which data and how batches are made; ``train``: batch size, seed,
    epochs; ``features_root``: where frozen features are cached (:func:`feature_root`); ``run_data``: the splits
    (:meth:`splits` reads them).
    """

    encoder: nn.Module
    trainer: Any
    probe: ProbeConfig
    data: DataConfig
    train: TrainConfig
    features_root: Path
    # The run's splits (ssl_ctx.data.run_data.RunData), loaded once by run_probe; None: loaded from ``data`` on
    # first use.
    run_data: Any = None

    @property
    def finetune(self) -> bool:
        return check_mode(self.probe.mode)

    @property
    def solver(self) -> str:
        return resolve_solver(self.probe)

    def layers(self) -> list[str]:
        return parse_layers(self.probe.layer, self.encoder)

    def splits(self, annotation: str | None = None, examples: str = "") -> tuple[Any, Any]:
        """(train, eval) splits of ``data``, refusing in one line a dataset without ``annotation`` (``labels``,
        ``label_maps`` or ``boxes``) that this probe needs (``examples``: datasets that have them)."""
        from ssl_ctx.data.run_data import load_run_data

        if self.run_data is None:
            self.run_data = load_run_data(self.data, getattr(self.encoder, "input_size", None))
        splits = (self.run_data.train, self.run_data.eval)
        for split in splits:
            if annotation is not None and getattr(split, annotation) is None:
                raise UserError(f"{self.data.dataset}/{split.split} has no {annotation.replace('_', ' ')}; "
                                f"the {self.probe.task} probe needs a dataset with them such as {examples}")
        return splits

    def input_size(self, split: Any) -> tuple[int, int]:
        """(H, W) the network sees."""
        from ssl_ctx.data.loader import input_size_of

        return input_size_of(self.data.input_size, split)

    def num_classes(self, split: Any) -> int:
        return self.probe.num_classes or len(split.class_names)

    def loaders(self, train_split: Any, eval_split: Any, **overrides: Any) -> tuple[Any, Any]:
        """(train loader sharded like the trainer, eval loader over the whole split) on the trainer's device.

        ``overrides`` replace the train loader's augmentation options (``crop_scale``, ``hflip``).
        """
        from ssl_ctx.data.loader import loader_for

        process, device = self.trainer.process, self.trainer.device
        train_loader = loader_for(train_split, self.data, self.train, device, True, process.rank,
                                  process.world_size, **overrides)
        # Evaluation sees every image once, in order, unsharded: every process computes the same exact metrics
        # (the main one records them).
        return train_loader, self.eval_loader(eval_split)

    def eval_loader(self, split: Any) -> Any:
        """Every image of ``split`` once, in order, at the probe's input size, on the trainer's device."""
        from ssl_ctx.data.loader import loader_for

        return loader_for(split, self.data, self.train, self.trainer.device, False, drop_last=False)

    def frozen_features(self, spec: Any, *splits: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Cached frozen features (:mod:`~ssl_ctx.probes.features`) of every image of each split, in order, plus
        what the record keeps about them (each split's folder, and which splits were reused, not extracted)."""
        from ssl_ctx.probes.features import cached_features

        arrays, info = [], {"folders": {}, "reused": [], "extracted": []}
        for split in splits:
            layer_arrays, folder, reused = cached_features(self.encoder, spec, split, self.eval_loader(split),
                                                           self.features_root, self.trainer.autocast)
            arrays.append(layer_arrays)
            info["folders"][split.split] = str(folder)
            info["reused" if reused else "extracted"].append(split.split)
        return arrays, info


class ProbeTask(TrainingTask):
    """Base of the probe tasks that train: holds ``encoder``, frozen (and in eval mode) unless fine-tuned."""

    kind = "probe"
    find_unused_parameters = True  # fine-tuning up to conv3 leaves conv4 and conv5 without gradients

    def __init__(self, encoder: nn.Module, finetune: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.finetune = finetune
        if not finetune:
            encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> ProbeTask:
        # A frozen encoder stays in eval mode: its BatchNorm statistics (if any) are part of the features.
        super().train(mode)
        if not self.finetune:
            self.encoder.eval()
        return self

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder feature maps; without a graph through the encoder when it is frozen."""
        if self.finetune:
            return self.encoder(images)
        with torch.no_grad():
            return self.encoder(images)
