"""Device, precision and memory-format choices, made once from the TrainConfig."""
from __future__ import annotations

import contextlib
import os

import torch

from ssl_ctx.config import TrainConfig
from ssl_ctx.errors import UserError
from ssl_ctx.host import cpu_model


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


def describe_device(device: torch.device | str | None = None) -> str:
    """``cuda: NVIDIA H200, 140 GiB, 132 SMs, CUDA 12.8`` or ``cpu: <model>, 2 cores, torch threads 2``: what
    records and benchmarks say ran them (default: the GPU when there is one)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return (f"cuda: {props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, "
                f"CUDA {torch.version.cuda}")
    return f"cpu: {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 arithmetic (AVX512-BF16 or AMX), where oneDNN runs bf16 convolutions natively."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's (private) feature probes
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """``auto``: bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere (the paper trained in fp32; bf16 keeps
    fp32's range, and a context encoder trained either way gave the same probe accuracies: README)."""
    if config.precision not in PRECISIONS:
        raise UserError(f"train.precision='{config.precision}' is unknown; use auto, fp32 or bf16")
    if config.precision == "fp32":
        return None
    if config.precision == "bf16":
        return torch.bfloat16
    native = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    return torch.bfloat16 if native else None


PRECISIONS = ("auto", "fp32", "bf16")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def use_channels_last(config: TrainConfig, device: torch.device) -> bool:
    """``null``: on for CUDA and CPUs (cuDNN and oneDNN both prefer NHWC convolutions)."""
    return config.channels_last if config.channels_last is not None else device.type in ("cuda", "cpu")
