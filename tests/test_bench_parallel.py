"""The parallel bench: worker processes and submitit jobs write the sequential bench's records, each probe after its
pretext cell, and keep its failure, resume, time-limit and stop semantics."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from ssl_ctx.cli import main
from ssl_ctx.engine.checkpoint import load_checkpoint
from ssl_ctx.host import cpu_cores
from tests.helpers import leftovers

REPO = Path(__file__).resolve().parents[1]
BENCH = "tests/configs/bench_tiny.yaml"
ONE_SEED = "bench.seeds=[0]"  # 4 cells: 2 pretext cells, then a probe of each
LONG_PRETEXT = "bench.pretext_overrides={train.max_steps: 300, train.epochs: 100}"  # runs long enough to be stopped
TIMING = ("wall_time", "per_second")  # metrics that measure the machine, not the result


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["bench", BENCH, *argv])
    out, err = capsys.readouterr()
    return status, out, err


def records(bench_dir: Path) -> dict[str, dict]:
    return {str(path.parent.relative_to(bench_dir)): json.loads(path.read_text())
            for path in bench_dir.rglob("record.json")}


def assert_same_results(bench_dir: Path, reference_dir: Path) -> None:
    """Same cells, same settings hashes, and equal metrics (timings aside)."""
    ours, reference = records(bench_dir), records(reference_dir)
    assert sorted(ours) == sorted(reference)
    for cell, record in reference.items():
        assert ours[cell]["settings_hash"] == record["settings_hash"], cell
        metrics = {key: value for key, value in record["metrics"].items() if not any(t in key for t in TIMING)}
        assert {key: ours[cell]["metrics"][key] for key in metrics} == metrics, cell


def line_index(out: str, *words: str) -> int:
    return next(i for i, line in enumerate(out.splitlines()) if all(word in line for word in words))


@pytest.fixture(scope="module")
def sequential(real_data_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bench folder of a sequential one-seed run, with the torch threads a worker of two gets here: a cell's
    numbers depend on its thread count (bf16 sums on the CPU), not on where it runs."""
    output = tmp_path_factory.mktemp("sequential")
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cpu_cores() // 2))
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in real_data_env.items():
                patch.setenv(key, value)
            assert main(["bench", BENCH, f"output_dir={output}", ONE_SEED]) == 0
    finally:
        torch.set_num_threads(threads)
    return output / "bench-tiny"


@pytest.mark.slow
def test_two_workers_give_the_sequential_records_and_run_a_probe_after_its_pretext(sequential, real_data, tmp_path,
                                                                                  capsys):
    status, out, err = run_cli(capsys, f"output_dir={tmp_path}", ONE_SEED, "--workers", "2")
    assert status == 0, err
    assert "bench: 4 cells run, 0 already finished, 0 failed" in out and "| context_encoder |" in out
    bench_dir = tmp_path / "bench-tiny"
    assert_same_results(bench_dir, sequential)
    first_done = line_index(out, " done in ")
    assert line_index(out, "pretext / random_init", "started on worker") < first_done  # both pretext cells at once
    assert line_index(out, "pretext / context_encoder", "started on worker") < first_done
    for method in ("random_init", "context_encoder"):
        assert line_index(out, f"pretext / {method} / seed 0 done") < line_index(out, f"tiny_linear / {method}",
                                                                                 "started")
        pretext_record = bench_dir / "pretext" / method / "seed0" / "record.json"
        probe_started = bench_dir / "probe" / "tiny_linear" / method / "seed0" / "config.yaml"  # written first
        assert probe_started.stat().st_mtime_ns >= pretext_record.stat().st_mtime_ns
    assert (bench_dir / "logs" / "pretext.context_encoder.seed0.log").stat().st_size > 0


@pytest.mark.slow
def test_a_failed_pretext_cell_skips_its_probe_lets_the_others_finish_and_a_rerun_runs_only_those(real_data,
                                                                                                 tmp_path, capsys):
    bench_dir = tmp_path / "bench-tiny"
    blocker = bench_dir / "pretext" / "context_encoder" / "seed0" / "checkpoints"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the checkpoint folder goes")  # the cell fails at its first checkpoint
    status, out, err = run_cli(capsys, f"output_dir={tmp_path}", ONE_SEED, "--workers", "2")
    assert status == 3, err
    assert "bench: 2 cells run, 0 already finished, 1 failed, 1 not run (their pretext cell failed)" in out
    assert "pretext / context_encoder / seed 0 failed after" in out and "FileExistsError" in out
    assert "tiny_linear / context_encoder / seed 0 not run: its pretext cell failed" in out
    error = json.loads((blocker.parent / "error.json").read_text())
    assert error["cell"] == "pretext / context_encoder / seed 0" and "FileExistsError" in error["traceback"]
    assert not (bench_dir / "probe" / "tiny_linear" / "context_encoder").exists()
    finished = {path: path.stat().st_mtime_ns for path in bench_dir.rglob("record.json")}
    assert len(finished) == 2

    blocker.unlink()
    status, out, err = run_cli(capsys, f"output_dir={tmp_path}", ONE_SEED, "--workers", "2")
    assert status == 0, err
    assert "bench: 2 cells run, 2 already finished, 0 failed" in out
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in finished.items()), "a finished cell was redone"
    assert not (blocker.parent / "error.json").exists() and len(records(bench_dir)) == 4


