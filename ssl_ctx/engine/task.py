"""The base of every trainable task (pretext methods, probes): its optimisers, its checkpoint metadata, its one
evaluation loop, and the call that runs its modules under ``DistributedDataParallel`` when the trainer replicates
the task across processes.

DDP averages gradients only for what runs through its own ``forward``. Tasks call their networks piece by
piece (encoder, bottleneck, decoder; a discriminator three times a step), so each optimiser's modules form one
:class:`ModuleGroup`, whose forward runs whatever function the task hands it, and each group gets its own DDP
(generator and discriminator each wrapped, as in PyTorch's GAN examples). A task's ``train_step`` calls its
trained networks through :meth:`TrainingTask.trained_call`; everything else (evaluation, image grids, a
process on its own) calls them directly.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from ssl_ctx.config import OptimConfig
from ssl_ctx.engine.optim import build_optimizer


class ModuleGroup(nn.Module):
    """The modules one optimiser trains; ``forward(function, *args)`` returns ``function(*args)``."""

    def __init__(self, modules: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(modules)

    def forward(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)


class TrainingTask(nn.Module):
    """An ``nn.Module`` the trainer can train on one process or many (see docs/ARCHITECTURE.md).

    A subclass implements ``train_step(batch, optimizers, step)`` and, to be evaluated, :meth:`evaluation_step`
    and :meth:`evaluation_summary`; the rest has defaults.
    """

    kind: ClassVar[str] = "task"  # "pretext" or "probe": what a checkpoint of the task holds
    name: ClassVar[str] = "task"  # the registered name of the method or probe
    # The module path of the encoder inside the task, which probes and exports read from its checkpoints.
    encoder_path: ClassVar[str] = "encoder"
    # DDP expects a gradient for every trained weight at every step unless told otherwise; a task whose steps
    # may leave some weights out (a probe fine-tuning up to conv3 of five layers) says so here.
    find_unused_parameters: ClassVar[bool] = False

    # ------------------------------------------------------------------------------------- training

    def configure_optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        """One optimiser, ``model``, over every trainable parameter."""
        return {"model": build_optimizer(self.parameters(), optim, device_type=self.device_type)}

    @property
    def device_type(self) -> str:
        return next(self.parameters()).device.type

    def trained_modules(self) -> dict[str, list[nn.Module]]:
        """The modules each optimiser trains, by the optimiser's name in ``configure_optimizers``."""
        return {"model": [self]}

    def replicate(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Wrap each group of :meth:`trained_modules` (``wrap``: DDP); kept outside the state dict."""
        self.__dict__["_replicas"] = {name: wrap(ModuleGroup(modules))
                                      for name, modules in self.trained_modules().items()}

    def unreplicate(self) -> None:
        """Drop the wrappers (before the process group goes away)."""
        self.__dict__.pop("_replicas", None)

    def trained_call(self, group: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)``, through ``group``'s replica when the task is replicated, so that the
        backward pass that follows averages that group's gradients across processes."""
        replicas = self.__dict__.get("_replicas")
        if replicas is None:
            return function(*args, **kwargs)
        return replicas[group](function, *args, **kwargs)

    # ----------------------------------------------------------------------------------- checkpoints

    def checkpoint_metadata(self) -> dict[str, Any]:
        """What a checkpoint stores beside the weights and the config: the task, and the spec and place of its
        encoder (``encoder_spec`` rebuilds it, ``encoder_prefix`` finds its weights)."""
        spec = getattr(self.get_submodule(self.encoder_path), "spec", None)
        return {"kind": self.kind, "method": self.name, "encoder": spec.name if spec is not None else None,
                "encoder_spec": spec.to_dict() if spec is not None else None,
                "encoder_prefix": self.encoder_path + "."}

    # ------------------------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self, loader: Any, autocast: Callable[[], Any], max_batches: int | None = None) -> dict[str, Any]:
        """The task's metrics over ``loader``'s batches (the first ``max_batches``, or all), in eval mode.

        Each batch's :meth:`evaluation_step` values are added up by name (tensors summed, lists joined), then
        :meth:`evaluation_summary` turns the totals into metrics.
        """
        self.eval()
        totals: dict[str, Any] = {}
        batches = 0
        for number, batch in enumerate(loader.batches(0)):
            if max_batches is not None and number >= max_batches:
                break
            with autocast():
                values = self.evaluation_step(batch, number)
            for key, value in values.items():
                totals[key] = totals[key] + value if key in totals else value
            batches += 1
        return self.evaluation_summary(totals, batches)

    def evaluation_step(self, batch: dict[str, Any], number: int) -> dict[str, Any]:
        """Values of batch ``number`` to add up: tensors (counts, sums, a confusion matrix) or lists."""
        raise NotImplementedError(f"{type(self).__name__} has no evaluation_step")

    def evaluation_summary(self, totals: dict[str, Any], batches: int) -> dict[str, Any]:
        """Metrics from the totals of :meth:`evaluation_step` over ``batches`` batches."""
        raise NotImplementedError(f"{type(self).__name__} has no evaluation_summary")
