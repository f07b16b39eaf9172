"""`ssl-ctx pretrain`: train a pretext method from a config, evaluate it on held-out images, record it."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ssl_ctx.config import Config, save_config
from ssl_ctx.data.loader import input_size_of, load_splits, loader_for
from ssl_ctx.engine.trainer import Trainer, run_label
from ssl_ctx.errors import UserError
from ssl_ctx.files import require_writable
from ssl_ctx.pretext.base import DataInfo
from ssl_ctx.registry import PRETEXT_METHODS
from ssl_ctx.results.records import write_record


def run_pretrain(config: Config, resume: bool = False, deadline: float | None = None,
                 allow_changes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train ``config.method.name`` on ``config.data``; returns the metrics (also in run_dir/record.json).

    With a ``deadline`` (a ``time.time()`` value) training checkpoints and raises ``TimeLimitReached`` once it
    has passed; the same call with ``resume=True`` continues. ``allow_changes``: settings keys (or sections) a
    resume may change (:class:`~ssl_ctx.engine.trainer.Trainer`).
    """
    started = time.perf_counter()
    run_dir = require_writable(config.run_dir)
    method_cls = PRETEXT_METHODS.get(config.method.name)
    trainer = Trainer(config, run_dir, resume=resume, label=run_label(config, "pretext"), deadline=deadline,
                      allow_changes=allow_changes)
    train_split, eval_split = load_splits(config.data)
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
                                     "changes_on_resume": trainer.changes_on_resume})
        print(format_summary(config, metrics, record))
    return metrics


def format_summary(config: Config, metrics: dict[str, Any], record: Path) -> str:
    shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
    return (f"pretext {config.method.name} ({config.model.encoder}, mask {config.mask.type}) -> {config.run_dir}\n"
            f"  {shown}\n  record: {record}")
