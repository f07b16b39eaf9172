"""Fault class: image folders without classes, without images, or changed after their cache was built."""
from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
from PIL import Image

from ssl_ctx.data import load_split
from tests.faults.conftest import run_cli, the_line
from tests.helpers import file_digests, leftovers


def write_images(folder, count: int, start: int = 0, size: int = 24) -> None:
    """``count`` random ``size``-px PNGs named img<start>.png ... in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for index in range(start, start + count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"img{index:03d}.png")


def prepare(capsys, folder):
    return run_cli(capsys, "data", "prepare", f"imagefolder:{folder}", "--size", "16")


def test_images_without_class_folders_are_one_unlabelled_split(env, capsys):
    write_images(env / "photos", 5)
    status, out, err = prepare(capsys, env / "photos")
    assert status == 0, err
    assert out.strip().endswith("all 5 images; 0 file(s) skipped")
    split = load_split(f"imagefolder:{env / 'photos'}", "all", size=16)
    assert len(split) == 5 and split.labels is None and split.class_names == []


@pytest.mark.parametrize("content", ["nothing", "not images"])
def test_a_folder_without_usable_images_is_refused_and_nothing_is_cached(env, capsys, content):
    folder = env / "photos"
    folder.mkdir()
    if content == "not images":
        (folder / "a.jpg").write_text("not a picture")
        (folder / "b.png").write_bytes(b"\x89PNG broken")
    status, out, err = prepare(capsys, folder)
    assert status == 2
    line = the_line(err)
    if content == "nothing":
        assert line == (f"ssl-ctx: error: image folder '{folder}' holds no images; put them in <folder>/<class>/ "
                        f"(or straight in the folder for unlabelled pretext training)")
    else:
        assert line == (f"ssl-ctx: error: image folder '{folder}': split 'all' has no usable image (of 2 files, "
                        f"all skipped); nothing was cached")
    assert not list((env / "cache").rglob("meta.json")) and not leftovers(env / "cache")


@pytest.mark.parametrize("change", ["added", "removed", "rewritten"])
def test_a_changed_image_folder_is_noticed_and_its_cache_rebuilt(env, capsys, change):
    folder = env / "photos" / "cats"
    write_images(folder, 4)
    assert prepare(capsys, env / "photos")[0] == 0
    if change == "added":
        write_images(folder, 1, start=4)
    elif change == "removed":
        (folder / "img000.png").unlink()
    else:
        write_images(folder, 1, start=9)
        os.replace(folder / "img009.png", folder / "img001.png")
    status, out, err = prepare(capsys, env / "photos")
    assert status == 0, err
    assert the_line(err).startswith(f"ssl-ctx: warning: image folder '{env / 'photos'}' changed since its 16x16 "
                                    f"cache was built (4 files, sha256 ")
    assert out.strip().endswith({"added": "all 5 images", "removed": "all 3 images",
                                 "rewritten": "all 4 images"}[change] + "; 0 file(s) skipped")
    status, out, err = prepare(capsys, env / "photos")  # unchanged since: nothing to do
    assert status == 0 and "ssl-ctx:" not in err


def test_a_failed_rebuild_leaves_the_previous_cache_as_it_was(env, capsys, monkeypatch):
    write_images(env / "photos" / "cats", 4)
    assert prepare(capsys, env / "photos")[0] == 0
    before = file_digests(env / "cache")
    write_images(env / "photos" / "cats", 1, start=4)
    monkeypatch.setattr(importlib.import_module("ssl_ctx.data.prepare"), "build_split", _raise_keyboard_interrupt)
    assert prepare(capsys, env / "photos")[0] == 130  # interrupted in the middle of the rebuild
    assert file_digests(env / "cache") == before and not leftovers(env / "cache")


def _raise_keyboard_interrupt(*args, **kwargs):
    raise KeyboardInterrupt
