"""Each built-in pretext method trains; the autoencoder and adversarial variants keep the paper's definitions."""
from __future__ import annotations

import json

import pytest
import torch

from ssl_ctx.config import load_config
from ssl_ctx.pretext import DataInfo
from ssl_ctx.pretext.run import run_pretrain
from ssl_ctx.registry import PRETEXT_METHODS

SMALL = ["model.encoder=alexnet32", "model.width=0.25", "model.norm=batch", "model.decoder_widths=[32, 16, 8, 8]"]


def build(name: str, *overrides: str, classes: int | None = None):
    config = load_config(None, [*SMALL, f"method.name={name}", *overrides])
    torch.manual_seed(0)
    method = PRETEXT_METHODS.get(name).from_config(config, DataInfo((32, 32), (120.0, 110.0, 100.0), classes))
    return config, method


def batch(classes: int = 10) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {"image": torch.rand(8, 3, 32, 32, generator=generator) * 2 - 1,
            "label": torch.randint(0, classes, (8,), generator=generator)}


@pytest.mark.parametrize("name", ["context_encoder", "autoencoder", "supervised"])
def test_method_trains_a_step(name):
    config, method = build(name, classes=10)
    optimizers = method.configure_optimizers(config.optim)
    before = [p.detach().clone() for p in method.encoder.parameters()]
    losses = method.train_step(batch(), optimizers, step=0)
    assert torch.isfinite(losses["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, method.encoder.parameters()))


def test_autoencoder_sees_the_whole_image_and_reconstructs_every_pixel():
    _, method = build("autoencoder")
    images = batch()["image"]
    input_mask, loss_mask = method.masks(images, torch.Generator().manual_seed(0))
    assert not input_mask.any() and loss_mask.all()


def test_context_encoder_drops_about_a_quarter_and_fills_with_the_mean():
    _, method = build("context_encoder")
    images = batch()["image"]
    input_mask, loss_mask = method.masks(images, torch.Generator().manual_seed(0))
    assert torch.equal(input_mask, loss_mask)
    assert 0.2 <= input_mask.float().mean().item() <= 0.3
    _, masked = method.reconstruct(images, input_mask)
    fill = (torch.tensor([120.0, 110.0, 100.0]) / 127.5 - 1).view(1, 3, 1, 1).expand_as(images)
    assert torch.allclose(masked[input_mask.expand_as(images)], fill[input_mask.expand_as(images)])


def test_adversarial_joint_loss_and_ten_times_generator_lr():
    config, method = build("context_encoder", "method.adversarial=true")
    optimizers = method.configure_optimizers(config.optim)
    assert set(optimizers) == {"generator", "discriminator"}
    assert optimizers["generator"].param_groups[0]["lr"] == pytest.approx(10 * config.optim.lr)
    assert optimizers["discriminator"].param_groups[0]["lr"] == pytest.approx(config.optim.lr)
    discriminator_before = [p.detach().clone() for p in method.discriminator.parameters()]
    losses = method.train_step(batch(), optimizers, step=0)
    expected = 0.999 * losses["loss_rec"] + 0.001 * losses["loss_adv"]
    assert torch.isclose(losses["loss"], expected)
    assert any(not torch.equal(a, b) for a, b in zip(discriminator_before, method.discriminator.parameters()))
    generator_params = {id(p) for p in optimizers["generator"].param_groups[0]["params"]}
    assert not generator_params & {id(p) for p in method.discriminator.parameters()}


@pytest.mark.slow
def test_pretrain_end_to_end_on_real_images(real_data, tmp_path):
    config = load_config("tests/configs/pretext_tiny.yaml", [f"output_dir={tmp_path}"])
    metrics = run_pretrain(config)
    run_dir = tmp_path / "pretext-tiny"
    record = json.loads((run_dir / "record.json").read_text())
    assert record["metrics"]["eval_masked_l2"] == pytest.approx(metrics["eval_masked_l2"])
    assert record["config"]["data"]["dataset"] == "tiny-imagenet-200" and record["git_commit"]
    assert (run_dir / "checkpoints" / "last.pt").exists() and (run_dir / "config.yaml").exists()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert list((run_dir / "images").glob("step*.png"))  # masked input | output | original


@pytest.mark.parametrize("choice", ["raw", "pasted"])
def test_discriminator_sees_the_raw_output_or_the_pasted_prediction(choice):
    config, method = build("context_encoder", "method.adversarial=true", f"method.discriminator_input={choice}")
    images = batch()["image"]
    real, fake, _ = method.adversarial_inputs({"image": images}, step=0)
    mask, _ = method.masks(images, method.step_generator(0, images.device))
    context = ~mask.expand_as(images)
    assert torch.equal(real, images)
    assert torch.equal(fake[context], images[context]) == (choice == "pasted")
