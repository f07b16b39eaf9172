"""Fault class: two processes writing one bench folder or one checkpoint."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from ssl_ctx.engine.checkpoint import load_checkpoint, save_checkpoint
from tests.faults.conftest import BENCH, ONE_SEED, run_cli
from tests.helpers import file_digests, leftovers

REPO = Path(__file__).resolve().parents[2]


def test_a_second_bench_on_a_running_folder_stops_at_once_naming_the_running_process(real_data, tmp_path, capsys):
    lock = tmp_path / "bench-tiny" / ".bench.lock"
    first = subprocess.Popen([sys.executable, "-m", "ssl_ctx", "bench", BENCH, f"output_dir={tmp_path}", ONE_SEED],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (lock.exists() and f"process {first.pid}" in lock.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    started = time.time()
    status, out, err = run_cli(capsys, "bench", BENCH, f"output_dir={tmp_path}", ONE_SEED)
    assert time.time() - started < 5, "the second bench must stop at once"
    assert first.poll() is None, "the first bench finished before the second one was tried"
    assert status == 2 and err.count("\n") == 1
    assert f"bench folder '{tmp_path / 'bench-tiny'}' is in use by process {first.pid} on " in err
    assert "ssl-ctx bench tests/configs/bench_tiny.yaml" in err  # the running command, to find it
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-2000:]
    assert "bench: 4 cells run, 0 already finished, 0 failed" in stdout  # the second bench ran nothing
    assert len(list((tmp_path / "bench-tiny").rglob("record.json"))) == 4


def test_a_lock_left_by_a_killed_bench_is_taken_over(bench_copy, capsys):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import os, signal, sys\n"
        "from ssl_ctx.files import exclusive_lock\n"
        f"with exclusive_lock({str(bench_copy / 'bench-tiny' / '.bench.lock')!r}, 'x', holder='killed bench'):\n"
        "    print('locked', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert holder.wait(timeout=60) == -signal.SIGKILL
    assert "killed bench" in (bench_copy / "bench-tiny" / ".bench.lock").read_text()
    before = file_digests(bench_copy / "bench-tiny" / "pretext")
    status, out, err = run_cli(capsys, "bench", BENCH, f"output_dir={bench_copy}", ONE_SEED)
    assert status == 0, err
    assert "bench: 0 cells run, 4 already finished, 0 failed" in out
    assert file_digests(bench_copy / "bench-tiny" / "pretext") == before


def test_two_writers_of_one_checkpoint_never_share_a_temporary_file(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    payloads = [{"model": {"w": torch.full((256, 256), float(writer))}, "writer": writer} for writer in range(4)]
    errors: list[BaseException] = []

    def write(payload):
        try:
            for _ in range(15):
                save_checkpoint(path, payload)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(payload,)) for payload in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    final = load_checkpoint(path)
    assert torch.equal(final["model"]["w"], torch.full((256, 256), float(final["writer"])))  # one whole writer
    assert not leftovers(tmp_path) and [p.name for p in path.parent.iterdir()] == ["last.pt"]
    assert os.path.getsize(path) > 256 * 256 * 4
