"""Shared by the fault tests: a finished one-seed tiny bench, made once per session and copied per test."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ssl_ctx.cli import main

BENCH = "tests/configs/bench_tiny.yaml"
ONE_SEED = "bench.seeds=[0]"


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """``ssl-ctx ARGV`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="session")
def finished_bench_dir(real_data_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output_dir of a finished ``bench_tiny`` run with one seed (4 cells); copy it before changing it."""
    output = tmp_path_factory.mktemp("finished-bench")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in real_data_env.items():
            patch.setenv(key, value)
        assert main(["bench", BENCH, f"output_dir={output}", ONE_SEED]) == 0
    return output


@pytest.fixture
def bench_copy(finished_bench_dir: Path, real_data: dict[str, str], tmp_path: Path) -> Path:
    """A private copy of the finished bench's output_dir (its folder is ``<copy>/bench-tiny``)."""
    copy = tmp_path / "runs"
    shutil.copytree(finished_bench_dir, copy)
    return copy


def the_line(stderr: str) -> str:
    """The one ``ssl-ctx: error|warning: ...`` line of ``stderr`` (progress bars and status lines aside)."""
    lines = [line for line in stderr.splitlines() if line.startswith("ssl-ctx: ")]
    assert len(lines) == 1, stderr
    return lines[0]
