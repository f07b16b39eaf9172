"""What a pretext method declares and the core honours: its options (checked when it is built, by the bench before
any cell, listed by `ssl-ctx list`), its encoder's input (recorded in checkpoints and exports, fed by every probe)
and its held-out metrics (recorded, and shown by the pretext table without the method's code)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssl_ctx.config import config_to_dict, load_config
from ssl_ctx.engine.checkpoint import load_checkpoint, save_checkpoint
from ssl_ctx.errors import UserError
from ssl_ctx.models import EncoderSpec, last_feature_shape
from ssl_ctx.models.encoder_input import GRAY, RGB, feed_encoder_input, luminance
from ssl_ctx.pretext import DataInfo, HeldOutMetric, MethodOption, PretextMethod
from ssl_ctx.pretext.autoencoder import Autoencoder
from ssl_ctx.pretext.context_encoder import ContextEncoder
from ssl_ctx.registry import PRETEXT_METHODS
from ssl_ctx.results import render
from ssl_ctx.results.collect import OLDER_HELD_OUT_METRICS, pretext_frame, read_records
from ssl_ctx.results.stats import summarise_pretext
from tests import test_tables as tables_tests
from tests.helpers import small_config
from tests.test_probe_encoder_loading import save_pretext_checkpoint

GRAY_METHOD = "test_gray_colouriser"  # registered by this test module only
DATA = DataInfo((32, 32), (120.0, 110.0, 100.0))


@PRETEXT_METHODS.register(GRAY_METHOD)
class GrayColouriser(PretextMethod):
    """Colourisation-like: the encoder sees the gray image, a 1x1 head predicts its colours; L2 on every pixel."""

    name = GRAY_METHOD
    encoder_input = GRAY
    option_specs = {"colour_weight": MethodOption(1.0, "weight of the colour L2"),
                    "head_bias": MethodOption(True, "whether the colour head has a bias")}
    held_out_metrics = (HeldOutMetric("colour_l2", "colour L2, whole image"),)

    def build(self) -> None:
        super().build()
        deepest = last_feature_shape(self.encoder, self.data.input_size)
        self.feature_name = deepest.name
        self.head = nn.Conv2d(deepest.channels, 3, 1, bias=self.options["head_bias"])

    def colours(self, images: torch.Tensor) -> torch.Tensor:
        features = self.encoder(luminance(images))[self.feature_name]  # the method converts its own input
        return F.interpolate(self.head(features), size=images.shape[-2:])

    def losses(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        images = batch["image"]
        return {"loss": self.options["colour_weight"] * F.mse_loss(self.colours(images), images)}

    def evaluate_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        images = batch["image"]
        return {"colour_l2": F.mse_loss(self.colours(images), images).detach()}


def built(tmp_path, name: str, options: dict) -> PretextMethod:
    config = small_config(tmp_path, f"method.name={name}")
    config = dataclasses.replace(config, method=dataclasses.replace(config.method, options=options))
    return PRETEXT_METHODS.get(name).from_config(config, DATA)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------------ options


def test_declared_options_are_resolved_with_their_defaults(tmp_path):
    method = built(tmp_path, GRAY_METHOD, {"colour_weight": 2})  # an int where a float is expected is fine
    assert method.options == {"colour_weight": 2.0, "head_bias": True}
    assert isinstance(method.options["colour_weight"], float)


def test_a_misspelt_option_is_refused_naming_it_a_suggestion_and_the_known_ones(tmp_path):
    with pytest.raises(UserError) as error:
        built(tmp_path, GRAY_METHOD, {"colour_wieght": 2.0})
    message = one_line(error)
    assert "method.options.colour_wieght" in message and "did you mean 'colour_weight'" in message
    assert "colour_weight=1.0" in message and "head_bias=true" in message


def test_a_value_of_another_type_is_refused_naming_the_expected_type(tmp_path):
    with pytest.raises(UserError) as error:
        built(tmp_path, GRAY_METHOD, {"head_bias": "yes"})
    message = one_line(error)
    assert 'method.options.head_bias="yes"' in message and "expects a boolean" in message
    with pytest.raises(UserError, match="expects a float"):
        built(tmp_path, GRAY_METHOD, {"colour_weight": True})  # a bool is no number


def test_a_method_declaring_no_options_takes_none(tmp_path):
    with pytest.raises(UserError) as error:
        built(tmp_path, "context_encoder", {"mask_ratio": 0.5})
    assert "declares no options" in one_line(error) and "method.options.mask_ratio" in one_line(error)


def test_the_bench_refuses_a_bad_option_before_any_cell_runs(tmp_path):
    from ssl_ctx.bench.runner import run_bench

    bench_path = "tests/configs/bench_tiny.yaml"
    methods = {"context_encoder": {"method.name": "context_encoder"},
               "gray": {"method.name": GRAY_METHOD, "method.options": {"colour_wieght": 2.0}}}
    bench = load_config(bench_path, {"output_dir": str(tmp_path), "bench.methods": methods})
    with pytest.raises(UserError) as error:
        run_bench(bench, bench_path)
    assert one_line(error).startswith("bench method 'gray': unknown option method.options.colour_wieght")
    assert not list(tmp_path.rglob("pretext"))


def test_list_prints_each_declared_option_with_its_default_and_help(capsys):
    from ssl_ctx.cli import main

    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index(f"  {GRAY_METHOD}:")
    assert lines[0].startswith("pretext methods:")
    assert lines[at + 1].split() == ["method.options.colour_weight=1.0", "weight", "of", "the", "colour", "L2"]
    assert "context_encoder:" not in "\n".join(lines)  # a method without options lists none


# ------------------------------------------------------------------------------------------ encoder input


def gray_checkpoint(tmp_path) -> tuple[Path, PretextMethod]:
    """The gray method saved as `ssl-ctx pretrain` saves it."""
    config = small_config(tmp_path, f"method.name={GRAY_METHOD}")
    method = GrayColouriser.from_config(config, DATA)
    path = save_checkpoint(tmp_path / "gray" / "last.pt", {
        **method.checkpoint_metadata(), "config": config_to_dict(config), "model": method.state_dict(),
        "optimizers": {}, "trainer_state": {"epoch": 1, "batch": 0, "step": 3, "finished": True}})
    return path, method


def record_first_layer_inputs(encoder: nn.Module) -> list[torch.Tensor]:
    """What the encoder's first layer receives at each call (after any conversion of the encoder's input)."""
    seen: list[torch.Tensor] = []
    first = encoder.get_submodule(encoder.feature_info[0]["module"])
    first.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    return seen


def equal_channels(images: torch.Tensor) -> bool:
    return torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])


def test_luminance_is_bt601_on_three_channels_in_the_same_range():
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    gray = luminance(images.contiguous(memory_format=torch.channels_last))
    expected = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    assert gray.shape == images.shape and equal_channels(gray)
    assert torch.allclose(gray[:, 0], expected) and gray.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(luminance(torch.ones(1, 3, 2, 2)), torch.ones(1, 3, 2, 2))


def test_a_gray_checkpoint_is_probed_on_gray_images_and_says_so(tmp_path, capsys):
    from ssl_ctx.probes.encoder_loading import load_encoder

    path, _ = gray_checkpoint(tmp_path)
    assert load_checkpoint(path)["data_info"]["encoder_input"] == GRAY
    encoder = load_encoder(str(path), EncoderSpec("alexnet32"))
    assert encoder.weights.encoder_input == GRAY and "fed gray input" in encoder.weights.description
    assert ("probe: the encoder takes gray input (its pretext method's declaration); images are converted"
            in capsys.readouterr().out)
    seen = record_first_layer_inputs(encoder)
    encoder.eval()(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert len(seen) == 1 and equal_channels(seen[0])


def test_a_normal_checkpoint_is_probed_on_colour_images(tmp_path, capsys):
    from ssl_ctx.probes.encoder_loading import load_encoder

    path, _ = save_pretext_checkpoint(tmp_path)
    older = {**load_checkpoint(path)}
    older["data_info"] = {k: v for k, v in older["data_info"].items() if k != "encoder_input"}  # before it existed
    for checkpoint in (path, save_checkpoint(tmp_path / "older.pt", older)):
        encoder = load_encoder(str(checkpoint), EncoderSpec("alexnet32"))
        assert encoder.weights.encoder_input == RGB
        seen = record_first_layer_inputs(encoder)
        images = torch.rand(2, 3, 32, 32) * 2 - 1
        encoder.eval()(images)
        assert torch.equal(seen[0], images)
    assert "gray input" not in capsys.readouterr().out


def test_an_export_of_a_gray_checkpoint_carries_its_input(tmp_path):
    from ssl_ctx.encoder_file import read_safetensors
    from ssl_ctx.export import export_encoder
    from ssl_ctx.probes.encoder_loading import load_encoder

    path, _ = gray_checkpoint(tmp_path)
    output = export_encoder(path, tmp_path / "gray.safetensors")
    assert json.loads(read_safetensors(output)[1]["input"])["encoder_input"] == GRAY
    encoder = load_encoder(str(output), EncoderSpec("alexnet32"))
    assert encoder.weights.encoder_input == GRAY
    seen = record_first_layer_inputs(encoder)
    encoder.eval()(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert equal_channels(seen[0])


def test_cached_features_of_the_same_weights_fed_gray_and_rgb_are_kept_apart(tmp_path):
    from ssl_ctx.models import build_encoder
    from ssl_ctx.probes.features import FeatureSpec, cache_key
    from tests.helpers import random_split

    spec, split = FeatureSpec(("conv5",), ((1, 1),), (32, 32)), random_split(4)
    torch.manual_seed(0)
    rgb = build_encoder(EncoderSpec("alexnet32"))
    gray = feed_encoder_input(build_encoder(EncoderSpec("alexnet32")), GRAY)
    gray.load_state_dict(rgb.state_dict())
    assert cache_key(gray, spec, split) != cache_key(rgb, spec, split)
    assert cache_key(feed_encoder_input(rgb, RGB), spec, split) == cache_key(rgb, spec, split)  # rgb keys unchanged


@pytest.mark.slow
def test_a_gray_method_trains_records_its_declarations_and_its_probe_feeds_gray(real_data, tmp_path, monkeypatch):
    """End to end: `ssl-ctx pretrain` of the gray method, then a frozen probe of its checkpoint, every batch of
    which (BatchNorm statistics, feature extraction) reaches the encoder gray."""
    import ssl_ctx.probes.encoder_loading as encoder_loading
    from ssl_ctx.pretext.run import run_pretrain
    from ssl_ctx.probes import run_probe

    config = load_config("tests/configs/pretext_tiny.yaml",
                         [f"output_dir={tmp_path}", f"method.name={GRAY_METHOD}", "method.options.colour_weight=2"])
    metrics = run_pretrain(config)
    record = json.loads((tmp_path / "pretext-tiny" / "record.json").read_text())
    assert record["held_out_metrics"] == [{"metric": "eval_colour_l2", "label": "colour L2, whole image",
                                           "reference": None, "reference_label": None}]
    assert record["metrics"]["eval_colour_l2"] == pytest.approx(metrics["eval_colour_l2"])
    checkpoint = tmp_path / "pretext-tiny" / "checkpoints" / "last.pt"
    assert load_checkpoint(checkpoint)["data_info"]["encoder_input"] == GRAY

    seen: list[torch.Tensor] = []

    def feed_and_watch(encoder: nn.Module, encoder_input: str) -> nn.Module:
        fed = feed_encoder_input(encoder, encoder_input)
        first = fed.get_submodule(fed.feature_info[0]["module"])
        first.register_forward_pre_hook(lambda module, args: seen.append(args[0][:2].detach().float().cpu()))
        return fed

    monkeypatch.setattr(encoder_loading, "feed_encoder_input", feed_and_watch)
    run_probe(load_config("tests/configs/probe_tiny.yaml",
                          [f"output_dir={tmp_path}", f"probe.init={checkpoint}", "model.encoder=alexnet64"]))
    assert seen and all(equal_channels(images) for images in seen)


# --------------------------------------------------------------------------------------- held-out metrics


def test_the_built_in_declarations_are_what_older_records_are_read_as():
    # So that the tables of the built-in methods are the same from old and new records.
    assert ContextEncoder.held_out_record() == [OLDER_HELD_OUT_METRICS[0]]
    assert Autoencoder.held_out_record() == [OLDER_HELD_OUT_METRICS[1]]
    assert PRETEXT_METHODS.get("random_init").held_out_record() == []


def write_pretext(root: Path, method: str, seed: int, metrics: dict, declared: list | None = None) -> None:
    """A pretext record of 10 steps; ``declared``: its ``held_out_metrics`` (None: a record from before them)."""
    path = tables_tests.write_pretext(root, method, seed, {"train_steps": 10.0, **metrics})
    if declared is not None:
        path.write_text(json.dumps({**json.loads(path.read_text()), "held_out_metrics": declared}))


def pretext_markdown(root: Path) -> str:
    return render.markdown_table(render.pretext_table(*summarise_pretext(pretext_frame(read_records(root)))))


def test_a_plug_in_metric_appears_in_the_pretext_table_with_its_label(tmp_path):
    declared = [{"metric": "eval_loss", "label": "normalised-pixel L2 on masked patches", "reference": None}]
    for seed in (0, 1):
        write_pretext(tmp_path, "mae", seed, {"eval_loss": 0.5 + 0.1 * seed}, declared)
        write_pretext(tmp_path, "context_encoder", seed, {"eval_masked_l2": 0.1, "eval_mean_fill_l2": 0.3})
        write_pretext(tmp_path, "random_init", seed, {}, [])
    table = pretext_markdown(tmp_path)
    mae = "| mae | 2 | 10 | normalised-pixel L2 on masked patches (eval_loss) | 0.5500 ± 0.0707 | — | — |"
    assert mae in table
    assert ("| context_encoder | 2 | 10 | hole (eval_masked_l2) | 0.1000 ± 0.0000 | 0.3000 ± 0.0000 (mean fill) | 0.33 |"
            in table)
    assert "| measures (metric) | held-out value |" in table and "Left out, no held-out metrics" in table
    assert "random_init" in table.splitlines()[-1]


def test_reconstructions_alone_keep_the_l2_table(tmp_path):
    declared = [{"metric": "eval_hole_l2", "label": "hole", "reference": "eval_mean_fill_hole_l2"}]
    write_pretext(tmp_path, "inpainting128", 0, {"eval_hole_l2": 0.1, "eval_mean_fill_hole_l2": 0.4}, declared)
    write_pretext(tmp_path, "autoencoder", 0, {"eval_l2": 0.2, "eval_mean_fill_l2": 0.4})
    table = pretext_markdown(tmp_path)
    assert "| method | n | train steps | pixels | held-out L2 | mean-fill L2 (same pixels) | ratio |" in table
    assert "| inpainting128 | 1 | 10 | hole | 0.1000 | 0.4000 | 0.25 |" in table
    assert "| autoencoder | 1 | 10 | whole image | 0.2000 | 0.4000 | 0.50 |" in table
