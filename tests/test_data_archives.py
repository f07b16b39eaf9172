"""Archives: unsafe members are refused before anything is read or written; extraction is atomic and done once."""
from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from ssl_ctx.data import extract_archive, extracted_root, prepare
from ssl_ctx.data.archives import ArchiveTree, FolderTree, unsafe_reason
from ssl_ctx.errors import UserError


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_link(tar: tarfile.TarFile, name: str, target: str, hard: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    tar.addfile(info)


def test_unsafe_reason_rules() -> None:
    assert unsafe_reason("a/b/c.jpg") is None
    assert unsafe_reason("./a/b.jpg") is None
    assert "absolute" in unsafe_reason("/etc/passwd")
    assert "absolute" in unsafe_reason("C:/windows/evil")
    assert ".." in unsafe_reason("../evil")
    assert ".." in unsafe_reason("a/../../evil")
    assert ".." in unsafe_reason("a\\..\\..\\evil")
    assert unsafe_reason("a/link", "b/c.jpg") is None
    assert unsafe_reason("a/link", "../a/c.jpg") is None  # stays inside
    assert "outside" in unsafe_reason("a/link", "../../c.jpg")
    assert "absolute" in unsafe_reason("a/link", "/etc/passwd")
    assert "outside" in unsafe_reason("a/hard", "../x", hard_link=True)


@pytest.mark.parametrize(
    "bad_member",
    ["tiny-imagenet-200/../../evil", "/tmp/ssl-ctx-test-evil-absolute", "../evil", "tiny-imagenet-200/link"],
)
def test_malicious_tar_is_refused_naming_the_member(env: Path, bad_member: str) -> None:
    archive = env / "data" / "tiny-imagenet-200.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_file(tar, "tiny-imagenet-200/wnids.txt", b"n0001\n")
        if bad_member.endswith("link"):
            add_link(tar, bad_member, "../../../evil")
        else:
            add_file(tar, bad_member, b"evil")
    for action in (lambda: prepare("tiny-imagenet-200", progress=False), lambda: extracted_root("tiny-imagenet-200")):
        with pytest.raises(UserError) as caught:
            action()
        message = str(caught.value)
        assert f"member '{bad_member}'" in message and "refusing" in message
        assert "\n" not in message
    assert not (env / "evil").exists() and not (env.parent / "evil").exists()
    assert not Path("/tmp/ssl-ctx-test-evil-absolute").exists()
    extracted = env / "cache" / "extracted"
    assert not extracted.exists() or not any(p for p in extracted.iterdir() if not p.name.endswith(".lock"))
    assert not (env / "cache" / "tiny-imagenet-200" / "64x64").exists()


def test_malicious_zip_is_refused(env: Path) -> None:
    archive = env / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/a.txt", b"fine")
        zf.writestr("../evil", b"evil")
    with pytest.raises(UserError, match="member '../evil'"):
        ArchiveTree(archive)
    with pytest.raises(UserError, match="member '../evil'"):
        extract_archive(archive, env / "out")
    assert not (env / "evil").exists() and not (env / "out").exists()


def test_extraction_is_atomic_and_done_once(env: Path) -> None:
    archive = env / "data" / "tiny-imagenet-200.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_file(tar, "tiny-imagenet-200/wnids.txt", b"n0001\n")
        add_file(tar, "tiny-imagenet-200/train/n0001/images/n0001_0.JPEG", b"not really")
        add_link(tar, "tiny-imagenet-200/alias.txt", "wnids.txt")  # a safe link is fine
    root = extracted_root("tiny-imagenet-200")
    assert root == env / "cache" / "extracted" / "tiny-imagenet-200" / "tiny-imagenet-200"
    assert (root / "wnids.txt").read_text() == "n0001\n"
    assert (root / "train/n0001/images/n0001_0.JPEG").is_file()
    marker = root.parent / ".extracted-complete"
    stamp = marker.stat().st_mtime_ns
    assert extracted_root("tiny-imagenet-200") == root
    assert marker.stat().st_mtime_ns == stamp
    # An extraction without its marker (interrupted) is redone.
    marker.unlink()
    (root / "wnids.txt").write_text("stale")
    extract_archive(archive, root.parent)
    assert (root / "wnids.txt").read_text() == "n0001\n" and marker.is_file()
    assert not list(root.parent.parent.glob(".tiny-imagenet-200.tmp-*"))


def test_archive_and_folder_trees_agree(env: Path) -> None:
    files = {"top/a.txt": b"a", "top/sub/b.bin": b"\x00\x01", "top/sub/deeper/c.txt": b"c"}
    archive = env / "t.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in files.items():
            add_file(tar, "./" + name, data)
    archived = ArchiveTree(archive)
    folder = extract_archive(archive, env / "x")
    on_disk = FolderTree(folder)
    on_disk_files = [f for f in on_disk.files() if not f.startswith(".")]
    assert archived.files() == on_disk_files == sorted(files)
    assert archived.listdir("top/sub") == on_disk.listdir("top/sub") == ["b.bin"]
    assert archived.subfolders("top") == ["sub"]
    assert archived.read("top/sub/b.bin") == on_disk.read("top/sub/b.bin") == b"\x00\x01"


def test_corrupt_archive_is_a_user_error(env: Path) -> None:
    (env / "data" / "CamVid.tar.gz").write_bytes(b"\x1f\x8b this is not gzip")
    with pytest.raises(UserError, match="cannot read archive"):
        prepare("camvid", progress=False)
