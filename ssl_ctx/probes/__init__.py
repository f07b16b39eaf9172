"""Downstream probes: classification, localisation, detection and segmentation of a transferred encoder.

``run_probe(config)`` builds the encoder named by ``probe.init`` (``random``, ``random:<file>``, ``timm:<name>``,
a pretext checkpoint, an exported encoder or a state dict; see :mod:`ssl_ctx.probes.encoder_loading`), runs the probe
registered under ``probe.task`` in ``PROBES`` with a :class:`~ssl_ctx.probes.common.ProbeContext` (the encoder,
the shared ``Trainer`` and the config sections a probe reads), writes ``run_dir/record.json`` and prints the
probe's settings with its result. Importing this package registers the built-in probes; a plug-in probe is one
module registered through the ``ssl_ctx.probes`` entry-point group (``plugins/knn_probe``).
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from typing import Any

import torch

from ssl_ctx.config import Config, save_config
from ssl_ctx.files import removed_if_failed, require_writable
from ssl_ctx.probes import (  # noqa: F401  (importing a probe module registers it)
    classification,
    detection,
    localisation,
    multilabel,
    segmentation,
)
from ssl_ctx.probes.batch_norm import recompute_batch_norm_statistics
from ssl_ctx.probes.common import ProbeContext, ProbeTask, feature_root, parse_layers, probe_kind, resolve_solver
from ssl_ctx.probes.encoder_loading import describe_encoder, load_encoder
from ssl_ctx.registry import PROBES

__all__ = ["ProbeContext", "ProbeTask", "load_encoder", "probe_settings", "run_probe"]


def probe_settings(config: Config) -> dict[str, Any]:
    """What a probe result depends on, printed beside every result and stored in the run record."""
    probe, data, optim, train = config.probe, config.data, config.optim, config.train
    solver = resolve_solver(probe)
    settings = {
        "task": probe.task,
        "kind": probe_kind(probe),
        "solver": solver,
        "dataset": f"{data.dataset} ({data.train_split} -> {data.eval_split})",
        "init": probe.init,
        "encoder": config.model.encoder,
        "layer": probe.layer,
        "encoder_training": "fine-tuned (all layers)" if probe.mode == "finetune" else "frozen",
        "seed": train.seed,
        "train_images": data.limit,
        "eval_images": data.eval_limit,
    }
    if solver == "sgd":  # the optimiser only matters where one trains the head
        settings.update(epochs=train.epochs, max_steps=train.max_steps, batch_size=train.batch_size,
                        optimizer=optim.name, lr=optim.lr, weight_decay=optim.weight_decay, schedule=optim.schedule)
    return settings


def run_probe(config: Config, resume: bool = False, deadline: float | None = None,
              allow_changes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Measure the encoder of ``config.probe.init`` on ``config.probe.task``; returns the metrics.

    The run folder ``config.run_dir`` receives the resolved ``config.yaml``, TensorBoard logs and
    ``record.json`` (metrics, resolved config, seed, wall time, device), written atomically; a trained probe's
    checkpoint is removed once the record exists unless ``probe.keep_checkpoint``. Before the task, the
    encoder's BatchNorm statistics are treated as ``probe.bn_statistics`` says (:mod:`ssl_ctx.probes.batch_norm`).
    """
    from ssl_ctx.data.loader import input_size_of
    from ssl_ctx.data.run_data import load_run_data
    from ssl_ctx.engine.trainer import Trainer, run_label
    from ssl_ctx.models import TIMM_PREFIX, encoder_spec
    from ssl_ctx.results.records import write_record

    started = time.perf_counter()
    require_writable(config.run_dir)
    if config.probe.init.startswith(TIMM_PREFIX):  # the timm model is the encoder: say so in the resolved config
        architecture = config.probe.init.partition(".")[0]  # timm:resnet18.tv_in1k: the tag names the weights
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, encoder=architecture))
    probe_fn = PROBES.get(config.probe.task)
    resolve_solver(config.probe)
    torch.manual_seed(config.train.seed)  # the head's (and a random encoder's) initial weights
    encoder = load_encoder(config.probe.init, encoder_spec(config.model.encoder, config.model))
    layers = parse_layers(config.probe.layer, encoder)
    origin = encoder.weights
    print(f"probe.init: {origin.description}")
    with removed_if_failed(config.run_dir):
        trainer = Trainer(config, config.run_dir, resume=resume, label=run_label(config, "probe"), deadline=deadline,
                          allow_changes=allow_changes)
        data = load_run_data(config.data, getattr(encoder, "input_size", None))
        input_size = input_size_of(config.data.input_size, data.train)
        note_input_size(origin.pretext_input_size, input_size)
        if trainer.is_main:
            save_config(config, config.run_dir / "config.yaml")
        with trainer:  # closes TensorBoard's writer thread, on errors too
            normalisation = recompute_batch_norm_statistics(encoder.to(trainer.device), config.probe, config.data,
                                                            config.train, data.train, trainer.device)
            context = ProbeContext(encoder, trainer, config.probe, config.data, config.train,
                                   feature_root(config.probe.init, config.run_dir), data)
            outcome = probe_fn(context)
            metrics, details = outcome["metrics"], outcome["details"]
            scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            trainer.log_scalars(scalars, int(metrics.get("train_steps", 0)), "eval")
    # method and pretext_run name the table row; weights says where they came from (random, timm, a file).
    settings = {**probe_settings(config), "normalisation": normalisation, "weights": origin.description,
                "method": origin.method, "pretext_run": origin.pretext_run,
                "encoder_architecture": describe_encoder(encoder), "input_size": list(input_size),
                "pretext_input_size": origin.pretext_input_size,
                **({"layer": "+".join(layers)} if "|" in config.probe.layer else {}),  # the alternative read
                **{k: v for k, v in details.items() if k not in ("chance", "headline")}}
    # The protocol line every table prints: how the head is fitted, and how the encoder's BatchNorm was treated.
    settings["protocol"] = f"{settings.get('protocol') or _sgd_protocol(config)}; {normalisation}"
    wall_time = time.perf_counter() - started
    if trainer.is_main:
        kept = config.probe.keep_checkpoint and trainer.checkpoint_path.exists()
        record = write_record(config.run_dir, "probe", metrics, config, wall_time, trainer.device,
                              extra={"probe": settings, "chance": details.get("chance", {}),
                                     "checkpoint": str(trainer.checkpoint_path) if kept else None,
                                     "changes_on_resume": trainer.changes_on_resume,
                                     "data": data.describe(input_size)})
        if not kept:  # the record is the result; nothing reads a finished probe's checkpoint again
            trainer.checkpoint_path.unlink(missing_ok=True)
        if not config.probe.keep_features:
            remove_extracted_features(details.get("features"))
        print(format_result(settings, metrics, details, wall_time, str(record)))
    return metrics


