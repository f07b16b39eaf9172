"""Process groups under `torchrun`: joining, DistributedDataParallel around a task, and a clean exit.

Gradients are averaged by ``torch.nn.parallel.DistributedDataParallel``, one instance per optimiser's
modules (:mod:`ssl_ctx.engine.task`), which overlaps the all-reduce with the backward pass; BatchNorm can be
synchronised across processes (``train.sync_batchnorm``, CUDA only, as torch's ``SyncBatchNorm``).
Multi-node runs use torchrun's rendezvous (README: "Across processes and machines").
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ssl_ctx.engine.task import TrainingTask
from ssl_ctx.errors import UserError


@dataclass(frozen=True)
class ProcessInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> ProcessInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); a no-op otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size <= 1:
        return ProcessInfo()
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            # device_id binds the NCCL communicator to this process's GPU (barriers then know the device).
            dist.init_process_group(backend="nccl", device_id=device)
        else:
            dist.init_process_group(backend="gloo")
    return ProcessInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def process_position() -> tuple[int, int]:
    """(rank, world_size) of this process; (0, 1) outside torchrun."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def shard_of_global_draw(draw: Callable[[int], torch.Tensor], batch: int) -> torch.Tensor:
    """This process's ``batch`` rows of ``draw(n)``, random rows (masks, say) made for the whole global batch.

    ``CachedBatchLoader`` gives process ``rank`` the global positions ``rank, rank + W, rank + 2W, ...`` of
    each global batch; drawing for the global batch and keeping those rows gives every sample the randomness
    it has in a single-process run, so a run on W processes repeats it (at the cost of W x the draws).
    """
    rank, world_size = process_position()
    if world_size == 1:
        return draw(batch)
    return draw(batch * world_size)[rank::world_size][:batch]


def replicate(task: nn.Module, device: torch.device, sync_batchnorm: bool = False) -> None:
    """Put each trained module group of ``task`` under DDP (a no-op outside torchrun).

    DDP copies rank 0's weights and buffers to every process when it wraps them, so all processes start alike.
    """
    if not is_distributed():
        return
    if not isinstance(task, TrainingTask):
        raise UserError(f"{type(task).__name__} cannot train across processes: derive it from "
                        f"ssl_ctx.engine.task.TrainingTask and run its networks through trained_call")
    if sync_batchnorm:
        if device.type != "cuda":
            raise UserError("train.sync_batchnorm=true needs GPUs (torch's SyncBatchNorm runs on CUDA only); "
                            "set train.sync_batchnorm=false for CPU processes")
        for name, child in list(task.named_children()):  # in place: the optimisers are built afterwards
            setattr(task, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
    device_ids = [device.index] if device.type == "cuda" else None
    task.replicate(lambda group: DistributedDataParallel(
        group, device_ids=device_ids, find_unused_parameters=task.find_unused_parameters))


def check_replicas_agree(task: nn.Module, step: int) -> None:
    """Raise if the processes' trained weights differ: a network that ran outside ``trained_call`` (so its
    gradients were never averaged). Compares exact integer checksums of the weights' bits: one all-reduce."""
    if not is_distributed():
        return
    weights = [p.detach() for p in task.parameters() if p.requires_grad]
    if not weights:
        return
    checksum = torch.stack([w.float().contiguous().view(torch.int32).sum(dtype=torch.int64) for w in weights]).sum()
    extremes = torch.stack([checksum, -checksum])
    dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
    if int(extremes[0]) != -int(extremes[1]):
        raise UserError(f"the processes' weights differ at step {step}: {type(task).__name__}.train_step runs a "
                        f"trained network outside trained_call, so its gradients were not averaged")


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over processes (for logged scalars and evaluation metrics)."""
    if not is_distributed():
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup(finished: bool = True) -> None:
    """Leave the process group. After a finished command every process first waits for the others, so none
    tears down its connections while a peer still uses them; after an error it leaves at once (torchrun
    stops the other processes)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if finished:
            dist.barrier()
    finally:
        dist.destroy_process_group()
