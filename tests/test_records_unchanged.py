"""The bench's records for a fixed tiny config are what they were when the golden file was written.

Every pretext method that trains an AlexNet and every probe family run in ``tests/configs/bench_golden.yaml``;
their records, less when/where/how fast they ran, must equal ``tests/golden/bench_golden_records.json``. A
change that is meant to change results rewrites that file (``python tests/records_golden.py
<output_dir>/bench-golden``) in the same commit, and bumps ``ssl_ctx.__version__``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from records_golden import GOLDEN, compare, normalised_records

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_records_equal_the_golden_ones(real_data, tmp_path):
    result = subprocess.run([sys.executable, "-m", "ssl_ctx", "bench", "tests/configs/bench_golden.yaml",
                             f"output_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    actual = normalised_records(tmp_path / "bench-golden")
    expected = json.loads(GOLDEN.read_text())
    assert sorted(actual) == sorted(expected)
    problems = compare(actual, expected)
    assert not problems, "records changed:\n" + "\n".join(problems[:20])


def test_the_comparison_catches_a_changed_value():
    expected = {"cell": {"metrics": {"top1": 0.25, "steps": 2}, "settings": {"optim.lr": 0.001}}}
    assert compare(json.loads(json.dumps(expected)), expected) == []
    assert compare({"cell": {"metrics": {"top1": 0.25 + 1e-4, "steps": 2}, "settings": {"optim.lr": 0.001}}},
                   expected) == ["/cell/metrics/top1: 0.2501 != 0.25"]
    assert compare({"cell": {"metrics": {"top1": 0.25}, "settings": {"optim.lr": 0.001}}}, expected) == \
        ["/cell/metrics/steps: missing"]
