"""The GPU fast path, exercised on the CPU: cached uint8 batches with device augmentation, sharding,
no host synchronisation inside a step, torch.compile, bf16 autocast, channels_last and fused optimisers.

Tests that need a GPU are at the bottom and are skipped where there is none.
"""
from __future__ import annotations

import shutil
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.utils._pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from ssl_ctx.config import OptimConfig
from ssl_ctx.data.loader import CachedBatchLoader
from ssl_ctx.engine.optim import build_optimizer, fused_available
from ssl_ctx.errors import UserError
from ssl_ctx.engine.trainer import Trainer
from ssl_ctx.pretext.base import DataInfo
from ssl_ctx.pretext.context_encoder import ContextEncoder
from tests.helpers import random_split, small_config

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def loader(split, **kwargs) -> CachedBatchLoader:
    options = dict(batch_size=8, seed=3, input_size=24, crop_scale=0.75, hflip=True)
    return CachedBatchLoader(split, **{**options, **kwargs})


def epoch_batches(batch_loader: CachedBatchLoader, epoch: int, start: int = 0) -> list[dict[str, torch.Tensor]]:
    return list(batch_loader.batches(epoch, start))


def assert_same_batches(first, second) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


# ------------------------------------------------------------------------------------------ the loader


def test_batches_depend_only_on_seed_and_epoch():
    split = random_split(40, size=32, classes=4)
    epoch0 = epoch_batches(loader(split), 0)
    assert_same_batches(epoch0, epoch_batches(loader(split), 0))  # a fresh loader repeats the epoch exactly
    assert epoch0[0]["image"].shape == (8, 3, 24, 24) and epoch0[0]["label"].dtype == torch.int64
    assert not torch.equal(epoch0[0]["index"], epoch_batches(loader(split), 1)[0]["index"])
    assert not torch.equal(epoch0[0]["index"], epoch_batches(loader(split, seed=4), 0)[0]["index"])
    # Resuming at batch 2 serves what an uninterrupted epoch serves from batch 2 on.
    assert_same_batches(epoch0[2:], epoch_batches(loader(split), 0, start=2))


