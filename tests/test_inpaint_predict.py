"""`ssl-ctx inpaint` and the checkpoint inpainter: any image size, context kept bit for bit, one-line errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ssl_ctx.pretext.inpainting128  # noqa: F401  (registers the method)
from ssl_ctx.cli import main
from ssl_ctx.config import config_to_dict, load_config
from ssl_ctx.engine.checkpoint import save_checkpoint
from ssl_ctx.inpaint.model import CheckpointInpainter, central_window, load_pretext_model
from ssl_ctx.pretext.base import DataInfo
from ssl_ctx.pretext.inpainting128 import Inpainting128


CENTRE_CONFIG = load_config(None, ["method.name=inpainting128", "model.encoder=inpainting128", "mask.type=central",
                                   "model.bottleneck_dim=8"])


def tiny_centre_model(seed: int = 0) -> Inpainting128:
    torch.manual_seed(seed)
    config = CENTRE_CONFIG
    return Inpainting128.from_config(config, DataInfo((128, 128), (120.0, 110.0, 100.0))).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    task = tiny_centre_model()
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    save_checkpoint(path, {**task.checkpoint_metadata(), "config": config_to_dict(CENTRE_CONFIG),
                           "model": task.state_dict(), "optimizers": {}})
    return path


def write_image(path: Path, height: int, width: int, seed: int = 0) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("height,width", [(128, 128), (90, 200), (300, 170)])
def test_region_center_keeps_every_pixel_outside_the_hole(tmp_path: Path, checkpoint: Path, height: int,
                                                          width: int) -> None:
    pixels = write_image(tmp_path / "in.png", height, width)
    code = main(["inpaint", str(tmp_path / "in.png"), "--region", "center", "--checkpoint", str(checkpoint),
                 "-o", str(tmp_path / "out.png"), "--figure", str(tmp_path / "fig.png")])
    assert code == 0
    out = read(tmp_path / "out.png")
    assert out.shape == pixels.shape
    changed = np.any(out != pixels, axis=-1)
    side = round(min(height, width) * 56 / 128)
    top, left = (height - side) // 2, (width - side) // 2
    hole = np.zeros((height, width), dtype=bool)
    hole[top:top + side, left:left + side] = True
    assert not changed[~hole].any()  # bit-exact outside the hole
    assert changed[hole].mean() > 0.5  # and the hole was filled
    assert read(tmp_path / "fig.png").shape[1] > 3 * width


def test_user_mask_anywhere_keeps_the_context(tmp_path: Path, checkpoint: Path) -> None:
    pixels = write_image(tmp_path / "in.png", 75, 110)
    mask = np.zeros((75, 110), dtype=np.uint8)
    mask[5:20, 80:105] = 255  # near a corner: the window is padded past the border
    mask[30, 3] = 1  # any non-zero value is a hole pixel
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert main(["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), "--checkpoint",
                 str(checkpoint), "-o", str(tmp_path / "out.png")]) == 0
    out = read(tmp_path / "out.png")
    hole = mask > 0
    assert np.array_equal(out[~hole], pixels[~hole])


def test_wrong_size_mask_is_one_clear_line(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    write_image(tmp_path / "in.png", 64, 80)
    Image.fromarray(np.full((64, 64), 255, dtype=np.uint8)).save(tmp_path / "mask.png")
    code = main(["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), "--checkpoint",
                 str(checkpoint), "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("ssl-ctx: error: mask") and "64x64" in err and "80x64" in err
    assert not (tmp_path / "out.png").exists()


def test_unreadable_image_is_one_clear_line(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    code = main(["inpaint", str(tmp_path / "broken.jpg"), "--region", "center", "--checkpoint", str(checkpoint),
                 "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 2  # the line, then Pillow's own words indented below it
    line, detail = err.splitlines()
    assert "cannot read image" in line and "broken.jpg" in line
    assert detail.startswith("  cannot identify image file")
    code = main(["inpaint", str(tmp_path / "missing.png"), "--region", "center", "--checkpoint", str(checkpoint),
                 "-o", str(tmp_path / "out.png")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_centre_model_refuses_random_regions(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    write_image(tmp_path / "in.png", 64, 64)
    code = main(["inpaint", str(tmp_path / "in.png"), "--region", "block", "--checkpoint", str(checkpoint),
                 "-o", str(tmp_path / "out.png")])
    assert code == 2 and "central hole" in capsys.readouterr().err


def test_checkpoint_round_trip_gives_the_same_model(checkpoint: Path) -> None:
    task, config = load_pretext_model(checkpoint)
    reference = tiny_centre_model()
    images = torch.rand(2, 3, 128, 128) * 2 - 1
    assert config.method.name == "inpainting128"
    assert torch.equal(task.inpaint(images), reference.inpaint(images))


def test_model_own_hole_at_model_size_is_the_released_protocol() -> None:
    """A 128-px image with the 56-px central hole goes through unresized: output = the model's prediction."""
    task = tiny_centre_model()
    images = np.random.default_rng(1).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    masks = np.zeros((2, 128, 128), dtype=bool)
    masks[:, 36:92, 36:92] = True
    assert central_window(masks[0], 128, task.hole_box).side_h == 128
    out = CheckpointInpainter(task)(images, masks)
    direct = task.inpaint(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1)
    direct = np.rint((direct.clamp(-1, 1) * 0.5 + 0.5).permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    assert np.array_equal(out[masks], direct[masks])
    assert np.array_equal(out[~masks], images[~masks])


class FullImageStub(torch.nn.Module):
    """A full-image model (like context_encoder): ``reconstruct`` returns mid-grey everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.data = DataInfo((32, 32))
        self.seen: list[torch.Tensor] = []

    def reconstruct(self, images: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append(mask)
        return torch.zeros_like(images) + self.weight, images


@pytest.mark.parametrize("height,width", [(32, 32), (50, 90), (20, 24)])
def test_full_image_model_any_mask_and_size(height: int, width: int) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    masks = rng.random((2, height, width)) < 0.2
    stub = FullImageStub()
    out = CheckpointInpainter(stub)(images, masks)
    assert np.array_equal(out[~masks], images[~masks])
    assert np.all(np.abs(out[masks].astype(int) - 128) <= 1)
    assert stub.seen[0].shape == (2, 1, 32, 32)
