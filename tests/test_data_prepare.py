"""Dataset ingestion: layouts, bad files, conversions, limits, idempotence and interrupted builds.

Fake datasets are built in tmp_path in each dataset's published layout; the two slow tests read small
slices of the real archives (found through SSL_CTX_DATA, default ``<repo>/../shared/data``).
"""
from __future__ import annotations

import importlib
import io
import json
import logging
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl_ctx.data import (
    cache_dir,
    default_size,
    load_split,
    parse_size,
    prepare,
    prepare_command,
)
from ssl_ctx.data.datasets import parse_facade_xml
from ssl_ctx.data.prepare import stratified_order
from ssl_ctx.errors import UserError

# `ssl_ctx.data.prepare` is also the name of the function the package exports, so fetch the module itself.
prepare_module = importlib.import_module("ssl_ctx.data.prepare")
REAL_DATA = Path(os.environ.get("SSL_CTX_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


# ------------------------------------------------------------------------------------------ helpers


def encode(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def rgb(color: tuple[int, int, int], size: tuple[int, int] = (8, 8), fmt: str = "JPEG") -> bytes:
    return encode(Image.new("RGB", size, color), fmt)


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "ssl_ctx.data"]


def cifar_jpeg_files(per_class: int = 3, classes: tuple[str, ...] = ("cat", "dog")) -> dict[str, bytes]:
    files = {}
    for split, count in (("train", per_class), ("test", 1)):
        for c, name in enumerate(classes):
            for i in range(count):
                files[f"cifar10-jpeg/{split}/{name}/{i:04d}.jpg"] = rgb((40 * c + 10, 5 * i, 100), (32, 32))
    return files


# ------------------------------------------------------------------------------------- names, sizes


def test_unknown_dataset_lists_the_known_names(env: Path) -> None:
    with pytest.raises(UserError) as caught:
        prepare("cifar", progress=False)
    message = str(caught.value)
    for name in ("tiny-imagenet-200", "cifar10", "camvid", "cmp-facade", "imagefolder:<path>"):
        assert name in message
    assert "did you mean 'cifar10'" in message


def test_missing_archive_says_what_to_put_where(env: Path) -> None:
    with pytest.raises(UserError) as caught:
        prepare("camvid", progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "CamVid.tar.gz" in message and "CamVid/" in message and "SSL_CTX_DATA" in message
    assert str((env / "data").absolute()) in message
    assert not (env / "cache" / "camvid").exists()
    with pytest.raises(UserError, match="cifar-10-python.tar.gz or cifar10-jpeg.tar.gz"):
        prepare("cifar10", progress=False)


def test_sizes() -> None:
    assert parse_size(None) is None
    assert parse_size(64) == parse_size("64") == (64, 64)
    assert parse_size("180x240") == parse_size([180, 240]) == (180, 240)
    for bad in ("0x3", "abc", "1x2x3", -1, [1, 2, 3], 10000):
        with pytest.raises(UserError, match="HxW"):
            parse_size(bad)
    assert default_size("tiny-imagenet-200") == (64, 64)
    assert default_size("cifar10") == (32, 32)
    assert default_size("camvid") == (180, 240)
    assert default_size("cmp-facade") == (256, 256)


# --------------------------------------------------------------------------------------- bad files


def test_bad_files_are_skipped_with_one_warning_each_and_a_count(env: Path, caplog) -> None:
    files = cifar_jpeg_files()
    good = rgb((1, 2, 3), (32, 32))
    files["cifar10-jpeg/train/cat/0100_corrupt.jpg"] = b"\xff\xd8\xff\xe0" + os.urandom(300)
    files["cifar10-jpeg/train/dog/0101_truncated.jpg"] = good[: len(good) // 2]
    files["cifar10-jpeg/train/dog/0102_notes.txt"] = b"these are not pixels\n"
    write_tar(env / "data" / "cifar10-jpeg.tar.gz", files)
    caplog.set_level(logging.INFO, logger="ssl_ctx.data")
    path = prepare("cifar10", progress=False)

    warnings = warnings_of(caplog)
    for bad in ("0100_corrupt.jpg", "0101_truncated.jpg", "0102_notes.txt"):
        lines = [w for w in warnings if bad in w and "skipping" in w]
        assert len(lines) == 1, warnings
        assert "\n" not in lines[0]
    assert sum("skipped 3 unusable file(s)" in w for w in warnings) == 1
    assert len(warnings) == 4

    meta = json.loads((path / "meta.json").read_text())
    assert meta["splits"] == {"train": 6, "test": 2} and meta["skipped"] == 3
    split_meta = json.loads((path / "train" / "meta.json").read_text())
    assert sorted(Path(s["path"]).name for s in split_meta["skipped"]) == [
        "0100_corrupt.jpg", "0101_truncated.jpg", "0102_notes.txt",
    ]
    train = load_split("cifar10", "train")
    assert train.images.shape == (6, 32, 32, 3) and train.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_grayscale_cmyk_rgba_palette_and_16bit_become_rgb(env: Path) -> None:
    blue_palette = Image.new("RGB", (8, 8), (0, 0, 255)).convert("P", palette=Image.Palette.ADAPTIVE)
    files = {
        "pics/a/0_gray.jpg": encode(Image.new("L", (8, 8), 100)),
        "pics/a/1_cmyk.jpg": encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0))),  # red
        "pics/a/2_rgba.png": encode(Image.new("RGBA", (8, 8), (10, 200, 30, 128)), "PNG"),
        "pics/a/3_palette.png": encode(blue_palette, "PNG"),
        "pics/a/4_16bit.png": encode(Image.fromarray(np.full((8, 8), 40000, np.uint16)), "PNG"),
        "pics/a/5_gray_alpha.png": encode(Image.new("LA", (8, 8), (70, 10)), "PNG"),
    }
    write_folder(env, files)
    split = load_split(f"imagefolder:{env / 'pics'}", "all", size=8)
    assert split.images.dtype == np.uint8 and split.images.shape == (6, 8, 8, 3)
    expected = [(100, 100, 100), (255, 0, 0), (10, 200, 30), (0, 0, 255), (156, 156, 156), (70, 70, 70)]
    for image, colour in zip(split.images, expected):
        assert np.abs(image.reshape(-1, 3).mean(0) - colour).max() < 6, (image[0, 0], colour)


# ---------------------------------------------------------------------------------- idempotence


def test_prepare_is_idempotent_and_says_so(env: Path, monkeypatch, capsys, caplog) -> None:
    write_tar(env / "data" / "cifar10-jpeg.tar.gz", cifar_jpeg_files())
    first = prepare("cifar10", size=16, progress=False)
    meta_stamp = (first / "meta.json").stat().st_mtime_ns
    images_stamp = (first / "train" / "images.npy").stat().st_mtime_ns

    def must_not_decode(*args, **kwargs):
        raise AssertionError("a complete cache was rebuilt")

    monkeypatch.setattr(prepare_module, "decode_item", must_not_decode)
    capsys.readouterr()
    assert prepare("cifar10", size="16x16", progress=True) == first
    assert "already prepared" in capsys.readouterr().err
    caplog.set_level(logging.INFO, logger="ssl_ctx.data")
    assert prepare("cifar10", size=(16, 16), progress=False) == first
    assert any("already prepared" in r.getMessage() for r in caplog.records)
    assert (first / "meta.json").stat().st_mtime_ns == meta_stamp
    assert (first / "train" / "images.npy").stat().st_mtime_ns == images_stamp
    assert load_split("cifar10", "test", size=16).images.shape == (2, 16, 16, 3)


def test_interrupted_prepare_leaves_no_complete_looking_cache(env: Path, monkeypatch) -> None:
    write_tar(env / "data" / "cifar10-jpeg.tar.gz", cifar_jpeg_files())
    real_decode = prepare_module.decode_item
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the train split
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "decode_item", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare("cifar10", progress=False)
    folder = cache_dir("cifar10")
    assert not (folder / "meta.json").exists()
    assert not folder.exists()
    assert not list(folder.parent.glob(f".{folder.name}.tmp-*"))  # the temporary build was removed

    # A killed process (no cleanup at all) leaves a temporary folder and maybe a moved-in folder without
    # meta.json; neither counts as complete, and the next prepare clears both.
    monkeypatch.setattr(prepare_module, "decode_item", real_decode)
    (folder.parent / f".{folder.name}.tmp-999-dead").mkdir(parents=True)
    (folder / "train").mkdir(parents=True)
    np.save(folder / "train" / "images.npy", np.zeros((1, 32, 32, 3), np.uint8))
    split = load_split("cifar10", "train")
    assert len(split) == 6
    assert (folder / "meta.json").is_file()
    assert not list(folder.parent.glob(f".{folder.name}.tmp-*"))


# ----------------------------------------------------------------------------------------- layouts


def test_cifar_python_batches(env: Path, monkeypatch, caplog) -> None:
    rng = np.random.default_rng(0)
    names = [b"airplane", b"automobile", b"bird"]
    batches = {}
    for name, count in (("data_batch_1", 4), ("data_batch_2", 3), ("test_batch", 2)):
        batches[name] = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 3, count)],
            b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(count)],
        }
    files = {f"cifar-10-batches-py/{k}": pickle.dumps(v, protocol=2) for k, v in batches.items()}
    files["cifar-10-batches-py/batches.meta"] = pickle.dumps(
        {b"label_names": names, b"num_cases_per_batch": 10000, b"num_vis": 3072}, protocol=2
    )
    files["cifar-10-batches-py/readme.html"] = b"<html></html>"
    # A batch that tries to run code is refused and skipped, not executed.
    files["cifar-10-batches-py/data_batch_3"] = pickle.dumps(os.system, protocol=2)
    write_tar(env / "data" / "cifar-10-python.tar.gz", files)
    write_tar(env / "data" / "cifar10-jpeg.tar.gz", cifar_jpeg_files())  # the pickles are preferred
    caplog.set_level(logging.WARNING, logger="ssl_ctx.data")

    train = load_split("cifar10", "train")
    test = load_split("cifar10", "test")
    assert train.class_names == ["airplane", "automobile", "bird"]
    assert train.meta["source"]["path"].endswith("cifar-10-python.tar.gz")
    expected = np.concatenate([batches["data_batch_1"][b"data"], batches["data_batch_2"][b"data"]])
    expected = expected.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    assert np.array_equal(np.asarray(train.images), expected)  # exact pixels, channel order RGB
    assert train.labels.tolist() == batches["data_batch_1"][b"labels"] + batches["data_batch_2"][b"labels"]
    assert len(test) == 2 and test.labels.tolist() == batches["test_batch"][b"labels"]
    assert any("data_batch_3" in w and "refusing to load" in w for w in warnings_of(caplog))
    assert train.mean_rgb == pytest.approx(tuple(expected.reshape(-1, 3).mean(0)), abs=1e-3)


