"""Fault class: a full or read-only output folder: dataset caches, checkpoints, records and tables."""
from __future__ import annotations

import errno
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import torch

from ssl_ctx.engine.checkpoint import load_checkpoint
from ssl_ctx.errors import UserError
from ssl_ctx.files import write_json_atomic
from tests.faults.conftest import run_cli, the_line
from tests.faults.test_image_folders import write_images
from tests.helpers import file_digests, leftovers

PRETEXT = "tests/configs/pretext_tiny.yaml"


def test_a_full_disk_at_a_checkpoint_is_one_line_and_the_last_good_checkpoint_survives(real_data, tmp_path,
                                                                                       capsys, monkeypatch):
    real_save = torch.save
    saved: dict[str, object] = {}

    def save_then_fill_the_disk(payload, path, *args, **kwargs):
        if "good" not in saved:  # the checkpoint of step 2 is written; the disk is full at step 4
            real_save(payload, path, *args, **kwargs)
            saved["good"] = True
            return
        saved["before"] = file_digests(tmp_path / "run" / "checkpoints")
        pathlib.Path(path).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("ssl_ctx.engine.checkpoint.torch.save", save_then_fill_the_disk)
    status, out, err = run_cli(capsys, "pretrain", PRETEXT, f"output_dir={tmp_path}", "name=run")
    assert status == 2
    line = the_line(err)
    assert line.startswith(f"ssl-ctx: error: cannot write to '{tmp_path / 'run' / 'checkpoints'}': no space left "
                           f"(needs about ")
    assert line.endswith(" free); free some space or choose another output folder")
    assert file_digests(tmp_path / "run" / "checkpoints") == saved["before"]  # step 2's checkpoint, intact
    assert not leftovers(tmp_path) and not (tmp_path / "run" / "record.json").exists()