def test_batches_are_the_cached_images_augmented():
    split = random_split(16, size=24)
    plain = loader(split, input_size=None, crop_scale=1.0, hflip=False)
    batch = next(plain.batches(0))
    expected = torch.from_numpy(split.images[batch["index"].numpy()]).permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(batch["image"], expected)
    flipped = next(loader(split, input_size=None, crop_scale=1.0).batches(0))["image"]
    same = (flipped == batch["image"]).flatten(1).all(1)
    mirrored = (flipped == batch["image"].flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 0 < int(mirrored.sum()) < 8  # each image whole, some mirrored


def test_shards_are_disjoint_cover_the_epoch_and_repeat_the_single_process_batches():
    split = random_split(44, size=32)  # 44 = 2 global batches of 16 + 12 left over (dropped)
    single = loader(split, batch_size=16)
    ranks = [loader(split, batch_size=16, rank=rank, world_size=2) for rank in (0, 1)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 2
    for epoch in (0, 1):
        whole = epoch_batches(single, epoch)
        shards = [epoch_batches(r, epoch) for r in ranks]
        seen = [torch.cat([b["index"] for b in shard]) for shard in shards]
        assert not set(seen[0].tolist()) & set(seen[1].tolist())  # disjoint
        covered = torch.cat(seen).sort().values
        assert torch.equal(covered, torch.cat([b["index"] for b in whole]).sort().values)  # cover the epoch
        for step, batch in enumerate(whole):
            for rank, shard in enumerate(shards):
                # Process r holds global positions r, r + 2, ... with the same crop and flip as one process.
                for key in ("index", "image"):
                    assert torch.equal(shard[step][key], batch[key][rank::2]), (epoch, step, rank, key)


def test_evaluation_batches_keep_every_image_once():
    split = random_split(21, size=32)
    ranks = [loader(split, train=False, rank=rank, world_size=2) for rank in (0, 1)]
    seen = torch.cat([b["index"] for r in ranks for b in r.batches(0)]).sort().values
    assert torch.equal(seen, torch.arange(21))


class DeviceRecorder(TorchDispatchMode):
    """Records (op name, devices of its tensor inputs, dtype of its first tensor output)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, set[str], torch.dtype | None]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = [a for a in pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        first = next((o for o in pytree.tree_leaves(out) if isinstance(o, torch.Tensor)), None)
        self.calls.append((func.__name__, {str(t.device) for t in tensors}, None if first is None else first.dtype))
        return out


def test_host_serves_uint8_and_augmentation_runs_on_the_batch_device(monkeypatch):
    """No per-image float work on the host: gathering yields uint8 (and int64 indices/labels), the transfer
    carries those, and every floating-point op of the augmentation runs on the loader's device."""
    split = random_split(24, size=32, classes=3)
    batch_loader = loader(split, preload=False)
    transferred: list[torch.dtype] = []
    real_to_device = CachedBatchLoader._to_device

    def spy(self, tensor):
        transferred.append(tensor.dtype)
        return real_to_device(self, tensor)

    monkeypatch.setattr(CachedBatchLoader, "_to_device", spy)
    gathered = batch_loader._gather(np.arange(8))
    assert {name: t.dtype for name, t in gathered.items()} == {
        "image": torch.uint8, "label": torch.int64, "index": torch.int64}
    with DeviceRecorder() as recorder:
        batch = next(batch_loader.batches(0))
    assert sorted(map(str, transferred)) == ["torch.int64", "torch.int64", "torch.uint8"]
    float_ops = [(name.split(".")[0], devices) for name, devices, dtype in recorder.calls
                 if dtype is not None and dtype.is_floating_point]
    # uint8 -> float (_to_copy), the random crop/flip draws (rand) and the warp (grid_sampler_2d) all ran here:
    assert {"_to_copy", "rand", "grid_sampler_2d"} <= {name for name, _ in float_ops}
    assert all(devices <= {str(batch_loader.device)} for _, devices in float_ops)
    assert batch["image"].device == batch_loader.device


# ------------------------------------------------------------------------------------ the training step


def small_run(tmp_path, *overrides: str, steps: int = 2, split=None):
    """Train the small context encoder for ``steps`` steps; returns (task, metrics, trainer)."""
    config = small_config(tmp_path, "train.epochs=1", f"train.max_steps={steps}", f"train.log_every={steps}",
                          "train.checkpoint_every=1000", *overrides)
    split = split if split is not None else random_split(24)
    torch.manual_seed(0)
    task = ContextEncoder.from_config(config, DataInfo((32, 32), split.mean_rgb))
    trainer = Trainer(config, config.run_dir)
    batch_loader = CachedBatchLoader(split, batch_size=8, device=trainer.device, seed=0, input_size=32, crop_scale=0.8)
    metrics = trainer.fit(task, batch_loader)
    trainer.close()
    return task, metrics, trainer


class ScalarReads(TorchDispatchMode):
    """Counts reads of a tensor's value by the host (``.item()``, ``bool()``, ``float()``) while ``active``."""

    def __init__(self) -> None:
        super().__init__()
        self.active = False
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.active and func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))

    @contextmanager
    def watching(self):
        self.active = True
        try:
            yield
        finally:
            self.active = False


def test_no_host_sync_inside_a_step_or_a_batch(tmp_path, monkeypatch):
    """Serving a batch (augmentation) and a training step (masks, forward, backward, fused Adam) never read a
    device value on the host; the trainer does so only at logging and checkpoint intervals."""
    reads = ScalarReads()
    real_step, real_batches = ContextEncoder.train_step, CachedBatchLoader.batches

    def train_step(self, *args, **kwargs):
        with reads.watching():
            return real_step(self, *args, **kwargs)

    def batches(self, *args, **kwargs):
        iterator = real_batches(self, *args, **kwargs)
        while True:
            with reads.watching():
                batch = next(iterator, None)
            if batch is None:
                return
            yield batch

    monkeypatch.setattr(ContextEncoder, "train_step", train_step)
    monkeypatch.setattr(CachedBatchLoader, "batches", batches)
    with reads:
        _, metrics, _ = small_run(tmp_path, "optim.fused=true", "mask.type=random_region", steps=3)
    assert metrics["train_steps"] == 3
    assert reads.count == 0


def test_fused_optimizer_is_the_default_where_torch_has_it():
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert build_optimizer(params, OptimConfig(), device_type="cuda").defaults["fused"] is True
    cpu = build_optimizer(params, OptimConfig(), device_type="cpu").defaults["fused"]
    assert bool(cpu) == fused_available("cpu")
    plain = build_optimizer(params, OptimConfig(fused=False), device_type="cpu")
    assert not plain.defaults["fused"]


