"""The bench runner: resumable cells, failures recorded, and tables made from records."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssl_ctx.results.collect import collect_records
from ssl_ctx.results.stats import summarise
from ssl_ctx.results.tables import table_command

REPO = Path(__file__).resolve().parents[1]
BENCH = "tests/configs/bench_tiny.yaml"


def records(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("record.json")}


@pytest.mark.slow
def test_killed_bench_resumes_without_redoing_finished_cells(real_data, tmp_path):
    command = [sys.executable, "-m", "ssl_ctx", "bench", BENCH, f"output_dir={tmp_path}"]
    bench_dir = tmp_path / "bench-tiny"
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(records(bench_dir)) < 3 and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = records(bench_dir)
    assert 3 <= len(finished) < 8, "the bench should have been killed midway"

    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{len(finished)} already finished" in result.stdout
    after = records(bench_dir)
    assert len(after) == 8  # 2 methods x (pretext + 1 probe) x 2 seeds
    assert all(after[path] == mtime for path, mtime in finished.items()), "a finished cell was redone"
    table = (bench_dir / "tables" / "table.md").read_text()
    assert "| context_encoder |" in table and "| random_init |" in table
    assert "ssl-ctx bench tests/configs/bench_tiny.yaml" in table
    for name in ("table.csv", "table.tex", "figure.png"):
        assert (bench_dir / "tables" / name).stat().st_size > 0


def write_record(folder: Path, method: str, seed: int, top1: float) -> None:
    folder.mkdir(parents=True)
    record = {"kind": "probe", "seed": seed, "metrics": {"top1": top1, "loss": 1.0}, "wall_time_s": 1.0,
              "config": {"probe": {"task": "classification"}, "data": {"dataset": "x"},
                         "tags": {"method": method, "probe": "cls", "seed": seed}}}
    (folder / "record.json").write_text(json.dumps(record))


def test_table_is_mean_and_std_over_seeds_with_difference_from_random_init(tmp_path):
    for method, values in {"random_init": [0.10, 0.12], "context_encoder": [0.20, 0.26]}.items():
        for seed, value in enumerate(values):
            write_record(tmp_path / method / str(seed), method, seed, value)
    summary = summarise(collect_records(tmp_path))
    row = summary.set_index("method").loc["context_encoder"]
    assert row["mean"] == pytest.approx(0.23) and row["std"] == pytest.approx(0.0424264, rel=1e-4)
    assert row["delta"] == pytest.approx(0.12) and row["baseline"] == "random_init"
    assert summary.set_index("method").loc["random_init", "baseline"] == ""
    returned = table_command(tmp_path, paper=True)
    markdown = (tmp_path / "tables" / "table.md").read_text()
    assert "| context_encoder | 2 | 23.0 ± 4.2 |" in markdown and "| random_init | 2 | 11.0 ± 1.4 |" in markdown
    assert "| ↳ Δ vs random_init |  | +12.0 [" in markdown and "n.s." in markdown  # two seeds: a wide interval
    assert markdown.count("paper") >= 2
    assert returned.equals(summary)


def test_table_of_an_empty_folder_is_one_clear_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ssl_ctx", "table", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no probe records" in result.stderr


def test_progress_estimates_the_time_left_from_cells_of_the_same_kind():
    from ssl_ctx.bench.plan import Cell
    from ssl_ctx.bench.progress import BenchProgress

    plan = [Cell("ce", 0), Cell("ce", 0, "cls"), Cell("ce", 1), Cell("ce", 1, "cls"), Cell("ce", 2, "cls")]
    progress = BenchProgress(plan)
    assert "time left known after the first seed" in progress.before(1, plan[0])
    progress.after(plan[0], "done", 100.0)
    assert progress.remaining_seconds() is None  # the probe kind has not run yet: no guess
    progress.after(plan[1], "done", 10.0)
    assert progress.remaining_seconds() == 100.0 + 10.0 + 10.0
    progress.after(plan[2], "skipped", 0.0)  # a finished cell found on disk says nothing about durations
    assert progress.remaining_seconds() == 20.0
    assert "about 20 s left" in progress.before(4, plan[3])


def test_stop_after_exits_with_status_3_and_a_rerun_continues(tmp_path):
    command = [sys.executable, "-m", "ssl_ctx", "bench", BENCH, f"output_dir={tmp_path}", "--stop-after", "0"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "run the same command again to continue" in result.stdout
    assert not list(tmp_path.rglob("record.json"))
