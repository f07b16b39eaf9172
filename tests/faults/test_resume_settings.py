"""Fault class: `--resume` with settings other than the checkpoint's."""
from __future__ import annotations

import json

from tests.faults.conftest import run_cli, the_line
from tests.helpers import file_digests

PRETEXT = "tests/configs/pretext_tiny.yaml"


def test_resume_with_another_learning_rate_is_refused_and_changes_nothing(real_data, tmp_path, capsys):
    run = [PRETEXT, f"output_dir={tmp_path}", "name=run", "train.max_steps=2"]
    assert run_cli(capsys, "pretrain", *run)[0] == 0
    before = file_digests(tmp_path)
    status, out, err = run_cli(capsys, "pretrain", *run, "optim.lr=0.001", "--resume")
    assert status == 2 and the_line(err).startswith("ssl-ctx: error: ")
    assert f"cannot resume '{tmp_path / 'run'}' with other settings: it was trained with optim.lr 0.0002 -> 0.001; " \
           "resume with its settings, or pass --allow-change optim.lr" in err
    assert file_digests(tmp_path) == before  # checkpoint, config.yaml, record and logs untouched


def test_an_allowed_change_continues_and_the_record_states_it(real_data, tmp_path, capsys):
    run = [PRETEXT, f"output_dir={tmp_path}", "name=run"]
    assert run_cli(capsys, "pretrain", *run, "train.max_steps=2")[0] == 0
    status, out, err = run_cli(capsys, "pretrain", *run, "train.max_steps=4", "--resume",
                               "--allow-change", "train.max_steps")
    assert status == 0, err
    assert "with train.max_steps 2 -> 4 (allowed)" in out
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["metrics"]["train_steps"] == 4.0  # the finished run trained on to its new length
    assert record["changes_on_resume"] == [{"step": 2, "key": "train.max_steps", "before": 2, "after": 4}]
    assert record["config"]["train"]["max_steps"] == 4 and record["settings"]["train.max_steps"] == 4
