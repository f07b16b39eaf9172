"""DistributedDataParallel around tasks, on two CPU processes (gloo) started by the test itself.

Each process trains a small adversarial context encoder on its own images: with the generator and the
discriminator each under DDP the processes keep identical weights, a task that runs a network outside
``trained_call`` is caught at the next checkpoint, and SyncBatchNorm on CPU processes is one line.
"""
from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD_SIZE = 2


def small_method(adversarial: bool = True):
    from ssl_ctx.config import load_config
    from ssl_ctx.pretext.base import DataInfo
    from ssl_ctx.pretext.context_encoder import ContextEncoder

    config = load_config(None, ["model.encoder=alexnet32", "model.decoder_widths=[16, 8, 8, 8]",
                                "model.discriminator_widths=[8, 16, 32, 64]",
                                f"method.adversarial={str(adversarial).lower()}"])
    torch.manual_seed(dist.get_rank())  # different initial weights: DDP must copy rank 0's
    return ContextEncoder.from_config(config, DataInfo((32, 32))), config


def _worker(rank: int, store: str, results: str, check: str) -> None:
    os.environ.update(WORLD_SIZE=str(WORLD_SIZE), RANK=str(rank), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD_SIZE)
    try:
        outcome = CHECKS[check]()
    except Exception:  # noqa: BLE001 - reported to the test through the results folder
        outcome = "error: " + traceback.format_exc()
    finally:
        from ssl_ctx.engine.distributed import cleanup

        cleanup()
    Path(results, f"rank{rank}.txt").write_text(outcome)


def _both_networks_replicated() -> str:
    from torch.nn.parallel import DistributedDataParallel

    from ssl_ctx.engine.distributed import check_replicas_agree, replicate

    method, config = small_method()
    replicate(method, torch.device("cpu"))
    replicas = method.__dict__["_replicas"]
    assert sorted(replicas) == ["discriminator", "generator"]
    assert all(isinstance(replica, DistributedDataParallel) for replica in replicas.values())
    assert "_replicas" not in "".join(method.state_dict())  # checkpoints keep their keys
    optimizers = method.configure_optimizers(config.optim)
    for step in range(3):
        torch.manual_seed(100 + dist.get_rank())  # each process sees other images
        method.train_step({"image": torch.rand(4, 3, 32, 32) * 2 - 1}, optimizers, step)
    check_replicas_agree(method, 3)  # raises if any weight differs between the processes
    return "ok"


def _network_outside_trained_call() -> str:
    from ssl_ctx.engine.distributed import check_replicas_agree, replicate
    from ssl_ctx.engine.optim import optimize
    from ssl_ctx.errors import UserError

    method, config = small_method(adversarial=False)
    replicate(method, torch.device("cpu"))
    optimizers = method.configure_optimizers(config.optim)
    torch.manual_seed(100 + dist.get_rank())
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    loss = method.losses({"image": images}, method.step_generator(0, images.device))["loss"]  # not through DDP
    optimize(loss, optimizers["model"])
    with pytest.raises(UserError, match="outside trained_call"):
        check_replicas_agree(method, 1)
    return "ok"


def _sync_batchnorm_on_cpu() -> str:
    from ssl_ctx.engine.distributed import replicate
    from ssl_ctx.errors import UserError

    method, _ = small_method(adversarial=False)
    with pytest.raises(UserError, match="train.sync_batchnorm=true needs GPUs"):
        replicate(method, torch.device("cpu"), sync_batchnorm=True)
    return "ok"


CHECKS = {"replicated": _both_networks_replicated, "outside": _network_outside_trained_call,
          "sync_batchnorm": _sync_batchnorm_on_cpu}


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_two_processes(tmp_path: Path, check: str):
    results = tmp_path / "results"
    results.mkdir()
    mp.start_processes(_worker, args=(str(tmp_path / "store"), str(results), check), nprocs=WORLD_SIZE,
                       start_method="spawn")
    for rank in range(WORLD_SIZE):
        assert (results / f"rank{rank}.txt").read_text() == "ok", (results / f"rank{rank}.txt").read_text()


def test_an_epoch_left_early_stops_its_prefetching_thread():
    """A thread still running at interpreter exit can abort the process: leaving an epoch joins it."""
    import threading
    from types import SimpleNamespace

    import numpy as np

    from ssl_ctx.data.loader import CachedBatchLoader

    split = SimpleNamespace(images=np.zeros((64, 8, 8, 3), np.uint8), labels=None, label_maps=None)
    loader = CachedBatchLoader(split, 4, torch.device("cpu"), seed=0, train=True, preload=False)
    before = threading.active_count()
    batches = loader.batches(0)
    next(batches)
    assert threading.active_count() == before + 1
    batches.close()
    assert threading.active_count() == before
