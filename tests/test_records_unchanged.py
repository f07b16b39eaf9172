"""The bench's records for a fixed tiny config are what they were when the golden file was written.

Every pretext method that trains an AlexNet and every probe family run in ``tests/configs/bench_golden.yaml``;
their records, less when/where/how fast they ran, must equal ``tests/golden/bench_golden_records.json``: exactly,
but for the numbers a CPU computes, which ``records_golden.TOLERANCES`` lets differ by what two CPUs' kernels give.
A change that is meant to change results rewrites that file (``python tests/records_golden.py write
<output_dir>/bench-golden``) in the same commit, and bumps ``ssl_ctx.__version__``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from records_golden import CONFIG, GOLDEN, compare, normalised_records, tolerance_of

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_records_equal_the_golden_ones(real_data, tmp_path):
    result = subprocess.run([sys.executable, "-m", "ssl_ctx", "bench", CONFIG, f"output_dir={tmp_path}"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    actual = normalised_records(tmp_path / "bench-golden")
    expected = json.loads(GOLDEN.read_text())
    assert sorted(actual) == sorted(expected)
    problems = compare(actual, expected)
    assert not problems, "records changed:\n" + "\n".join(problems[:20])


def record(top1: float = 0.25, loss: float = 0.5, alpha: float = 10.0, map50: float = 1e-4) -> dict:
    return {"probe/ridge/m/seed0": {"metrics": {"top1@conv5": top1, "train_steps": 2.0},
                                    "probe": {"layers": {"conv5": {"alpha": alpha, "holdout_top1": {"1.0": 0.2}}}},
                                    "settings": {"optim.lr": 0.001}},
            "pretext/m/seed0": {"metrics": {"loss": loss}, "history": [{"step": 1, "loss": loss}]},
            "probe/detection/m/seed0": {"metrics": {"map50": map50, "loss": 3.9}}}


def test_the_comparison_allows_a_cpus_rounding_and_catches_a_change():
    expected = record()
    assert compare(json.loads(json.dumps(expected)), expected) == []
    assert compare(record(top1=0.25 + 0.004, loss=0.5 * (1 + 5.4e-7), map50=3e-4), expected) == []  # two CPUs apart
    assert compare(record(top1=0.31), expected) == [
        "/probe/ridge/m/seed0/metrics/top1@conv5: 0.31 != 0.25 (ridge scores)"]
    assert sorted(compare(record(loss=0.50005), expected)) == [
        "/pretext/m/seed0/history[0]/loss: 0.50005 != 0.5 (pretext losses)",
        "/pretext/m/seed0/metrics/loss: 0.50005 != 0.5 (pretext losses)"]
    assert compare(record(alpha=1.0), expected) == ["/probe/ridge/m/seed0/probe/layers/conv5/alpha: 1.0 != 10.0"]
    changed = record()
    del changed["probe/ridge/m/seed0"]["metrics"]["train_steps"]
    assert compare(changed, expected) == ["/probe/ridge/m/seed0/metrics/train_steps: missing"]


def test_every_computed_number_of_the_golden_records_has_a_tolerance_and_nothing_else_does():
    """The classes of records_golden.TOLERANCES cover the metrics and histories, and no setting or count."""
    golden = json.loads(GOLDEN.read_text())
    for cell, record_ in golden.items():
        for key, value in record_["metrics"].items():
            counted = key in ("train_steps", "eval_images", "train_images", "fit_pixels") or key.startswith("majority_")
            if isinstance(value, float):
                assert (tolerance_of(f"/{cell}/metrics/{key}") is None) == counted, (cell, key)
        for key in record_.get("settings", {}):
            assert tolerance_of(f"/{cell}/settings/{key}") is None, (cell, key)
