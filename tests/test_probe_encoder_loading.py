"""Encoder loading for probes: random Gaussian, pretext checkpoints (exact weights), refusals in one line."""
import pytest
import torch

from ssl_ctx.config import config_to_dict
from ssl_ctx.engine.checkpoint import load_checkpoint, save_checkpoint
from ssl_ctx.errors import UserError
from ssl_ctx.pretext.base import DataInfo
from ssl_ctx.pretext.context_encoder import ContextEncoder
from ssl_ctx.models import EncoderSpec, encoder_spec
from ssl_ctx.probes.encoder_loading import encoder_state_dict, load_encoder
from tests.helpers import small_config


def save_pretext_checkpoint(tmp_path, *overrides: str):
    """A context encoder (alexnet32) saved as `ssl-ctx pretrain` saves it: metadata + config + state dict."""
    config = small_config(tmp_path, *overrides)
    torch.manual_seed(7)
    method = ContextEncoder.from_config(config, DataInfo((32, 32), (120.0, 110.0, 100.0)))
    with torch.no_grad():  # weights unlike any fresh initialisation
        for parameter in method.encoder.parameters():
            parameter.add_(torch.randn_like(parameter))
    path = save_checkpoint(tmp_path / "pretext" / "last.pt", {
        **method.checkpoint_metadata(), "config": config_to_dict(config), "model": method.state_dict(),
        "optimizers": {}, "trainer_state": {"epoch": 1, "batch": 0, "step": 10, "finished": True},
    })
    return path, method


def assert_one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_checkpoint_encoder_holds_exactly_the_pretext_encoder_weights(tmp_path):
    path, method = save_pretext_checkpoint(tmp_path)
    encoder = load_encoder(str(path), EncoderSpec("alexnet32"))
    expected = method.encoder.state_dict()
    loaded = encoder.state_dict()
    assert list(loaded) == list(expected)
    for name, value in expected.items():
        assert torch.equal(loaded[name], value), name
    # Only the encoder is taken: the decoder and bottleneck stay behind.
    assert not any(name.startswith(("decoder", "bottleneck")) for name in loaded)


def test_checkpoint_options_win_over_the_probe_config(tmp_path):
    path, method = save_pretext_checkpoint(tmp_path, "model.norm=batch", "model.width=0.5")
    probes_own = EncoderSpec("alexnet32", dict(norm="lrn"))  # ignored: the checkpoint stores its encoder's spec
    encoder = load_encoder(str(path), probes_own)
    assert encoder.feature_info[0]["num_chs"] == method.encoder.feature_info[0]["num_chs"] == 48
    for name, value in method.encoder.state_dict().items():
        assert torch.equal(encoder.state_dict()[name], value), name


def test_checkpoint_stores_the_encoder_build_spec(tmp_path):
    path, method = save_pretext_checkpoint(tmp_path, "model.norm=batch", "model.width=0.5", "model.groups=1")
    payload = load_checkpoint(path)
    assert payload["encoder_spec"] == {"name": "alexnet32", "options": {"norm": "batch", "width": 0.5, "groups": 1}}
    assert load_encoder(str(path), EncoderSpec("alexnet32")).spec == EncoderSpec.from_dict(payload["encoder_spec"])


def test_checkpoint_without_a_spec_takes_it_from_its_config(tmp_path):
    path, method = save_pretext_checkpoint(tmp_path, "model.norm=batch", "model.width=0.5")
    older = {key: value for key, value in load_checkpoint(path).items() if key not in ("format", "encoder_spec")}
    older_path = save_checkpoint(tmp_path / "older.pt", older)
    encoder = load_encoder(str(older_path), EncoderSpec("alexnet32"))
    assert encoder.spec == EncoderSpec("alexnet32", {"norm": "batch", "width": 0.5, "groups": 2})
    for name, value in method.encoder.state_dict().items():
        assert torch.equal(encoder.state_dict()[name], value), name


