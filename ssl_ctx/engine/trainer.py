"""The one training loop, shared by pretext methods and probes.

A task is an ``nn.Module`` with ``configure_optimizers(optim_config)`` and ``train_step(batch, optimizers,
step)`` (see docs/ARCHITECTURE.md). The loop owns everything else: devices and precision, per-step seeding
(so a resumed run repeats an uninterrupted one exactly on the CPU), the learning-rate schedule, progress bar,
TensorBoard, checkpoints, and the stop on a non-finite loss, parameter or buffer (a checkpoint holding one is
never written). It synchronises with the host only at logging and checkpoint intervals.

Resuming a run with settings (``ssl_ctx.settings``) other than its checkpoint's is refused, naming the first
differing key, unless that key is in ``allow_changes``; allowed changes are kept in the checkpoint and the
record (``changes_on_resume``), so a record states the settings each part of the run used.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from ssl_ctx.config import Config, TrainConfig, config_to_dict
from ssl_ctx.engine.checkpoint import load_checkpoint, save_checkpoint
from ssl_ctx.engine.device import autocast, autocast_dtype, resolve_device, use_channels_last
from ssl_ctx.engine.distributed import all_reduce_mean, barrier, check_replicas_agree, init_distributed, replicate
from ssl_ctx.engine.logging import RunLogger
from ssl_ctx.engine.optim import lr_factor, set_lr
from ssl_ctx.errors import UserError
from ssl_ctx.settings import describe_difference, first_difference, settings_of


class NonFiniteError(UserError):
    """The loss, a parameter or a buffer became NaN or infinite; the last good checkpoint is kept."""


class TimeLimitReached(Exception):
    """Training stopped at its deadline after writing a checkpoint; the same command resumes it."""


class BatchLoader(Protocol):
    def __len__(self) -> int: ...

    def batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, Any]]: ...


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The global RNG seed of one step: a pure function of (seed, step, rank), so resuming repeats it.

    Processes of a torchrun job get different seeds, so that their dropout masks (say) are independent.
    """
    return (seed * 1_000_003 + step + rank * 7_919_000_017) % (2**63)


def planned_steps(train: TrainConfig, batches_per_epoch: int) -> tuple[int, str]:
    """(optimiser steps a run takes, what sets that number). A set ``train.max_steps`` wins: the run takes exactly
    that many steps, over as many epochs (the last one partial) as they need; otherwise ``train.epochs`` whole
    epochs."""
    if train.max_steps is not None:
        return train.max_steps, f"train.max_steps={train.max_steps}"
    return train.epochs * batches_per_epoch, f"train.epochs={train.epochs}"


def run_label(config: Config, stage: str) -> str:
    """``"pretext context_encoder seed0"`` / ``"probe classification/random_init seed1"``: what a progress bar
    and a log line call the run (bench tags first, the run's name otherwise)."""
    what = "/".join(str(config.tags[key]) for key in ("probe", "method") if config.tags.get(key))
    return f"{stage} {what or config.name} seed{config.train.seed}"


