"""Fault class: a non-finite value anywhere in the model (loss, parameter, BatchNorm statistic) stops the run."""
from __future__ import annotations

import pytest
import torch

from ssl_ctx.engine.trainer import NonFiniteError
from ssl_ctx.pretext.context_encoder import ContextEncoder
from tests.helpers import file_digests, leftovers, random_split, small_config
from tests.test_trainer import train


def test_a_non_finite_batch_norm_statistic_stops_the_run_and_is_never_checkpointed(tmp_path, monkeypatch):
    config = small_config(tmp_path)  # checkpoints every 3 steps
    real_step = ContextEncoder.train_step
    checkpoint = config.run_dir / "checkpoints" / "last.pt"
    seen: dict[str, dict[str, str]] = {}

    def train_step(self, batch, optimizers, step):
        losses = real_step(self, batch, optimizers, step)
        if step == 3:  # after the checkpoint of step 3 (the next is at the epoch end, step 5): the loss stays finite, a running variance does not
            seen["good"] = file_digests(checkpoint.parent)
            bn = next(m for m in self.modules() if isinstance(m, torch.nn.BatchNorm2d))
            bn.running_var.fill_(float("inf"))
        return losses

    monkeypatch.setattr(ContextEncoder, "train_step", train_step)
    with pytest.raises(NonFiniteError) as raised:
        train(config, random_split(40))
    message = str(raised.value)
    assert "running_var' holds a non-finite value at step 5; training stopped and the last good checkpoint " \
           f"is kept at {checkpoint} (the bad weights were not saved)" in message
    assert "\n" not in message
    assert file_digests(checkpoint.parent) == seen["good"]  # step 3's checkpoint, byte for byte
    assert not leftovers(tmp_path)


def test_a_non_finite_parameter_is_named(tmp_path, monkeypatch):
    config = small_config(tmp_path)
    real_step = ContextEncoder.train_step

    def train_step(self, batch, optimizers, step):
        losses = real_step(self, batch, optimizers, step)
        if step == 2:  # the last step before the first checkpoint (its loss was computed before this)
            with torch.no_grad():
                weight = next(iter(self.decoder.parameters()))
                weight[(0,) * weight.dim()] = float("nan")
        return losses

    monkeypatch.setattr(ContextEncoder, "train_step", train_step)
    with pytest.raises(NonFiniteError, match=r"'decoder\.[\w.]+' holds a non-finite value at step 3; .*no checkpoint "
                                             r"had been written yet"):
        train(config, random_split(40))
    assert not (config.run_dir / "checkpoints" / "last.pt").exists()
