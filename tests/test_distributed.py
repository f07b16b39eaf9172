"""`torchrun --nproc_per_node 2 -m ssl_ctx ...` on the CPU (gloo), against one process with the same global batch.

What a 2-process run shares with the single-process one: the initial weights (rank 0's, broadcast), the
samples of every global batch (each process takes every second one), their crops, flips and masks (drawn for
the global batch, each process keeping its rows) and the averaged gradient. What it cannot share:

- BatchNorm statistics (the decoder's): each process normalises over its own 4 images instead of all 8;
- the masked-L2 normalisation: each process divides by the masked area of its own images, and the gradients
  (and the logged losses) are the mean of the two per-process losses instead of one loss over the batch.

Both change the first step's loss by less than 0.2 % (measured: 0.07 %; same weights, same images, same
masks; masks drawn per process instead, as before the global-batch draw, moved it by 0.5 %). Adam's first
updates are nearly ``lr * sign(gradient)``, so small gradient differences flip the update of some weights and
the curves then drift apart slowly: over 6 steps they stay within 5 % (measured: at most 1.7 %), while the
loss itself moves by 5-35 % from one batch to the next. Weights are compared exactly where they must be equal:
across the processes of one run, and between a resumed run and an uninterrupted one.

This file is also the torchrun worker for the interrupted run and the single-process reference of the probe (see
the workers at the bottom).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "pretext" / "distributed-check.yaml"
STEPS = 6  # train.max_steps of CONFIG
# Relative: identical weights, images and masks; only BatchNorm and the normalisation differ. Measured 7e-4 on an
# Intel Xeon, 8.9e-4 to 1.1e-3 on an AMD EPYC (bf16 and fp32, oneDNN/MKL kernel paths); a shard taken twice: 0.13.
FIRST_STEP_TOLERANCE = 0.002
# Relative, every step: the differences above, compounded over 6 Adam steps. Measured at most 1.7e-2 (Intel),
# 1.4e-2 (AMD, every kernel path); a shard taken twice: 0.38.
CURVE_TOLERANCE = 0.05
# Relative: the torchrun probe against one process whose probe head normalises each process's half of the batch on
# its own, as the two processes do: the same maths summed in another order. Measured at most 9e-8 (AMD EPYC, every
# kernel path: one ulp of the loss); a shard taken twice: 3e-3. Against a plain single process the head's BatchNorm
# alone made 0.1 % to 0.63 % (Intel, AMD), as much as a shard taken twice, so that comparison could not tell them.
PROBE_TOLERANCE = 1e-6


def torchrun(*args: str) -> list[str]:
    # --standalone: a private rendezvous on a free local port, so parallel test runs do not collide.
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def run(command: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def read_losses(run_dir: Path, tag: str = "train/loss") -> dict[int, float]:
    """step -> value of a TensorBoard scalar; a resumed run's later event file overrides repeated steps."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util.tensor_util import make_ndarray

    values: dict[int, float] = {}
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):  # file names start with the time
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == tag:  # torch writes scalars as 0-d tensors; older writers as simple_value
                    values[event.step] = float(make_ndarray(value.tensor)) if value.HasField("tensor") \
                        else value.simple_value
    return values


def relative_differences(a: dict[int, float], b: dict[int, float]) -> dict[int, float]:
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    return {step: abs(a[step] - b[step]) / abs(b[step]) for step in a}


def model_state(run_dir: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert payload["trainer_state"]["step"] == STEPS
    return payload["model"]


# ---------------------------------------------------------------------------------- unit tests


@pytest.mark.parametrize("mask_type", ["random_region", "random_block", "central"])
def test_each_process_gets_the_single_process_masks_of_its_samples(monkeypatch, mask_type):
    from ssl_ctx.config import load_config
    from ssl_ctx.engine import distributed
    from ssl_ctx.pretext.base import DataInfo
    from ssl_ctx.pretext.context_encoder import ContextEncoder

    config = load_config(None, ["model.encoder=alexnet32", "model.decoder_widths=[16, 8, 8, 8]",
                                f"mask.type={mask_type}"])
    method = ContextEncoder.from_config(config, DataInfo((32, 32)))
    images = torch.zeros(8, 3, 32, 32)
    whole, _ = method.masks(images, method.step_generator(5, images.device))
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "process_position", lambda rank=rank: (rank, 2))
        mine, _ = method.masks(images[rank::2], method.step_generator(5, images.device))
        assert torch.equal(mine, whole[rank::2]), rank


