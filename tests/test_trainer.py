import pytest
import torch

from ssl_ctx.data.loader import CachedBatchLoader
from ssl_ctx.engine.checkpoint import load_checkpoint
from ssl_ctx.engine.trainer import NonFiniteError, Trainer
from ssl_ctx.errors import UserError
from ssl_ctx.pretext.base import DataInfo
from ssl_ctx.pretext.context_encoder import ContextEncoder
from tests.helpers import random_split, small_config


class Interrupt(Exception):
    pass


class InterruptingLoader(CachedBatchLoader):
    """Stops the run (as a kill would) after ``stop_after`` batches have been served in this process."""

    def __init__(self, *args, stop_after: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.remaining = stop_after

    def batches(self, epoch, start=0):
        for batch in super().batches(epoch, start):
            if self.remaining == 0:
                raise Interrupt
            self.remaining -= 1
            yield batch


def train(config, split, resume=False, stop_after=None):
    torch.manual_seed(123)  # model init; the trainer seeds every step itself
    method = ContextEncoder.from_config(config, DataInfo((32, 32), split.mean_rgb))
    kwargs = dict(batch_size=8, seed=config.train.seed, input_size=32)
    loader = (InterruptingLoader(split, stop_after=stop_after, **kwargs) if stop_after is not None
              else CachedBatchLoader(split, **kwargs))
    Trainer(config, config.run_dir, resume=resume).fit(method, loader)
    return method


def test_resume_equals_an_uninterrupted_run(tmp_path):
    split = random_split(40)
    straight = train(small_config(tmp_path, "name=straight"), split)

    config = small_config(tmp_path, "name=killed")
    with pytest.raises(Interrupt):
        train(config, split, stop_after=7)  # killed during step 8; the last checkpoint is at step 6
    assert load_checkpoint(config.run_dir / "checkpoints" / "last.pt")["trainer_state"]["step"] == 6
    resumed = train(config, split, resume=True)

    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    config = small_config(tmp_path)
    real_losses = ContextEncoder.losses
    calls = {"n": 0}

    def losses(self, batch, generator):
        calls["n"] += 1
        values = real_losses(self, batch, generator)
        return {"loss": values["loss"] * float("nan")} if calls["n"] >= 5 else values

    monkeypatch.setattr(ContextEncoder, "losses", losses)
    with pytest.raises(NonFiniteError, match="non-finite by step 5; .*last good checkpoint is kept"):
        train(config, random_split(40))
    payload = load_checkpoint(config.run_dir / "checkpoints" / "last.pt")
    assert payload["trainer_state"]["step"] == 3
    assert all(torch.isfinite(v).all() for v in payload["model"].values() if v.is_floating_point())


def test_an_existing_run_is_not_overwritten_without_resume(tmp_path):
    config = small_config(tmp_path, "train.epochs=1")
    train(config, random_split(16))
    with pytest.raises(UserError, match="already holds a checkpoint.*--resume"):
        train(config, random_split(16))
    train(config, random_split(16), resume=True)  # finished: returns at once


def test_checkpoint_loading_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "ssl_ctx.checkpoint/1", "payload": Interrupt("not a tensor")}, path)
    with pytest.raises(UserError, match="cannot be read safely"):
        load_checkpoint(path)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(UserError, match="not an ssl_ctx checkpoint"):
        load_checkpoint(other)


def test_a_deadline_checkpoints_and_the_resumed_run_equals_an_uninterrupted_one(tmp_path):
    from ssl_ctx.engine.trainer import TimeLimitReached

    split = random_split(40)
    straight = train(small_config(tmp_path, "name=straight"), split)
    config = small_config(tmp_path, "name=pieces")
    torch.manual_seed(123)
    method = ContextEncoder.from_config(config, DataInfo((32, 32), split.mean_rgb))
    loader = CachedBatchLoader(split, batch_size=8, seed=config.train.seed, input_size=32)
    with pytest.raises(TimeLimitReached, match="stopped at the time limit at step 2"):
        Trainer(config, config.run_dir, deadline=0.0).fit(method, loader)  # past: stop at the first log step
    assert load_checkpoint(config.run_dir / "checkpoints" / "last.pt")["trainer_state"]["step"] == 2
    resumed = train(config, split, resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    history = load_checkpoint(config.run_dir / "checkpoints" / "last.pt")["history"]
    assert [entry["step"] for entry in history] == [2, 4, 6, 8, 10]  # the loss curve survives the stop
