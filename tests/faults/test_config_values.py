"""Fault class: impossible or mistyped config values, refused in one line when the config loads."""
from __future__ import annotations

import pytest

from ssl_ctx.config import load_config
from tests.faults.conftest import run_cli

PRETEXT = "tests/configs/pretext_tiny.yaml"


@pytest.mark.parametrize("override, line", [
    ("optim.lr=0", "optim.lr=0.0 is impossible; set to a positive number"),
    ("optim.lr=-2e-4", "optim.lr=-0.0002 is impossible; set to a positive number"),
    ("train.batch_size=0", "train.batch_size=0 is impossible; set to at least 1"),
    ("train.epochs=-1", "train.epochs=-1 is impossible; set to at least 1"),
    ("data.limit=0", "data.limit=0 is impossible; set to at least 1"),
    ("mask.max_area=1.5", "mask.max_area=1.5 is impossible; set to a number in (0, 1]"),
    ("probe.ridge_alphas=[1.0, -1]", "probe.ridge_alphas=[1.0, -1.0] is impossible; set each item to a positive"),
    ("mask.min_area=0.4", "mask.min_area=0.4 is above mask.max_area=0.3"),
    ("train.batch_size=abc", "train.batch_size must be int, got 'abc'"),
    # nan and inf are floats, just not ones a run can use
    ("optim.lr=nan", "optim.lr=nan is impossible (it must be finite and > 0); set to a positive number"),
    ("optim.lr=.nan", "optim.lr=nan is impossible (it must be finite and > 0); set to a positive number"),
    ("optim.lr=inf", "optim.lr=inf is impossible (it must be finite and > 0); set to a positive number"),
    ("optim.lr=-Infinity", "optim.lr=-inf is impossible (it must be finite and > 0); set to a positive number"),
    ("mask.max_area=inf", "mask.max_area=inf is impossible (it must be finite and in (0, 1]); set to a number in"),
    ("probe.ridge_alphas=[1.0, nan]", "probe.ridge_alphas=[1.0, nan] is impossible (each item must be finite and > 0)"),
    ("probe.detection_score_threshold=nan", "probe.detection_score_threshold=nan is impossible; set it to a finite "
                                            "number"),
])
def test_an_impossible_value_is_one_line_and_nothing_is_written(override, line, tmp_path, capsys):
    status, out, err = run_cli(capsys, "pretrain", PRETEXT, f"output_dir={tmp_path}", override)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith(f"ssl-ctx: error: {line}"), err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("text", ["2e-4", "2E-4", "0.0002", "2.0e-4"])
def test_exponent_floats_are_floats_on_the_command_line_and_in_yaml(text, tmp_path):
    assert load_config(None, [f"optim.lr={text}"]).optim.lr == 0.0002
    path = tmp_path / "c.yaml"
    path.write_text(f"optim:\n  lr: {text}\nprobe:\n  ridge_alphas: [1e-5, {text}]\ntrain:\n  max_steps: 1e3\n")
    config = load_config(path)
    assert config.optim.lr == 0.0002 and config.probe.ridge_alphas == [1e-5, 0.0002]
    assert config.train.max_steps == 1000 and isinstance(config.train.max_steps, int)


@pytest.mark.parametrize("content", ["", "\n# only a comment\n"])
def test_an_empty_config_file_is_an_error_not_a_default_run(content, tmp_path, capsys):
    path = tmp_path / "empty.yaml"
    path.write_text(content)
    status, out, err = run_cli(capsys, "pretrain", str(path), f"output_dir={tmp_path / 'runs'}")
    assert status == 2 and err.count("\n") == 1
    assert f"config file '{path}' is empty; start from a file in configs/" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("override, line", [
    # a number that is not on the list is a choice, not a typo: the list says which numbers there are
    ("model.encoder=alexnet65", "unknown encoder 'alexnet65'; known: alexnet128, alexnet227, alexnet32, alexnet64, "
                                "alexnet96, inpainting128"),
    ("model.encoder=alexnet", "unknown encoder 'alexnet'; known: alexnet128, alexnet227, alexnet32, alexnet64, "
                              "alexnet96, inpainting128"),  # equally near several: none is suggested
    ("method.name=contex_encoder", "unknown pretext method 'contex_encoder'; known: "),
    ("optim.name=sdg", "unknown optimizer (optim.name) 'sdg'; known: "),
    ("optim.name=zzz", "unknown optimizer (optim.name) 'zzz'; known: "),
])
def test_a_suggestion_is_made_only_for_a_clear_typo(override, line, tmp_path, capsys):
    status, out, err = run_cli(capsys, "pretrain", PRETEXT, f"output_dir={tmp_path}", override)
    assert status == 2 and err.count("\n") == 1 and err.startswith(f"ssl-ctx: error: {line}"), err
    suggested = {"method.name=contex_encoder": "context_encoder", "optim.name=sdg": "sgd"}.get(override)
    if suggested:
        assert err.endswith(f" (did you mean '{suggested}'?)\n")
    else:
        assert "did you mean" not in err