def test_cuda_device_follows_local_rank(monkeypatch):
    from ssl_ctx.engine.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)  # not every process on GPU 0
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index is kept


def test_processes_draw_different_dropout_but_resume_repeats_it():
    from ssl_ctx.engine.trainer import step_seed

    assert step_seed(0, 7) == step_seed(0, 7, rank=0) != step_seed(0, 7, rank=1)
    assert len({step_seed(seed, step, rank) for seed in range(3) for step in range(50) for rank in range(4)}) == 600


# ------------------------------------------------------------------------------ torchrun end to end


@pytest.fixture(scope="module")
def environment(real_data_env: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **real_data_env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    # Prepare the data slice once, before several processes want it.
    run([sys.executable, "-c", "from ssl_ctx.config import load_config; from ssl_ctx.data.run_data import "
         f"load_run_data; load_run_data(load_config({str(CONFIG)!r}).data)"], env)
    return env


@pytest.fixture(scope="module")
def runs(environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One process (global batch 8) and two processes (4 each), same config; returns the output folder."""
    output = tmp_path_factory.mktemp("runs")
    common = ["pretrain", str(CONFIG), f"output_dir={output}"]
    run([sys.executable, "-m", "ssl_ctx", *common, "name=single"], environment)
    run(torchrun("-m", "ssl_ctx", *common, "name=ddp"), environment)
    return output


@pytest.mark.slow
def test_two_processes_follow_one_process_with_the_same_global_batch(runs: Path):
    single, ddp = read_losses(runs / "single"), read_losses(runs / "ddp")
    assert sorted(ddp) == list(range(1, STEPS + 1))  # train.log_every=1: every step logged once, by rank 0
    differences = relative_differences(ddp, single)
    assert differences[1] < FIRST_STEP_TOLERANCE, differences
    assert max(differences.values()) < CURVE_TOLERANCE, differences
    # Rank 0 alone wrote the logs, the checkpoint and the record; the run finished on both.
    assert len(list((runs / "ddp" / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert (runs / "ddp" / "record.json").is_file() and (runs / "ddp" / "config.yaml").is_file()
    assert model_state(runs / "ddp").keys() == model_state(runs / "single").keys()


@pytest.mark.slow
def test_resumed_torchrun_repeats_the_uninterrupted_run(runs: Path, environment: dict[str, str]):
    """Killed after step 4 (the checkpoint is at step 3), then `torchrun ... --resume`: same losses and weights."""
    common = ["pretrain", str(CONFIG), f"output_dir={runs}", "name=resumed"]
    run(torchrun(str(Path(__file__)), "--stop-after", "4", *common), environment)
    resumed = runs / "resumed"
    assert torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)["trainer_state"]["step"] == 3

    # At the interruption both processes held the same weights (averaged gradients, same start), but their
    # BatchNorm running statistics differ: each normalised its own images.
    ranks = [torch.load(resumed / f"interrupted-rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    for name, value in ranks[0].items():
        if "running_" in name:
            assert not torch.equal(value, ranks[1][name]), name
        elif value.is_floating_point():
            assert torch.equal(value, ranks[1][name]), name

    run(torchrun("-m", "ssl_ctx", *common, "--resume"), environment)
    assert read_losses(resumed) == read_losses(runs / "ddp")
    uninterrupted = model_state(runs / "ddp")
    for name, value in model_state(resumed).items():
        assert torch.equal(value, uninterrupted[name]), name


@pytest.mark.slow
def test_linear_probe_under_torchrun_follows_one_process(runs: Path, environment: dict[str, str]):
    """`torchrun ... -m ssl_ctx probe` on the 2-process pretext checkpoint, one epoch of 2 steps of 32 images,
    with the trained (sgd) head: the probe that goes through the distributed training loop.

    The probe's head standardises the pooled features with a BatchNorm (no affine) over each process's 16 images,
    which one process over 32 cannot repeat; so the reference is one process whose head normalises the two halves
    (global positions 0, 2, ... and 1, 3, ...) separately (``--per-process-statistics``). The losses averaged over
    the processes and the averaged gradients are then the single process's. fp32, plain SGD, and the checkpoint's
    own BatchNorm statistics, so that only the distribution is compared.
    """
    probe = ["probe", str(CONFIG), f"output_dir={runs}", "probe.task=classification", "probe.mode=linear",
             "probe.solver=sgd", "probe.bn_statistics=keep", "probe.layer=conv5",
             f"probe.init={runs / 'ddp' / 'checkpoints' / 'last.pt'}", "optim.name=sgd", "optim.momentum=0",
             "optim.lr=0.01", "train.precision=fp32", "train.batch_size=32", "train.epochs=1", "train.max_steps=null"]
    run([sys.executable, str(Path(__file__)), "--per-process-statistics", "2", *probe, "name=probe-single"],
        environment)
    run(torchrun("-m", "ssl_ctx", *probe, "name=probe-ddp"), environment)
    single, ddp = read_losses(runs / "probe-single"), read_losses(runs / "probe-ddp")
    assert sorted(ddp) == [1, 2]
    differences = relative_differences(ddp, single)
    assert max(differences.values()) < PROBE_TOLERANCE, differences
    assert len(list((runs / "probe-ddp" / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert (runs / "probe-ddp" / "record.json").is_file()


# ------------------------------------------------------------------------------------------- worker


def _interrupted_worker(argv: list[str]) -> None:
    """``torchrun tests/test_distributed.py --stop-after K <ssl-ctx arguments>``: the CLI run, stopped on every
    process when it asks for training batch K + 1 (as a kill would); each process then saves its weights."""
    from ssl_ctx.cli import main
    from ssl_ctx.data.loader import CachedBatchLoader
    from ssl_ctx.engine.trainer import Trainer

    assert argv[0] == "--stop-after"
    stop_after, cli_arguments = int(argv[1]), argv[2:]

    class Interrupted(Exception):
        pass

    served = {"batches": 0}
    real_batches, real_fit = CachedBatchLoader.batches, Trainer.fit

    def batches(self, epoch, start=0):
        for batch in real_batches(self, epoch, start):
            if self.train:
                if served["batches"] == stop_after:
                    raise Interrupted
                served["batches"] += 1
            yield batch

    def fit(self, task, loader):
        try:
            return real_fit(self, task, loader)
        except Interrupted:
            torch.save(task.state_dict(), self.run_dir / f"interrupted-rank{self.process.rank}.pt")
            raise

    CachedBatchLoader.batches, Trainer.fit = batches, fit
    try:
        main(cli_arguments)
    except Interrupted:
        return
    raise SystemExit(f"the run was not interrupted after {stop_after} batches")


def _per_process_statistics_worker(argv: list[str]) -> None:
    """``python tests/test_distributed.py --per-process-statistics N <ssl-ctx arguments>``: one process whose
    classification probe head normalises, in training, each of the N interleaved parts of a batch (global positions
    r, r + N, ...: what process r of N holds) over its own rows, as N processes do."""
    from ssl_ctx.cli import main
    from ssl_ctx.probes.classification import PooledLinearHead

    assert argv[0] == "--per-process-statistics"
    processes, cli_arguments = int(argv[1]), argv[2:]
    real_forward = PooledLinearHead.forward

    def forward(self, features):
        if not self.training:
            return real_forward(self, features)
        pooled = self.pool(features).flatten(1)
        normalised = torch.empty_like(pooled)
        for rank in range(processes):  # rank 0 alone updates the running statistics, as DDP keeps rank 0's
            part = pooled[rank::processes]
            normalised[rank::processes] = self.norm(part) if rank == 0 else torch.nn.functional.batch_norm(
                part, None, None, training=True, eps=self.norm.eps)
        return self.linear(normalised)

    PooledLinearHead.forward = forward
    main(cli_arguments)


if __name__ == "__main__":
    worker = _per_process_statistics_worker if sys.argv[1] == "--per-process-statistics" else _interrupted_worker
    worker(sys.argv[1:])
