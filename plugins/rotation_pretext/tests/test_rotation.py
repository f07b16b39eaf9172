"""The example plug-in: registered through its entry point, trains, and runs through `ssl-ctx bench`."""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points, version
from pathlib import Path

import pytest
import torch

from ssl_ctx.config import load_config
from ssl_ctx.pretext import DataInfo
from ssl_ctx.registry import PRETEXT_METHODS
from ssl_ctx.testing import check_pretext_method

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
installed = any(ep.name == "rotation" for ep in entry_points(group="ssl_ctx.pretext_methods"))
needs_install = pytest.mark.skipif(not installed, reason="plug-in not installed: pip install -e plugins/rotation_pretext")


@needs_install
def test_entry_point_registers_rotation_and_list_shows_it():
    assert "rotation" in PRETEXT_METHODS.names()
    listing = subprocess.run([sys.executable, "-m", "ssl_ctx", "list"], capture_output=True, text=True, check=True)
    assert "rotation" in listing.stdout.splitlines()[0]


def test_rotation_learns_on_a_fixed_batch():
    import ssl_ctx_rotation  # noqa: F401  (registers the method even when not installed)

    config = load_config(None, ["model.encoder=alexnet32", "model.width=0.25", "model.norm=batch", "optim.lr=0.001"])
    method = PRETEXT_METHODS.get("rotation").from_config(config, DataInfo((32, 32)))
    images = torch.rand(16, 3, 32, 32) * 2 - 1
    optimizer = method.configure_optimizers(config.optim)
    first = last = None
    for step in range(30):
        losses = method.train_step({"image": images}, optimizer, step % 2)  # two fixed rotation draws
        first = first if first is not None else losses["loss"].item()
        last = losses["loss"].item()
    assert last < first * 0.7


def test_rotation_keeps_the_method_contract(tmp_path):
    import ssl_ctx_rotation  # noqa: F401  (registers the method even when not installed)

    metrics = check_pretext_method("rotation", tmp_path)
    assert {"loss", "accuracy", "eval_loss", "eval_accuracy"} <= set(metrics)


@needs_install
def test_rotation_version_is_in_the_settings_and_packages(tmp_path):
    from ssl_ctx.results.records import read_record, write_record

    config = load_config(None, [f"output_dir={tmp_path}", "name=run", "method.name=rotation"])
    record = read_record(write_record(config.run_dir, "pretext", {}, config, 1.0, "cpu"))
    installed_version = version("ssl-ctx-rotation")
    assert record["settings"]["code.ssl-ctx-rotation"] == record["packages"]["ssl-ctx-rotation"] == installed_version


@needs_install
@pytest.mark.slow
def test_rotation_runs_through_bench(real_data, tmp_path):
    command = [sys.executable, "-m", "ssl_ctx", "bench", str(HERE / "bench_rotation.yaml"), f"output_dir={tmp_path}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "bench-rotation" / "pretext" / "rotation" / "seed0" / "record.json").exists()
    assert "rotation" in (tmp_path / "bench-rotation" / "tables" / "table.md").read_text()
