"""Weights that travel: `ssl-ctx export` writes safetensors with build options and feature maps; probe.init takes
that file and bare state dicts (ssl_ctx's names or torchvision's AlexNet layout) where the shapes fit."""
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ssl_ctx.cli import main
from ssl_ctx.errors import UserError
from ssl_ctx.encoder_file import ENCODER_FORMAT
from ssl_ctx.export import export_encoder
from ssl_ctx.models import EncoderSpec, build_encoder, gaussian_init_
from ssl_ctx.models.alexnet import TORCHVISION_ALEXNET_CONVS
from ssl_ctx.probes.encoder_loading import load_encoder
from ssl_ctx.results.records import read_record
from ssl_ctx.settings import upstream_of
from tests.test_probe_encoder_loading import assert_one_line, save_pretext_checkpoint
from tests.test_probe_end_to_end import CONFIGS, QUICK

PAPER_ALEXNET = {"norm": "lrn", "width": 1.0, "groups": 2}  # alexnet227 as the probe's default model.* build it


def assert_same_weights(encoder: torch.nn.Module, expected: torch.nn.Module) -> None:
    loaded, reference = encoder.state_dict(), expected.state_dict()
    assert list(loaded) == list(reference)
    for name, value in reference.items():
        assert torch.equal(loaded[name], value), name


