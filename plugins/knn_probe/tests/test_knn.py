"""The example probe plug-in: registered through its entry point, classifies by its neighbours, runs in a bench."""
from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points, version
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_ctx.config import ProbeConfig
from ssl_ctx.errors import UserError
from ssl_ctx.probes.common import resolve_solver
from ssl_ctx.registry import PROBES

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
installed = any(ep.name == "knn" for ep in entry_points(group="ssl_ctx.probes"))
needs_install = pytest.mark.skipif(not installed, reason="plug-in not installed: pip install -e plugins/knn_probe")


@needs_install
def test_entry_point_registers_knn_and_list_shows_it():
    assert "knn" in PROBES.names()
    listing = subprocess.run([sys.executable, "-m", "ssl_ctx", "list"], capture_output=True, text=True, check=True)
    assert "knn" in next(line for line in listing.stdout.splitlines() if line.startswith("probes:"))


def test_neighbours_vote_with_their_similarity():
    from ssl_ctx_knn import knn_predict

    # One class-0 image among four class-1 images that are almost as similar to the first query.
    train = torch.tensor([[1.0, 0.0], [0.98, 0.2], [0.97, 0.24], [0.96, 0.28], [0.95, 0.31], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 1, 1, 0])
    queries = torch.tensor([[1.0, 0.01], [0.9, 0.3], [-1.0, 0.1]])
    predicted = knn_predict(train, labels, queries, num_classes=2, ks=(1, 5))
    assert predicted[1].tolist() == [0, 1, 0]
    assert predicted[5].tolist() == [1, 1, 0]  # four near votes outweigh the nearest; far ones count for little


def test_k_is_chosen_on_the_held_out_rows():
    from ssl_ctx_knn import knn_classifier

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    centres = rng.normal(size=(4, 16)) * 3
    train = centres[labels] + rng.normal(size=(len(labels), 16))
    evaluation = centres[np.arange(4).repeat(5)] + rng.normal(size=(20, 16))
    holdout = np.zeros(len(labels), dtype=bool)
    holdout[::5] = True
    predicted, fit = knn_classifier("conv5", train, labels, evaluation, 4, holdout)
    assert (predicted == np.arange(4).repeat(5)).mean() >= 0.9
    assert fit["k"] in (1, 5, 10, 20, 50) and fit["holdout_top1"][str(fit["k"])] == max(fit["holdout_top1"].values())


def test_knn_reads_frozen_features_only():
    import ssl_ctx_knn  # noqa: F401  (registers the probe even when not installed)

    assert resolve_solver(ProbeConfig(task="knn")) == "knn"
    with pytest.raises(UserError, match="frozen features only; set probe.mode=linear"):
        resolve_solver(ProbeConfig(task="knn", mode="finetune"))
    with pytest.raises(UserError, match="known: auto, knn"):
        resolve_solver(ProbeConfig(task="knn", solver="sgd"))


@needs_install
def test_knn_version_is_in_a_probe_records_settings_only(tmp_path):
    from ssl_ctx.config import config_to_dict, load_config
    from ssl_ctx.settings import settings_of

    knn = config_to_dict(load_config(None, ["probe.task=knn", "probe.init=random"]))
    assert settings_of(knn, kind="probe")["code.ssl-ctx-knn"] == version("ssl-ctx-knn")
    assert "code.ssl-ctx-knn" not in settings_of(knn, kind="pretext")  # a pretext run does not run its probe
    ridge = config_to_dict(load_config(None, ["probe.task=classification"]))
    assert not [key for key in settings_of(ridge, kind="probe") if key.startswith("code.ssl-ctx-")]


@needs_install
@pytest.mark.slow
def test_knn_runs_through_bench_beside_the_ridge_probe(real_data, tmp_path):
    command = [sys.executable, "-m", "ssl_ctx", "bench", str(HERE / "bench_knn.yaml"), f"output_dir={tmp_path}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "bench-knn" / "probe" / "knn" / "context_encoder" / "seed0" /
                         "record.json").read_text())
    assert record["probe"]["solver"] == "knn" and record["probe"]["kind"] == "frozen"
    assert set(record["metrics"]) >= {"top1@conv3", "top1@conv5"}
    assert record["probe"]["layers"]["conv5"]["k"] in (1, 5, 10, 20, 50)
    assert "weighted k-NN" in record["probe"]["protocol"]
    table = (tmp_path / "bench-knn" / "tables" / "table.md").read_text()
    assert "### knn" in table and "### ridge" in table
