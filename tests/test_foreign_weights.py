"""Weights trained elsewhere: a ResNet-18 saved by torchvision, by a Lightning/solo-learn trainer and by MoCo loads
into ``timm:resnet18`` with the same tensors, timm's pretrained weights come from the local cache only, and what
does not fit is refused in one line naming the keys."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ssl_ctx.cli import main
from ssl_ctx.errors import UserError
from ssl_ctx.models import encoder_spec
from ssl_ctx.models.foreign_weights import _wrapper_prefixes, flatten_tensors
from ssl_ctx.probes.encoder_loading import load_encoder
from ssl_ctx.results.records import read_record
from tests.test_probe_encoder_loading import assert_one_line
from tests.test_probe_end_to_end import CONFIGS, QUICK

pytestmark = pytest.mark.slow  # importing timm and torchvision's models takes seconds
RESNET = encoder_spec("timm:resnet18")


@pytest.fixture(scope="module")
def torchvision_resnet() -> torch.nn.Module:
    import torchvision

    torch.manual_seed(5)
    model = torchvision.models.resnet18(weights=None)
    with torch.no_grad():  # running statistics unlike a fresh model's, so that loading them is checked too
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def solo_learn_checkpoint(state: dict) -> dict:
    """As PyTorch Lightning saves a solo-learn method: the backbone beside a projector, a momentum copy and an
    online classifier, under ``state_dict``, with the trainer's bookkeeping around it."""
    body = {k: v for k, v in state.items() if not k.startswith("fc.")}
    return {"epoch": 99, "global_step": 1000, "pytorch-lightning_version": "2.1.0",
            "state_dict": {**{f"backbone.{k}": v for k, v in body.items()},
                           **{f"momentum_backbone.{k}": torch.zeros_like(v) for k, v in body.items()},
                           "projector.0.weight": torch.ones(2048, 512), "classifier.weight": torch.ones(1000, 512),
                           "classifier.bias": torch.zeros(1000)},
            "hyper_parameters": {"method": "byol", "lr": 1.0}}


def moco_checkpoint(state: dict) -> dict:
    """As MoCo's main_moco.py saves: the query and key encoders under DistributedDataParallel's ``module.``."""
    return {"epoch": 200, "arch": "resnet18",
            "state_dict": {**{f"module.encoder_q.{k}": v for k, v in state.items()},
                           **{f"module.encoder_k.{k}": torch.zeros_like(v) for k, v in state.items()},
                           "module.queue": torch.zeros(128, 65536)}}


def foreign_files(tmp_path: Path, model: torch.nn.Module) -> dict[str, Path]:
    state = model.state_dict()
    files = {"torchvision": tmp_path / "resnet18.pth", "solo-learn": tmp_path / "byol.ckpt",
             "moco": tmp_path / "moco.pth.tar", "safetensors": tmp_path / "resnet18.safetensors"}
    torch.save(state, files["torchvision"])
    torch.save(solo_learn_checkpoint(state), files["solo-learn"])
    torch.save(moco_checkpoint(state), files["moco"])
    save_file({k: v.contiguous() for k, v in state.items()}, str(files["safetensors"]))
    return files