def torchvision_layout(encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """An ssl_ctx AlexNet's weights under torchvision's names, with a classifier as torchvision's model has."""
    ours_to_theirs = {new: old for old, new in TORCHVISION_ALEXNET_CONVS.items()}
    state = {}
    for key, value in encoder.state_dict().items():
        prefix = next(p for p in ours_to_theirs if key.startswith(p))
        state[ours_to_theirs[prefix] + key[len(prefix):]] = value.clone()
    state["classifier.1.weight"] = torch.zeros(4096, 9216)
    return state


def test_cli_export_writes_the_encoder_its_options_and_feature_maps(tmp_path, capsys):
    path, method = save_pretext_checkpoint(tmp_path, "model.norm=batch", "model.width=0.5")
    assert main(["export", str(path)]) == 0
    output = path.parent / "encoder.safetensors"  # beside a checkpoint outside a checkpoints/ folder
    assert f"wrote {output}: encoder channels 48-128-192-192-128-128, norm batch" in capsys.readouterr().out
    tensors = load_file(output)
    assert sorted(tensors) == sorted(method.encoder.state_dict())  # the encoder only: no decoder, no bottleneck
    with safe_open(str(output), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["format"] == ENCODER_FORMAT and metadata["encoder"] == "alexnet32"
    assert json.loads(metadata["encoder_options"]) == {"norm": "batch", "width": 0.5, "groups": 2}
    assert json.loads(metadata["feature_info"]) == method.encoder.feature_info
    assert json.loads(metadata["input"])["size"] == 32 and json.loads(metadata["source"])["step"] == 10
    # The file's options win over the probe's, as a checkpoint's do.
    probes_own = EncoderSpec("alexnet32", dict(norm="lrn", width=1.0))  # ignored: the file carries its spec
    assert_same_weights(load_encoder(str(output), probes_own), method.encoder)


def test_an_exported_encoder_of_another_architecture_is_refused_in_one_line(tmp_path):
    path, _ = save_pretext_checkpoint(tmp_path)
    output = export_encoder(path, tmp_path / "e.safetensors")
    with pytest.raises(UserError) as error:
        load_encoder(str(output), EncoderSpec("alexnet64"))
    message = assert_one_line(error)
    assert str(output) in message and "'alexnet32'" in message and "'alexnet64'" in message


def test_export_keeps_the_tie_to_its_pretext_run(tmp_path):
    path, _ = save_pretext_checkpoint(tmp_path)
    run = tmp_path / "runs" / "ce"
    (run / "checkpoints").mkdir(parents=True)
    checkpoint = path.rename(run / "checkpoints" / "last.pt")
    (run / "record.json").write_text(json.dumps({"settings_hash": "0123abcd"}))
    output = export_encoder(checkpoint)
    assert output == run / "encoder.safetensors"
    assert upstream_of(str(output)) == upstream_of(str(checkpoint)) == "0123abcd"


def test_export_refuses_what_is_not_a_pretext_checkpoint_in_one_line(tmp_path, capsys):
    foreign = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(2)}, foreign)
    assert main(["export", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not an ssl_ctx checkpoint" in err
    path, _ = save_pretext_checkpoint(tmp_path)
    assert main(["export", str(path), "-o", str(tmp_path / "encoder.pt")]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_torchvision_layout_alexnet_state_dict_loads_where_the_shapes_fit(tmp_path, suffix):
    torch.manual_seed(3)
    reference = gaussian_init_(build_encoder("alexnet227", **PAPER_ALEXNET))
    path = tmp_path / f"caffenet{suffix}"
    state = torchvision_layout(reference)
    if suffix == ".pth":
        torch.save({"state_dict": {f"module.{key}": value for key, value in state.items()}}, path)
    else:
        save_file(state, str(path))
    encoder = load_encoder(str(path), EncoderSpec("alexnet227", PAPER_ALEXNET))
    assert_same_weights(encoder, reference)
    images = torch.randn(2, 3, 227, 227)
    with torch.no_grad():
        assert torch.equal(encoder.eval()(images)["pool5"], reference.eval()(images)["pool5"])


def test_torchvisions_own_alexnet_is_refused_naming_the_layer_and_both_shapes(tmp_path):
    import torchvision

    path = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    with pytest.raises(UserError) as error:
        load_encoder(str(path), EncoderSpec("alexnet227", PAPER_ALEXNET))
    message = assert_one_line(error)
    assert str(path) in message and "in torchvision AlexNet names" in message
    assert "conv1.conv.weight (64, 3, 11, 11) vs (96, 3, 11, 11)" in message and "model.groups" in message


def test_a_file_that_is_no_state_dict_is_refused_in_one_line(tmp_path):
    path = tmp_path / "notes.pt"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(UserError) as error:
        load_encoder(str(path), EncoderSpec("alexnet227"))
    assert "neither an ssl_ctx checkpoint nor a state dict" in assert_one_line(error)


@pytest.mark.slow
def test_a_probe_of_the_exported_encoder_matches_the_probe_of_its_checkpoint(real_data, tmp_path, capsys):
    path, _ = save_pretext_checkpoint(tmp_path, "model.encoder=alexnet64", "model.width=0.5")
    exported = export_encoder(path)
    metrics = {}
    for name, init in (("from-ckpt", path), ("from-export", exported)):
        assert main(["probe", str(CONFIGS / "classification_tiny_frozen.yaml"), f"init={init}",
                     f"output_dir={tmp_path}", f"name={name}", *QUICK]) == 0
        metrics[name] = read_record(tmp_path / name / "record.json")["metrics"]
    assert metrics["from-export"]["top1@conv5"] == metrics["from-ckpt"]["top1@conv5"]
    assert metrics["from-export"]["top1@conv1"] == metrics["from-ckpt"]["top1@conv1"]
    assert Path(exported).name == "encoder.safetensors"


def readme_block(marker: str) -> str:
    """The README's ```python block whose first line holds ``marker``."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]
    return next(block for block in blocks if marker in block.splitlines()[0])


def test_the_readmes_way_to_load_an_exported_alexnet_gives_the_pretext_encoder(tmp_path):
    path, method = save_pretext_checkpoint(tmp_path, "model.norm=batch", "model.width=0.5")
    exported = export_encoder(path)
    code = readme_block("public builder").replace("runs/pretext-quick/encoder.safetensors", str(exported))
    images = torch.randn(2, 3, 32, 32)
    namespace = {"images": images}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    assert_same_weights(namespace["encoder"], method.encoder)
    with torch.no_grad():
        expected = method.encoder.eval()(images)["conv5"]
        assert torch.equal(namespace["encoder"].eval()(images)["conv5"], expected)