@pytest.fixture
def small_filesystem(tmp_path):
    """A 4 MB tmpfs: room for one checkpoint of the tiny pretext run (3 MB) but not for a second beside it."""
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(mount)],
                                                       capture_output=True).returncode != 0:
        pytest.skip("cannot mount a size-limited tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_cache_that_does_not_fit_is_one_line_not_a_bus_error(env, small_filesystem):
    # 400 images of 64x64 need 4.9 MB; the memory map of a sparse file would die with SIGBUS (exit 135) when the
    # disk fills, so this runs in a child process to see how it ends.
    write_images(env / "photos" / "cats", 400, size=8)
    result = subprocess.run([sys.executable, "-m", "ssl_ctx", "data", "prepare", f"imagefolder:{env / 'photos'}",
                             "--size", "64"], env={**os.environ, "SSL_CTX_CACHE": str(small_filesystem)},
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-1000:]
    line = the_line(result.stderr)
    assert line.startswith(f"ssl-ctx: error: cannot write to '{small_filesystem}/imagefolder-photos-") and \
        "no space left (needs about 4.9 MB, " in line and line.endswith("set SSL_CTX_CACHE to another folder")
    assert not leftovers(small_filesystem) and not list(small_filesystem.rglob("*.npy"))


@pytest.mark.parametrize("fault", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_cache_folder_leaves_the_other_caches_untouched(env, capsys, monkeypatch, fault):
    write_images(env / "photos" / "cats", 3)
    assert run_cli(capsys, "data", "prepare", f"imagefolder:{env / 'photos'}", "--size", "16")[0] == 0
    before = file_digests(env / "cache")

    def refuse(fd, offset, length):
        raise OSError(fault, os.strerror(fault))

    monkeypatch.setattr("ssl_ctx.data.cache_writer.os.posix_fallocate", refuse)
    status, out, err = run_cli(capsys, "data", "prepare", f"imagefolder:{env / 'photos'}", "--size", "32")
    assert status == 2
    reason = "no space left (needs about 9.2 KB, " if fault == errno.ENOSPC else "read-only file system; make it"
    assert the_line(err).startswith(f"ssl-ctx: error: cannot write to '{env / 'cache'}/imagefolder-photos-")
    assert reason in err
    assert file_digests(env / "cache") == before and not leftovers(env / "cache")


def test_a_really_full_disk_keeps_the_last_good_checkpoint(real_data, small_filesystem, capsys):
    # torch.save reports this full disk as a RuntimeError ("unexpected pos"), not an OSError.
    status, out, err = run_cli(capsys, "pretrain", PRETEXT, f"output_dir={small_filesystem}", "name=run")
    assert status == 2
    line = the_line(err)
    assert line.startswith(f"ssl-ctx: error: cannot write to '{small_filesystem / 'run' / 'checkpoints'}': "
                           f"no space left (needs about 3.0 MB, ")
    assert load_checkpoint(small_filesystem / "run" / "checkpoints" / "last.pt")["trainer_state"]["step"] == 2
    assert not leftovers(small_filesystem)


def test_a_full_disk_while_writing_a_record_keeps_the_previous_record(tmp_path, monkeypatch):
    path = write_json_atomic(tmp_path / "record.json", {"metrics": {"top1": 0.5}})
    before = path.read_bytes()
    real_write_text = pathlib.Path.write_text

    def half_then_full(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", half_then_full)
    with pytest.raises(UserError, match=rf"^cannot write to '{tmp_path}': no space left \(needs about \d+ B, "):
        write_json_atomic(path, {"metrics": {"top1": 0.7}})
    assert path.read_bytes() == before and not leftovers(tmp_path)


def test_a_read_only_tables_folder_is_one_line_and_the_records_are_untouched(bench_copy, capsys, monkeypatch):
    bench_dir = bench_copy / "bench-tiny"
    before = file_digests(bench_dir)

    def read_only(source, target):
        raise OSError(errno.EROFS, "Read-only file system", str(target))

    monkeypatch.setattr("ssl_ctx.files.os.replace", read_only)
    status, out, err = run_cli(capsys, "table", str(bench_dir), "-o", str(bench_copy / "tables"))
    assert status == 2 and err.count("\n") == 1
    assert err == (f"ssl-ctx: error: cannot write to '{bench_copy / 'tables'}': read-only file system; make it "
                   f"writable or choose another output folder\n")
    assert file_digests(bench_dir) == before and not leftovers(bench_copy)


@pytest.fixture
def read_only_folder(tmp_path):
    """An empty folder nobody can write to: without write permission, or (for root, whom permissions do not stop)
    a read-only tmpfs."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1M", "tmpfs",
                                                        str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("command", ["pretrain", "probe", "bench", "table", "export", "inpaint"])
def test_a_read_only_output_folder_is_one_line_before_any_work(command, read_only_folder, tmp_path, capsys):
    # Each command checks its output folder first: no data is prepared, no checkpoint or image is read.
    folder = read_only_folder
    argv = {"pretrain": ["pretrain", PRETEXT, f"output_dir={folder}", "name=run"],
            "probe": ["probe", "tests/configs/probe_tiny.yaml", f"output_dir={folder}", "name=run"],
            "bench": ["bench", "tests/configs/bench_tiny.yaml", f"output_dir={folder}"],
            "table": ["table", str(tmp_path), "-o", str(folder / "tables")],
            "export": ["export", str(tmp_path / "missing.pt"), "-o", str(folder / "encoder.safetensors")],
            "inpaint": ["inpaint", str(tmp_path / "missing.png"), "--region", "center", "--checkpoint",
                        str(tmp_path / "missing.pt"), "-o", str(folder / "out.png")]}[command]
    before = file_digests(tmp_path)
    status, out, err = run_cli(capsys, *argv)
    assert status == 2 and err.count("\n") == 1 and out == ""
    reason = "permission denied" if os.geteuid() != 0 else "read-only file system"
    assert err == (f"ssl-ctx: error: cannot write to '{folder}': {reason}; make it writable or choose another "
                   f"output folder\n")
    assert file_digests(tmp_path) == before and not leftovers(tmp_path)


def test_a_read_only_output_dir_of_pretrain_is_one_line_not_a_tensorboard_traceback(read_only_folder):
    # As above, through a child process: how the command really ends (no traceback, status 2).
    result = subprocess.run([sys.executable, "-m", "ssl_ctx", "pretrain", PRETEXT, f"output_dir={read_only_folder}"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert the_line(result.stderr).startswith(f"ssl-ctx: error: cannot write to '{read_only_folder}': ")
    assert result.stdout == "" and not any(read_only_folder.iterdir())