@pytest.mark.slow
def test_submitit_local_jobs_give_the_sequential_records_and_a_rerun_skips_them(sequential, real_data, tmp_path,
                                                                                capsys):
    status, out, err = run_cli(capsys, f"output_dir={tmp_path}", ONE_SEED, "--launcher", "local", "--workers", "2")
    assert status == 0, err
    assert "bench: 4 cells run, 0 already finished, 0 failed" in out and "| context_encoder |" in out
    assert line_index(out, "pretext / context_encoder / seed 0 done") < line_index(out, "tiny_linear / context_encoder",
                                                                                   "started on job")
    bench_dir = tmp_path / "bench-tiny"
    assert_same_results(bench_dir, sequential)
    assert list((bench_dir / "submitit").glob("*_0_log.out"))  # submitit's logs in the bench folder
    assert (bench_dir / "tables" / "table.md").stat().st_size > 0

    status, out, err = run_cli(capsys, f"output_dir={tmp_path}", ONE_SEED, "--launcher", "local",
                               "--slurm-group", "pretext")
    assert status == 0, err
    assert "bench: 0 cells run, 4 already finished, 0 failed" in out and "started" not in out


FAKE_SBATCH = """#!/bin/bash
# Test stand-in for SLURM's sbatch: keeps a copy of the job file and runs it in the background on this machine.
here=$(dirname "$0"); id=$(( $(cat "$here/last_id" 2>/dev/null || echo 100) + 1 )); echo $id > "$here/last_id"
cp "$1" "$here/job$id.sh"
(sleep 1; SLURM_JOB_ID=$id SLURM_NTASKS=1 SLURM_JOB_NUM_NODES=1 SLURM_NODEID=0 SLURM_JOB_NODELIST=localhost \\
 SLURM_PROCID=0 SLURM_LOCALID=0 bash "$here/job$id.sh") >/dev/null 2>&1 &
echo "Submitted batch job $id"
"""
FAKE_SRUN = """#!/bin/bash
# Test stand-in for srun: one task here, with srun's --output/--error files.
while [[ $1 == --* ]]; do
  case $1 in --output) out=$2; shift 2;; --error) err=$2; shift 2;; *) shift;; esac
done
out=${out//%j/$SLURM_JOB_ID}; err=${err//%j/$SLURM_JOB_ID}
exec "$@" >>"${out//%t/0}" 2>>"${err//%t/0}"
"""