def test_wrong_architecture_is_refused_in_one_line(tmp_path):
    path, _ = save_pretext_checkpoint(tmp_path)
    with pytest.raises(UserError) as error:
        load_encoder(str(path), EncoderSpec("alexnet64"))
    message = assert_one_line(error)
    assert str(path) in message and "alexnet32" in message and "alexnet64" in message
    assert "model.encoder=alexnet32" in message  # the fix


def test_weights_that_do_not_fit_are_refused_in_one_line(tmp_path):
    path, _ = save_pretext_checkpoint(tmp_path)
    payload = load_checkpoint(path)
    payload["model"]["encoder.conv3.conv.weight"] = torch.zeros(7, 7, 3, 3)
    dropped = next(k for k in payload["model"] if k.startswith("encoder.conv4."))
    del payload["model"][dropped]
    broken = save_checkpoint(tmp_path / "broken.pt", {k: v for k, v in payload.items() if k != "format"})
    with pytest.raises(UserError) as error:
        load_encoder(str(broken), EncoderSpec("alexnet32"))
    message = assert_one_line(error)
    assert str(broken) in message and dropped[len("encoder."):] in message and "conv3.conv.weight" in message


def test_checkpoint_without_encoder_weights_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "empty.pt",
                           {"encoder": "alexnet32", "config": {}, "model": {"head.weight": torch.ones(1)}})
    with pytest.raises(UserError) as error:
        load_encoder(str(path), EncoderSpec("alexnet32"))
    assert "no encoder weights" in assert_one_line(error)


def test_missing_checkpoint_is_one_line(tmp_path):
    with pytest.raises(UserError) as error:
        load_encoder(str(tmp_path / "nope.pt"), EncoderSpec("alexnet64"))
    message = assert_one_line(error)
    assert "nope.pt" in message and "random" in message


def test_random_init_is_the_papers_gaussian_and_repeatable():
    torch.manual_seed(0)
    first = load_encoder("random", encoder_spec("alexnet32"))
    torch.manual_seed(0)
    second = load_encoder("random", encoder_spec("alexnet32"))
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    weight = first.conv3.conv.weight
    assert weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert abs(weight.mean().item()) < 1e-3
    if first.conv3.conv.bias is not None:  # no conv bias under BatchNorm
        assert torch.count_nonzero(first.conv3.conv.bias) == 0


def test_encoder_state_dict_strips_wrappers():
    state = {"_orig_mod.encoder.conv1.weight": torch.ones(1), "module.encoder.conv2.bias": torch.zeros(1),
             "decoder.x": torch.ones(1)}
    assert sorted(encoder_state_dict(state)) == ["conv1.weight", "conv2.bias"]


@pytest.mark.slow  # importing timm takes seconds
def test_a_random_timm_encoder_follows_the_contract_and_says_it_is_random():
    encoder = load_encoder("random", encoder_spec("timm:resnet18"))
    features = encoder(torch.zeros(1, 3, 64, 64))
    assert list(features) == [info["module"] for info in encoder.feature_info]
    for info in encoder.feature_info:
        assert features[info["module"]].shape[1] == info["num_chs"]
    assert encoder.weights.method == "random_init" and "random Gaussian" in encoder.weights.description


def test_random_like_a_checkpoint_takes_its_architecture_not_its_weights(tmp_path):
    path, method = save_pretext_checkpoint(tmp_path, "model.norm=batch", "model.width=0.5", "model.groups=1")
    encoder = load_encoder(f"random:{path}", encoder_spec("alexnet64"))  # the probe's own model.* is not used
    assert encoder.spec == method.encoder.spec
    assert encoder.weights.method == "random_init" and str(path) in encoder.weights.description
    assert not torch.equal(encoder.conv3.conv.weight, method.encoder.conv3.conv.weight)
    assert encoder.conv3.conv.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_random_like_a_state_dict_is_refused_in_one_line(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError) as error:
        load_encoder(f"random:{path}", encoder_spec("alexnet64"))
    assert "names no architecture" in assert_one_line(error)
