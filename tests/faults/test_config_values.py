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