def test_camvid_label_maps_use_255_for_void(env: Path, caplog) -> None:
    files = {}
    labels = np.array([[0, 3, 11, 11, 7, 10, 12, 1]] * 6, dtype=np.uint8)  # 11 void, 12 out of range
    for split in ("train", "val", "test"):
        files[f"CamVid/{split}/0001TP_{split}.jpg"] = rgb((90, 90, 90), (8, 6))
        files[f"CamVid/{split}annot/0001TP_{split}.png"] = encode(Image.fromarray(labels, "L"), "PNG")
        files[f"CamVid/{split}.txt"] = b"/SegNet/CamVid/...\n"
    files["CamVid/train/0002TP_unlabelled.jpg"] = rgb((1, 1, 1), (8, 6))
    write_tar(env / "data" / "CamVid.tar.gz", files)
    caplog.set_level(logging.WARNING, logger="ssl_ctx.data")
    for split in ("train", "val", "test"):
        cached = load_split("camvid", split, size=(6, 8))
        assert cached.images.shape == (1, 6, 8, 3) and cached.labels is None and cached.boxes is None
        assert cached.label_maps.shape == (1, 6, 8) and cached.label_maps.dtype == np.uint8
        assert cached.label_maps[0, 0].tolist() == [0, 3, 255, 255, 7, 10, 255, 1]
        assert cached.class_names[0] == "sky" and len(cached.class_names) == 11
    assert sum("0002TP_unlabelled.jpg" in w for w in warnings_of(caplog)) == 1
    # Resizing label maps keeps class values (nearest neighbour).
    smaller = load_split("camvid", "val", size=(3, 4))
    assert set(np.unique(smaller.label_maps)) <= {0, 1, 3, 7, 10, 255}


