"""Every verb has --help; bad input gives one line naming the bad value and the fix, with exit status 2."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ssl_ctx.cli import build_parser, main

VERBS = ["data prepare", "data scenes", "pretrain", "probe", "bench", "table", "list", "eval-inpaint", "inpaint"]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*verb.split(), "--help"])
    assert exit_info.value.code == 0
    assert "usage: ssl-ctx" in capsys.readouterr().out


def test_data_help_lists_its_actions(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["data", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "prepare" in out and "scenes" in out


def test_data_scenes_links_street_and_facade(real_data, tmp_path, capsys):
    target = tmp_path / "street-facade"
    assert main(["data", "scenes", str(target)]) == 0
    first, second = capsys.readouterr().out.strip().splitlines()
    folder, _, counts_text = first.partition(": ")
    assert folder == str(target) and second == f"train on it with data.dataset=imagefolder:{target}"
    counts = {part.split()[0]: int(part.split()[1]) for part in counts_text.split(", ")}
    assert sorted(counts) == ["test/facade", "test/street", "train/facade", "train/street"]
    assert counts["train/street"] == 367 and counts["train/facade"] == 303  # CamVid train, CMP facade train
    for class_folder, count in counts.items():
        links = list((target / class_folder).iterdir())
        assert len(links) == count > 0 and all(link.is_symlink() and link.resolve().is_file() for link in links)
    assert main(["data", "scenes", str(target)]) == 0  # idempotent: the finished folder is kept
    assert capsys.readouterr().out.splitlines()[0] == first


def one_line_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("ssl-ctx: error: ")
    return err


def test_unknown_config_key(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  batch_sise: 8\n")
    err = one_line_error(["pretrain", str(config)], capsys)
    assert "'train.batch_sise'" in err and "did you mean 'batch_size'" in err


def test_unknown_override_and_method(capsys):
    err = one_line_error(["pretrain", "configs/pretext/quick.yaml", "method.name=ctx_encoder"], capsys)
    assert "unknown pretext method 'ctx_encoder'" in err and "context_encoder" in err
    err = one_line_error(["pretrain", "configs/pretext/quick.yaml", "trian.epochs=2"], capsys)
    assert "did you mean 'train'" in err


def test_missing_config_file(capsys):
    err = one_line_error(["pretrain", "configs/pretext/nope.yaml"], capsys)
    assert "configs/pretext/nope.yaml" in err and "does not exist" in err


def test_missing_archive_names_the_file_and_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SSL_CTX_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SSL_CTX_CACHE", str(tmp_path / "cache"))
    err = one_line_error(["data", "prepare", "camvid"], capsys)
    assert "CamVid.tar.gz" in err and str(tmp_path / "data") in err


def test_unknown_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SSL_CTX_CACHE", str(tmp_path / "cache"))
    err = one_line_error(["data", "prepare", "imagenet"], capsys)
    assert "imagenet" in err and "tiny-imagenet-200" in err


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "ssl_ctx", "list"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "context_encoder" in result.stdout and "autoencoder" in result.stdout and "alexnet227" in result.stdout


def test_data_prepare_help_names_every_dataset(capsys):
    from ssl_ctx.data import dataset_names

    with pytest.raises(SystemExit):
        main(["data", "prepare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in dataset_names()) and "--workers" in text
