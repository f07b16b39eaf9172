"""Benchmarking one's own photos, as the README's "Your own photos" section says, on real photos in one flat folder
(CMP Facade portraits and CamVid landscapes, one EXIF-rotated, one grayscale, one CMYK: ``tests/photo_folder.py``).

The README's commands run as written (the folder substituted, tiny sizes appended to the bench line), and the run
is checked for what used to go wrong without a word: the pretext's input size is the encoder's, the step count is
the one asked for (and printed with what set it), the held-out number is measured on photos not trained on, a
mixed folder's left-out files are counted, a run that fails leaves no folder, and the photos are left as they were.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import file_digests
from tests.photo_folder import write_photo_folder

REPO = Path(__file__).resolve().parents[1]
PHOTOS = 24  # 16 facades + 8 street scenes
HELD_OUT = 2  # round(24 x data.holdout_fraction 0.1)
STEPS = 6  # more than the 3 batches of 8 that one epoch of the 22 training photos holds
# Appended to the README's bench line: one seed, two methods, a small network and one cheap probe.
TINY = [
    "bench.seeds=[0]", "bench.workers=null", "bench.comparisons=[]",
    "bench.methods={context_encoder: {method.name: context_encoder}, random_init: {method.name: random_init}}",
    f"bench.pretext_overrides.train.max_steps={STEPS}", "bench.pretext_overrides.train.epochs=1",
    "bench.pretext_overrides.train.batch_size=8", "bench.pretext_overrides.train.log_every=2",
    "bench.pretext_overrides.train.checkpoint_every=3", "bench.pretext_overrides.train.progress=false",
    "bench.pretext_overrides.model.width=0.25", "bench.pretext_overrides.model.decoder_widths=[64, 32, 16, 8]",
    "bench.probes={segmentation_facade: {config: probe/segmentation_facade_frozen.yaml, metric: miou, "
    "data.limit: 16, data.eval_limit: 8, probe.bn_images: 16, model.width: 0.25}}",
]


def readme_commands() -> list[str]:
    """The commands of the README's "Your own photos" block, in order."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Your own photos"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{shlex.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def environment(real_data_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    # a cache of its own, so that the caches the bench builds on first use are built (and said) here
    return {**os.environ, **real_data_env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2",
            "SSL_CTX_CACHE": str(tmp_path_factory.mktemp("own-cache"))}


