"""`ssl-ctx pretrain`: train a pretext method from a config, evaluate it on held-out images, record it."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ssl_ctx.config import Config, save_config
from ssl_ctx.data.loader import input_size_of, loader_for
from ssl_ctx.data.run_data import RunData, load_run_data
from ssl_ctx.engine.trainer import Trainer, run_label
from ssl_ctx.errors import UserError
from ssl_ctx.files import removed_if_failed, require_writable
from ssl_ctx.pretext.base import DataInfo
from ssl_ctx.registry import PRETEXT_METHODS
from ssl_ctx.results.records import write_record


def run_pretrain(config: Config, resume: bool = False, deadline: float | None = None,
                 allow_changes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train ``config.method.name`` on ``config.data``; returns the metrics (also in run_dir/record.json).

    With a ``deadline`` (a ``time.time()`` value) training checkpoints and raises ``TimeLimitReached`` once it
    has passed; the same call with ``resume=True`` continues. ``allow_changes``: settings keys (or sections) a
    resume may change (:class:`~ssl_ctx.engine.trainer.Trainer`). A run that fails before its first checkpoint
    leaves no run folder behind.
    """
    with removed_if_failed(require_writable(config.run_dir)):
        return _pretrain(config, resume, deadline, allow_changes)


def _pretrain(config: Config, resume: bool, deadline: float | None, allow_changes: tuple[str, ...]) -> dict[str, Any]:
    started = time.perf_counter()
    run_dir = config.run_dir
    method_cls = PRETEXT_METHODS.get(config.method.name)
    trainer = Trainer(config, run_dir, resume=resume, label=run_label(config, "pretext"), deadline=deadline,
                      allow_changes=allow_changes)
    data = load_run_data(config.data, method_cls.network_input_side(config.model))
    train_split, eval_split = data.train, data.eval
    if method_cls.needs_labels and train_split.labels is None:
        raise UserError(f"method '{config.method.name}' needs class labels, but {config.data.dataset}/"
                        f"{config.data.train_split} has none; use a labelled dataset")
    info = DataInfo(input_size=input_size_of(config.data.input_size, train_split), mean_rgb=tuple(train_split.mean_rgb),
                    num_classes=len(train_split.class_names) if train_split.labels is not None else None)
    torch.manual_seed(config.train.seed)  # the initial weights depend on train.seed (rank 0's reach every process)
    method = method_cls.from_config(config, info)
    if trainer.is_main:
        save_config(config, run_dir / "config.yaml")

    process = trainer.process
    with trainer:  # closes TensorBoard's writer thread, on errors too
        if method.trains:
            loader = loader_for(train_split, config.data, config.train, trainer.device, True, process.rank,
                                process.world_size)
            metrics = trainer.fit(method, loader)
        else:
            metrics = trainer.save_untrained(method)
        eval_loader = loader_for(eval_split, config.data, config.train, trainer.device, False, process.rank,
                                 process.world_size)
        metrics.update(method.evaluate(eval_loader, trainer.autocast, config.train.eval_batches))
        trainer.log_scalars(metrics, int(metrics.get("train_steps", 0)), "eval")
    if trainer.is_main:
        record = write_record(run_dir, "pretext", metrics, config, time.perf_counter() - started, trainer.device,
                              extra={"checkpoint": str(trainer.checkpoint_path), "history": trainer.history,
                                     "changes_on_resume": trainer.changes_on_resume,
                                     "data": data.describe(info.input_size),
                                     "steps": trainer.plan or {"planned": 0, "bound": "not trained"},
                                     # how the tables read the eval_* metrics, without the method's code
                                     "held_out_metrics": method_cls.held_out_record()})
        print(format_summary(config, method_cls, data, metrics, record))
    return metrics


def format_summary(config: Config, method_cls: type, data: RunData, metrics: dict[str, Any], record: Path) -> str:
    """What a finished pretext run prints: the method, its encoder (and mask, for a method that uses one), where its
    held-out numbers were measured, its metrics and its record."""
    shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
    mask = f", mask {config.mask.type}" if getattr(method_cls, "uses_mask", False) else ""
    evaluated = ("eval_* on the training images (data.eval_split = data.train_split)"
                 if data.eval_on_training_images else f"eval_* on {len(data.eval)} held-out images ({data.eval.split})")
    return (f"pretext {config.method.name} ({config.model.encoder}{mask}) -> {config.run_dir}\n"
            f"  {shown}\n  {evaluated}\n  record: {record}")
