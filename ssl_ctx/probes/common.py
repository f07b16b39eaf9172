"""Pieces every probe shares: the probe's view of an encoder, frozen/fine-tuned handling, data, evaluation loop.

A probe task is an ``nn.Module`` following the training contract (``configure_optimizers`` /
``train_step``, docs/ARCHITECTURE.md) and is trained by the shared ``Trainer``; it holds the encoder as
``self.encoder`` so its checkpoints can be loaded back as an encoder (``encoder_prefix``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_ctx.config import Config, OptimConfig, ProbeConfig
from ssl_ctx.engine.optim import build_optimizer
from ssl_ctx.engine.task import TrainingTask
from ssl_ctx.errors import UserError, suggest

MODES = ("linear", "finetune")


def layer_names(encoder: nn.Module) -> list[str]:
    return [info["module"] for info in encoder.feature_info]


def parse_layers(spec: str, encoder: nn.Module) -> list[str]:
    """``"conv5"`` or ``"conv3+conv5"`` -> checked list of feature-map names of ``encoder``."""
    known = layer_names(encoder)
    layers = [name.strip() for name in spec.split("+") if name.strip()]
    if not layers:
        raise UserError(f"probe.layer is empty; pass one of {', '.join(known)}")
    for name in layers:
        if name not in known:
            raise UserError(f"probe.layer '{name}' is not a feature map of this encoder{suggest(name, known)}; "
                            f"known: {', '.join(known)}")
    return layers


def check_mode(mode: str) -> bool:
    """``probe.mode`` -> True when the encoder is fine-tuned."""
    if mode not in MODES:
        raise UserError(f"unknown probe.mode '{mode}'{suggest(mode, MODES)}; known: {', '.join(MODES)}")
    return mode == "finetune"


# Solvers that fit a head on frozen features to its optimum, by task (``probe.solver=auto`` picks these).
FROZEN_SOLVERS = {"classification": "ridge", "segmentation": "ridge"}
SOLVERS = ("auto", "sgd", "ridge")


def resolve_solver(probe: ProbeConfig) -> str:
    """``probe.solver`` made concrete: ``sgd`` or the task's closed-form / convergent solver (frozen only)."""
    if probe.solver not in SOLVERS:
        raise UserError(f"unknown probe.solver '{probe.solver}'{suggest(probe.solver, SOLVERS)}; "
                        f"known: {', '.join(SOLVERS)}")
    finetune = check_mode(probe.mode)
    if probe.solver == "auto":
        return "sgd" if finetune else FROZEN_SOLVERS.get(probe.task, "sgd")
    if probe.solver != "sgd" and (finetune or FROZEN_SOLVERS.get(probe.task) != probe.solver):
        tasks = " and ".join(task for task, solver in FROZEN_SOLVERS.items() if solver == probe.solver)
        raise UserError(f"probe.solver={probe.solver} fits frozen features of the {tasks} probes only; this is "
                        f"the {probe.task} probe with probe.mode={probe.mode}: use probe.solver=auto or sgd")
    return probe.solver


def probe_kind(probe: ProbeConfig) -> str:
    """``frozen`` or ``fine-tuned``: the word every table uses for the probe's treatment of the encoder."""
    return "fine-tuned" if check_mode(probe.mode) else "frozen"


def feature_root(config: Config) -> Path:
    """Where frozen features of ``config.probe.init`` are cached: ``features/`` beside the probed checkpoint's
    run (``runs/<name>/checkpoints/last.pt`` -> ``runs/<name>/features``), else in the probe's own run folder."""
    checkpoint = Path(config.probe.init)
    if checkpoint.is_file():
        run = checkpoint.resolve().parent
        return (run.parent if run.name == "checkpoints" else run) / "features"
    return config.run_dir / "features"


