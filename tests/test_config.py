import pytest

from ssl_ctx.config import Config, load_config, save_config
from ssl_ctx.errors import UserError


def test_defaults_follow_the_paper():
    config = Config()
    assert config.method.lambda_rec == 0.999 and config.method.lambda_adv == 0.001
    assert config.optim.lr == 2e-4 and config.optim.betas == [0.5, 0.999]
    assert config.method.generator_lr_multiplier == 10.0
    assert config.mask.type == "random_region" and config.mask.per_sample


def test_yaml_and_dotted_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\nmask:\n  type: central\n")
    config = load_config(path, ["train.epochs=5", "data.limit=100", "optim.betas=[0.9, 0.99]"])
    assert config.train.epochs == 5 and config.mask.type == "central"
    assert config.data.limit == 100 and config.optim.betas == [0.9, 0.99]


def test_unknown_key_suggests_the_nearest(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(UserError, match=r"unknown config key 'train.epoch' \(did you mean 'epochs'\?\)"):
        load_config(path)
    with pytest.raises(UserError, match="did you mean 'mask'"):
        load_config(None, ["mask_.type=central"])


def test_wrong_type_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="train.epochs must be int"):
        load_config(None, ["train.epochs=two"])
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_resolved_config_round_trips(tmp_path):
    config = load_config(None, ["train.epochs=7", "name=x"])
    path = save_config(config, tmp_path / "config.yaml")
    assert load_config(path) == config