FACADE_XML = (
    "<object>\r<points>\r<x>\r0.75\r</x>\r<x>\r0.25\r</x>\r<y>\r0.1\r</y>\r<y>\r0.5\r</y>\r</points>\r"
    "<label>\r3\r</label>\r<labelname>\rwindow\r</labelname>\r</object>\r"
    "<object><points><x>0.0</x><x>1.02</x><y>-0.01</y><y>1.0</y></points><label>2</label>"
    "<labelname>facade</labelname></object>"
)


def test_facade_xml_is_parsed_to_relative_boxes() -> None:
    boxes, labels = parse_facade_xml(FACADE_XML)
    assert np.allclose(boxes, [[0.25, 0.1, 0.75, 0.5], [0.0, 0.0, 1.0, 1.0]])
    assert labels.tolist() == [2, 1]


def test_cmp_facade_split_label_maps_and_boxes(env: Path) -> None:
    index_map = np.arange(12 * 10, dtype=np.uint8).reshape(10, 12) % 14  # palette indices 0..13
    label_png = Image.fromarray(index_map, "P")
    label_png.putpalette([v for i in range(256) for v in (i, i, i)])
    files = {}
    for i in range(1, 11):
        files[f"base/cmp_b{i:04d}.jpg"] = rgb((120, 60, 30), (12, 10))
        files[f"base/cmp_b{i:04d}.png"] = encode(label_png, "PNG")
        files[f"base/cmp_b{i:04d}.xml"] = FACADE_XML.encode()
    write_tar(env / "data" / "CMP_facade_DB_base.tar.gz", files)
    train = load_split("cmp-facade", "train", size=(10, 12))
    test = load_split("cmp-facade", "test", size=(10, 12))
    assert (len(train), len(test)) == (8, 2)  # every 5th image in sorted order: b0005, b0010
    assert test.meta["class_names"][2] == "window" and len(test.class_names) == 12
    raw = index_map.astype(int)
    expected = np.where((raw >= 1) & (raw <= 12), raw - 1, 255)
    assert np.array_equal(test.label_maps[0], expected)
    for split in (train, test):
        assert len(split.boxes) == len(split)
        for boxes, labels in zip(split.boxes, split.box_labels):
            assert boxes.dtype == np.float32 and boxes.shape == (2, 4)
            assert (boxes >= 0).all() and (boxes <= 1).all()
            assert (boxes[:, 2:] >= boxes[:, :2]).all()
            assert labels.tolist() == [2, 1]


