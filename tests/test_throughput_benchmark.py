"""benchmarks/throughput.py: interleaved paired timing, its statistics, and one small run on the real data."""
from __future__ import annotations

import importlib.util
import json
import math
import time
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


def load_script():
    """``benchmarks/`` is not a package: import the script from its file."""
    spec = importlib.util.spec_from_file_location("throughput_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


throughput = load_script()


def sleeping_step(name: str, seconds: float, calls: list[tuple[str, int]]):
    def step(number: int) -> torch.Tensor:
        calls.append((name, number))
        time.sleep(seconds)
        return torch.zeros(())

    return step


def test_interleaved_pairs_alternate_and_give_the_step_time_ratio():
    calls: list[tuple[str, int]] = []
    timings = throughput.interleaved(sleeping_step("F", 0.010, calls), sleeping_step("R", 0.020, calls), 7,
                                     torch.device("cpu"), first=3)
    assert [name for name, _ in calls] == ["F", "R", "R", "F"] * 3 + ["F", "R"]
    assert [number for _, number in calls] == [pair for pair in range(3, 10) for _ in range(2)]
    assert len(timings["ratios"]) == 7
    assert len(timings["fast"]["step_s"]) == len(timings["reference"]["step_s"]) == 7
    assert timings["ratios"] == [r / f for f, r in zip(timings["fast"]["step_s"], timings["reference"]["step_s"])]
    assert 1.6 <= throughput.paired_summary(timings, batch_size=4)["speedup"] <= 2.5
    assert timings["fast"]["mean_loss"] == timings["reference"]["mean_loss"] == 0.0


def test_a_non_finite_loss_stops_the_benchmark():
    def diverged(number: int) -> torch.Tensor:
        return torch.tensor(float("nan"))

    with pytest.raises(RuntimeError, match="reference path's loss became non-finite"):
        throughput.interleaved(lambda number: torch.zeros(()), diverged, 2, torch.device("cpu"))


def test_paired_summary_is_the_median_ratio_with_its_quartiles_and_median_steps():
    fast, reference = [0.25, 0.25, 0.25, 0.25], [2.0, 0.25, 1.0, 0.5]
    timings = {"fast": {"step_s": fast}, "reference": {"step_s": reference},
               "ratios": [r / f for f, r in zip(fast, reference)]}  # 8, 1, 4, 2
    summary = throughput.paired_summary(timings, batch_size=3)
    assert summary["speedup"] == 3.0 and summary["speedup_iqr"] == [1.75, 5.0] and summary["pairs"] == 4
    assert summary["fast"] == {"images_per_s": 12.0, "step_time_ms": 250.0}
    assert summary["reference"] == {"images_per_s": 4.0, "step_time_ms": 750.0}
    one = throughput.paired_summary({"fast": {"step_s": [0.5]}, "reference": {"step_s": [1.0]}, "ratios": [2.0]}, 1)
    assert one["speedup"] == 2.0 and one["speedup_iqr"] == [2.0, 2.0] and one["pairs"] == 1


@pytest.mark.slow
def test_a_small_run_on_real_images_writes_the_paired_ratios_and_the_load(real_data, tmp_path):
    args = ["--sizes", "32", "--batch-size", "4", "--steps", "3", "--warmup", "1", "--limit", "64",
            "--num-workers", "0", "--device", "cpu", "--output", str(tmp_path / "t.json"),
            "--markdown", str(tmp_path / "t.md")]
    assert throughput.main(args) == 0
    report = json.loads((tmp_path / "t.json").read_text())
    assert len(report["load_average_before"]) == len(report["load_average_after"]) == 3
    assert report["cpu_count"] >= report["cpus_usable"] >= 1 and report["torch_threads"] >= 1 and report["cpu"]
    (entry,) = report["results"]
    assert entry["pairs"] == len(entry["ratios"]) == 3
    assert len(entry["fast"]["step_times_ms"]) == len(entry["reference"]["step_times_ms"]) == 3
    low, high = entry["speedup_iqr"]
    assert math.isfinite(entry["speedup"]) and 0 < low <= entry["speedup"] <= high
    assert entry["fast"]["peak_memory_mib"] > 0 and entry["reference"]["peak_memory_mib"] > 0
    markdown = (tmp_path / "t.md").read_text()
    assert f"Command: `python benchmarks/throughput.py {' '.join(args)}`" in markdown
    assert "median of 3 paired ratios" in markdown and "load average" in markdown
    assert f"**{entry['speedup']:.2f}x** (IQR {low:.2f}–{high:.2f})" in markdown


def test_the_cpu_peak_follows_the_widest_bf16_instructions():
    cpu_peak_tflops = throughput.cpu_peak_tflops
    zen4 = "model name\t: AMD EPYC\ncpu MHz\t\t: 2600.000\nflags\t\t: fpu avx512f avx512_bf16\n"
    peak, basis = cpu_peak_tflops(zen4, threads=2)
    assert peak == pytest.approx(2 * 2.6 * 64 / 1000) and "avx512_bf16" in basis and "2 cores x 2.60 GHz" in basis
    xeon = zen4.replace("avx512_bf16", "avx512_bf16 amx_bf16 amx_tile")
    assert cpu_peak_tflops(xeon, threads=2)[0] == pytest.approx(2 * 2.6 * 1024 / 1000)
    assert cpu_peak_tflops(zen4.replace(" avx512_bf16", ""), threads=2)[0] is None
