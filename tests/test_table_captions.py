"""What the tables and figures say was trained on: the caption from the records' ``data`` and ``steps`` blocks (and
from the config of older records without them), the held-out honesty of the pretext L2, and delta.png's numbers."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ssl_ctx.results.collect import collect_records, read_records, trained_on_frame
from ssl_ctx.results.figures import delta_frame
from ssl_ctx.results.render import PERCENT, delta_cell, l2_label, latex_text, training_caption
from ssl_ctx.results.stats import summarise
from ssl_ctx.results.tables import table_command
from tests.test_tables import PNG_MAGIC, synthetic_runs

PHOTOS = "imagefolder:/abs/photos"
HELD_OUT = "12 of the 120 images of 'all' (data.holdout_fraction=0.1, data.holdout_seed=0)"
LAYERS = ("conv1", "conv2", "conv3")


def _write(path: Path, record: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def data_block(dataset: str, train: int, evaluated: int, size: list[int], *, train_split: str = "train",
               eval_split: str = "val", held_out: str | None = None, on_training: bool = False) -> dict:
    return {"dataset": dataset, "train_split": train_split, "eval_split": eval_split, "train_images": train,
            "eval_images": evaluated, "input_size": size, "cache_size": size, "resize": "shorter_side",
            "held_out": held_out, "eval_on_training_images": on_training}


def new_pretext(root: Path, method: str, seed: int, *, steps: int = 2000, l2: float | None = 0.1,
                data: dict | None = None) -> Path:
    """A pretext record with the ``data`` and ``steps`` blocks."""
    metrics = {"train_steps": float(steps)}
    if l2 is not None:
        metrics.update(eval_masked_l2=l2 + 0.01 * seed, eval_mean_fill_l2=0.3)
    record = {"kind": "pretext", "seed": seed, "metrics": metrics,
              "config": {"tags": {"method": method, "seed": seed, "stage": "pretext"}, "method": {"name": method},
                         "data": {"dataset": PHOTOS, "train_split": "train", "eval_split": "val"},
                         "train": {"max_steps": 2000}},
              "data": data or data_block(PHOTOS, 108, 12, [64, 64], held_out=HELD_OUT),
              "steps": {"planned": steps, "bound": f"train.max_steps={steps}" if steps else "untrained"}}
    return _write(root / "pretext" / method / f"seed{seed}" / "record.json", record)


def new_probe(root: Path, probe: str, method: str, seed: int, metrics: dict, data: dict,
              pretext_size: list[int] | None, *, task: str = "classification") -> Path:
    """A probe record with its ``data`` block and ``probe.input_size`` / ``probe.pretext_input_size``."""
    record = {"kind": "probe", "seed": seed, "metrics": metrics,
              "config": {"probe": {"task": task, "mode": "linear", "init": method},
                         "data": {"dataset": data["dataset"]},
                         "tags": {"method": method, "probe": probe, "seed": seed, "stage": "probe"}},
              "probe": {"kind": "frozen", "protocol": "ridge", "input_size": data["input_size"],
                        "pretext_input_size": pretext_size},
              "data": data}
    return _write(root / "probe" / probe / method / f"seed{seed}" / "record.json", record)


SCORES = {"random_init": 0.10, "autoencoder": 0.11, "context_encoder": 0.20}


def new_runs(root: Path, autoencoder_steps: int = 2000) -> Path:
    """Three methods x two seeds with the new fields: pretext on a photo folder at 64x64 (random_init untrained),
    a per-layer classification probe on tiny-imagenet-200 at 64x64 and a segmentation probe on camvid at 96x128."""
    tiny = data_block("tiny-imagenet-200", 20000, 10000, [64, 64])
    camvid = data_block("camvid", 367, 233, [96, 128], eval_split="test")
    for method, score in SCORES.items():
        trained = method != "random_init"
        for seed in range(2):
            steps = (autoencoder_steps if method == "autoencoder" else 2000) if trained else 0
            new_pretext(root, method, seed, steps=steps, l2=0.1 if trained else None)
            pretext_size = [64, 64] if trained else None
            value = score + 0.01 * seed
            new_probe(root, "classification_localisation", method, seed,
                      {f"top1@{layer}": value + 0.02 * i for i, layer in enumerate(LAYERS)}, tiny, pretext_size)
            new_probe(root, "segmentation_camvid", method, seed, {"miou": value}, camvid, pretext_size,
                      task="segmentation")
    return root


CAPTION = ("Pretext (autoencoder, context_encoder): imagefolder:/abs/photos (train split: 108 images, 12 held out "
           "as val), 64×64 input, 2,000 steps (train.max_steps); random_init untrained (no pretext steps). "
           "Probes: classification_localisation tiny-imagenet-200 train 20,000 → val 10,000 images at 64×64; "
           "segmentation_camvid camvid train 367 → test 233 images at 96×128 (not the pretext's 64×64 input).")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    root = new_runs(tmp_path_factory.mktemp("runs"))
    table_command(root, comparisons=[("context_encoder", "autoencoder")])
    return root


def test_the_caption_states_pretext_data_steps_and_probe_sizes(made):
    markdown = (made / "tables" / "table.md").read_text()
    assert markdown.split("\n\n")[1] == CAPTION  # right under the provenance
    assert json.loads((made / "tables" / "provenance.json").read_text())["caption"] == CAPTION
    tex = (made / "tables" / "table.tex").read_text()
    assert latex_text(CAPTION) in tex and "64$\\times$64" in tex and "$\\rightarrow$" in tex and tex.isascii()


def test_an_input_size_mismatch_is_named_per_method_when_the_pretext_sizes_differ(tmp_path):
    root = new_runs(tmp_path)
    for seed in range(2):  # the autoencoder's probe records: an encoder pretrained at 32x32
        path = root / "probe" / "segmentation_camvid" / "autoencoder" / f"seed{seed}" / "record.json"
        record = json.loads(path.read_text())
        record["probe"]["pretext_input_size"] = [32, 32]
        path.write_text(json.dumps(record))
    caption = training_caption(trained_on_frame(read_records(root)))
    assert "camvid train 367 → test 233 images at 96×128 (not the pretext input of autoencoder 32×32; " \
           "context_encoder 64×64)" in caption
    assert "tiny-imagenet-200 train 20,000 → val 10,000 images at 64×64;" in caption  # matches: nothing said


def test_methods_whose_pretext_runs_differ_are_described_apart(tmp_path):
    caption = training_caption(trained_on_frame(read_records(new_runs(tmp_path, autoencoder_steps=1000))))
    assert caption.startswith(
        "Pretext: autoencoder: imagefolder:/abs/photos (train split: 108 images, 12 held out as val), 64×64 input, "
        "1,000 steps (train.max_steps); context_encoder: imagefolder:/abs/photos (train split: 108 images, 12 held "
        "out as val), 64×64 input, 2,000 steps (train.max_steps); random_init untrained (no pretext steps). ")


def test_steps_short_of_the_plan_and_an_untrained_method_with_a_plan(tmp_path):
    new_runs(tmp_path)
    for seed in range(2):
        for method, taken in (("context_encoder", 1500.0), ("random_init", 0.0)):
            path = tmp_path / "pretext" / method / f"seed{seed}" / "record.json"
            record = json.loads(path.read_text())
            record["metrics"]["train_steps"] = taken
            record["steps"] = {"planned": 2000, "bound": "train.max_steps=2000"}
            path.write_text(json.dumps(record))
    caption = training_caption(trained_on_frame(read_records(tmp_path)))
    assert "context_encoder: imagefolder:/abs/photos (train split: 108 images, 12 held out as val), 64×64 input, " \
           "1,500 of 2,000 planned steps (train.max_steps); random_init untrained (no pretext steps). " in caption


def test_steps_set_by_epochs_keep_the_epoch_count(tmp_path):
    new_runs(tmp_path)
    for method in ("context_encoder", "autoencoder"):
        for seed in range(2):
            path = tmp_path / "pretext" / method / f"seed{seed}" / "record.json"
            record = json.loads(path.read_text())
            record["steps"] = {"planned": 2000, "bound": "train.epochs=4", "batches_per_epoch": 500, "epochs": 4}
            path.write_text(json.dumps(record))
    caption = training_caption(trained_on_frame(read_records(tmp_path)))
    assert "64×64 input, 2,000 steps (train.epochs=4); random_init untrained" in caption


def test_older_records_fall_back_to_their_config_and_metrics(tmp_path):
    """Records without the data and steps blocks: the dataset and splits from config.data, the steps from
    metrics.train_steps (bound by train.max_steps when they equal it), a probe's image counts from its metrics, a
    data.limit as an upper bound, and no input size where the record has none (so no mismatch is claimed)."""
    synthetic_runs(tmp_path)
    for path in (tmp_path / "pretext").rglob("record.json"):
        record = json.loads(path.read_text())
        record["config"]["data"] = {"dataset": "tiny-imagenet-200", "train_split": "train", "eval_split": "val",
                                    "input_size": None, "cache_size": None, "limit": None}
        record["config"]["train"] = {"max_steps": 100}
        path.write_text(json.dumps(record))
    for path in (tmp_path / "probe" / "cls-tiny").rglob("record.json"):
        record = json.loads(path.read_text())
        record["config"]["data"].update(train_split="train", eval_split="val", limit=500)
        record["metrics"]["eval_images"] = 200.0
        record["probe"]["input_size"] = [64, 64]
        path.write_text(json.dumps(record))
    caption = training_caption(trained_on_frame(read_records(tmp_path)))
    assert caption == ("Pretext (autoencoder, context_encoder): tiny-imagenet-200 (train split; evaluated on val), "
                       "100 steps (train.max_steps); random_init untrained (no pretext steps). "
                       "Probes: cls-tiny tiny train ≤500 → val 200 images at 64×64; seg-camvid tiny.")
    table_command(tmp_path)
    assert caption in (tmp_path / "tables" / "table.md").read_text()


def test_the_unchanged_synthetic_records_still_render(tmp_path):
    table_command(synthetic_runs(tmp_path))
    lines = (tmp_path / "tables" / "table.md").read_text().split("\n\n")
    assert lines[1].startswith("Pretext (autoencoder, context_encoder): ") and "100 steps" in lines[1]
    assert "| held-out L2 |" in "\n".join(lines)


# --- held-out honesty -----------------------------------------------------------------------------------------

def test_l2_is_called_held_out_only_when_no_evaluation_image_was_trained_on():
    assert l2_label([False, False]) == ("held-out L2", False)
    assert l2_label([True, True]) == ("L2 on training images", False)
    assert l2_label([False, True]) == ("held-out L2 († on training images)", True)


def test_pretext_evaluated_on_its_training_images_says_so(tmp_path):
    same = data_block(PHOTOS, 120, 120, [64, 64], train_split="all", eval_split="all", on_training=True)
    for method in ("context_encoder", "autoencoder"):
        for seed in range(2):
            new_pretext(tmp_path, method, seed, data=same)
    new_probe(tmp_path, "cls", "context_encoder", 0, {"top1": 0.2}, data_block("cifar10", 50, 10, [32, 32]),
              [64, 64])
    table_command(tmp_path)
    markdown = (tmp_path / "tables" / "table.md").read_text()
    assert "| method | n | train steps | pixels | L2 on training images | mean-fill L2 (same pixels) | ratio |" \
        in markdown
    assert "held-out L2" not in markdown and "Pretext training, held-out reconstruction" not in markdown
    assert "reconstruction of the images it was trained on" in markdown
    assert "(all split: 120 images; evaluated on the same images)" in markdown
    assert "cls cifar10 train 50 → val 10 images at 32×32 (not the pretext's 64×64 input)" in markdown
    assert (tmp_path / "tables" / "pretext.png").read_bytes().startswith(PNG_MAGIC)


def test_rows_evaluated_on_training_images_are_marked_when_others_are_held_out(tmp_path):
    same = data_block(PHOTOS, 120, 120, [64, 64], train_split="all", eval_split="all", on_training=True)
    for seed in range(2):
        new_pretext(tmp_path, "context_encoder", seed)  # 12 held out
        new_pretext(tmp_path, "autoencoder", seed, data=same)
    new_probe(tmp_path, "cls", "context_encoder", 0, {"top1": 0.2}, data_block("cifar10", 50, 10, [32, 32]), None)
    table_command(tmp_path)
    markdown = (tmp_path / "tables" / "table.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in markdown.splitlines() if line.startswith("| ")}
    assert "| held-out L2 († on training images) |" in rows["method"]
    assert "0.1050 ± 0.0071 † |" in rows["autoencoder"] and "†" not in rows["context_encoder"]
    assert "†: evaluated on images the model was trained on (data.eval_on_training_images), not held out." \
        in markdown
    assert f"Held out of pretext training and evaluated on: context_encoder: {HELD_OUT}." in markdown


def test_the_pretext_section_says_which_images_were_held_out(made):
    markdown = (made / "tables" / "table.md").read_text()
    pretext = markdown[markdown.index("### pretext"):]
    assert "| held-out L2 |" in pretext and "†" not in pretext
    assert f"Held out of pretext training and evaluated on: {HELD_OUT}." in pretext


# --- delta.png ------------------------------------------------------------------------------------------------

def test_delta_png_is_written_beside_figure_png(made):
    tables = made / "tables"
    assert (tables / "delta.png").read_bytes().startswith(PNG_MAGIC)
    assert "delta.png" in json.loads((tables / "provenance.json").read_text())["files"]


def test_delta_frame_is_the_tables_differences(made):
    """The plotted numbers are the summary's Δ and interval in points, for every Δ row of the table (the baseline's
    and the further comparison's), and round to the table's Δ cells."""
    summary = summarise(collect_records(made), "random_init", comparisons=[("context_encoder", "autoencoder")])
    frame = delta_frame(summary)
    expected = summary[summary["baseline"] != ""]
    assert len(frame) == len(expected) == 3 * 3 + 3  # cls: 3 layers x 3 pairs; seg: 3 pairs
    assert list(zip(frame["probe"], frame["column"], frame["method"], frame["baseline"])) == \
        list(zip(expected["probe"], expected["column"], expected["method"], expected["baseline"]))
    for column in ("delta", "ci_low", "ci_high"):
        assert frame[column].tolist() == pytest.approx((expected[column] * PERCENT).tolist(), abs=1e-12)
    assert frame["significant"].tolist() == expected["significant"].tolist()
    markdown = (made / "tables" / "table.md").read_text()
    for _, row in frame.iterrows():
        cell = delta_cell(row["delta"] / PERCENT, row["ci_low"] / PERCENT, row["ci_high"] / PERCENT,
                          row["significant"])
        shown = "".join(f"**{text}**" if bold else text for text, bold in cell)
        assert shown in markdown, (row["probe"], row["column"], row["method"], row["baseline"])
    assert set(frame.loc[frame["method"] == "context_encoder", "significant"]) == {True}
    assert False in set(frame["significant"])  # the autoencoder: inside random_init's noise, drawn hollow


def test_no_difference_no_delta_png(made, tmp_path):
    out = tmp_path / "out"
    table_command(made, output=out, baseline=None)
    assert not (out / "delta.png").exists()
    (out / "delta.png").write_bytes(b"stale")
    table_command(made, output=out, baseline=None, overwrite=True)
    assert not (out / "delta.png").exists()
    assert isinstance(delta_frame(summarise(collect_records(made), None)), pd.DataFrame)
