"""Process-group setup for `torchrun`, and the gradient all-reduce used by every optimiser step.

We average gradients ourselves (in :func:`all_reduce_gradients`, called by ``engine.optim.optimize``) rather
than wrapping the model in ``DistributedDataParallel``: pretext methods with two optimisers (generator and
discriminator) call their sub-modules directly, which DDP's forward-hook bookkeeping does not support.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist


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


def all_reduce_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Average gradients over processes, one flattened bucket per dtype (few collectives, no host sync)."""
    if not is_distributed():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for grad in grads:
        by_dtype.setdefault(grad.dtype, []).append(grad)
    world = dist.get_world_size()
    for group in by_dtype.values():
        flat = torch._utils._flatten_dense_tensors(group)
        dist.all_reduce(flat)
        flat /= world
        for grad, synced in zip(group, torch._utils._unflatten_dense_tensors(flat, group)):
            grad.copy_(synced)


def broadcast_from_main(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every process (what DDP does when it wraps a model).

    Each process builds its model from its own random state; without this, processes would start from
    different weights and their averaged gradients would be applied to different models.
    """
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in module.state_dict(keep_vars=True).values():
            if not isinstance(tensor, torch.Tensor):
                continue
            dense = tensor.detach().contiguous()  # channels_last weights are sent as a dense copy
            dist.broadcast(dense, src=0)
            if dense.data_ptr() != tensor.data_ptr():
                tensor.detach().copy_(dense)


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over processes (for logged scalars and evaluation metrics)."""
    if not is_distributed():
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