def test_tiny_imagenet_layout_boxes_and_val_labels(env: Path) -> None:
    wnids = ["n02", "n01"]
    files = {"tiny-imagenet-200/wnids.txt": "\n".join(wnids).encode(),
             "tiny-imagenet-200/words.txt": b"n01\tgoldfish\nn02\tbullfrog\nn99\tother\n"}
    for wnid in wnids:
        for i in (0, 1, 10):  # natural order: 0, 1, 10
            files[f"tiny-imagenet-200/train/{wnid}/images/{wnid}_{i}.JPEG"] = rgb((i, 0, 0), (16, 16))
        files[f"tiny-imagenet-200/train/{wnid}/{wnid}_boxes.txt"] = (
            f"{wnid}_0.JPEG\t0\t0\t15\t15\n{wnid}_1.JPEG\t4\t8\t11\t15\n{wnid}_10.JPEG\t0\t0\t7\t7\n".encode()
        )
    files["tiny-imagenet-200/val/images/val_0.JPEG"] = rgb((5, 5, 5), (16, 16))
    files["tiny-imagenet-200/val/images/val_1.JPEG"] = rgb((5, 5, 5), (16, 16))
    files["tiny-imagenet-200/val/val_annotations.txt"] = (
        b"val_0.JPEG\tn02\t0\t0\t15\t7\nval_1.JPEG\tn01\t8\t0\t15\t15\n"
    )
    write_tar(env / "data" / "tiny-imagenet-200.tar.gz", files)
    train = load_split("tiny-imagenet-200", "train", size=16)
    assert train.class_names == ["n01", "n02"]
    assert train.meta["class_descriptions"] == ["goldfish", "bullfrog"]
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert train.boxes[0].tolist() == [[0, 0, 1, 1]]
    assert train.boxes[1].tolist() == [[0.25, 0.5, 0.75, 1.0]]
    assert train.boxes[2].tolist() == [[0, 0, 0.5, 0.5]]
    assert [b.tolist() for b in train.box_labels] == [[0], [0], [0], [1], [1], [1]]
    val = load_split("tiny-imagenet-200", "val", size=(32, 32))
    assert val.labels.tolist() == [1, 0] and val.images.shape == (2, 32, 32, 3)
    assert val.boxes[0].tolist() == [[0, 0, 1, 0.5]] and val.box_labels[1].tolist() == [0]


