"""Fault class: a bench re-run, or a table, that would mix results made with different settings."""
from __future__ import annotations

import json
import shutil

from ssl_ctx.settings import fingerprint, settings_hash
from tests.faults.conftest import BENCH, ONE_SEED, run_cli
from tests.helpers import file_digests


def test_rerun_with_changed_settings_refuses_in_one_line_and_changes_nothing(bench_copy, capsys):
    before = file_digests(bench_copy)
    status, out, err = run_cli(capsys, "bench", BENCH, f"output_dir={bench_copy}", ONE_SEED,
                               "bench.pretext_overrides={optim.lr: 0.001}")
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("ssl-ctx: error: bench folder")
    assert "first pretext / random_init / seed 0 (optim.lr 0.0002 -> 0.001)" in err
    assert "--replace-changed" in err
    assert file_digests(bench_copy) == before  # bench.yaml, records and checkpoints untouched


def test_replace_changed_moves_only_the_changed_cells_aside_and_recomputes_them(bench_copy, capsys):
    bench_dir = bench_copy / "bench-tiny"
    before = file_digests(bench_dir)
    status, out, err = run_cli(capsys, "bench", BENCH, f"output_dir={bench_copy}", ONE_SEED,
                               "bench.probe_overrides={probe.holdout_fraction: 0.2}", "--replace-changed")
    assert status == 0, err
    assert "bench: 2 cell(s) made with other settings (first tiny_linear / random_init / seed 0: " \
           "probe.holdout_fraction 0.1 -> 0.2)" in out
    assert "bench: 2 cells run, 2 already finished, 0 failed" in out
    (replaced,) = bench_copy.glob("bench-tiny.replaced-*")
    moved = file_digests(replaced)
    assert moved and all(before[path] == digest for path, digest in moved.items())  # nothing lost
    after = file_digests(bench_dir)
    pretext = [path for path in before if path.startswith("pretext/")]
    assert all(after[path] == before[path] for path in pretext)  # the pretext cells were not redone
    record = json.loads((bench_dir / "probe/tiny_linear/context_encoder/seed0/record.json").read_text())
    assert record["settings"]["probe.holdout_fraction"] == 0.2
    kept = list(bench_dir.glob("bench-*.yaml"))
    assert len(kept) == 1 and "the previous one is kept as" in out  # bench.yaml not silently overwritten


def _copy_as_seed(bench_dir, cell: str, seed: int, change) -> str:
    source = bench_dir / cell / "seed0" / "record.json"
    target = bench_dir / cell / f"seed{seed}" / "record.json"
    target.parent.mkdir(parents=True)
    record = json.loads(source.read_text())
    record["seed"] = record["config"]["train"]["seed"] = record["config"]["tags"]["seed"] = seed
    change(record)
    record["settings_hash"] = settings_hash(record["settings"])
    record["fingerprint"] = fingerprint(record["settings"], seed)
    target.write_text(json.dumps(record))
    return str(target)


def test_table_refuses_to_average_seeds_made_with_different_settings(bench_copy, capsys):
    bench_dir = bench_copy / "bench-tiny"

    def other_layer(record):
        record["settings"]["probe.layer"] = record["config"]["probe"]["layer"] = "conv4"

    odd = _copy_as_seed(bench_dir, "probe/tiny_linear/context_encoder", 1, other_layer)
    status, out, err = run_cli(capsys, "table", str(bench_dir), "-o", str(bench_copy / "tables"))
    assert status == 2 and err.count("\n") == 1
    assert "table cell probe / tiny_linear / context_encoder mixes records made with different settings " \
           "(probe.layer conv5 -> conv4)" in err
    assert odd in err and "context_encoder/seed0/record.json" in err
    assert not (bench_copy / "tables").exists()


def test_table_never_shows_two_tasks_metrics_in_one_probe_column(bench_copy, capsys):
    bench_dir = bench_copy / "bench-tiny"

    def segmentation(record):
        record["settings"]["probe.task"] = record["config"]["probe"]["task"] = "segmentation"
        record["config"]["tags"]["metric"] = "miou"
        record["metrics"] = {"miou": 0.5}

    _copy_as_seed(bench_dir, "probe/tiny_linear/random_init", 1, segmentation)
    status, out, err = run_cli(capsys, "table", str(bench_dir), "-o", str(bench_copy / "tables"))
    assert status == 2 and err.count("\n") == 1
    assert "probe 'tiny_linear' has records of classification (top1) and of segmentation (miou)" in err


def test_records_written_before_settings_were_stored_still_make_a_table(bench_copy, capsys):
    bench_dir = bench_copy / "bench-tiny"
    for path in bench_dir.rglob("record.json"):
        record = json.loads(path.read_text())
        for key in ("settings", "settings_hash", "fingerprint"):
            record.pop(key)
        path.write_text(json.dumps(record))
    shutil.rmtree(bench_dir / "tables")
    status, out, err = run_cli(capsys, "table", str(bench_dir))
    assert status == 0, err
    assert "| context_encoder |" in out
