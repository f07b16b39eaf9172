"""Fault class: a `record.json` that cannot be read (half-written by another tool, edited by hand, truncated)."""
from __future__ import annotations

import json

from tests.faults.conftest import BENCH, ONE_SEED, run_cli
from tests.helpers import file_digests

CORRUPT = b'{"kind": "probe", "metrics": {"top1": 0.'


def test_table_names_a_corrupt_record_skips_it_and_keeps_it(bench_copy, capsys):
    bench_dir = bench_copy / "bench-tiny"
    corrupt = bench_dir / "probe" / "tiny_linear" / "random_init" / "seed0" / "record.json"
    corrupt.write_bytes(CORRUPT)
    before = file_digests(bench_dir)
    status, out, err = run_cli(capsys, "table", str(bench_dir), "-o", str(bench_copy / "tables"))
    assert status == 0
    assert err.count("\n") == 1 and err.startswith(f"ssl-ctx: warning: skipping {corrupt}: not valid JSON (")
    assert "1 unreadable record.json skipped" in out
    assert "| context_encoder |" in out
    assert file_digests(bench_dir) == before  # the corrupt file is left as it was


def test_bench_keeps_a_corrupt_record_aside_and_runs_its_cell_again(bench_copy, capsys):
    bench_dir = bench_copy / "bench-tiny"
    corrupt = bench_dir / "pretext" / "context_encoder" / "seed0" / "record.json"
    corrupt.write_bytes(CORRUPT)
    status, out, err = run_cli(capsys, "bench", BENCH, f"output_dir={bench_copy}", ONE_SEED)
    assert status == 0, err
    assert f"ssl-ctx: warning: {corrupt} cannot be read (" in err and "kept as record.json.unreadable" in err
    assert (corrupt.parent / "record.json.unreadable").read_bytes() == CORRUPT  # nothing lost
    assert json.loads(corrupt.read_text())["kind"] == "pretext"  # the cell ran again
    assert "bench: 1 cells run, 3 already finished, 0 failed" in out