def test_imagefolder_both_layouts(env: Path) -> None:
    flat = write_folder(env / "flat", {
        "b/images/x1.png": rgb((0, 0, 200), (20, 10), "PNG"),
        "a/one.png": rgb((200, 0, 0), (20, 10), "PNG"),
        "a/two.png": rgb((0, 200, 0), (20, 10), "PNG"),
        ".hidden/ignored.png": rgb((0, 0, 0), fmt="PNG"),
    })
    path = prepare(f"imagefolder:{flat}", progress=False)
    assert path.parent.name.startswith("imagefolder-flat-") and path.name == "128x128"
    split = load_split(f"imagefolder:{flat}", "all")
    assert split.class_names == ["a", "b"] and split.labels.tolist() == [0, 0, 1]
    assert split.images.shape == (3, 128, 128, 3)
    assert split.images[2, 64, 64].tolist() == [0, 0, 200]

    nested = write_folder(env / "nested", {
        "train/cat/1.png": rgb((1, 1, 1), fmt="PNG"),
        "train/dog/1.png": rgb((2, 2, 2), fmt="PNG"),
        "val/dog/1.png": rgb((3, 3, 3), fmt="PNG"),
    })
    meta = json.loads((prepare(f"imagefolder:{nested}", size=8, progress=False) / "meta.json").read_text())
    assert meta["splits"] == {"train": 2, "val": 1}
    val = load_split(f"imagefolder:{nested}", "val", size=8)
    assert val.class_names == ["cat", "dog"] and val.labels.tolist() == [1]
    with pytest.raises(UserError, match="has no split 'test'; splits: train, val"):
        load_split(f"imagefolder:{nested}", "test", size=8)
    with pytest.raises(UserError) as caught:
        prepare(f"imagefolder:{env / 'missing'}", progress=False)
    assert str(caught.value) == (f"image folder '{env / 'missing'}' is not a folder; pass imagefolder:<path> where "
                                 f"<path> holds the images: straight in it (one unlabelled split 'all'), in "
                                 f"<path>/<class>/, or in <path>/<split>/<class>/")


def test_files_a_layout_leaves_out_are_counted_and_named(env: Path, capsys, caplog) -> None:
    mixed = write_folder(env / "mixed", {
        **{f"photo{i}.png": rgb((10 * i, 0, 0), (12, 8), "PNG") for i in range(5)},
        "thumbs/one.png": rgb((0, 0, 200), (12, 8), "PNG"),
        ".DS_Store": b"hidden: not an image, not counted",
    })
    capsys.readouterr()
    folder = prepare_command(f"imagefolder:{mixed}", 16, None, workers=1)
    out, err = capsys.readouterr()
    assert out.startswith(f"{folder}: all 1 images; 5 file(s) skipped; resized by ")
    reason = ("at the folder's top, outside every class folder <path>/<class>/ (a folder with sub-folders is read "
              "as one class per sub-folder)")
    skipping = [f"imagefolder:{mixed} all: skipping '{mixed / f'photo{i}.png'}': {reason}" for i in range(5)]
    assert [w for w in warnings_of(caplog) if ": skipping '" in w] == skipping
    assert [line for line in err.splitlines() if line.startswith("ssl-ctx: warning:")] == [
        f"ssl-ctx: warning: most of the files of image folder '{mixed}' (5 of 6) are at its top, outside the class "
        f"folders [thumbs] and are left out (a folder with sub-folders is read as one class per sub-folder): if "
        f"they are your images, move the sub-folders out (a folder of images alone is one unlabelled split 'all')"]
    split_meta = json.loads((folder / "all" / "meta.json").read_text())
    assert [entry["path"] for entry in split_meta["skipped"]] == [f"photo{i}.png" for i in range(5)]

    nested = write_folder(env / "nested", {
        "train/cat/1.png": rgb((1, 1, 1), fmt="PNG"), "train/dog/1.png": rgb((2, 2, 2), fmt="PNG"),
        "train/stray.png": rgb((3, 3, 3), fmt="PNG"), "top.png": rgb((4, 4, 4), fmt="PNG"),
        "val/dog/1.png": rgb((5, 5, 5), fmt="PNG"),
    })
    capsys.readouterr()
    folder = prepare_command(f"imagefolder:{nested}", 8, None, workers=1)
    out, err = capsys.readouterr()
    assert out.startswith(f"{folder}: train 2, val 1 images; 2 file(s) skipped; ")
    assert "ssl-ctx: warning:" not in err  # fewer left out than kept: the skip lines say it
    skipped = json.loads((folder / "train" / "meta.json").read_text())["skipped"]
    assert skipped == [
        {"path": "top.png", "reason": "at the folder's top, outside every split folder <path>/<split>/<class>/ (a "
                                      "folder whose sub-folders are all named like splits is read as "
                                      "<path>/<split>/<class>/)"},
        {"path": "train/stray.png", "reason": "directly in <path>/train/, outside every class folder "
                                              "<path>/train/<class>/"}]


