"""Fault class: a file given as a checkpoint that is not one (an image renamed .pt, an empty file), or one that
only unsafe unpickling could read; the library's own words go on a second, indented line."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_ctx.engine.checkpoint import CHECKPOINT_FORMAT
from ssl_ctx.errors import UserError
from tests.faults.conftest import run_cli, the_line
from tests.helpers import file_digests, leftovers

PROBE = "tests/configs/probe_tiny.yaml"


def commands(checkpoint, tmp_path) -> dict[str, list[str]]:
    """Every command that reads a checkpoint, with ``checkpoint`` as it."""
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    return {"inpaint": ["inpaint", str(tmp_path / "photo.png"), "--region", "center", "--checkpoint", str(checkpoint),
                        "-o", str(tmp_path / "out" / "photo.png")],
            "export": ["export", str(checkpoint), "-o", str(tmp_path / "out" / "encoder.safetensors")],
            "probe": ["probe", PROBE, f"init={checkpoint}", f"output_dir={tmp_path / 'out'}"]}


@pytest.mark.parametrize("command", ["inpaint", "export", "probe"])
@pytest.mark.parametrize("content", ["a JPEG image", "an empty file"])
def test_a_file_that_is_not_a_checkpoint_is_called_so(command, content, tmp_path, capsys):
    path = tmp_path / "x.pt"
    if content == "a JPEG image":
        pixels = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, format="JPEG")  # a real photo file, renamed
    else:
        path.write_bytes(b"")
    argv = commands(path, tmp_path)[command]
    before = file_digests(tmp_path)
    status, out, err = run_cli(capsys, *argv)
    assert status == 2 and err.count("\n") == 1
    what = "it is a JPEG image" if content == "a JPEG image" else "the file is empty"
    assert the_line(err) == (f"ssl-ctx: error: '{path}' is not a PyTorch checkpoint ({what}); pass a checkpoint "
                             f"written by ssl-ctx (runs/<name>/checkpoints/last.pt)")
    assert "safely" not in err
    assert file_digests(tmp_path) == before and not leftovers(tmp_path)


def test_a_checkpoint_only_unsafe_unpickling_could_read_is_still_a_safety_refusal(tmp_path, capsys):
    path = tmp_path / "last.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "args": argparse.Namespace(lr=1.0)}, path)
    argv = commands(path, tmp_path)["export"]
    before = file_digests(tmp_path)
    status, out, err = run_cli(capsys, *argv)
    assert status == 2
    line, detail = err.splitlines()  # the one line, then torch's reason below it
    assert line.startswith(f"ssl-ctx: error: checkpoint '{path}' cannot be read safely: it holds objects that only "
                           f"unsafe unpickling could build; pass a checkpoint written by ssl-ctx, or")
    assert "re-save only its tensors: torch.save(torch.load(f, weights_only=False)['state_dict']" in line
    assert detail.startswith("  WeightsUnpickler error: Unsupported global: GLOBAL argparse.Namespace")
    assert file_digests(tmp_path) == before and not leftovers(tmp_path)


def test_a_damaged_checkpoint_says_so_and_the_library_text_stays_off_the_line(tmp_path, capsys):
    good = tmp_path / "good.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "weights": torch.zeros(1000)}, good)
    path = tmp_path / "last.pt"
    path.write_bytes(good.read_bytes()[:2000])  # cut short, as by a full disk or an interrupted copy
    status, out, err = run_cli(capsys, *commands(path, tmp_path)["export"])
    assert status == 2
    line, detail = err.splitlines()
    assert line == (f"ssl-ctx: error: checkpoint '{path}' cannot be read (damaged or cut short?); write it again or "
                    f"pass another checkpoint written by ssl-ctx")
    assert detail.startswith("  PytorchStreamReader failed reading zip archive") and len(detail) <= 2 + 300


def test_the_detail_is_not_part_of_the_message():
    err = UserError("checkpoint 'x.pt' cannot be read", detail="first line\n\tsecond \x1b[1mline\x1b[0m " + "x" * 400)
    assert str(err) == "checkpoint 'x.pt' cannot be read"  # what tests and records quote: still one line
    assert err.detail.startswith("first line second line xxx") and err.detail.endswith("...")
    assert "\n" not in err.detail and len(err.detail) == 300
