"""Every probe config runs end to end on a few real images (slow: reads the archives in ../shared/data)."""
from pathlib import Path

import pytest

from ssl_ctx.cli import main
from ssl_ctx.config import load_config
from ssl_ctx.probes import run_probe
from ssl_ctx.probes.features import extraction_count
from ssl_ctx.results.records import read_record
from tests.test_probe_encoder_loading import save_pretext_checkpoint

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "probe"
QUICK = ["data.limit=16", "data.eval_limit=8", "train.epochs=1", "train.batch_size=8", "train.progress=false",
         "train.log_every=1", "train.device=cpu"]

PROBE_CONFIGS = {
    "classification_tiny_frozen.yaml": ("top1@conv1", "top1@conv5"),
    "classification_cifar_frozen.yaml": ("top1@conv1", "top1@conv5"),
    "localisation_tiny_frozen.yaml": ("map50@conv1", "corloc@conv5", "box_iou@conv3", "map@conv2"),
    "segmentation_camvid_frozen.yaml": ("miou", "pixel_accuracy"),
    "segmentation_facade_frozen.yaml": ("miou", "pixel_accuracy"),
    "classification_tiny_finetune.yaml": ("top1",),
    "detection_facade.yaml": ("map50", "map"),
    "segmentation_camvid.yaml": ("miou", "pixel_accuracy"),
    "segmentation_facade.yaml": ("miou", "pixel_accuracy"),
}


@pytest.mark.slow
@pytest.mark.parametrize("config_name", list(PROBE_CONFIGS))
def test_probe_runs_on_real_images(real_data, tmp_path, capsys, config_name):
    config = load_config(CONFIGS / config_name, [f"output_dir={tmp_path}", "name=e2e", *QUICK])
    metrics = run_probe(config)
    for name in PROBE_CONFIGS[config_name]:
        assert 0.0 <= metrics[name] <= 1.0, name
    record = read_record(tmp_path / "e2e" / "record.json")
    assert record["kind"] == "probe" and record["seed"] == 0
    assert record["metrics"][PROBE_CONFIGS[config_name][0]] == metrics[PROBE_CONFIGS[config_name][0]]
    assert record["probe"]["layer"] == config.probe.layer and "chance" in record
    printed = capsys.readouterr().out
    assert "probe result:" in printed and "layer=" in printed and f"kind={record['probe']['kind']}" in printed
    if record["probe"]["solver"] == "sgd":  # a trained head: its optimiser is part of the result
        assert "lr=" in printed and "epochs=" in printed
    assert "BatchNorm statistics recomputed" in record["probe"]["normalisation"]
    assert not (tmp_path / "e2e" / "checkpoints" / "last.pt").exists()  # the record is the result


@pytest.mark.slow
def test_probe_is_repeatable_on_the_cpu(real_data, tmp_path):
    overrides = [f"output_dir={tmp_path}", *QUICK]
    first = run_probe(load_config(CONFIGS / "segmentation_facade.yaml", [*overrides, "name=a"]))
    second = run_probe(load_config(CONFIGS / "segmentation_facade.yaml", [*overrides, "name=b"]))
    assert first["miou"] == second["miou"] and first["loss"] == second["loss"]


@pytest.mark.slow
def test_cli_probe_from_a_pretext_checkpoint_extracts_features_once(real_data, tmp_path, capsys):
    path, method = save_pretext_checkpoint(tmp_path, "model.encoder=alexnet64", "model.width=0.5",
                                           "model.norm=batch")
    before = extraction_count()
    code = main(["probe", str(CONFIGS / "classification_tiny_frozen.yaml"), f"init={path}",
                 f"output_dir={tmp_path}", "name=from-ckpt", *QUICK])
    assert code == 0 and extraction_count() == before + 2  # train and val, once each
    record = read_record(tmp_path / "from-ckpt" / "record.json")
    assert record["probe"]["init"] == str(path) and record["probe"]["features"]["extracted"] == ["train", "val"]
    # Cached beside the checkpoint's run; another setting (penalties) and another seed read them back.
    assert all(Path(f).parent == path.parent / "features" for f in record["probe"]["features"]["folders"].values())
    code = main(["probe", str(CONFIGS / "classification_tiny_frozen.yaml"), f"init={path}", f"output_dir={tmp_path}",
                 "name=again", "probe.ridge_alphas=[1.0]", "train.seed=3", *QUICK])
    assert code == 0 and extraction_count() == before + 2
    again = read_record(tmp_path / "again" / "record.json")
    assert again["probe"]["features"]["reused"] == ["train", "val"]
    assert all(layer["alpha"] == 1.0 for layer in again["probe"]["layers"].values())


def test_cli_refuses_a_checkpoint_of_another_architecture(tmp_path, capsys):
    path, _ = save_pretext_checkpoint(tmp_path)  # alexnet32
    code = main(["probe", str(CONFIGS / "classification_tiny_frozen.yaml"), f"init={path}",
                 f"output_dir={tmp_path}", "name=wrong"])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith("ssl-ctx: error: checkpoint") and "alexnet32" in error and "alexnet64" in error
