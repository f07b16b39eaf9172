"""The base of every trainable task (pretext methods, probes): what each optimiser trains, and the call that
runs those modules under ``DistributedDataParallel`` when the trainer replicates the task across processes.

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

from torch import nn


class ModuleGroup(nn.Module):
    """The modules one optimiser trains; ``forward(function, *args)`` returns ``function(*args)``."""

    def __init__(self, modules: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(modules)

    def forward(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)


class TrainingTask(nn.Module):
    """An ``nn.Module`` the trainer can train on one process or many (see docs/ARCHITECTURE.md)."""

    # DDP expects a gradient for every trained weight at every step unless told otherwise; a task whose steps
    # may leave some weights out (a probe fine-tuning up to conv3 of five layers) says so here.
    find_unused_parameters: ClassVar[bool] = False

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