def note_input_size(pretext: list[int] | None, probe: tuple[int, int]) -> None:
    """Say when the probe feeds the encoder images of another size than it was pretrained on (the record keeps
    both, and the table's caption says so)."""
    if pretext and tuple(pretext) != tuple(probe):
        print(f"probe: input {probe[0]}x{probe[1]}, while the encoder was pretrained on {pretext[0]}x{pretext[1]} "
              f"images (data.input_size / data.cache_size set the probe's)")


def remove_extracted_features(features: dict[str, Any] | None) -> None:
    """Delete the feature folders this probe extracted (never ones an earlier probe left for reuse)."""
    for split in (features or {}).get("extracted", []):
        shutil.rmtree(features["folders"][split], ignore_errors=True)


def _sgd_protocol(config: Config) -> str:
    probe, train, optim = config.probe, config.train, config.optim
    encoder = "encoder fine-tuned with the head" if probe.mode == "finetune" else "frozen encoder, trained head"
    length = f"{train.max_steps} steps" if train.max_steps else f"{train.epochs} epoch(s)"  # planned_steps' rule
    return f"{encoder} ({probe.layer}), {optim.name} lr {optim.lr:g} for {length}, batch {train.batch_size}"


def format_result(settings: dict[str, Any], metrics: dict[str, Any], details: dict[str, Any], wall_time: float,
                  record: str) -> str:
    """Settings line(s) and the headline metrics next to their chance level."""
    shown_settings = ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None and not isinstance(v, dict))
    chance = details.get("chance", {})
    headline = details.get("headline") or [k for k, v in metrics.items() if isinstance(v, float)]
    results = ", ".join(
        f"{name}={metrics[name]:.4f}" + (f" (chance {chance[name]:.4f})" if name in chance else "")
        for name in headline if name in metrics
    )
    return (f"probe result: {results}\n"
            f"  settings: {shown_settings}\n"
            f"  wall time {wall_time:.1f} s; record: {record}")
