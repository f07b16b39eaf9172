"""A comparison made by hand (`pretrain` and `probe` run one by one, then `ssl-ctx table`) names its rows by the
method that trained each encoder, takes a random init as the baseline it is, and says when the rows' encoders
differ in architecture."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.conftest import run_cli

PRETEXT = "tests/configs/pretext_tiny.yaml"
PROBE = "tests/configs/probe_tiny.yaml"
CHECKPOINT = "checkpoints/last.pt"


def pretrain(capsys, runs: Path, name: str, *overrides: str) -> Path:
    status, _, err = run_cli(capsys, "pretrain", PRETEXT, f"output_dir={runs}", f"name={name}", *overrides)
    assert status == 0, err
    return runs / name / CHECKPOINT


def probe(capsys, runs: Path, name: str, init: str | Path) -> str:
    status, out, err = run_cli(capsys, "probe", PROBE, f"output_dir={runs}", f"name={name}", f"init={init}")
    assert status == 0, err
    return out


def table(capsys, runs: Path, *options: str) -> tuple[str, str]:
    status, out, err = run_cli(capsys, "table", str(runs), "--overwrite", *options)
    assert status == 0, err
    return out, err


def method_rows(markdown: str) -> list[str]:
    """The first cells of one probe table's rows (methods, and their Δ rows)."""
    section = markdown.split("### classification:tiny-imagenet-200")[1].split("\n\n")[2]
    return [line.split("|")[1].strip() for line in section.splitlines()[2:]]


@pytest.mark.slow
def test_hand_made_runs_are_named_by_method_against_random_init(real_data, tmp_path, capsys):
    runs = tmp_path / "lr"
    context_encoder = pretrain(capsys, runs, "ce")
    autoencoder = pretrain(capsys, runs, "ae", "method.name=autoencoder")
    probe(capsys, runs / "probes", "ce", context_encoder)
    probe(capsys, runs / "probes", "ae", autoencoder)
    out = probe(capsys, runs / "probes", "random", "random")
    assert "probe.init: random Gaussian init N(0, 0.02) of alexnet64 from the probe's model.*" in out

    # The probe config's own encoder (width 1, LRN) beside checkpoints of width 0.25 with BatchNorm: said so.
    markdown, err = table(capsys, runs)
    assert method_rows(markdown) == ["random_init", "autoencoder", "↳ Δ vs random_init", "context_encoder",
                                     "↳ Δ vs random_init"]
    assert "Encoders of different architectures (autoencoder: channels 24-64-96-96-64-64, norm batch, 0.15M" in markdown
    assert "random_init: channels 96-256-384-384-256-256, norm lrn, 2.31M parameters" in markdown
    assert "ssl-ctx: warning: Encoders of different architectures" in err
    assert "no Δ is shown" not in markdown

    # One option away, a random init of the checkpoints' own architecture: the note goes.
    probe(capsys, runs / "probes", "random", f"random:{context_encoder}")
    markdown, err = table(capsys, runs)
    assert method_rows(markdown)[0] == "random_init" and "different architectures" not in markdown + err

    # Two context encoders made with different settings are told apart by their runs' names.
    other = pretrain(capsys, runs, "ce-lr", "optim.lr=0.001")
    probe(capsys, runs / "probes", "ce-lr", other)
    markdown, _ = table(capsys, runs)
    assert [row for row in method_rows(markdown) if not row.startswith("↳")] == ["random_init", "autoencoder", "ce",
                                                                                  "ce-lr"]
    assert "| ce-lr |" in markdown.split("### pretext")[1]


def test_a_baseline_that_names_no_method_is_refused_with_the_names(bench_copy, capsys):
    status, out, err = run_cli(capsys, "table", str(bench_copy / "bench-tiny"), "--baseline", "random",
                               "-o", str(bench_copy / "tables"))
    assert status == 2 and not (bench_copy / "tables").exists()
    assert "--baseline 'random' is no method" in err and "(did you mean 'random_init'?)" in err
    assert err.count("\n") == 1
