"""Optimisers from the OptimConfig, the learning-rate schedule, and the one backward-and-step helper."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ssl_ctx.config import OptimConfig
from ssl_ctx.errors import unknown_name_error

OPTIMIZERS = ("adam", "adamw", "sgd")


def build_optimizer(params: Iterable[torch.nn.Parameter], config: OptimConfig, lr_scale: float = 1.0,
                    device_type: str = "cpu") -> torch.optim.Optimizer:
    """Adam(lr 2e-4, betas 0.5/0.999) by default, as the released code. ``lr_scale`` serves the generator's 10x."""
    params = [p for p in params if p.requires_grad]
    lr = config.lr * lr_scale
    fused = config.fused if config.fused is not None else fused_available(device_type)
    if config.name in ("adam", "adamw"):
        cls = torch.optim.Adam if config.name == "adam" else torch.optim.AdamW
        optimizer = cls(params, lr=lr, betas=tuple(config.betas), weight_decay=config.weight_decay, fused=fused or None)
    elif config.name == "sgd":
        optimizer = torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay,
                                    fused=fused or None)
    else:
        raise unknown_name_error("optimizer (optim.name)", config.name, OPTIMIZERS)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    return optimizer


def fused_available(device_type: str) -> bool:
    """Fused Adam/AdamW/SGD kernels exist on CUDA, and on the CPU from torch 2.4."""
    if device_type == "cuda":
        return True
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    return device_type == "cpu" and (major, minor) >= (2, 4)


def lr_factor(config: OptimConfig, step: int, total_steps: int) -> float:
    """Multiplier of the initial learning rate at ``step`` (linear warm-up, then constant or cosine)."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "cosine":
        progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    raise unknown_name_error("lr schedule (optim.schedule)", config.schedule, ("constant", "cosine"))


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor


def optimize(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    """zero_grad, backward (outside autocast; under DDP it also averages the gradients), step."""
    optimizer.zero_grad(set_to_none=True)
    device_type = loss.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        loss.backward()
    optimizer.step()
