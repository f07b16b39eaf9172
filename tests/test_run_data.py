"""What a run reads and how long it runs: the held-out part of a single split, the cache size an image folder
follows, the step count and what sets it, and no half-made run folder after a failure."""
from __future__ import annotations

import numpy as np
import pytest

from ssl_ctx.config import DataConfig, TrainConfig
from ssl_ctx.data.cache import CachedSplit
from ssl_ctx.data.run_data import cache_size_for, holdout_rows, split_part
from ssl_ctx.engine.trainer import planned_steps
from ssl_ctx.errors import UserError
from ssl_ctx.files import removed_if_failed


@pytest.mark.parametrize("count, fraction, held", [(120, 0.1, 12), (24, 0.1, 2), (5, 0.1, 1), (2, 0.9, 1)])
def test_holdout_rows_partition_every_image_once(count, fraction, held):
    kept, out = holdout_rows(count, fraction, seed=0)
    assert len(out) == held and len(kept) == count - held
    assert sorted([*kept, *out]) == list(range(count)) and not set(kept) & set(out)
    assert list(kept) == sorted(kept) and list(out) == sorted(out)  # cache order: sequential reads


def test_holdout_rows_depend_on_the_seed_only():
    assert np.array_equal(holdout_rows(100, 0.1, 3)[1], holdout_rows(100, 0.1, 3)[1])
    assert not np.array_equal(holdout_rows(100, 0.1, 3)[1], holdout_rows(100, 0.1, 4)[1])


def test_one_image_cannot_be_split():
    with pytest.raises(UserError, match="data.train_split=all data.eval_split=all"):
        holdout_rows(1, 0.1, 0)


def test_a_part_has_its_own_mean_colour_and_rows(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    split = CachedSplit(dataset="d", split="all", path=tmp_path, images=images, labels=np.arange(10) % 3,
                        label_maps=None, boxes=[np.full((1, 4), i, np.float32) for i in range(10)],
                        box_labels=[np.array([i]) for i in range(10)], class_names=["a", "b", "c"],
                        mean_rgb=(1.0, 2.0, 3.0), meta={}, box_difficult=[np.zeros(1, bool) for _ in range(10)])
    part = split_part(split, np.array([1, 4]), "val", "held out: 2")
    assert np.array_equal(part.images, images[[1, 4]]) and list(part.labels) == [1, 1]
    assert [float(b[0, 0]) for b in part.boxes] == [1.0, 4.0] and [int(b[0]) for b in part.box_labels] == [1, 4]
    assert np.allclose(part.mean_rgb, images[[1, 4]].reshape(-1, 3).mean(0))
    assert (part.split, part.selection, len(part)) == ("val", "held out: 2", 2)


def test_an_image_folder_is_cached_at_the_network_input_size():
    folder = DataConfig(dataset="imagefolder:/photos")
    assert cache_size_for(folder, 64) == (64, 64)
    assert cache_size_for(DataConfig(dataset="imagefolder:/photos", input_size=96), 64) == (96, 96)
    assert cache_size_for(DataConfig(dataset="imagefolder:/photos", cache_size=[80, 80]), 64) == (80, 80)
    assert cache_size_for(DataConfig(dataset="camvid"), 64) is None  # a dataset's own size stays


@pytest.mark.parametrize("epochs, max_steps, batches, expected", [
    (4, 100, 15, (100, "train.max_steps=100")),  # max_steps wins although 4 epochs end first (60 steps)
    (4, 10, 1, (10, "train.max_steps=10")),
    (4, 20, 625, (20, "train.max_steps=20")),
    (3, None, 7, (21, "train.epochs=3")),
])
def test_a_set_max_steps_is_the_runs_length(epochs, max_steps, batches, expected):
    assert planned_steps(TrainConfig(epochs=epochs, max_steps=max_steps), batches) == expected


def test_a_run_folder_made_by_a_failed_run_is_removed(tmp_path):
    run_dir = tmp_path / "runs" / "failed"
    with pytest.raises(UserError), removed_if_failed(run_dir):
        (run_dir / "tensorboard").mkdir(parents=True)
        (run_dir / "tensorboard" / "events").write_text("x")
        raise UserError("bad split")
    assert not run_dir.exists()
    kept = tmp_path / "runs" / "checkpointed"
    with pytest.raises(UserError), removed_if_failed(kept):
        (kept / "checkpoints").mkdir(parents=True)
        (kept / "checkpoints" / "last.pt").write_text("x")
        raise UserError("later failure")
    assert (kept / "checkpoints" / "last.pt").exists()  # work a resume continues from is never removed
    existing = tmp_path / "runs" / "existing"
    existing.mkdir()
    with pytest.raises(UserError), removed_if_failed(existing):
        raise UserError("x")
    assert existing.exists()
