"""Preparing with worker processes, resuming a killed build, and the per-image fields VOC needs.

Real photos: CMP Facade's base-set JPEGs (at most 512 px on the long side), extracted once per module from the
archive in SSL_CTX_DATA into two class folders, plus one file that is not an image, as an ``imagefolder:``.
"""
from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl_ctx.data import cache_dir, load_split, prepare
from ssl_ctx.data.cache import CHECKPOINT_FILE, PROGRESS_FILE, CachedSplit, is_complete
from ssl_ctx.data.datasets import DatasetIndex, DatasetSpec, Item, Layout
from ssl_ctx.data.decode import FetchedFiles
from ssl_ctx.data.sources import Source
from ssl_ctx.errors import UserError
from tests.faults.test_image_folders import write_images

prepare_module = importlib.import_module("ssl_ctx.data.prepare")
REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("SSL_CTX_DATA") or REPO.parent / "shared" / "data")
FACADE = REAL_DATA / "CMP_facade_DB_base.tar.gz"
PHOTOS = 60  # 30 per class: the parallel build takes about a second on 2 cores
SIZE = 128
CHECKPOINT_EVERY = 8


def cache_files(folder: Path) -> dict[str, str]:
    """SHA-256 of every ``.npy`` and split ``meta.json`` under a finished cache, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.suffix == ".npy" or (p.name == "meta.json" and p.parent != folder)}


def assert_same_cache(built: Path, reference: Path) -> None:
    files = cache_files(built)
    assert files == cache_files(reference) and any(name.endswith("images.npy") for name in files)
    for name in files:
        if name.endswith(".npy"):
            assert np.array_equal(np.load(built / name), np.load(reference / name)), name


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<tmp>/photos/{left,right}/cmp_b*.jpg``: the first PHOTOS facade photos, and ``right/broken.jpg``."""
    if not FACADE.is_file():
        pytest.fail(f"{FACADE} is missing; set SSL_CTX_DATA to the folder with the archives")
    root = tmp_path_factory.mktemp("facades") / "photos"
    found = 0
    with tarfile.open(FACADE, "r|gz") as tar:
        for member in tar:
            if found < PHOTOS and member.isfile() and member.name.endswith(".jpg"):
                folder = root / ("left" if found < PHOTOS // 2 else "right")
                folder.mkdir(parents=True, exist_ok=True)
                (folder / Path(member.name).name).write_bytes(tar.extractfile(member).read())
                found += 1
    (root / "right" / "broken.jpg").write_bytes(b"\xff\xd8 not a photo")
    return root


@pytest.fixture(scope="module")
def reference(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The photos' cache built in this process (one worker), uninterrupted."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SSL_CTX_CACHE", str(tmp_path_factory.mktemp("reference")))
        return prepare(f"imagefolder:{photos}", size=SIZE, progress=False, workers=1)


def test_two_workers_write_the_same_cache_as_one(photos, reference, tmp_path, monkeypatch, capsys):
    sizes = [Image.open(path).size for path in sorted(photos.rglob("cmp_b*.jpg"))]
    assert len(sizes) == PHOTOS and min(w * h for w, h in sizes) > 250 * 250  # full-size photos, not thumbnails
    monkeypatch.setenv("SSL_CTX_CACHE", str(tmp_path / "cache"))
    built = prepare(f"imagefolder:{photos}", size=SIZE, progress=True, workers=2)
    err = capsys.readouterr().err
    assert f"prepared all {PHOTOS} in " in err and " images/s, 2 workers) into " in err
    assert_same_cache(built, reference)
    meta = json.loads((built / "meta.json").read_text())
    assert meta["workers"] == 2 and meta["images_per_second"] > 0 and meta["skipped"] == 1
    split = load_split(f"imagefolder:{photos}", "all", size=SIZE)
    assert split.images.shape == (PHOTOS, SIZE, SIZE, 3) and np.bincount(split.labels).tolist() == [30, 30]
    assert split.meta["skipped"][0]["path"] == "right/broken.jpg"
    assert not list(built.parent.glob(".*.partial"))
    # A limit: the broken file is among the first images of the round-robin over classes, so the rows the
    # workers wrote after it move up one, and the images past the limit are decoded but not written.
    limited = [prepare(f"imagefolder:{photos}", size=SIZE, limit=21, progress=False, workers=workers)
               for workers in (2, 1)]
    assert_same_cache(limited[0], limited[1])
    split = load_split(f"imagefolder:{photos}", "all", SIZE, 21)
    assert len(split) == 21 and split.meta["skipped"][0]["path"] == "right/broken.jpg"


def test_a_killed_build_resumes_where_it_stopped(photos, reference, tmp_path):
    env = {**os.environ, "SSL_CTX_DATA": str(REAL_DATA), "SSL_CTX_CACHE": str(tmp_path / "cache"),
           "SSL_CTX_PREPARE_CHECKPOINT_EVERY": str(CHECKPOINT_EVERY)}
    command = [sys.executable, "-m", "ssl_ctx", "data", "prepare", f"imagefolder:{photos}", "--size", str(SIZE),
               "--workers", "2"]
    final = tmp_path / "cache" / reference.parent.name / reference.name
    partial = final.parent / f".{final.name}.partial"
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    written, deadline = 0, time.time() + 120
    try:
        while not written and process.poll() is None and time.time() < deadline:
            time.sleep(0.005)
            try:
                written = json.loads((partial / PROGRESS_FILE).read_text())["splits"]["all"]["count"]
            except (OSError, ValueError, KeyError):
                pass
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    assert 0 < written < PHOTOS, "the build was not caught half-way"
    assert not final.exists() and not is_complete(partial)  # nothing that a reader would take for a cache
    assert (partial / "all" / CHECKPOINT_FILE).is_file()
    with pytest.raises(FileNotFoundError):
        CachedSplit.open(final / "all")

    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    resumed = json.loads((final / "meta.json").read_text())
    assert "resuming the all split at image " in result.stderr and f" of {PHOTOS + 1} ({partial})" in result.stderr
    at = int(result.stderr.split("resuming the all split at image ")[1].split()[0])
    assert written <= at < PHOTOS  # from its last checkpoint, not from the start
    assert_same_cache(final, reference)
    assert resumed["splits"] == {"all": PHOTOS} and resumed["workers"] == 2
    assert not partial.exists() and not list(final.rglob(CHECKPOINT_FILE)) and not (final / PROGRESS_FILE).exists()


def test_ctrl_c_keeps_the_build_and_a_changed_folder_discards_it(env, monkeypatch, capsys):
    folder = env / "photos" / "cats"
    write_images(folder, 12)
    name = f"imagefolder:{env / 'photos'}"
    monkeypatch.setenv("SSL_CTX_PREPARE_CHECKPOINT_EVERY", "4")
    real_decode, calls = prepare_module.decode_item, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "decode_item", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(name, size=16, progress=True)
    partial = cache_dir(name, 16).parent / ".16x16.partial"
    assert json.loads((partial / PROGRESS_FILE).read_text())["splits"]["all"]["count"] == 4
    assert "the same command continues from there" in capsys.readouterr().err

    monkeypatch.setattr(prepare_module, "decode_item", real_decode)
    write_images(folder, 1, start=12)  # the folder changed: the partial build is of other files
    prepare(name, size=16, progress=True)
    err = capsys.readouterr().err
    assert f"ssl-ctx: warning: discarding the unfinished build in '{partial}': it was started with another items, " \
           f"source; starting again" in err and "resuming" not in err
    assert len(load_split(name, "all", size=16)) == 13 and not partial.exists()
    with pytest.raises(UserError, match=r"^bad number of workers 0; pass a positive number of processes"):
        prepare(name, size=16, workers=0)


# ---------------------------------------------------------------------------------- per-image fields


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def voc_like_index() -> tuple[DatasetIndex, FetchedFiles]:
    """Three classes; ``trainval`` has label sets and boxes (some difficult), ``seg`` label maps and its own
    classes (background first); one ``trainval`` image has no label set, one ``seg`` image no label map."""
    rng = np.random.default_rng(0)
    files, trainval, seg = {}, [], []
    for i in range(4):
        files[f"img{i}.png"] = png(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        files[f"lab{i}.png"] = png(np.full((12, 16), i, np.uint8))
        boxes = np.array([[0, 0, 8, 6], [4, 2, 16, 12]][: 1 + i % 2], np.float32)
        trainval.append(Item(f"img{i}.png", boxes=boxes, boxes_in_pixels=True, box_labels=np.arange(len(boxes)),
                             box_difficult=np.array([i == 1, True][: len(boxes)]) if i else None,
                             label_set=None if i == 3 else np.array([1, 0, -1], np.int8) * (1 if i % 2 else -1)))
        seg.append(Item(f"img{i}.png", label_map=None if i == 2 else f"lab{i}.png"))
    lut = np.full(256, 255, np.uint8)
    lut[:4] = [0, 1, 2, 3]
    index = DatasetIndex(splits={"trainval": trainval, "seg": seg}, class_names=["cat", "dog", "car"],
                         has_boxes=True, has_label_sets=True, label_lut=lut,
                         split_class_names={"seg": ["background", "cat", "dog", "car"]})
    return index, FetchedFiles(files)


def test_label_sets_difficult_boxes_and_per_split_label_maps_round_trip(env, monkeypatch):
    index, tree = voc_like_index()
    layout = Layout(archives=(), folders=(), find_root=lambda paths: "", index=lambda tree, root: index)
    spec = DatasetSpec(name="voc-like", default_size=(6, 8), splits=("trainval", "seg"), layouts=(layout,))
    monkeypatch.setattr(prepare_module, "get_spec", lambda name: spec)
    monkeypatch.setattr(prepare_module, "locate_source", lambda spec: Source("folder", env, layout, tree, ""))
    trainval = load_split("voc-like", "trainval")
    assert len(trainval) == 3 and trainval.class_names == ["cat", "dog", "car"]
    assert trainval.label_sets.dtype == np.int8 and trainval.label_sets.tolist() == [[-1, 0, 1], [1, 0, -1],
                                                                                     [-1, 0, 1]]
    assert [b.tolist() for b in trainval.box_difficult] == [[False], [True, True], [False]]
    assert np.allclose(trainval.boxes[1], [[0, 0, 0.5, 0.5], [0.25, 1 / 6, 1, 1]])
    assert trainval.label_maps is None and trainval.meta["skipped"][0]["path"] == "img3.png"
    seg = load_split("voc-like", "seg")
    assert seg.class_names == ["background", "cat", "dog", "car"] and seg.label_sets is None
    assert seg.label_maps.shape == (3, 6, 8) and [int(m[0, 0]) for m in seg.label_maps] == [0, 1, 3]
    assert [b.shape for b in seg.boxes] == [(0, 4)] * 3 and [d.shape for d in seg.box_difficult] == [(0,)] * 3
    meta = json.loads((trainval.path.parent / "meta.json").read_text())
    assert meta["class_names"] == ["cat", "dog", "car"] and meta["has_label_sets"] is True
    assert meta["split_class_names"] == {"seg": ["background", "cat", "dog", "car"]}

    # A cache written before box_difficult.npy and label_sets.npy existed still opens.
    (trainval.path / "box_difficult.npy").unlink()
    (trainval.path / "label_sets.npy").unlink()
    old_meta = {k: v for k, v in trainval.meta.items() if k != "has_label_sets"}
    (trainval.path / "meta.json").write_text(json.dumps(old_meta))
    old = CachedSplit.open(trainval.path)
    assert old.label_sets is None and [d.tolist() for d in old.box_difficult] == [[False], [False, False], [False]]
