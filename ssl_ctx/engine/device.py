"""Device, precision and memory-format choices, made once from the TrainConfig."""
from __future__ import annotations

import contextlib
import os

import torch

from ssl_ctx.config import TrainConfig
from ssl_ctx.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> this process's CUDA device (LOCAL_RANK under torchrun) when there is one, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"train.device={name} but this machine has no CUDA GPU; use train.device=cpu or auto")
    if name == "cuda":  # under torchrun each process takes its own GPU, as with auto
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"train.device='{name}' is not a device; use auto, cpu, cuda or cuda:N") from None


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA by default (the paper trained in fp32; bf16 keeps its range and halves the traffic)."""
    if config.precision == "fp32":
        return None
    if config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    if config.precision != "auto":
        raise UserError(f"train.precision='{config.precision}' is unknown; use auto, fp32 or bf16")
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def use_channels_last(config: TrainConfig, device: torch.device) -> bool:
    return config.channels_last if config.channels_last is not None else device.type == "cuda"