class Trainer:
    """Runs ``task`` over ``loader`` for ``config.train.max_steps`` steps when set, else ``config.train.epochs``
    epochs (:func:`planned_steps`); :meth:`fit` prints that plan first."""

    def __init__(self, config: Config, run_dir: str | Path, resume: bool = False, label: str | None = None,
                 deadline: float | None = None, allow_changes: tuple[str, ...] = ()) -> None:
        self.config = config
        self.label = label or f"train {Path(run_dir).name}"
        self.deadline = deadline  # time.time() after which fit() checkpoints and stops (at a logging step)
        self.history: list[dict[str, float]] = []  # the logged training averages, step by step (kept on resume)
        self.plan: dict[str, Any] = {}  # the steps fit() takes and what sets them (planned_steps), for the record
        self.train_config = config.train
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.device = resolve_device(config.train.device)
        self.process = init_distributed(self.device)
        self.amp_dtype = autocast_dtype(config.train, self.device)
        self.channels_last = use_channels_last(config.train, self.device)
        self.checkpoint_path = self.run_dir / "checkpoints" / "last.pt"
        # Settings changed by a resume (earlier resumes' too): [{"step", "key", "before", "after"}].
        self.changes_on_resume: list[dict[str, Any]] = []
        self._resumed = self._open_checkpoint(tuple(allow_changes))  # before anything in the run folder is written
        self.logger = RunLogger(self.run_dir / "tensorboard", enabled=self.is_main)

    @property
    def is_main(self) -> bool:
        return self.process.is_main

    def autocast(self):
        return autocast(self.device, self.amp_dtype)

    def log_scalars(self, values: dict[str, float], step: int, prefix: str) -> None:
        self.logger.scalars(values, step, prefix)

    def close(self) -> None:
        self.logger.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ setup

    def prepare(self, task: nn.Module) -> nn.Module:
        task = task.to(self.device)
        if self.channels_last:
            task = task.to(memory_format=torch.channels_last)
        if self.train_config.compile:
            for child in task.children():  # train_step calls the children, so compile them in place
                child.compile()
        replicate(task, self.device, self.train_config.sync_batchnorm)  # DDP under torchrun
        return task

    def _open_checkpoint(self, allow_changes: tuple[str, ...]) -> dict[str, Any] | None:
        """The run's checkpoint payload when resuming (None for a fresh run), after checking its settings; an
        existing checkpoint without ``resume`` is refused rather than overwritten."""
        if not self.checkpoint_path.exists():
            return None
        if not self.resume:
            raise UserError(f"run folder '{self.run_dir}' already holds a checkpoint ({self.checkpoint_path}); "
                            f"pass --resume to continue it, or choose another name=... to start afresh")
        payload = load_checkpoint(self.checkpoint_path, map_location=self.device)
        kind = payload.get("kind")  # whose plug-in versions count: the same for both sides
        before = settings_of(payload.get("config", {}), kind=kind)
        after = settings_of(config_to_dict(self.config), kind=kind)
        self.changes_on_resume = list(payload.get("changes_on_resume", []))
        step = int(payload.get("trainer_state", {}).get("step", 0))
        while (difference := first_difference(before, after)) is not None:
            key, old, new = difference
            if not any(key == allowed or key.startswith(allowed + ".") for allowed in allow_changes):
                raise UserError(f"cannot resume '{self.run_dir}' with other settings: it was trained with "
                                f"{describe_difference(difference)}; resume with its settings, or pass "
                                f"--allow-change {key} to continue with the new value (the record states both)")
            self.changes_on_resume.append({"step": step, "key": key, "before": old, "after": new})
            if self.is_main:
                print(f"resuming {self.run_dir} at step {step} with {describe_difference(difference)} (allowed)")
            if key in after:
                before[key] = new
            else:
                before.pop(key)
        return payload

    def _restore(self, task: nn.Module, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
        """Load the checkpoint opened when resuming (the fresh state otherwise)."""
        fresh = {"epoch": 0, "batch": 0, "step": 0, "finished": False, "metrics": {}}
        payload, self._resumed = self._resumed, None  # free the payload once loaded
        if payload is None:
            return fresh
        try:
            task.load_state_dict(payload["model"])
            for name, optimizer in optimizers.items():
                optimizer.load_state_dict(payload["optimizers"][name])
        except (KeyError, RuntimeError) as err:
            raise UserError(f"checkpoint '{self.checkpoint_path}' does not match this config's model "
                            f"({str(err).splitlines()[0][:160]}); resume with the config it was made with") from None
        state = dict(payload["trainer_state"])
        state["metrics"] = payload.get("metrics", {})
        self.history = list(payload.get("history", []))
        if self.is_main:
            print(f"resuming {self.run_dir} at step {state['step']} (epoch {state['epoch']})")
        return state

    def _save(self, task: nn.Module, optimizers: dict[str, torch.optim.Optimizer], state: dict[str, Any],
              nonfinite: torch.Tensor) -> None:
        self._check_finite(nonfinite, state["step"])
        self._check_weights_finite(task, state["step"])
        check_replicas_agree(task, state["step"])
        if self.is_main:
            metadata = task.checkpoint_metadata() if hasattr(task, "checkpoint_metadata") else {}
            save_checkpoint(self.checkpoint_path, {
                **metadata,
                "config": config_to_dict(self.config),
                "model": task.state_dict(),
                "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
                "trainer_state": {k: state[k] for k in ("epoch", "batch", "step", "finished")},
                "metrics": state.get("metrics", {}),
                "history": self.history,
                "changes_on_resume": self.changes_on_resume,
            })
        barrier()

    def _kept(self) -> str:
        return f"the last good checkpoint is kept at {self.checkpoint_path}" if self.checkpoint_path.exists() \
            else "no checkpoint had been written yet"

    def _check_finite(self, nonfinite: torch.Tensor, step: int) -> None:
        if bool(nonfinite):
            raise NonFiniteError(f"the loss became non-finite by step {step}; training stopped and {self._kept()}; "
                                 f"lower optim.lr or use train.precision=fp32")

    def _check_weights_finite(self, task: nn.Module, step: int) -> None:
        """Every floating parameter and buffer (BatchNorm's running statistics too) is finite: one host sync."""
        tensors = [(name, t) for name, t in [*task.named_parameters(), *task.named_buffers()] if t.is_floating_point()]
        if not tensors or bool(torch.stack([torch.isfinite(t).all() for _, t in tensors]).all()):
            return
        name = next(name for name, t in tensors if not bool(torch.isfinite(t).all()))
        raise NonFiniteError(f"'{name}' holds a non-finite value at step {step}; training stopped and "
                             f"{self._kept()} (the bad weights were not saved); lower optim.lr or use "
                             f"train.precision=fp32")

    def save_untrained(self, task: nn.Module) -> dict[str, float]:
        """Checkpoint a task that is not trained (random initialisation) so probes load it like any other."""
        task = self.prepare(task)
        state = self._restore(task, {})
        if not state["finished"]:
            state.update(finished=True, metrics={"train_steps": 0.0})
            self._save(task, {}, state, torch.zeros((), dtype=torch.bool))
        return dict(state["metrics"])

    # ------------------------------------------------------------------------------------------- loop

    def fit(self, task: nn.Module, loader: BatchLoader) -> dict[str, float]:
        """Train ``task`` (already built) and return the last logged averages plus throughput figures."""
        task = self.prepare(task)
        try:
            return self._fit(task, loader)
        finally:
            if hasattr(task, "unreplicate"):
                task.unreplicate()  # free DDP's reducers before the process group is destroyed

    def _fit(self, task: nn.Module, loader: BatchLoader) -> dict[str, float]:
        cfg = self.train_config
        optimizers = task.configure_optimizers(self.config.optim)
        state = self._restore(task, optimizers)
        steps_per_epoch = len(loader)
        if steps_per_epoch == 0:
            raise UserError(f"no training steps: {steps_per_epoch} batches per epoch with train.batch_size="
                            f"{cfg.batch_size}; use a smaller batch or more data (data.limit)")
        total_steps, bound = planned_steps(cfg, steps_per_epoch)
        epochs = -(-total_steps // steps_per_epoch)
        self.plan = {"planned": total_steps, "bound": bound, "batches_per_epoch": steps_per_epoch,
                     "epochs": round(total_steps / steps_per_epoch, 2)}
        if self.is_main:
            images = getattr(loader, "num_samples", None)
            batches = f"{steps_per_epoch} batch{'es' if steps_per_epoch != 1 else ''}"
            print(f"{self.label}: {total_steps} steps, set by {bound} ({self.plan['epochs']:g} epoch(s) of {batches}"
                  f"{f' from {images} images' if images else ''})", flush=True)
        if state["finished"] and state["step"] >= total_steps:
            if self.is_main:
                print(f"{self.run_dir} is already trained ({state['step']} steps); nothing to do")
            return state["metrics"]
        state["finished"] = False  # a finished run resumed with more steps (an allowed change) trains on

        nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        sums: dict[str, torch.Tensor] = {}
        summed_steps = 0
        logged: dict[str, float] = dict(state["metrics"])
        images_seen, since = 0, time.perf_counter()
        started = since
        progress = tqdm(total=total_steps, initial=state["step"], desc=self.label,
                        disable=not (self.is_main and cfg.progress), dynamic_ncols=True)
        batch = None
        for epoch in range(state["epoch"], epochs):
            start = state["batch"] if epoch == state["epoch"] else 0
            with _closed_after(loader.batches(epoch, start)) as batches:
                for index, batch in enumerate(batches, start=start):
                    if state["step"] >= total_steps:
                        break
                    step = state["step"]
                    torch.manual_seed(step_seed(cfg.seed, step, self.process.rank))
                    for optimizer in optimizers.values():
                        set_lr(optimizer, lr_factor(self.config.optim, step, total_steps))
                    task.train()
                    with self.autocast():
                        losses = task.train_step(batch, optimizers, step)
                    nonfinite |= ~torch.isfinite(losses["loss"].detach())
                    for name, value in losses.items():
                        sums[name] = sums.get(name, 0) + value.detach().float()
                    summed_steps += 1
                    images_seen += _batch_size(batch)
                    state.update(step=step + 1, epoch=epoch, batch=index + 1)
                    progress.update(1)

                    done = state["step"] >= total_steps
                    if state["step"] % cfg.log_every == 0 or done:
                        logged = self._log(sums, summed_steps, state, nonfinite, progress)
                        sums, summed_steps = {}, 0
                        if not done and self._past_deadline():
                            self._save(task, optimizers, _normalised(state, steps_per_epoch), nonfinite)
                            progress.close()
                            raise TimeLimitReached(f"{self.label}: stopped at the time limit at step "
                                                   f"{state['step']} of {total_steps}; checkpoint "
                                                   f"{self.checkpoint_path}")
                    if self.is_main and cfg.image_every and state["step"] % cfg.image_every == 0:
                        self._log_images(task, batch, state["step"])
                    if state["step"] % cfg.checkpoint_every == 0 and not done:
                        self._save(task, optimizers, _normalised(state, steps_per_epoch), nonfinite)
            if state["step"] >= total_steps:
                break
            if state["batch"] >= steps_per_epoch:  # epoch end
                self._save(task, optimizers, _normalised(state, steps_per_epoch), nonfinite)
        progress.close()

        elapsed = time.perf_counter() - since
        logged.update(train_steps=float(state["step"]), train_wall_time_s=time.perf_counter() - started,
                      train_images_per_second=images_seen * self.process.world_size / max(elapsed, 1e-9))
        state = _normalised(state, steps_per_epoch)
        state.update(finished=True, metrics=logged)
        if self.is_main and batch is not None:
            self._log_images(task, batch, state["step"])
        self._save(task, optimizers, state, nonfinite)
        return logged

    def _past_deadline(self) -> bool:
        """True once the deadline has passed on any process (checked where the processes meet anyway)."""
        if self.deadline is None:
            return False
        late = torch.tensor(float(time.time() >= self.deadline), device=self.device)
        return bool(all_reduce_mean(late) > 0)

    def _log(self, sums: dict[str, torch.Tensor], count: int, state: dict[str, Any], nonfinite: torch.Tensor,
             progress: tqdm) -> dict[str, float]:
        self._check_finite(nonfinite, state["step"])
        values = {name: float(all_reduce_mean(total / count)) for name, total in sums.items()}
        self.history.append({"step": state["step"], **values})
        self.logger.scalars(values, state["step"], "train")
        progress.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
        return values

    def _log_images(self, task: nn.Module, batch: dict[str, Any], step: int) -> None:
        if not hasattr(task, "image_grid"):
            return
        task.eval()
        with torch.no_grad(), self.autocast():
            grid = task.image_grid(batch)
        if grid is not None:
            self.logger.image("images/masked_input|output|original", grid, step,
                              png=self.run_dir / "images" / f"step{step:07d}.png")


@contextmanager
def _closed_after(batches: Iterator[Any]) -> Iterator[Iterator[Any]]:
    """Close a loader's generator when its epoch is left, early too: its prefetching thread stops at once
    rather than at garbage collection (a thread still running at interpreter exit can abort the process)."""
    try:
        yield batches
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _normalised(state: dict[str, Any], steps_per_epoch: int) -> dict[str, Any]:
    """A position at the end of an epoch is stored as the start of the next one."""
    state = dict(state)
    if state["batch"] >= steps_per_epoch:
        state["epoch"], state["batch"] = state["epoch"] + 1, 0
    return state


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        for value in batch.values():
            if isinstance(value, torch.Tensor):
                return value.shape[0]
            if isinstance(value, (list, tuple)):
                return len(value)
    return len(batch)
