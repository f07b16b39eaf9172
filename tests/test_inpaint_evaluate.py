"""`ssl-ctx eval-inpaint` end to end on a tiny image folder: table, CSV, grid, empty centre-model cells."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl_ctx.config import config_to_dict, load_config
from ssl_ctx.engine.checkpoint import save_checkpoint
from ssl_ctx.inpaint.evaluate import evaluation_masks, run_eval_inpaint

from test_inpaint_predict import CENTRE_CONFIG, tiny_centre_model


def image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("test", 3)):
        folder = root / split / "scenes"
        folder.mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def test_central_eval_hole_is_the_released_test_hole() -> None:
    mask = evaluation_masks(load_config(None, ["inpaint.masks=[central]"]), 1, 128)["central"][0]
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (36, 91, 36, 91)


def test_masks_are_fixed_by_the_seed() -> None:
    config = load_config(None, [])
    first, second = evaluation_masks(config, 3, 64), evaluation_masks(config, 3, 64)
    for kind in first:
        assert np.array_equal(first[kind], second[kind])
        assert first[kind].shape == (3, 64, 64) and first[kind].any(axis=(1, 2)).all()


@pytest.mark.slow
def test_eval_inpaint_writes_table_csv_and_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CTX_CACHE", str(tmp_path / "cache"))
    folder = image_folder(tmp_path / "images")
    task = tiny_centre_model()
    checkpoint = save_checkpoint(tmp_path / "l2.pt", {**task.checkpoint_metadata(),
                                                      "config": config_to_dict(CENTRE_CONFIG),
                                                      "model": task.state_dict(), "optimizers": {}})
    config = load_config(None, [f"output_dir={tmp_path}", "name=eval", f"data.dataset=imagefolder:{folder}",
                                "data.train_split=train", "data.eval_split=test", "train.device=cpu",
                                "inpaint.baselines=[mean_fill, telea, nearest_neighbour]",
                                f"inpaint.checkpoints={{L2: {checkpoint}}}"])
    summary = run_eval_inpaint(config)
    run = tmp_path / "eval"
    table = (run / "inpainting_table.md").read_text()
    assert "| L2 |" in table and "| telea |" in table and "central hole only" in table
    with (run / "inpainting_table.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    hole = {(r["method"], r["mask"]): r for r in rows if r["region"] == "hole"}
    assert float(hole[("L2", "central")]["images"]) == 3
    assert hole[("L2", "random_block")]["l1_percent"] == ""  # the centre model has no block answer
    assert 0 < float(hole[("mean_fill", "random_region")]["l2_percent"]) < 100
    grid = Image.open(run / "inpainting_grid.png")
    assert grid.size[0] > 3 * 256  # masked input | L2 | original, at 2x
    assert (run / "record.json").is_file() and summary["files"]["grid_all"].is_file()
