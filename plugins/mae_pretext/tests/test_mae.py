"""The MAE plug-in: registered through its entry point, masks as MAE does, learns only from the removed patches,
and its checkpoint is an encoder every probe reads."""
from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

from ssl_ctx.config import load_config
from ssl_ctx.errors import UserError
from ssl_ctx.pretext import DataInfo
from ssl_ctx.registry import PRETEXT_METHODS
from ssl_ctx.testing import check_pretext_method
from ssl_ctx_mae import MaskedAutoencoder, patchify, unpatchify  # importing registers the method

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
installed = any(ep.name == "mae" for ep in entry_points(group="ssl_ctx.pretext_methods"))
needs_install = pytest.mark.skipif(not installed, reason="plug-in not installed: pip install -e plugins/mae_pretext")

# A ViT small enough for a unit test (the method's own contract config): 32-px images in 16 patches of 8 px, two
# blocks of width 48, a one-block decoder.
TINY_VIT = [*MaskedAutoencoder.contract_overrides, "method.name=mae"]


def tiny_mae(*overrides: str):
    config = load_config(None, [*TINY_VIT, *overrides])
    return PRETEXT_METHODS.get("mae").from_config(config, DataInfo((32, 32))), config


@needs_install
def test_entry_point_registers_mae_and_list_shows_it():
    assert "mae" in PRETEXT_METHODS.names()
    listing = subprocess.run([sys.executable, "-m", "ssl_ctx", "list"], capture_output=True, text=True, check=True)
    assert "mae" in listing.stdout.splitlines()[0]


def test_mae_keeps_the_method_contract(tmp_path):
    """Trains a step, saves and reloads its checkpoint, and a probe reads its encoder (ssl_ctx.testing)."""
    metrics = check_pretext_method("mae", tmp_path)
    assert metrics["eval_loss"] > 0 and metrics["eval_flat_patch_loss"] > 0


@pytest.mark.parametrize("ratio, visible", [(0.75, 4), (0.5, 8)])
def test_masking_ratio_is_honoured_per_image(ratio, visible):
    method, _ = tiny_mae(f"method.options.mask_ratio={ratio}")
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    kept, mask = method.draw_mask(images, torch.Generator().manual_seed(0))
    assert kept.shape == (6, visible)
    assert mask.sum(dim=1).tolist() == [16 - visible] * 6  # exactly the ratio, in every image
    assert all(mask[row, kept[row]].eq(0).all() for row in range(6))  # the kept patches are the unmasked ones
    assert len({tuple(sorted(row.tolist())) for row in kept}) > 1  # each image draws its own patches


def test_loss_is_measured_on_the_removed_patches_only():
    method, _ = tiny_mae()
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    generator_seed = 3
    _, _, target, mask = method.forward_loss(images, torch.Generator().manual_seed(generator_seed))
    # A decoder exact on the removed patches and wrong on the visible ones has zero loss ...
    wrong_where_visible = torch.where(mask[..., None].bool(), target, target + 5.0)
    method.decode = lambda encoded, visible: wrong_where_visible
    loss = method.forward_loss(images, torch.Generator().manual_seed(generator_seed))[0]
    assert loss.item() == 0.0
    # ... and one wrong on a removed patch does not.
    wrong_where_removed = torch.where(mask[..., None].bool(), target + 1.0, target)
    method.decode = lambda encoded, visible: wrong_where_removed
    assert method.forward_loss(images, torch.Generator().manual_seed(generator_seed))[0].item() == pytest.approx(1.0)


def test_target_is_each_patch_normalised_and_patches_round_trip():
    method, _ = tiny_mae()
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(unpatchify(patchify(images, 8), 8, 32, 32), images)
    target = method.target(images)
    assert target.shape == (2, 16, 8 * 8 * 3)
    torch.testing.assert_close(target.mean(dim=-1), torch.zeros(2, 16), atol=1e-5, rtol=0)
    # var (ddof 1) of a normalised patch is var / (var + eps): 1 up to MAE's eps of 1e-6.
    torch.testing.assert_close(target.var(dim=-1), torch.ones(2, 16), atol=1e-3, rtol=0)


def test_mae_needs_a_vision_transformer():
    config = load_config(None, ["model.encoder=alexnet32", "method.name=mae"])
    with pytest.raises(UserError, match="needs a timm Vision Transformer encoder, not 'alexnet32'"):
        PRETEXT_METHODS.get("mae").from_config(config, DataInfo((32, 32)))


def test_mae_learns_a_fixed_batch():
    """Smooth images (removed patches predictable from their neighbours): 60 steps on one batch and one mask take
    the loss well below the flat-patch reference (over seeds 0-3: 0.55-0.71 against 0.995, from 1.33-1.39)."""
    torch.manual_seed(0)
    method, config = tiny_mae("optim.name=adamw", "optim.lr=0.002", "optim.betas=[0.9, 0.95]")
    images = torch.nn.functional.interpolate(torch.rand(8, 3, 4, 4) * 2 - 1, size=32, mode="bilinear")
    optimizer = method.configure_optimizers(config.optim)
    losses = [method.train_step({"image": images}, optimizer, 0)["loss"].item() for _ in range(60)]  # one mask
    held = method.evaluate_batch({"image": images}, method.step_generator(0, images.device))
    assert losses[-1] < losses[0] * 0.6
    assert held["loss"].item() < 0.85 * held["flat_patch_loss"].item()


@needs_install
@pytest.mark.slow
def test_real_data_steps_and_a_probe_reads_the_checkpoint(real_data, tmp_path):
    """A few steps on Tiny-ImageNet with the committed config, then the frozen classification probe per block."""
    pretrain = [sys.executable, "-m", "ssl_ctx", "pretrain", str(REPO / "configs/pretext/mae_quick.yaml"),
                f"output_dir={tmp_path}", "name=mae", "train.max_steps=4", "train.batch_size=16",
                "train.eval_batches=2", "data.limit=256"]
    done = subprocess.run(pretrain, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "mae" / "record.json").read_text())
    assert record["metrics"]["train_steps"] == 4
    assert 0 < record["metrics"]["eval_loss"] < 2 * record["metrics"]["eval_flat_patch_loss"]
    probe = [sys.executable, "-m", "ssl_ctx", "probe", str(REPO / "configs/probe/classification_tiny_frozen.yaml"),
             f"probe.init={tmp_path / 'mae' / 'checkpoints' / 'last.pt'}", f"output_dir={tmp_path}", "name=probe",
             "model.encoder=timm:vit_tiny_patch16_224", "probe.layer=conv5|blocks_0+blocks_5",
             "data.limit=400", "data.eval_limit=200", "probe.bn_images=64"]
    done = subprocess.run(probe, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "probe" / "record.json").read_text())["metrics"]
    assert {"top1@blocks_0", "top1@blocks_5"} <= set(metrics)
