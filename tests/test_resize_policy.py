"""Resize policies (``data.resize``, ``ssl-ctx data prepare --resize``): pixels, label maps and boxes through one
window, on real photos of both aspects (CMP Facade: portrait; CamVid: landscape), against torchvision's
``resize`` + ``center_crop``; cache names, old caches, and what the commands say.

Pixels are compared exactly: the policy and its reference are the same PIL operations on the same machine (a
resize to the same size, then a crop), so any difference is a different window, not a rounding.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from ssl_ctx.cli import build_parser, main
from ssl_ctx.data import cache_dir, load_split, prepare, prepare_command
from ssl_ctx.data.catalogue import resize_policy
from ssl_ctx.data.datasets import FACADE_CLASSES, Item, parse_facade_xml
from ssl_ctx.data.decode import (
    RESIZE_POLICIES,
    FetchedFiles,
    crop_window,
    decode_image,
    decode_item,
    decode_label_map,
    window_boxes,
)
from ssl_ctx.errors import UserError
from ssl_ctx.images import open_rgb

REAL_DATA = Path(os.environ.get("SSL_CTX_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
FACADE_STEMS = ("cmp_b0001", "cmp_b0002", "cmp_b0003", "cmp_b0004", "cmp_b0005")  # 272x512, 199x512, ...: portrait
# the fixed split: the 5th image (position 4) is test, the first four train
CAMVID_IMAGE = "CamVid/train/0001TP_006690.jpg"  # 480x360: landscape
CAMVID_LABELS = "CamVid/trainannot/0001TP_006690.png"
# float32 relative boxes: the code maps them in float64 and rounds once to float32; the hand-computed values
# below are decimals, so they agree to float32's resolution near 1 (6e-8), not exactly.
BOX_RESOLUTION = 1e-6


def _members(archive: str, names: set[str]) -> dict[str, bytes]:
    """The files ``names`` of a real archive, read until the last one is found (they are near its start)."""
    path = REAL_DATA / archive
    if not path.is_file():
        pytest.skip(f"{archive} not in {REAL_DATA}")
    found: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if member.name in names:
                found[member.name] = tar.extractfile(member).read()
                if len(found) == len(names):
                    break
    assert set(found) == names
    return found


@pytest.fixture(scope="module")
def facade() -> dict[str, bytes]:
    """``cmp_b000N.{jpg,png,xml}`` of the real CMP Facade base set, by file name."""
    names = {f"base/{stem}{ext}" for stem in FACADE_STEMS for ext in (".jpg", ".png", ".xml")}
    return {name.split("/")[1]: data for name, data in _members("CMP_facade_DB_base.tar.gz", names).items()}


@pytest.fixture(scope="module")
def camvid() -> dict[str, bytes]:
    files = _members("CamVid.tar.gz", {CAMVID_IMAGE, CAMVID_LABELS})
    return {"image": files[CAMVID_IMAGE], "labels": files[CAMVID_LABELS]}


def photos(facade: dict[str, bytes], camvid: dict[str, bytes]) -> list[bytes]:
    return [facade["cmp_b0001.jpg"], facade["cmp_b0002.jpg"], camvid["image"]]


def reference(image: Image.Image, size: tuple[int, int], resize: str,
              interpolation: InterpolationMode = InterpolationMode.BILINEAR) -> np.ndarray:
    """torchvision's transforms for a square ``size``: ``Resize(S)`` + ``CenterCrop(S)`` (shorter_side),
    ``CenterCrop(S)`` (center_crop of an image at least S on each side), ``Resize((S, S))`` (squeeze)."""
    side = size[0]
    assert size == (side, side)
    if resize == "shorter_side":
        image = TF.center_crop(TF.resize(image, side, interpolation=interpolation), side)
    elif resize == "center_crop":
        image = TF.center_crop(image, side)
    else:
        image = TF.resize(image, [side, side], interpolation=interpolation)
    return np.asarray(image)


# ------------------------------------------------------------------------------------------- pixels


@pytest.mark.parametrize("side", [17, 64])
def test_shorter_side_is_torchvisions_resize_then_center_crop(facade, camvid, side):
    for data in photos(facade, camvid):
        pixels, original = decode_image(data, (side, side), "shorter_side")
        assert original == open_rgb(data).size and pixels.shape == (side, side, 3)
        assert np.array_equal(pixels, reference(open_rgb(data), (side, side), "shorter_side"))


def test_shorter_side_to_a_non_square_size_covers_it_and_keeps_the_centre(camvid):
    # 480x360 into 32x64 (H x W): the width's ratio (64/480) is the larger, so the width fits: 64x48, then the
    # middle 32 rows (from row 8).
    window = crop_window((480, 360), (32, 64), "shorter_side")
    assert (window.scaled, window.left, window.top) == ((64, 48), 0, 8)
    image = open_rgb(camvid["image"])
    expected = TF.center_crop(TF.resize(image, [48, 64]), [32, 64])
    assert np.array_equal(decode_image(camvid["image"], (32, 64), "shorter_side")[0], np.asarray(expected))


def test_center_crop_keeps_the_image_scale_and_scales_up_only_a_small_image(facade, camvid):
    for data in photos(facade, camvid):
        assert np.array_equal(decode_image(data, (64, 64), "center_crop")[0],
                              reference(open_rgb(data), (64, 64), "center_crop"))
    # cmp_b0002 is 199 px wide: a 256-px crop does not fit, so it is scaled up as shorter_side scales it
    small = facade["cmp_b0002.jpg"]
    assert open_rgb(small).size[0] < 256
    assert np.array_equal(decode_image(small, (256, 256), "center_crop")[0],
                          decode_image(small, (256, 256), "shorter_side")[0])


def test_squeeze_is_the_old_resize_byte_for_byte(facade, camvid):
    """The policy every cache was made with before policies existed: the whole image stretched, as before."""
    for data in photos(facade, camvid):
        old = np.asarray(open_rgb(data).resize((48, 32), Image.Resampling.BILINEAR), dtype=np.uint8)
        assert np.array_equal(decode_image(data, (32, 48), "squeeze")[0], old)
        assert np.array_equal(decode_image(data, (32, 48))[0], old)  # the decoder's default
    with Image.open(io.BytesIO(facade["cmp_b0001.png"])) as label:
        old_map = np.asarray(label.resize((48, 32), Image.Resampling.NEAREST), dtype=np.uint8)
        size = label.size
    assert np.array_equal(decode_label_map(facade["cmp_b0001.png"], (32, 48), size, "squeeze"), old_map)


# ------------------------------------------------------------------------------------ label maps, boxes


@pytest.mark.parametrize("resize", RESIZE_POLICIES)
def test_label_maps_go_through_their_images_window(facade, camvid, resize):
    pairs = [(facade["cmp_b0001.jpg"], facade["cmp_b0001.png"]), (camvid["image"], camvid["labels"])]
    for image_data, label_data in pairs:
        image = open_rgb(image_data)
        with Image.open(io.BytesIO(label_data)) as label:
            label.load()
        assert label.size == image.size
        decoded = decode_label_map(label_data, (40, 40), image.size, resize)
        assert np.array_equal(decoded, reference(label, (40, 40), resize, InterpolationMode.NEAREST))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_boxes_are_mapped_into_the_window_clipped_and_dropped_when_empty():
    # A 200x100 image (w x h) into 50x50 by shorter_side: the height fits, 100x50, columns 25..75 kept.
    window = crop_window((200, 100), (50, 50), "shorter_side")
    assert (window.scaled, window.left, window.top) == ((100, 50), 25, 0)
    boxes = np.array([[0.1, 0.2, 0.5, 0.6],     # x 10..50 of 100 -> -15..25 of the window -> 0..0.5
                      [0.0, 0.0, 0.2, 1.0],     # x 0..20 -> -25..-5: wholly cut off, dropped
                      [0.6, 0.5, 0.9, 0.75]],   # x 60..90 -> 35..65 -> 0.7..1 (clipped)
                     dtype=np.float32)
    labels, difficult = np.array([3, 4, 5]), np.array([False, True, True])
    moved, moved_labels, moved_difficult = window_boxes(window, boxes, labels, difficult)
    assert moved.dtype == np.float32
    np.testing.assert_allclose(moved, [[0.0, 0.2, 0.5, 0.6], [0.7, 0.5, 1.0, 0.75]], rtol=0, atol=BOX_RESOLUTION)
    assert moved_labels.tolist() == [3, 5] and moved_difficult.tolist() == [False, True]

    # decode_item: boxes in pixels are made relative to the original first, then moved; squeeze leaves them
    item = Item("photo.png", boxes=boxes * np.array([200, 100, 200, 100], np.float32), box_labels=labels,
                box_difficult=difficult, boxes_in_pixels=True)
    files = FetchedFiles({"photo.png": _png(Image.new("RGB", (200, 100), (10, 20, 30)))})
    result = decode_item(item, files, (50, 50), None, "shorter_side")
    np.testing.assert_allclose(result["boxes"], moved, rtol=0, atol=BOX_RESOLUTION)  # pixels -> relative first
    assert result["box_labels"].tolist() == [3, 5] and result["box_difficult"].tolist() == [False, True]
    squeezed = decode_item(item, files, (50, 50), None, "squeeze")
    assert np.array_equal(squeezed["boxes"], np.clip(item.boxes / np.array([200, 100, 200, 100], np.float32), 0, 1))
    assert squeezed["box_labels"] is labels and squeezed["box_difficult"] is difficult


def test_a_facade_cache_by_shorter_side_crops_image_label_map_and_boxes_alike(env, facade, monkeypatch):
    """cmp-facade (default squeeze) prepared with resize=shorter_side, in and out of worker processes."""
    for name, data in facade.items():
        (env / "data" / "base").mkdir(exist_ok=True)
        (env / "data" / "base" / name).write_bytes(data)
    folder = prepare("cmp-facade", size=32, resize="shorter_side", progress=False)
    assert folder.name == "32x32-shorter_side"
    assert json.loads((folder / "meta.json").read_text())["resize"] == "shorter_side"
    train = load_split("cmp-facade", "train", size=32, resize="shorter_side")
    lut = np.full(256, 255, np.uint8)
    lut[1 : len(FACADE_CLASSES) + 1] = np.arange(len(FACADE_CLASSES))
    for row, stem in enumerate(FACADE_STEMS[:4]):
        image = open_rgb(facade[f"{stem}.jpg"])
        assert np.array_equal(train.images[row], reference(image, (32, 32), "shorter_side"))
        with Image.open(io.BytesIO(facade[f"{stem}.png"])) as label:
            expected = lut[reference(label, (32, 32), "shorter_side", InterpolationMode.NEAREST)]
        assert np.array_equal(train.label_maps[row], expected)
        boxes, labels = parse_facade_xml(facade[f"{stem}.xml"].decode())
        window = crop_window(image.size, (32, 32), "shorter_side")
        kept_boxes, kept_labels = window_boxes(window, boxes, labels)
        assert window.crops and len(kept_boxes) < len(boxes)  # portrait: the top and bottom are cut off
        assert np.array_equal(train.boxes[row], kept_boxes) and np.array_equal(train.box_labels[row], kept_labels)
    # the squeezed default is another cache; two workers write the same bytes as one
    assert cache_dir("cmp-facade", 32).name == "32x32"
    monkeypatch.setenv("SSL_CTX_CACHE", str(env / "cache-parallel"))
    parallel = prepare("cmp-facade", size=32, resize="shorter_side", progress=False, workers=2)
    for split in ("train", "test"):
        for array in ("images.npy", "label_maps.npy", "boxes.npy", "box_labels.npy"):
            assert (parallel / split / array).read_bytes() == (folder / split / array).read_bytes(), array


# --------------------------------------------------------------------------------- names and messages


def test_every_dataset_has_a_default_and_a_bad_policy_is_one_line_with_a_guess(env, capsys):
    defaults = {"tiny-imagenet-200": "squeeze", "cifar10": "squeeze", "camvid": "squeeze",
                "cmp-facade": "squeeze", f"imagefolder:{env}": "shorter_side", f"imagenet:{env}": "shorter_side",
                f"voc:{env}": "squeeze"}
    for name, policy in defaults.items():
        assert resize_policy(name) == resize_policy(name, None) == policy
        assert resize_policy(name, "center_crop") == "center_crop"
    with pytest.raises(UserError) as caught:
        resize_policy("cifar10", "shorter")
    message = str(caught.value)
    assert "\n" not in message and all(policy in message for policy in RESIZE_POLICIES)
    assert message.startswith("unknown resize policy 'shorter'") and "did you mean 'shorter_side'?" in message
    assert main(["data", "prepare", "cifar10", "--resize", "center-crop"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'center_crop'?" in err


def test_cache_folder_names_a_policy_only_when_it_is_not_the_default(env):
    assert cache_dir("camvid").name == cache_dir("camvid", resize="squeeze").name == "180x240"
    assert cache_dir("camvid", resize="shorter_side").name == "180x240-shorter_side"
    assert cache_dir("cifar10", limit=5).name == cache_dir("cifar10", limit=5, resize="squeeze").name
    assert cache_dir("cifar10", 16, 5, "shorter_side").name == "16x16-shorter_side-limit5"
    assert cache_dir(f"imagefolder:{env}").name == "128x128"
    assert cache_dir(f"imagefolder:{env}", resize="center_crop").name == "128x128-center_crop"


def test_the_help_offers_exactly_the_policies(capsys):
    with pytest.raises(SystemExit):
        main(["data", "prepare", "--help"])
    assert f"[--resize {{{','.join(RESIZE_POLICIES)}}}]" in " ".join(capsys.readouterr().out.split())
    assert build_parser().parse_args(["data", "prepare", "cifar10"]).resize is None  # the dataset's default


def _photo_folder(env: Path, facade: dict[str, bytes]) -> Path:
    folder = env / "photos"
    folder.mkdir()
    for stem in FACADE_STEMS:
        (folder / f"{stem}.jpg").write_bytes(facade[f"{stem}.jpg"])
    return folder


def test_an_image_folder_cache_made_before_policies_is_rebuilt_once_with_a_warning(env, facade, capsys):
    folder = _photo_folder(env, facade)
    name = f"imagefolder:{folder}"
    cache = prepare(name, size=16, progress=False)
    meta = json.loads((cache / "meta.json").read_text())
    assert cache.name == "16x16" and meta["resize"] == "shorter_side"
    del meta["resize"]  # as every cache written before policies: squeezed, and not saying so
    (cache / "meta.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert prepare(name, size=16, progress=False) == cache
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ssl-ctx: warning:")]
    assert warnings == [f"ssl-ctx: warning: the 16x16 cache of {name} was resized by squeeze, before resize "
                        f"policies were recorded, and shorter_side is asked for now; rebuilding the cache"]
    assert json.loads((cache / "meta.json").read_text())["resize"] == "shorter_side"
    first = open_rgb(facade["cmp_b0001.jpg"])
    assert np.array_equal(load_split(name, "all", size=16).images[0], reference(first, (16, 16), "shorter_side"))
    assert prepare(name, size=16, progress=False) == cache and "warning" not in capsys.readouterr().err


def test_the_summary_and_prepared_lines_say_the_policy_in_words(env, facade, capsys):
    folder = _photo_folder(env, facade)
    cache = prepare_command(f"imagefolder:{folder}", 16, None, workers=1)
    out, err = capsys.readouterr()
    words = ("resized by shorter_side (shorter side to 16, centre kept; the paper's; --resize squeeze stretches "
             "the whole image)")
    assert out.strip() == f"{cache}: all 5 images; 0 file(s) skipped; {words}"
    assert f"into {cache}; {words}" in err
    assert main(["data", "prepare", f"imagefolder:{folder}", "--size", "16x24", "--resize", "squeeze",
                 "--workers", "1"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == (f"{cache.parent / '16x24-squeeze'}: all 5 images; 0 file(s) skipped; resized by squeeze (whole "
                   f"image stretched to 16x24, aspect ratio not kept; --resize shorter_side keeps it and crops)")
