"""Encoders of two architectures on one protocol: a timm ViT built by config, one probe config reading AlexNet's
convolutions and a ViT's blocks, a bench whose methods start from their own pretext configs and whose probes follow
each method's encoder, and tables that compare each method with random weights of its own architecture."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ssl_ctx.bench.plan import Cell, cells, pretext_config, probe_config
from ssl_ctx.config import load_config
from ssl_ctx.errors import UserError
from ssl_ctx.models import build_encoder, encoder_input_side, encoder_spec
from ssl_ctx.probes.common import parse_layers
from ssl_ctx.results.collect import collect_records
from ssl_ctx.results.figures import relative_depths
from ssl_ctx.results.stats import baseline_of, method_order, summarise
from ssl_ctx.results.tables import table_command

REPO = Path(__file__).resolve().parents[1]
VIT = ["model.encoder=timm:vit_tiny_patch16_224",
       "model.encoder_options={img_size: 32, patch_size: 8, depth: 3, embed_dim: 48, num_heads: 3, "
       "out_indices: [0, 1, 2], dynamic_img_size: true}"]
ALEXNET_LAYERS = "conv1+conv2+conv3+conv4+conv5"
VIT_LAYERS = "blocks_0+blocks_1+blocks_2"


@pytest.fixture(scope="module")
def vit():
    config = load_config(None, VIT)
    return build_encoder(encoder_spec(config.model.encoder, config.model))


def test_a_timm_vit_is_built_from_model_encoder_options(vit):
    assert vit.spec.options["img_size"] == 32 and vit.spec.options["depth"] == 3
    assert [info["module"] for info in vit.feature_info] == ["blocks_0", "blocks_1", "blocks_2"]
    assert vit.input_size == 32  # the ViT's img_size, not timm's default 224
    assert encoder_input_side(vit.spec) == 32
    maps = vit(torch.rand(2, 3, 48, 64) * 2 - 1)  # another size: the position embedding is interpolated
    assert {name: tuple(m.shape) for name, m in maps.items()} == {f"blocks_{i}": (2, 48, 6, 8) for i in range(3)}
    rebuilt = build_encoder(type(vit.spec).from_dict(vit.spec.to_dict()))  # what a probe does from a checkpoint
    rebuilt.load_state_dict(vit.state_dict())


def test_encoder_options_are_for_timm_encoders_only():
    config = load_config(None, ["model.encoder=alexnet64", "model.encoder_options={depth: 3}"])
    with pytest.raises(UserError, match="model.encoder_options .* is for timm:<model> encoders; 'alexnet64'"):
        encoder_spec(config.model.encoder, config.model)


def test_probe_layer_alternatives_pick_the_encoders_own_maps(vit):
    alexnet = build_encoder("alexnet32", width=0.25)
    both = f"{ALEXNET_LAYERS}|{VIT_LAYERS}"
    assert parse_layers(both, alexnet) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert parse_layers(both, vit) == ["blocks_0", "blocks_1", "blocks_2"]
    assert parse_layers("conv5", alexnet) == ["conv5"]
    with pytest.raises(UserError, match="no alternative of probe.layer 'conv5|blocks_9' names only feature maps"):
        parse_layers("conv5|blocks_9", vit)
    with pytest.raises(UserError, match="probe.layer 'conv6' is not a feature map of this encoder"):
        parse_layers("conv6", alexnet)


# --- the bench: methods with their own pretext configs, probes following each method's encoder ----------------

def mixed_bench(tmp_path: Path, **bench: object):
    configs = tmp_path / "configs"
    (configs / "bench").mkdir(parents=True)
    (configs / "pretext").mkdir()
    (configs / "pretext" / "base.yaml").write_text("model: {encoder: alexnet32, width: 0.25}\n")
    vit_options = VIT[1].partition("=")[2]
    (configs / "pretext" / "vit.yaml").write_text(
        f"model: {{encoder: 'timm:vit_tiny_patch16_224', encoder_options: {vit_options}}}\n")
    entry = {"config": str(REPO / "configs/probe/segmentation_camvid_frozen.yaml"),
             "probe.layer": f"{ALEXNET_LAYERS}|{VIT_LAYERS}"}
    config = {"name": "mixed", "output_dir": str(tmp_path / "runs"), "bench": {
        "pretext_config": "pretext/base.yaml", "seeds": [0],
        "methods": {"random_init": {"method.name": "random_init"},
                    "random_init_vit": {"config": "pretext/vit.yaml", "method.name": "random_init"}},
        "probes": {"seg": entry}, **bench}}
    path = configs / "bench" / "mixed.yaml"
    path.write_text(json.dumps(config))
    return load_config(path), configs


def test_a_method_starts_from_its_own_pretext_config_and_its_probes_follow_its_encoder(tmp_path):
    bench, root = mixed_bench(tmp_path)
    assert pretext_config(bench, Cell("random_init", 0), root).model.encoder == "alexnet32"
    vit_pretext = pretext_config(bench, Cell("random_init_vit", 0), root)
    assert vit_pretext.model.encoder == "timm:vit_tiny_patch16_224" and vit_pretext.method.name == "random_init"
    for method, encoder in (("random_init", "alexnet32"), ("random_init_vit", "timm:vit_tiny_patch16_224")):
        probe = probe_config(bench, Cell(method, 0, "seg"), root, tmp_path / "last.pt")
        assert probe.model.encoder == encoder
    probe = probe_config(bench, Cell("random_init_vit", 0, "seg"), root, tmp_path / "last.pt")
    assert probe.model.encoder_options["img_size"] == 32


def test_bench_baselines_must_name_bench_methods(tmp_path):
    bench, _ = mixed_bench(tmp_path, baselines={"mae": "random_init_vit"})
    with pytest.raises(UserError, match="bench.baselines entry mae: random_init_vit must map a method"):
        cells(bench)


# --- tables: each method against random weights of its own architecture ----------------------------------------

def write_probe(root: Path, probe: str, method: str, seed: int, metrics: dict, architecture: str) -> None:
    record = {"kind": "probe", "seed": seed, "metrics": metrics, "wall_time_s": 1.0,
              "config": {"probe": {"task": "classification", "mode": "linear", "init": method},
                         "data": {"dataset": "tiny"},
                         "tags": {"method": method, "probe": probe, "seed": seed, "metric": "top1",
                                  "stage": "probe"}},
              "probe": {"kind": "frozen", "protocol": "ridge per layer", "encoder_architecture": architecture}}
    path = root / "probe" / probe / method / f"seed{seed}" / "record.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))


def mixed_runs(root: Path) -> Path:
    """Per-layer top1 of an AlexNet pair (conv1-conv5) and a ViT pair (blocks_0-blocks_2); mae is 10 points above
    its random weights at every block, the context encoder 1 point above its own."""
    for seed in range(3):
        noise = 0.002 * seed
        for method, offset in (("random_init", 0.0), ("context_encoder", 0.01)):
            write_probe(root, "cls", method, seed, {f"top1@conv{k}": 0.1 + offset + noise for k in range(1, 6)},
                        "alexnet")
        for method, offset in (("random_init_vit", 0.0), ("mae", 0.1)):
            write_probe(root, "cls", method, seed, {f"top1@blocks_{k}": 0.05 + offset + noise for k in range(3)},
                        "vit")
    return root


def test_each_method_is_compared_with_its_own_baseline(tmp_path):
    frame = collect_records(mixed_runs(tmp_path))
    baselines = {"mae": "random_init_vit"}
    assert baseline_of("mae", "random_init", baselines) == "random_init_vit"
    assert baseline_of("context_encoder", "random_init", baselines) == "random_init"
    assert baseline_of("random_init_vit", "random_init", baselines) is None
    assert method_order(set(frame["method"]), "random_init", baselines) == [
        "random_init", "context_encoder", "random_init_vit", "mae"]
    summary = summarise(frame, "random_init", baselines=baselines).set_index(["method", "column"])
    assert summary.loc[("mae", "blocks_1"), "baseline"] == "random_init_vit"
    assert summary.loc[("mae", "blocks_1"), "delta"] == pytest.approx(0.1)
    assert summary.loc[("context_encoder", "conv3"), "delta"] == pytest.approx(0.01)
    assert summary.loc[("random_init_vit", "blocks_0"), "baseline"] == ""


def test_tables_split_by_architecture_and_plot_against_relative_depth(tmp_path):
    runs = mixed_runs(tmp_path)
    table_command(runs, baselines={"mae": "random_init_vit"})
    markdown = (runs / "tables" / "table.md").read_text()
    assert "### cls (conv1…conv5)" in markdown and "### cls (blocks_0…blocks_2)" in markdown
    assert "| ↳ Δ vs random_init_vit |" in markdown
    assert "mae against random_init_vit; the others against random_init" in markdown
    assert "Encoders of different architectures" not in markdown  # no difference is taken across them
    provenance = json.loads((runs / "tables" / "provenance.json").read_text())
    assert provenance["baselines"] == {"mae": "random_init_vit"}
    assert "--baseline-of mae:random_init_vit" in provenance["command"]
    assert {"layers.png", "delta.png"} <= set(provenance["files"])
    summary = summarise(collect_records(runs), "random_init", baselines={"mae": "random_init_vit"})
    depths = relative_depths(summary)
    assert depths["mae"] == pytest.approx({"blocks_0": 1 / 3, "blocks_1": 2 / 3, "blocks_2": 1.0})
    assert depths["context_encoder"]["conv5"] == 1.0


def test_a_difference_across_architectures_is_marked(tmp_path):
    runs = mixed_runs(tmp_path)
    table_command(runs, comparisons=[("mae", "context_encoder")], baselines={"mae": "random_init_vit"})
    markdown = (runs / "tables" / "table.md").read_text()
    assert "Encoders of different architectures (context_encoder: alexnet; mae: vit)" in markdown


def test_baseline_of_must_name_a_method_with_records(tmp_path):
    with pytest.raises(UserError, match="--baseline-of mae:random_init_deit names a baseline without probe records"):
        table_command(mixed_runs(tmp_path), baselines={"mae": "random_init_deit"})


def test_the_pretext_table_names_each_methods_own_reference(tmp_path):
    """An L2 beside the mean fill and a normalised-pixel loss beside a flat patch share no scale: the table names
    each reference, and the figure shows ratios."""
    runs = mixed_runs(tmp_path)
    declared = {"context_encoder": ({"eval_masked_l2": 0.1, "eval_mean_fill_l2": 0.3},
                                    {"metric": "eval_masked_l2", "label": "hole", "reference": "eval_mean_fill_l2",
                                     "reference_label": "mean fill"}),
                "mae": ({"eval_loss": 0.7, "eval_flat_patch_loss": 1.0},
                        {"metric": "eval_loss", "label": "normalised-pixel L2", "reference": "eval_flat_patch_loss",
                         "reference_label": "flat patch"})}
    for method, (metrics, held_out) in declared.items():
        for seed in range(2):
            record = {"kind": "pretext", "seed": seed, "metrics": {**metrics, "train_steps": 10},
                      "config": {"tags": {"method": method, "seed": seed, "stage": "pretext"}},
                      "held_out_metrics": [held_out]}
            path = runs / "pretext" / method / f"seed{seed}" / "record.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(record))
    table_command(runs, baselines={"mae": "random_init_vit"})
    markdown = (runs / "tables" / "table.md").read_text()
    assert "| reference (same pixels) | ratio |" in markdown
    assert "| 0.3000 ± 0.0000 (mean fill) | 0.33 |" in markdown
    assert "| 1.0000 ± 0.0000 (flat patch) | 0.70 |" in markdown