@pytest.mark.slow
def test_slurm_jobs_per_method_and_seed_through_a_stand_in_sbatch(sequential, real_data, tmp_path, capsys,
                                                                   monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    status, out, err = run_cli(capsys, f"output_dir={tmp_path}", ONE_SEED, "--launcher", "slurm", "--slurm-group",
                               "pretext", "--slurm-partition", "debug", "--slurm-time-minutes", "30",
                               "--slurm-cpus-per-job", str(max(1, cpu_cores() // 2)))  # the reference's threads
    assert status == 0, err
    assert "pretext / context_encoder / seed 0 and its 1 probe cell(s) started on job 10" in out
    assert "bench: 4 cells run, 0 already finished, 0 failed" in out
    assert_same_results(tmp_path / "bench-tiny", sequential)
    job_file = (bin_dir / "job101.sh").read_text()
    assert "#SBATCH --partition=debug" in job_file and "#SBATCH --time=30" in job_file
    assert "#SBATCH --cpus-per-task=" in job_file
    assert "#SBATCH --job-name=bench-tiny.pretext." in job_file


@pytest.mark.slow
def test_stop_after_stops_running_workers_at_a_checkpoint_and_starts_nothing_after(real_data, tmp_path, capsys):
    status, out, err = run_cli(capsys, f"output_dir={tmp_path}", ONE_SEED, LONG_PRETEXT, "--workers", "2",
                               "--stop-after", "6")
    assert status == 3, err
    assert "bench: time limit reached: " in out and "run the same command again to continue" in out
    cell = tmp_path / "bench-tiny" / "pretext" / "context_encoder" / "seed0"
    assert "pretext / context_encoder / seed 0 stopped at the time limit" in out
    assert (cell / "checkpoints" / "last.pt").exists() and not (cell / "record.json").exists()
    assert not (cell / "error.json").exists()
    assert not (tmp_path / "bench-tiny" / "probe" / "tiny_linear" / "context_encoder").exists()
    assert not (tmp_path / "bench-tiny" / "tables").exists()


@pytest.mark.slow
def test_sigterm_stops_the_workers_and_leaves_whole_files(real_data, tmp_path):
    command = [sys.executable, "-m", "ssl_ctx", "bench", BENCH, f"output_dir={tmp_path}", ONE_SEED, LONG_PRETEXT,
               "--workers", "2"]
    bench = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "bench-tiny" / "pretext" / "context_encoder" / "seed0" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and bench.poll() is None:
        time.sleep(0.1)
    workers = [int(pid) for pid in Path(f"/proc/{bench.pid}/task/{bench.pid}/children").read_text().split()]
    assert workers, "the bench should be running its workers"
    bench.send_signal(signal.SIGTERM)
    out, err = bench.communicate(timeout=60)
    assert bench.returncode == 143, err[-2000:]  # 128 + SIGTERM
    assert "ssl-ctx: terminated (SIGTERM)" in err
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not leftovers(tmp_path)
    assert not (checkpoint.parents[1] / "record.json").exists()
    assert load_checkpoint(checkpoint)["trainer_state"]["step"] >= 2  # whole, so the next run resumes from it


@pytest.mark.parametrize(("options", "message"), [
    (["--workers", "0"], "--workers must be a number of worker processes (1 or more) or 'gpus', not '0'"),
    (["--workers", "gpus"], "--workers gpus found no GPU on this machine"),
    (["--launcher", "slurm"], "--launcher slurm needs SLURM's sbatch and srun on PATH, and sbatch is not there; "
                              "run the bench on a SLURM login node, or use --launcher local or --workers N here"),
    (["--slurm-partition", "gpu"], "--slurm-partition is an option of --launcher slurm"),
    (["--workers", "2", "--slurm-group", "pretext"], "--slurm-group needs --launcher slurm or --launcher local"),
])
def test_bad_parallel_options_are_one_line_before_anything_is_written(options, message, tmp_path, capsys,
                                                                       monkeypatch):
    if "gpus" in options and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sbatch
    status, out, err = run_cli(capsys, f"output_dir={tmp_path}", *options)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("ssl-ctx: error: ") and message in err
    assert not (tmp_path / "bench-tiny").exists()


@pytest.mark.slow
def test_the_quick_benchs_shape_compares_with_the_autoencoder_and_shares_features(real_data, tmp_path, capsys):
    status = main(["bench", "tests/configs/bench_compare.yaml", f"output_dir={tmp_path}"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "started on worker 2" in out  # bench.workers: 2, no --workers given
    bench_dir = tmp_path / "bench-compare"
    table = (bench_dir / "tables" / "table.md").read_text()
    for section in ("classification", "localisation", "classification_alone"):
        assert f"### {section}\n" in table
    assert table.count("| ↳ Δ vs autoencoder |") == 3
    csv = pd.read_csv(bench_dir / "tables" / "table.csv")
    versus = csv[(csv["method"] == "context_encoder") & (csv["baseline"] == "autoencoder")]
    assert sorted(versus["probe"].unique()) == ["classification", "classification_alone", "localisation"]
    assert len(versus) == 15 and list(versus[versus["probe"] == "localisation"]["metric"].unique()) == ["map50"]
    # The localisation probe's class read-out is the classification probe's: the same numbers in both sections.
    shown = csv.set_index(["probe", "method", "layer", "baseline"])["values"].fillna("")
    for method in ("context_encoder", "autoencoder", "random_init"):
        for layer in ("conv1", "conv5"):
            ours = shown.xs(("classification", method, layer), level=("probe", "method", "layer")).iloc[0]
            alone = shown.xs(("classification_alone", method, layer), level=("probe", "method", "layer")).iloc[0]
            assert ours == alone, (method, layer)
    for method in ("context_encoder", "autoencoder", "random_init"):
        for seed in (0, 1):
            # One extraction per encoder and split, whichever probe came first; the other read it.
            caches = [json.loads((bench_dir / "probe" / probe / method / f"seed{seed}" / "record.json").read_text())
                      ["probe"]["features"] for probe in ("classification_localisation", "classification_alone")]
            assert sorted(split for cache in caches for split in cache["extracted"]) == ["train", "val"]
            assert sorted(split for cache in caches for split in cache["reused"]) == ["train", "val"]
            assert not (bench_dir / "pretext" / method / f"seed{seed}" / "features").exists()
