"""Fault class: image folders without classes, without images, or changed after their cache was built."""
from __future__ import annotations

import importlib
import logging
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


def data_warnings(caplog) -> list[str]:
    """The data layer's warning lines (skipped files and links), which it logs above its progress bars."""
    return [record.getMessage() for record in caplog.records
            if record.name == "ssl_ctx.data" and record.levelno == logging.WARNING]


def prepare(capsys, folder):
    return run_cli(capsys, "data", "prepare", f"imagefolder:{folder}", "--size", "16")


def test_images_without_class_folders_are_one_unlabelled_split(env, capsys):
    write_images(env / "photos", 5)
    status, out, err = prepare(capsys, env / "photos")
    assert status == 0, err
    assert "all 5 images; 0 file(s) skipped;" in out
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
    assert {"added": "all 5 images", "removed": "all 3 images",
            "rewritten": "all 4 images"}[change] + "; 0 file(s) skipped;" in out
    status, out, err = prepare(capsys, env / "photos")  # unchanged since: nothing to do
    assert status == 0 and "ssl-ctx:" not in err


@pytest.mark.parametrize("link", ["to itself", "to nothing"])
def test_a_broken_file_link_is_skipped_with_a_line_naming_it(env, capsys, caplog, link):
    folder = env / "photos" / "cats"
    write_images(folder, 3)
    target = "self.jpg" if link == "to itself" else "missing.jpg"
    (folder / "self.jpg").symlink_to(target)
    before = file_digests(env / "photos")
    status, out, err = prepare(capsys, env / "photos")
    assert status == 0, err
    problem = "loops back on itself" if link == "to itself" else "points to nothing"
    assert data_warnings(caplog)[0] == (f"imagefolder:{env / 'photos'} all: skipping '{folder / 'self.jpg'}': a "
                                        f"symbolic link to '{target}' that {problem}")
    assert "Traceback" not in err and "all 3 images; 1 file(s) skipped;" in out
    assert file_digests(env / "photos") == before and not leftovers(env / "cache")


def test_a_folder_link_that_loops_is_not_followed_and_is_named(env, capsys, caplog):
    folder = env / "photos" / "cats"
    write_images(folder, 3)
    (folder / "sub").mkdir()
    (folder / "sub" / "loop").symlink_to("..")  # cats/sub/loop/sub/loop/... for ever, if followed
    (folder / "up").symlink_to(env)  # above the image folder itself
    write_images(env / "more", 2, start=3)
    (folder / "more").symlink_to(env / "more")  # an ordinary link to other images: followed
    status, out, err = prepare(capsys, env / "photos")
    assert status == 0, err
    assert data_warnings(caplog) == [f"skipping '{link}': a link back to '{target}', a folder above it (following "
                                     f"it would loop)" for link, target in ((folder / "up", env),
                                                                            (folder / "sub" / "loop", folder))]
    assert "all 5 images; 0 file(s) skipped;" in out
    assert len(load_split(f"imagefolder:{env / 'photos'}", "all", size=16)) == 5


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