def test_limit_is_class_stratified_and_deterministic(env: Path) -> None:
    labels = [0] * 5 + [1] * 5 + [2] * 2
    order = stratified_order(labels)
    assert order == stratified_order(labels) and sorted(order) == list(range(12))
    assert sorted(labels[i] for i in order[:3]) == [0, 1, 2]
    assert sorted(labels[i] for i in order[:6]) == [0, 0, 1, 1, 2, 2]

    write_tar(env / "data" / "cifar10-jpeg.tar.gz", cifar_jpeg_files(per_class=5, classes=("a", "b", "c")))
    small = load_split("cifar10", "train", limit=3)
    larger = load_split("cifar10", "train", limit=7)
    assert sorted(small.labels.tolist()) == [0, 1, 2]
    assert np.array_equal(np.asarray(larger.images[:3]), np.asarray(small.images))  # prefix property
    assert np.bincount(larger.labels).tolist() in ([3, 2, 2], [2, 3, 2], [2, 2, 3])
    assert cache_dir("cifar10", limit=7).name == "32x32-limit7"
    assert len(load_split("cifar10", "test", limit=100)) == 3  # fewer images than the limit: all of them


def test_cache_files_and_prepare_command(env: Path, capsys) -> None:
    write_tar(env / "data" / "cifar10-jpeg.tar.gz", cifar_jpeg_files())
    folder = prepare_command("cifar10", "16x16", None)
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"{folder}: train 6, test 2 images; 0 file(s) skipped; resized by squeeze (whole image stretched "
                   f"to 16x16, aspect ratio not kept; --resize shorter_side keeps it and crops)"]
    assert folder == env / "cache" / "cifar10" / "16x16"
    assert sorted(p.name for p in (folder / "train").iterdir()) == ["images.npy", "labels.npy", "meta.json"]
    split = load_split("cifar10", "train", size=16)
    assert isinstance(split.images, np.memmap) and split.images.dtype == np.uint8
    assert split.labels.dtype == np.int64
    assert split.meta["count"] == 6 and split.meta["size"] == [16, 16] and len(split.mean_rgb) == 3


# ------------------------------------------------------------------------------------------- real data


def _need_real(archive: str) -> None:
    if not (REAL_DATA / archive).is_file():
        pytest.skip(f"{archive} not in {REAL_DATA}")


@pytest.mark.slow
def test_real_tiny_imagenet_slice(tmp_path: Path, monkeypatch) -> None:
    _need_real("tiny-imagenet-200.tar.gz")
    monkeypatch.setenv("SSL_CTX_DATA", str(REAL_DATA))
    monkeypatch.setenv("SSL_CTX_CACHE", str(tmp_path / "cache"))
    train = load_split("tiny-imagenet-200", "train", limit=200)
    val = load_split("tiny-imagenet-200", "val", limit=200)  # same cache as train: one pass over the archive
    assert train.images.shape == (200, 64, 64, 3) and len(train.class_names) == 200
    assert np.bincount(train.labels, minlength=200).tolist() == [1] * 200  # one per class
    assert all(b.shape == (1, 4) and (b >= 0).all() and (b <= 1).all() for b in train.boxes)
    assert len(val) == 200 and len(set(val.labels.tolist())) == 200
    assert 60 < min(train.mean_rgb) and max(train.mean_rgb) < 160


@pytest.mark.slow
def test_real_camvid_and_facade_slices(tmp_path: Path, monkeypatch) -> None:
    _need_real("CamVid.tar.gz")
    _need_real("CMP_facade_DB_base.tar.gz")
    monkeypatch.setenv("SSL_CTX_DATA", str(REAL_DATA))
    monkeypatch.setenv("SSL_CTX_CACHE", str(tmp_path / "cache"))
    camvid = load_split("camvid", "val", limit=4)
    assert camvid.images.shape == (4, 180, 240, 3) and camvid.label_maps.shape == (4, 180, 240)
    assert set(np.unique(camvid.label_maps)) <= set(range(11)) | {255}
    facade = load_split("cmp-facade", "test", limit=4)
    assert facade.images.shape == (4, 256, 256, 3)
    assert set(np.unique(facade.label_maps)) <= set(range(12)) | {255}
    assert all(len(b) > 0 and (b >= 0).all() and (b <= 1).all() for b in facade.boxes)
    assert all(((lab >= 0) & (lab < 12)).all() for lab in facade.box_labels)