def pooled_side(channels: int, height: int, width: int, pooled_features: int) -> tuple[int, int]:
    """Side s of the adaptive average pool so that channels * s * s ~ ``pooled_features`` (Split-Brain's ~9k).

    s = round(sqrt(pooled_features / channels)), at least 1 and never above the map's own side (a map
    smaller than s is kept as it is rather than upsampled). AlexNet: conv1 10x10x96 = 9600, conv2 6x6x256 =
    9216, conv3/conv4 5x5x384 = 9600, conv5 6x6x256 = 9216 (when the map is that large).
    """
    side = max(1, round(math.sqrt(pooled_features / channels)))
    return min(side, height), min(side, width)


class ProbeTask(TrainingTask):
    """Base of the probe tasks: holds ``encoder``, freezes it in linear mode, builds the one optimiser."""

    task_name = "probe"
    find_unused_parameters = True  # fine-tuning up to conv3 leaves conv4 and conv5 without gradients

    def __init__(self, encoder: nn.Module, finetune: bool, encoder_name: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.finetune = finetune
        self.encoder_name = encoder_name
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

    def configure_optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        device_type = next(self.parameters()).device.type
        return {"model": build_optimizer(self.parameters(), optim, device_type=device_type)}

    def checkpoint_metadata(self) -> dict[str, Any]:
        return {"kind": "probe", "method": self.task_name, "encoder": self.encoder_name, "encoder_prefix": "encoder."}


def input_size_of(config: Config, split: Any) -> tuple[int, int]:
    """(H, W) the network sees: ``data.input_size`` squared, or the cache's size."""
    size = config.data.input_size
    return (size, size) if size else (int(split.images.shape[1]), int(split.images.shape[2]))


def num_classes_of(config: Config, split: Any) -> int:
    return config.probe.num_classes or len(split.class_names)


def trainer_loaders(config: Config, trainer: Any, train_split: Any, eval_split: Any, **overrides: Any) -> tuple:
    """(train loader sharded like the trainer, eval loader over the whole split) on the trainer's device.

    ``overrides`` replace the train loader's augmentation options (``crop_scale``, ``hflip``).
    """
    from ssl_ctx.data.loader import loader_for

    process = trainer.process
    train_loader = loader_for(train_split, config, trainer.device, True, process.rank, process.world_size, **overrides)
    # Evaluation sees every image once, in order, unsharded: every process computes the same exact metrics
    # (the main one records them).
    eval_loader = loader_for(eval_split, config, trainer.device, False, drop_last=False)
    return train_loader, eval_loader


def annotated_splits(config: Config, annotation: str, probe: str, examples: str) -> tuple[Any, Any]:
    """(train, eval) splits of ``config.data``, refusing in one line a dataset without ``annotation``
    (``labels``, ``label_maps`` or ``boxes``) that the ``probe`` needs."""
    from ssl_ctx.data.loader import load_splits

    splits = load_splits(config)
    for split in splits:
        if getattr(split, annotation) is None:
            raise UserError(f"{config.data.dataset}/{split.split} has no {annotation.replace('_', ' ')}; "
                            f"the {probe} probe needs a dataset with them such as {examples}")
    return splits


def frozen_features(config: Config, encoder: nn.Module, trainer: Any, spec: Any,
                    *splits: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Cached frozen features (:mod:`~ssl_ctx.probes.features`) of every image of each split, in order, plus
    what the record keeps about them (each split's folder, and which splits were reused rather than extracted)."""
    from ssl_ctx.data.loader import loader_for
    from ssl_ctx.probes.features import cached_features

    root = feature_root(config)
    arrays, info = [], {"folders": {}, "reused": [], "extracted": []}
    for split in splits:
        loader = loader_for(split, config, trainer.device, False, drop_last=False)
        layer_arrays, folder, reused = cached_features(encoder, spec, split, loader, root, trainer.autocast)
        arrays.append(layer_arrays)
        info["folders"][split.split] = str(folder)
        info["reused" if reused else "extracted"].append(split.split)
    return arrays, info