def torchvision_layer4(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    x = model.maxpool(model.relu(model.bn1(model.conv1(images))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


def test_wrapper_prefixes_are_leading_runs_of_wrapper_names():
    assert _wrapper_prefixes("state_dict.module.encoder_q.conv1.weight") == [
        "", "state_dict.", "state_dict.module.", "state_dict.module.encoder_q."]
    assert _wrapper_prefixes("momentum_backbone.conv1.weight") == [""]  # the other network is never taken
    assert list(flatten_tensors({"a": {"b": torch.ones(1)}, "n": 3, "l": [torch.ones(1)]})) == ["a.b"]


def test_every_trainers_layout_of_one_resnet_loads_the_same_tensors(tmp_path, torchvision_resnet, capsys):
    expected = {k: v for k, v in torchvision_resnet.state_dict().items() if not k.startswith("fc.")}
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = torchvision_layer4(torchvision_resnet, images)
    summaries = {}
    for name, path in foreign_files(tmp_path, torchvision_resnet).items():
        encoder = load_encoder(str(path), RESNET).eval()
        loaded = {k[len("model."):]: v for k, v in encoder.state_dict().items()}
        assert loaded.keys() == expected.keys(), name
        assert all(torch.equal(loaded[k], v) for k, v in expected.items()), name
        with torch.no_grad():
            torch.testing.assert_close(encoder(images)["layer4"], reference)
        summaries[name] = encoder.weights.description
        assert encoder.weights.method == path.name
    assert "120 tensors with no prefix (left out: 2 classifier tensor(s))" in summaries["torchvision"]
    assert "120 tensors under 'state_dict.backbone.' (left out: 123 other(s) outside the prefix)" in summaries["solo-learn"]
    assert "120 tensors under 'state_dict.module.encoder_q.'" in summaries["moco"]


def test_a_solo_learn_checkpoint_a_torchvision_and_a_moco_file_probe_alike(real_data, tmp_path, torchvision_resnet,
                                                                          capsys):
    metrics = {}
    for name, path in foreign_files(tmp_path, torchvision_resnet).items():
        if name == "safetensors":
            continue
        assert main(["probe", str(CONFIGS / "classification_tiny_frozen.yaml"), f"init={path}",
                     "model.encoder=timm:resnet18", "probe.layer=layer2+layer4", f"output_dir={tmp_path}",
                     f"name={name}", *QUICK]) == 0
        record = read_record(tmp_path / name / "record.json")
        metrics[name] = {k: v for k, v in record["metrics"].items() if k.startswith("top1@")}
        assert record["probe"]["method"] == path.name and "120 tensors" in record["probe"]["weights"]
    out = capsys.readouterr().out
    assert "probe.init: state dict" in out and "under 'state_dict.backbone.'" in out
    assert metrics["solo-learn"] == metrics["torchvision"] == metrics["moco"]


def test_keys_that_do_not_fit_are_named_in_one_line(tmp_path, torchvision_resnet):
    state = torchvision_resnet.state_dict()
    missing = {k: v for k, v in state.items() if not k.startswith("layer4.1.")}
    extra = {**state, "layer5.0.conv1.weight": torch.zeros(1)}
    shapes = {**state, "layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)}
    for case, content, words in (("missing", missing, ["missing 10", "layer4.1.conv1.weight"]),
                                 ("extra", extra, ["unexpected 1", "layer5.0.conv1.weight"]),
                                 ("shape", shapes, ["layer1.0.conv1.weight (64, 64, 1, 1) vs (64, 64, 3, 3)"])):
        path = tmp_path / f"{case}.pth"
        torch.save({"state_dict": {f"backbone.{k}": v for k, v in content.items()}}, path)
        with pytest.raises(UserError) as error:
            load_encoder(str(path), RESNET)
        message = assert_one_line(error)
        assert str(path) in message and "under 'state_dict.backbone.'" in message, message
        assert all(word in message for word in words), message


def test_a_file_of_another_network_names_both_namings(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save({"model": {"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}}, path)
    with pytest.raises(UserError) as error:
        load_encoder(str(path), RESNET)
    message = assert_one_line(error)
    assert "holds no tensor named like timm:resnet18's (e.g. conv1.weight" in message
    assert "model.blocks.0.attn.qkv.weight" in message and "model.encoder" in message


def test_timm_pretrained_weights_come_from_the_local_cache(tmp_path, torchvision_resnet, monkeypatch):
    from timm.models import get_pretrained_cfg

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as error:  # nothing cached: one line, no download attempted
        load_encoder("timm:resnet18.tv_in1k", RESNET)
    message = assert_one_line(error)
    assert "resnet18.tv_in1k are not in the local caches" in message and "probe.init=<file>" in message
    assert "probe.init=random model.encoder=timm:resnet18" in message
    cached = tmp_path / "torch" / "hub" / "checkpoints" / Path(get_pretrained_cfg("resnet18.tv_in1k").url).name
    cached.parent.mkdir(parents=True)
    torch.save(torchvision_resnet.state_dict(), cached)
    encoder = load_encoder("timm:resnet18.tv_in1k", RESNET)
    assert torch.equal(encoder.model.layer3[0].conv1.weight, torchvision_resnet.layer3[0].conv1.weight)
    assert encoder.weights.method == "timm_pretrained(resnet18.tv_in1k)"
    assert f"timm's pretrained weights resnet18.tv_in1k from '{cached}'" in encoder.weights.description


def test_an_exported_timm_encoder_loads_strictly_into_timm_and_torchvision(tmp_path):
    import timm
    import torchvision
    from safetensors.torch import load_file

    from ssl_ctx.export import export_encoder
    from tests.test_probe_encoder_loading import save_pretext_checkpoint

    path, method = save_pretext_checkpoint(tmp_path, "model.encoder=timm:resnet18")
    exported = export_encoder(path, tmp_path / "resnet18-ce.safetensors")
    tensors = load_file(exported)
    model = timm.create_model("resnet18", num_classes=0, pretrained=False)
    model.load_state_dict(tensors)  # strict
    torchvision_model = torchvision.models.resnet18(weights=None)
    result = torchvision_model.load_state_dict(tensors, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys
    images = torch.randn(2, 3, 64, 64)
    encoder = method.encoder.eval()
    with torch.no_grad():
        ours = encoder(images)["layer4"]
        torch.testing.assert_close(model.eval().forward_features(images), ours)
        torch.testing.assert_close(torchvision_layer4(torchvision_model.eval(), images), ours)
    reloaded = load_encoder(str(exported), None)  # and ssl-ctx reads its own file back
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), encoder.state_dict().values()))
