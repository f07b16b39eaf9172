"""Images in, images out, faithfully: every PIL mode decodes alike in `data prepare` and `inpaint`, 16-bit
keeps its content, `inpaint -o` keeps the context in a lossless file, and a checkpoint alone is enough."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from ssl_ctx.cli import main
from ssl_ctx.config import config_to_dict
from ssl_ctx.data import load_split
from ssl_ctx.data.decode import decode_image
from ssl_ctx.engine.checkpoint import save_checkpoint
from ssl_ctx.images import open_rgb, to_rgb
from ssl_ctx.inpaint.model import load_pretext_model
from ssl_ctx.inpaint.predict import check_output_name, read_image, write_image
from ssl_ctx.masks import fill_value
from ssl_ctx.pretext.base import DataInfo
from ssl_ctx.pretext.context_encoder import ContextEncoder
from tests.faults.conftest import run_cli, the_line
from tests.helpers import file_digests, leftovers, small_config

HEIGHT, WIDTH = 12, 20
STORED_MEAN = (12.5, 200.25, 77.0)  # unlike any real dataset's mean, so a fallback would show


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _rgb8() -> np.ndarray:
    return _rng().integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _gradient16() -> np.ndarray:
    """uint16 ``(H, W)`` spread over 0..65535 (both ends included)."""
    return np.rint(np.linspace(0, 65535, HEIGHT * WIDTH)).astype(np.uint16).reshape(HEIGHT, WIDTH)


def _grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=-1).astype(np.uint8)


def _palette_image() -> Image.Image:
    return Image.fromarray(_rgb8()).quantize(16)


# name -> (file bytes, expected uint8 (H, W, 3) or None where only "both paths agree" is asserted)
def _cases() -> dict[str, tuple[bytes, np.ndarray | None]]:
    rgb = _rgb8()
    gradient = _gradient16()
    rgb16 = _rng().integers(0, 65536, (HEIGHT, WIDTH, 3), dtype=np.uint16)
    rgba16 = _rng().integers(0, 65536, (HEIGHT, WIDTH, 4), dtype=np.uint16)
    palette = _palette_image()
    transparent = palette.copy()
    grey = rgb[..., 0]
    alpha = rgb[..., 1]
    cmyk = Image.fromarray(rgb).convert("CMYK")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned 90 degrees clockwise
    sideways = np.ascontiguousarray(np.rot90(rgb, k=1))  # (W, H, 3); upright it is ``rgb``
    floats = gradient.astype(np.float32) / 257.0  # 0..255 with fractions
    return {
        "gray16_png": (_encode(Image.fromarray(gradient), "PNG"), _grey(gradient >> 8)),
        "gray16_bigendian_tiff": (_encode(Image.frombytes("I;16B", (WIDTH, HEIGHT), gradient.astype(">u2").tobytes()),
                                          "TIFF"), _grey(gradient >> 8)),
        "rgb48_png": (cv2.imencode(".png", rgb16[..., ::-1])[1].tobytes(), (rgb16 >> 8).astype(np.uint8)),
        "rgba64_png": (cv2.imencode(".png", rgba16[..., [2, 1, 0, 3]])[1].tobytes(),
                       (rgba16[..., :3] >> 8).astype(np.uint8)),
        "palette_png": (_encode(palette, "PNG"), np.asarray(palette.convert("RGB"))),
        "palette_transparent_png": (_encode(transparent, "PNG", transparency=3), np.asarray(palette.convert("RGB"))),
        "gray_png": (_encode(Image.fromarray(grey), "PNG"), _grey(grey)),
        "gray_alpha_png": (_encode(Image.fromarray(np.stack([grey, alpha], -1), "LA"), "PNG"), _grey(grey)),
        "bilevel_png": (_encode(Image.fromarray(grey > 127), "PNG"), _grey((grey > 127) * 255)),
        "float_tiff": (_encode(Image.fromarray(floats), "TIFF"), _grey(np.rint(floats))),
        "cmyk_tiff": (_encode(cmyk, "TIFF"), np.asarray(cmyk.convert("RGB"))),
        "cmyk_jpeg": (_encode(cmyk, "JPEG", quality=95), None),
        "ycbcr_jpeg": (_encode(Image.fromarray(rgb), "JPEG", quality=95), None),
        "rgba_png": (_encode(Image.fromarray(np.concatenate([rgb, alpha[..., None]], -1), "RGBA"), "PNG"), rgb),
        "exif_rotated_png": (_encode(Image.fromarray(sideways), "PNG", exif=exif.tobytes()), rgb),
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_prepare_and_inpaint_decode_every_mode_alike(tmp_path: Path, name: str) -> None:
    data, expected = CASES[name]
    path = tmp_path / f"{name}.{name.rsplit('_', 1)[1]}"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Pillow's warning for palette transparency going straight to RGB
        prepared, original = decode_image(data, (HEIGHT, WIDTH))
        read = read_image(path)
    assert original == (WIDTH, HEIGHT)
    assert read.dtype == prepared.dtype == np.uint8 and read.shape == (HEIGHT, WIDTH, 3)
    assert np.array_equal(read, prepared)
    if expected is not None:
        assert np.array_equal(read, expected)


def test_sixteen_bit_gradient_stays_a_gradient() -> None:
    gradient = _gradient16()
    pixels = np.asarray(open_rgb(_encode(Image.fromarray(gradient), "PNG")))[..., 0].ravel()
    assert pixels.min() == 0 and pixels.max() == 255  # not clipped to white
    assert np.all(np.diff(pixels.astype(int)) >= 0) and len(np.unique(pixels)) > 200
    assert np.array_equal(pixels, (gradient >> 8).ravel())  # the top 8 bits


@pytest.mark.parametrize("mode", ["PA", "La", "RGBa", "RGBX", "HSV", "LAB", "YCbCr", "I", "I;16", "1"])
def test_every_other_mode_becomes_rgb(mode: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert to_rgb(Image.new(mode, (3, 2))).mode == "RGB"


def test_a_cache_holds_what_inpaint_reads(env: Path) -> None:
    """The whole `data prepare` path (an image folder at the files' own size) against `inpaint`'s reader."""
    folder = env / "data" / "modes" / "all"  # one class, files in name order
    folder.mkdir(parents=True)
    paths = [folder / f"{number:02d}_{name}.{name.rsplit('_', 1)[1]}" for number, name in enumerate(sorted(CASES))]
    for path, name in zip(paths, sorted(CASES)):
        path.write_bytes(CASES[name][0])
    split = load_split(f"imagefolder:{folder.parent}", "all", size=f"{HEIGHT}x{WIDTH}")
    assert len(split.images) == len(paths)
    for cached, path in zip(split.images, paths):
        assert np.array_equal(cached, read_image(path)), path.name


# ------------------------------------------------------------------------------------------ inpaint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny context encoder (32 px) saved as `ssl-ctx pretrain` saves it."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    config = small_config(folder, "mask.type=central")
    task = ContextEncoder.from_config(config, DataInfo((32, 32), STORED_MEAN))
    return save_checkpoint(folder / "last.pt", {**task.checkpoint_metadata(), "config": config_to_dict(config),
                                                "model": task.state_dict(), "optimizers": {}})


@pytest.fixture
def picture(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """(image file, mask file, its pixels, bool hole)."""
    pixels = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    hole = np.zeros((40, 56), dtype=bool)
    hole[10:25, 20:40] = True
    Image.fromarray(pixels).save(tmp_path / "in.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    return tmp_path / "in.png", tmp_path / "mask.png", pixels, hole


def _inpaint(picture, checkpoint: Path, output: Path, *extra: str) -> int:
    image, mask, _, _ = picture
    return main(["inpaint", str(image), "--mask", str(mask), "--checkpoint", str(checkpoint), "-o", str(output),
                 *extra])


def test_png_output_keeps_the_context_bit_for_bit(tmp_path: Path, checkpoint: Path, picture,
                                                 capsys: pytest.CaptureFixture) -> None:
    _, _, pixels, hole = picture
    assert _inpaint(picture, checkpoint, tmp_path / "out.png") == 0
    assert capsys.readouterr().err == ""
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert np.array_equal(out[~hole], pixels[~hole]) and np.any(out[hole] != pixels[hole])


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".TIFF", ".ppm", ".webp"])
def test_every_lossless_format_reads_back_exactly(tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture) -> None:
    pixels = _rgb8()
    path = write_image(check_output_name(tmp_path / f"out{suffix}"), pixels)
    assert capsys.readouterr().err == ""
    with Image.open(path) as written:
        assert np.array_equal(np.asarray(written.convert("RGB")), pixels)


def test_lossy_output_is_written_after_one_warning(tmp_path: Path, checkpoint: Path, picture,
                                                   capsys: pytest.CaptureFixture) -> None:
    assert _inpaint(picture, checkpoint, tmp_path / "out.jpg") == 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("ssl-ctx: warning: output") and "out.jpg" in err and "lossy" in err and ".png" in err
    assert (tmp_path / "out.jpg").is_file()


def test_lossy_figure_is_one_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    check_output_name(tmp_path / "figure.JPEG", "figure")
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ssl-ctx: warning: figure") and "figure.JPEG" in err


@pytest.mark.parametrize("output,figure", [("out.xyz", None), ("out", None), ("out.png", "figure.pdf2")])
def test_unknown_suffix_is_one_error_and_nothing_is_written(tmp_path: Path, checkpoint: Path, picture,
                                                            capsys: pytest.CaptureFixture, output: str,
                                                            figure: str | None) -> None:
    before = set(tmp_path.iterdir())
    extra = ["--figure", str(tmp_path / figure)] if figure else []
    assert _inpaint(picture, checkpoint, tmp_path / output, *extra) == 2
    err = capsys.readouterr().err.strip()
    bad = figure or output
    assert len(err.splitlines()) == 1 and err.startswith("ssl-ctx: error: ")
    assert f"'{tmp_path / bad}'" in err and "use .png" in err
    assert set(tmp_path.iterdir()) == before


def test_inpaint_needs_only_the_checkpoint(tmp_path: Path, checkpoint: Path, picture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    data, cache = tmp_path / "no-data", tmp_path / "no-cache"
    data.mkdir()
    cache.mkdir()
    monkeypatch.setenv("SSL_CTX_DATA", str(data))
    monkeypatch.setenv("SSL_CTX_CACHE", str(cache))
    _, _, pixels, hole = picture
    assert _inpaint(picture, checkpoint, tmp_path / "out.png") == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert np.array_equal(out[~hole], pixels[~hole]) and np.any(out[hole] != pixels[hole])
    assert not any(cache.iterdir())  # no training split was prepared to find the fill colour
    task, config = load_pretext_model(checkpoint)
    assert task.data.mean_rgb == STORED_MEAN and task.data.input_size == (32, 32)
    assert torch.equal(task.fill, fill_value(config.mask, STORED_MEAN))  # the training fill, exactly
    assert torch.allclose(task.fill.flatten(), torch.tensor(STORED_MEAN) / 127.5 - 1)


def test_checkpoint_without_data_info_falls_back_to_the_training_data(tmp_path: Path, checkpoint: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Only checkpoints from before data_info was stored still read the training split for the fill colour."""
    from ssl_ctx.engine.checkpoint import load_checkpoint
    from ssl_ctx.errors import UserError

    payload = load_checkpoint(checkpoint)
    del payload["data_info"]
    old = save_checkpoint(tmp_path / "old.pt", payload)
    monkeypatch.setenv("SSL_CTX_DATA", str(tmp_path))
    monkeypatch.setenv("SSL_CTX_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="not found"):
        load_pretext_model(old)


# ------------------------------------------------------------------------------- inpaint's own files


@pytest.mark.parametrize("target", ["image", "mask", "image by a symbolic link", "image by a hard link",
                                    "checkpoint by a symbolic link"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_inpaint_never_writes_over_its_inputs(tmp_path: Path, checkpoint: Path, picture, capsys, target: str,
                                              overwrite: bool) -> None:
    image, mask, _, _ = picture
    named = {"image": (image, "input image", image), "mask": (mask, "mask", mask)}
    if target.startswith("checkpoint"):
        (tmp_path / "model.png").symlink_to(checkpoint)
        named[target] = (tmp_path / "model.png", "checkpoint", checkpoint)
    elif target.endswith("symbolic link"):
        (tmp_path / "link.png").symlink_to(image)
        named[target] = (tmp_path / "link.png", "input image", image)
    elif target.endswith("hard link"):
        os.link(image, tmp_path / "hard.png")
        named[target] = (tmp_path / "hard.png", "input image", image)
    output, what, source = named[target]
    before = file_digests(tmp_path) | file_digests(checkpoint.parent)
    status, out, err = run_cli(capsys, "inpaint", str(image), "--mask", str(mask), "--checkpoint", str(checkpoint),
                               "-o", str(output), *(["--overwrite"] if overwrite else []))
    assert status == 2 and out == ""
    assert the_line(err) == (f"ssl-ctx: error: output '{output}' is the {what} '{source}', which the command never "
                             f"writes over (even with --overwrite); write the output elsewhere, e.g. "
                             f"'{output.with_name(output.stem + '-inpainted.png')}'")
    assert file_digests(tmp_path) | file_digests(checkpoint.parent) == before and not leftovers(tmp_path)


def test_an_existing_output_or_figure_is_replaced_only_with_overwrite(tmp_path: Path, checkpoint: Path, picture,
                                                                      capsys) -> None:
    image, mask, pixels, hole = picture
    command = ["inpaint", str(image), "--mask", str(mask), "--checkpoint", str(checkpoint)]
    (tmp_path / "earlier.png").write_bytes(b"a result of an earlier run")
    (tmp_path / "figure.png").write_bytes(b"an earlier figure")
    before = file_digests(tmp_path)
    for target, argv in (("output", ["-o", str(tmp_path / "earlier.png")]),
                         ("figure", ["-o", str(tmp_path / "new.png"), "--figure", str(tmp_path / "figure.png")])):
        status, out, err = run_cli(capsys, *command, *argv)
        name = tmp_path / ("earlier.png" if target == "output" else "figure.png")
        assert status == 2 and the_line(err) == (f"ssl-ctx: error: {target} '{name}' already exists; pass "
                                                 f"--overwrite to replace it, or choose another name")
        assert file_digests(tmp_path) == before and not leftovers(tmp_path)
    status, out, err = run_cli(capsys, *command, "-o", str(tmp_path / "same.png"), "--figure",
                               str(tmp_path / "same.png"))
    assert status == 2 and the_line(err) == (f"ssl-ctx: error: --figure '{tmp_path / 'same.png'}' is also the -o "
                                             f"output; give the figure a name of its own")
    assert file_digests(tmp_path) == before
    status, out, err = run_cli(capsys, *command, "-o", str(tmp_path / "earlier.png"), "--overwrite")
    assert status == 0 and err == ""
    assert np.array_equal(np.asarray(Image.open(tmp_path / "earlier.png"))[~hole], pixels[~hole])


@pytest.mark.parametrize("height,width", [(1, 1), (12, 40)])
def test_an_image_smaller_than_the_model_is_upscaled_after_one_warning(tmp_path: Path, checkpoint: Path, capsys,
                                                                      height: int, width: int) -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "small.png")
    status, out, err = run_cli(capsys, "inpaint", str(tmp_path / "small.png"), "--region", "center",
                               "--checkpoint", str(checkpoint), "-o", str(tmp_path / "out.png"))
    assert status == 0
    assert the_line(err) == (f"ssl-ctx: warning: image '{tmp_path / 'small.png'}' is {width}x{height}, smaller than "
                             f"the model's 32x32 input: it is upscaled from {width}x{height} to 32x32, so the fill "
                             f"holds no more detail than the image")
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == (height, width, 3)