def test_auto_precision_is_bf16_where_the_hardware_has_it(monkeypatch):
    from ssl_ctx.config import TrainConfig
    from ssl_ctx.engine import device as device_module

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    assert device_module.autocast_dtype(TrainConfig(), cpu) == torch.bfloat16
    assert device_module.autocast_dtype(TrainConfig(precision="fp32"), cpu) is None
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    assert device_module.autocast_dtype(TrainConfig(), cpu) is None
    assert device_module.autocast_dtype(TrainConfig(), cuda) == torch.bfloat16
    with pytest.raises(UserError, match="train.precision='half'"):
        device_module.autocast_dtype(TrainConfig(precision="half"), cpu)


def test_bf16_autocast_runs_a_step_on_the_cpu(tmp_path, monkeypatch):
    dtypes: list[torch.dtype] = []
    real_forward = torch.nn.Conv2d.forward

    def forward(self, x):
        out = real_forward(self, x)
        if torch.is_autocast_enabled("cpu"):  # the dry run that sizes the model is outside the training step
            dtypes.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", forward)
    task, metrics, trainer = small_run(tmp_path, "train.precision=bf16")
    assert trainer.amp_dtype == torch.bfloat16
    assert len(dtypes) >= 2 * 5 and set(dtypes) == {torch.bfloat16}  # every convolution of both steps in bf16
    assert np.isfinite(metrics["loss"])
    assert all(p.dtype == torch.float32 for p in task.parameters())  # weights (and Adam) stay fp32


# Two memory layouts of the same fp32 maths sum in another order: after two steps the loss differed by at most
# 9.4e-8 relative across the kernel paths tried on an AMD EPYC (default, oneDNN AVX2 and AVX512_CORE, MKL_CBWR,
# ATen AVX2); 1e-5 leaves a factor 100 and catches a layout bug (every kernel transposed: 2.5e-3). bf16 rounds the
# two layouts differently (1.1e-4 on that CPU, under 1e-4 on an Intel Xeon), which says nothing about the layout.
LAYOUT_TOLERANCE = 1e-5


def test_channels_last_runs_and_matches_the_default_layout(tmp_path):
    task, metrics, trainer = small_run(tmp_path / "cl", "train.channels_last=true", "train.precision=fp32")
    assert trainer.channels_last
    weight = task.encoder.conv2.conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    _, reference, _ = small_run(tmp_path / "plain", "train.channels_last=false", "train.precision=fp32")
    assert metrics["loss"] == pytest.approx(reference["loss"], rel=LAYOUT_TOLERANCE)  # same maths, another order


def _compiler_missing() -> str | None:
    if not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")):
        return "torch.compile's CPU backend needs a C compiler (cc/gcc/clang), and none is on PATH"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_compiler_missing() is not None, reason=str(_compiler_missing()))
def test_compile_runs_a_step(tmp_path):
    task, metrics, _ = small_run(tmp_path, "train.compile=true", steps=1)
    assert metrics["train_steps"] == 1 and np.isfinite(metrics["loss"])
    assert task.encoder._compiled_call_impl is not None  # compiled in place: state-dict keys are unchanged
    assert not any("_orig_mod" in key for key in task.state_dict())


# ----------------------------------------------------------------------------------------- on a GPU


@needs_cuda
def test_cuda_batches_are_made_on_the_gpu_without_syncs():
    split = random_split(64, size=32, classes=4)
    batch_loader = loader(split, device="cuda")
    assert batch_loader.preload  # a small cache is kept on the GPU
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = epoch_batches(batch_loader, 0)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(v.is_cuda for b in batches for v in b.values())
    streamed = loader(split, device="cuda", preload=False)
    assert_same_batches(batches, epoch_batches(streamed, 0))  # pinned host copies give the same batches


@needs_cuda
def test_cuda_training_step_does_not_sync(tmp_path, monkeypatch):
    real_step = ContextEncoder.train_step

    def train_step(self, *args, **kwargs):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return real_step(self, *args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode(0)

    monkeypatch.setattr(ContextEncoder, "train_step", train_step)
    _, metrics, trainer = small_run(tmp_path, "train.device=cuda", steps=3)
    assert trainer.amp_dtype == torch.bfloat16 and trainer.channels_last
    assert np.isfinite(metrics["loss"])