@pytest.fixture(scope="module")
def photos(environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photo_folder(Path(environment["SSL_CTX_DATA"]), tmp_path_factory.mktemp("own") / "photos")


@pytest.fixture(scope="module")
def readme_run(environment: dict[str, str], photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The README's commands, run as written in a fresh working folder (the photo folder substituted)."""
    work = tmp_path_factory.mktemp("work")
    (work / "configs").symlink_to(REPO / "configs")
    before = file_digests(photos)
    outputs = []
    for line in readme_commands():
        words = shlex.split(line.replace("$HOME/photos", str(photos)))
        assert words[0] == "ssl-ctx", line
        words = [sys.executable, "-m", "ssl_ctx", *words[1:], *(TINY if words[1] == "bench" else [])]
        outputs.append(run(words, environment, work))
    return {"work": work, "bench": work / "runs" / "bench-my-photos", "outputs": outputs, "before": before}


def record(bench: Path, *parts: str) -> dict:
    return json.loads(bench.joinpath(*parts, "record.json").read_text())


def test_prepare_names_the_folder_its_size_and_resize_policy(readme_run):
    printed = readme_run["outputs"][0].stdout
    assert f"all {PHOTOS} images; 0 file(s) skipped" in printed
    assert "64x64" in printed and "shorter_side" in printed


def test_pretext_trains_at_the_encoders_input_size(readme_run):
    """alexnet64 is built for 64-px images: the photo folder is cached and trained at 64x64 (it was 128x128)."""
    import torch

    pretext = record(readme_run["bench"], "pretext", "context_encoder", "seed0")
    assert pretext["data"]["input_size"] == [64, 64] and pretext["data"]["cache_size"] == [64, 64]
    checkpoint = torch.load(readme_run["bench"] / "pretext" / "context_encoder" / "seed0" / "checkpoints" / "last.pt",
                            map_location="cpu", weights_only=True)
    assert checkpoint["data_info"]["input_size"] == [64, 64]
    probe = record(readme_run["bench"], "probe", "segmentation_facade", "context_encoder", "seed0")
    assert probe["probe"]["pretext_input_size"] == [64, 64] and probe["probe"]["input_size"] == [128, 128]
    assert "while the encoder was pretrained on 64x64 images" in readme_run["outputs"][1].stdout


def test_the_step_count_is_the_one_asked_for_and_printed(readme_run):
    """train.max_steps=6 with train.epochs=1 of 2 batches: max_steps wins, and the run says so before it starts."""
    pretext = record(readme_run["bench"], "pretext", "context_encoder", "seed0")
    assert pretext["metrics"]["train_steps"] == STEPS
    assert pretext["steps"]["planned"] == STEPS and pretext["steps"]["bound"] == f"train.max_steps={STEPS}"
    assert f"{STEPS} steps, set by train.max_steps={STEPS}" in readme_run["outputs"][1].stdout


def test_held_out_means_photos_not_trained_on(readme_run, environment, photos, monkeypatch):
    pretext = record(readme_run["bench"], "pretext", "context_encoder", "seed0")
    data = pretext["data"]
    assert (data["train_images"], data["eval_images"]) == (PHOTOS - HELD_OUT, HELD_OUT)
    assert data["held_out"].startswith(f"{HELD_OUT} of the {PHOTOS} images of 'all'")
    assert data["eval_on_training_images"] is False and "eval_masked_l2" in pretext["metrics"]
    # the held-out photos are other photos than the trained ones, pixel for pixel
    from ssl_ctx.config import load_config
    from ssl_ctx.data.run_data import load_run_data

    for key in ("SSL_CTX_DATA", "SSL_CTX_CACHE"):
        monkeypatch.setenv(key, environment[key])
    config = load_config(readme_run["bench"] / "pretext" / "context_encoder" / "seed0" / "config.yaml")
    split = load_run_data(config.data, 64)
    trained = {row.tobytes() for row in np.asarray(split.train.images)}
    assert len(split.eval) == HELD_OUT and not any(row.tobytes() in trained for row in np.asarray(split.eval.images))
    assert "held-out" in (readme_run["bench"] / "tables" / "table.md").read_text().lower()


def test_logs_say_what_was_built_and_no_mask_for_maskless_methods(readme_run, photos):
    printed = readme_run["outputs"][1].stdout
    # the photos' cache was prepared by the README's first command; the probe's 16-image slice of CMP Facade is
    # built by the bench on first use, and its log says so
    assert "data: preparing cmp-facade at 128x128-limit16 (squeeze) on first use" in printed
    assert f"data: preparing imagefolder:{photos}" not in printed
    assert re.search(r"pretext random_init \(alexnet64\) ->", printed)
    assert re.search(r"pretext context_encoder \(alexnet64, mask random_region\) ->", printed)


def test_tables_state_what_the_pretext_trained_on(readme_run, photos):
    table = (readme_run["bench"] / "tables" / "table.md").read_text()
    assert f"imagefolder:{photos}" in table and "64×64" in table
    assert (readme_run["bench"] / "tables" / "delta.png").is_file()


def test_the_photos_are_left_byte_identical(readme_run, photos):
    assert file_digests(photos) == readme_run["before"]


def test_a_mixed_folder_counts_the_files_it_leaves_out(environment, photos, tmp_path):
    """Photos at the top of a folder that also has a sub-folder: the class layout leaves them out, and says so."""
    mixed = tmp_path / "mixed"
    shutil.copytree(photos, mixed)
    moved = sorted(os.listdir(mixed))[:2]
    (mixed / "extra").mkdir()
    for name in moved:
        shutil.move(mixed / name, mixed / "extra" / name)
    result = run([sys.executable, "-m", "ssl_ctx", "data", "prepare", f"imagefolder:{mixed}", "--size", "16"],
                 environment, tmp_path)
    left_out = PHOTOS - 2
    assert f"all 2 images; {left_out} file(s) skipped" in result.stdout
    assert "facade_002.jpg" in result.stderr  # named


def test_a_flat_folder_without_the_asked_split_names_the_fix_and_leaves_no_run_folder(environment, photos,
                                                                                       tmp_path):
    command = [sys.executable, "-m", "ssl_ctx", "pretrain", "configs/pretext/quick.yaml",
               f"data.dataset=imagefolder:{photos}", "data.eval_split=test", f"output_dir={tmp_path / 'runs'}",
               "name=err-split"]
    result = subprocess.run(command, env=environment, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert "has no splits 'train', 'test'; splits: all" in error
    assert "data.train_split=train data.eval_split=val" in error and "data.eval_split=all" in error
    assert not (tmp_path / "runs" / "err-split").exists()  # no tensorboard/ or config left behind


def test_training_and_evaluating_on_all_photos_is_labelled_so(environment, photos, tmp_path):
    """data.train_split=all data.eval_split=all: allowed, and every number it gives says "on training images"."""
    runs = tmp_path / "runs"
    result = run([sys.executable, "-m", "ssl_ctx", "pretrain", "tests/configs/pretext_tiny.yaml",
                  f"data.dataset=imagefolder:{photos}", "data.train_split=all", "data.eval_split=all",
                  "data.limit=null", "data.eval_limit=null", f"output_dir={runs}", "name=all"], environment, REPO)
    assert "eval_* on the training images" in result.stdout
    data = json.loads((runs / "all" / "record.json").read_text())["data"]
    assert data["eval_on_training_images"] is True and data["held_out"] is None
    assert data["train_images"] == data["eval_images"] == PHOTOS
    run([sys.executable, "-m", "ssl_ctx", "probe", "tests/configs/probe_tiny.yaml", f"output_dir={runs}",
         f"probe.init={runs / 'all' / 'checkpoints' / 'last.pt'}", "name=probe"], environment, REPO)
    run([sys.executable, "-m", "ssl_ctx", "table", str(runs)], environment, REPO)
    assert "L2 on training images" in (runs / "tables" / "table.md").read_text()
