"""The paper's 128-px centre-inpainting method (ssl_ctx.pretext.inpainting128)."""
from __future__ import annotations

import pytest
import torch

from ssl_ctx.config import OptimConfig, load_config
from ssl_ctx.errors import UserError
from ssl_ctx.pretext.base import DataInfo
from ssl_ctx.pretext.inpainting128 import Inpainting128
from ssl_ctx.registry import PRETEXT_METHODS

INFO = DataInfo((128, 128), (120.0, 110.0, 100.0))


def make(*overrides: str) -> Inpainting128:
    torch.manual_seed(0)
    config = load_config(None, ["method.name=inpainting128", "model.encoder=inpainting128", "mask.type=central",
                                "model.bottleneck_dim=8", *overrides])
    return Inpainting128.from_config(config, INFO)


def batch(size: int = 2) -> dict[str, torch.Tensor]:
    return {"image": torch.rand(size, 3, 128, 128) * 2 - 1}


def test_registered_under_its_name() -> None:
    assert PRETEXT_METHODS.get("inpainting128") is Inpainting128


def test_hole_is_the_centre_less_the_overlap_and_inpaint_keeps_the_rest() -> None:
    task = make().eval()
    assert task.hole_box == (36, 36, 56)
    images = batch()["image"]
    out = task.inpaint(images)
    outside = torch.ones(128, 128, dtype=torch.bool)
    outside[32:96, 32:96] = False
    assert torch.equal(out[..., outside], images[..., outside])
    masked = task.predict(images)[1]
    assert torch.equal(masked[..., 36:92, 36:92], task.fill.expand(2, 3, 56, 56))
    assert torch.equal(masked[..., 32:36, :], images[..., 32:36, :])  # the overlap border stays visible


def test_reconstruction_loss_weights_the_border_ten_times() -> None:
    task = make()
    images = torch.zeros(1, 3, 128, 128)
    centre = torch.zeros(1, 3, 64, 64)
    centre[..., 0, 0] = 1.0  # a border pixel
    border = task.reconstruction_loss(centre, images)
    centre = torch.zeros(1, 3, 64, 64)
    centre[..., 30, 30] = 1.0  # a hole pixel
    inside = task.reconstruction_loss(centre, images)
    assert float(border) == pytest.approx(10 * float(inside))
    assert float(inside) == pytest.approx(3 / (3 * 64 * 64))


def test_l2_step_uses_one_optimiser() -> None:
    task = make()
    optimizers = task.configure_optimizers(OptimConfig())
    assert list(optimizers) == ["model"]
    values = task.train_step(batch(), optimizers, 0)
    assert torch.isfinite(values["loss"])


def test_joint_step_trains_generator_at_ten_times_the_discriminator_lr() -> None:
    task = make("method.adversarial=true")
    optimizers = task.configure_optimizers(OptimConfig())
    assert optimizers["generator"].param_groups[0]["lr"] == pytest.approx(10 * optimizers["discriminator"].param_groups[0]["lr"])
    before = [p.detach().clone() for p in task.discriminator.parameters()]
    values = task.train_step(batch(), optimizers, 0)
    assert set(values) == {"loss", "loss_rec", "loss_adv", "loss_discriminator"}
    loss, rec, adv = (float(values[k]) for k in ("loss", "loss_rec", "loss_adv"))
    assert loss == pytest.approx(0.999 * rec + 0.001 * adv, rel=1e-5)  # float32 (eps 6e-8) against float64
    assert any(not torch.equal(a, b) for a, b in zip(before, task.discriminator.parameters()))


def test_wrong_geometry_is_a_user_error() -> None:
    with pytest.raises(UserError, match="mask.type=central"):
        make("mask.type=random_region")
    config = load_config(None, ["method.name=inpainting128", "mask.type=central", "model.bottleneck_dim=8"])
    with pytest.raises(UserError, match="data.input_size=128"):
        Inpainting128.from_config(config, DataInfo((64, 64)))


def test_checkpoint_metadata_names_the_encoder_and_data() -> None:
    task = make()
    meta = task.checkpoint_metadata()
    assert meta["encoder"] == "inpainting128" and meta["encoder_prefix"] == "generator.encoder."
    assert meta["data_info"]["input_size"] == [128, 128]
    assert any(key.startswith("generator.encoder.conv1") for key in task.state_dict())
