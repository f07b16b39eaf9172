"""Dataset archives and folders as read-only file trees, and safe extraction.

A :class:`FileTree` lists files by relative POSIX path and returns their bytes, whether they live in a
folder or in an archive (``.tar``, ``.tar.gz``/``.tgz``, ``.zip``). Archive members are streamed straight
into memory (the archives used here are at most a few hundred MB), so preparing a cache needs no extracted
copy; :func:`extract_archive` makes one when other code wants the files on disk.

Both paths apply the same rule to every member before anything is read or written: no absolute path, no
``..`` component, no link whose target leaves the archive, no device or FIFO. An archive that breaks the
rule is refused as a whole with a :class:`UserError` naming the member. Extraction additionally uses
tarfile's ``filter="data"`` and happens in a temporary folder that is renamed into place, followed by a
completion marker.

A folder on disk is listed through its links to other folders, except a link that loops back to a folder above
it or leads to files listed already (skipped with a warning naming it); a link to a file that loops or points
to nothing is listed, and skipped, named, when it is read (:meth:`FolderTree.read` says which it is).
"""
from __future__ import annotations

import errno
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

from ssl_ctx.data.cache import locked, make_dirs
from ssl_ctx.data.status import log_warning
from ssl_ctx.errors import UserError
from ssl_ctx.files import temporary_sibling

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
EXTRACTED_MARKER = ".extracted-complete"


def archive_stem(path: Path) -> str:
    """``CamVid.tar.gz -> CamVid``."""
    for suffix in ARCHIVE_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


# ------------------------------------------------------------------------------------------- safety


def _outside(normalised: str) -> bool:
    return normalised == ".." or normalised.startswith("../")


def unsafe_reason(name: str, link_target: str | None = None, hard_link: bool = False) -> str | None:
    """Why an archive member named ``name`` (optionally a link to ``link_target``) may not be extracted, or None."""
    if not name or "\x00" in name:
        return "has an empty or invalid name"
    unified = name.replace("\\", "/")
    if unified.startswith("/") or re.match(r"^[A-Za-z]:", unified):
        return "has an absolute path"
    if ".." in unified.split("/"):
        return "has a '..' component that leads outside the target folder"
    if link_target is not None:
        target = link_target.replace("\\", "/")
        if target.startswith("/") or re.match(r"^[A-Za-z]:", target):
            return "is a link to an absolute path"
        # Hard-link targets are relative to the archive root, symbolic ones to the link's folder.
        resolved = posixpath.normpath(target if hard_link else posixpath.join(posixpath.dirname(unified), target))
        if _outside(resolved):
            return "is a link that points outside the target folder"
    return None


def _refuse(archive: Path, member: str, reason: str) -> UserError:
    return UserError(f"refusing to use archive '{archive}': member '{member}' {reason}")


def _check_tar_member(archive: Path, member: tarfile.TarInfo) -> None:
    if member.isdev() or member.isfifo():
        raise _refuse(archive, member.name, "is a device or FIFO")
    link = member.linkname if (member.issym() or member.islnk()) else None
    reason = unsafe_reason(member.name, link, hard_link=member.islnk())
    if reason:
        raise _refuse(archive, member.name, reason)


def _check_zip_member(archive: Path, info: zipfile.ZipInfo) -> None:
    reason = unsafe_reason(info.filename)
    if reason:
        raise _refuse(archive, info.filename, reason)


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _member_path(name: str) -> str:
    """Normalised relative POSIX path of a (checked) member name."""
    normalised = posixpath.normpath(name)
    return "" if normalised == "." else normalised


_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError)


# -------------------------------------------------------------------------------------------- trees


class FileTree:
    """Files of a dataset by relative POSIX path (``a/b/c.jpg``), read-only."""

    kind = "folder"

    def __init__(self, description: str) -> None:
        self.description = description
        self._by_folder: dict[str, list[str]] | None = None
        self._set: set[str] | None = None

    def files(self) -> list[str]:
        """Every regular file, sorted."""
        raise NotImplementedError

    def read(self, path: str) -> bytes:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        return path in self._file_set()

    def listdir(self, folder: str) -> list[str]:
        """Names of the files directly inside ``folder`` (``''`` = the top), sorted."""
        if self._by_folder is None:
            by_folder: dict[str, list[str]] = {}
            for path in self.files():
                head, _, tail = path.rpartition("/")
                by_folder.setdefault(head, []).append(tail)
            self._by_folder = by_folder
        return self._by_folder.get(folder.strip("/"), [])

    def subfolders(self, folder: str) -> list[str]:
        """Names of the folders directly inside ``folder`` that hold at least one file (at any depth), sorted."""
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        names = set()
        for path in self.files():
            if path.startswith(prefix):
                head, sep, _ = path[len(prefix) :].partition("/")
                if sep:
                    names.add(head)
        return sorted(names)

    def _file_set(self) -> set[str]:
        if self._set is None:
            self._set = set(self.files())
        return self._set


class FolderTree(FileTree):
    """A folder on disk."""

    kind = "folder"

    def __init__(self, root: Path) -> None:
        super().__init__(str(root))
        self.root = Path(root)
        self._files: list[str] | None = None

    def files(self) -> list[str]:
        if self._files is None:
            found = []
            listed = [Path(os.path.realpath(self.root))]  # the real folders listed: the root, then linked ones
            for folder, dirs, names in os.walk(self.root, followlinks=True):
                dirs[:] = [name for name in sorted(dirs) if _follow(Path(folder) / name, listed)]
                rel = os.path.relpath(folder, self.root)
                rel = "" if rel == "." else rel.replace(os.sep, "/")
                found.extend(f"{rel}/{n}" if rel else n for n in names)
            self._files = sorted(found)
        return self._files

    def read(self, path: str) -> bytes:
        file = self.root / path
        try:
            return file.read_bytes()
        except OSError as err:
            if not file.is_symlink():
                raise
            problem = "loops back on itself" if err.errno == errno.ELOOP else "points to nothing"
            raise OSError(f"a symbolic link to '{os.readlink(file)}' that {problem}") from None


def _follow(folder: Path, listed: list[Path]) -> bool:
    """Whether :class:`FolderTree` lists ``folder``: a real folder always, a link to a folder unless its target
    holds the link (it would loop) or overlaps a listed folder (files would be listed twice). ``listed`` gains
    each linked folder that is followed."""
    if not folder.is_symlink():
        return True
    target = Path(os.path.realpath(folder))
    if Path(os.path.realpath(folder.parent)).is_relative_to(target):
        log_warning(f"skipping '{folder}': a link back to '{target}', a folder above it (following it would loop)")
        return False
    if any(target.is_relative_to(done) or done.is_relative_to(target) for done in listed):
        log_warning(f"skipping '{folder}': a link to '{target}', which overlaps a folder listed already (its files "
                    f"would be listed twice)")
        return False
    listed.append(target)
    return True


class ArchiveTree(FileTree):
    """The regular files of an archive, read once into memory after every member passed the safety rule."""

    kind = "archive"

    def __init__(self, archive: Path) -> None:
        super().__init__(str(archive))
        self.archive = Path(archive)
        self._data: dict[str, bytes] = {}
        try:
            if self.archive.name.endswith(".zip"):
                self._read_zip()
            else:
                self._read_tar()
        except UserError:
            raise
        except _READ_ERRORS as err:
            raise UserError(
                f"cannot read archive '{self.archive}': {err}; download it again (or extract it yourself next to it)"
            ) from None
        self._files = sorted(self._data)

    def _read_tar(self) -> None:
        # Stream mode: one sequential pass over the compressed file, no seeking.
        with tarfile.open(self.archive, mode="r|*") as tar:
            for member in tar:
                _check_tar_member(self.archive, member)
                if member.isfile():
                    handle = tar.extractfile(member)
                    self._data[_member_path(member.name)] = handle.read() if handle else b""

    def _read_zip(self) -> None:
        with zipfile.ZipFile(self.archive) as archive:
            infos = archive.infolist()
            for info in infos:
                _check_zip_member(self.archive, info)
            for info in infos:
                if not info.is_dir() and not _zip_is_symlink(info):
                    self._data[_member_path(info.filename)] = archive.read(info)

    def files(self) -> list[str]:
        return self._files

    def read(self, path: str) -> bytes:
        return self._data[path]


# ---------------------------------------------------------------------------------------- extraction


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _extract_tar(archive: Path, target: Path) -> None:
    with tarfile.open(archive, mode="r:*") as tar:
        members = tar.getmembers()
        for member in members:  # all checked before anything is written
            _check_tar_member(archive, member)
        try:
            tar.extractall(target, members=members, filter="data")
        except tarfile.FilterError as err:  # the stdlib filter is a second line of defence
            raise _refuse(archive, err.tarinfo.name, f"was refused by the extraction filter ({err})") from None


def _extract_zip(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as source:
        infos = source.infolist()
        for info in infos:
            _check_zip_member(archive, info)
        for info in infos:
            if _zip_is_symlink(info):
                continue
            destination = target / _member_path(info.filename)
            if not _inside(target, destination):
                raise _refuse(archive, info.filename, "leads outside the target folder")
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with source.open(info) as src, open(destination, "wb") as dst:
                shutil.copyfileobj(src, dst)


def extract_archive(archive: Path, target: Path) -> Path:
    """Extract ``archive`` into the folder ``target`` once (safely, atomically) and return ``target``.

    ``target`` is complete when it holds the marker file; an incomplete one (an interrupted extraction) is
    removed and extracted again.
    """
    archive, target = Path(archive), Path(target)
    if (target / EXTRACTED_MARKER).is_file():
        return target
    make_dirs(target.parent)
    with locked(target.parent / f".{target.name}.lock"):
        if (target / EXTRACTED_MARKER).is_file():
            return target
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():
            shutil.rmtree(target)
        tmp = temporary_sibling(target)
        tmp.mkdir()
        try:
            try:
                (_extract_zip if archive.name.endswith(".zip") else _extract_tar)(archive, tmp)
            except _READ_ERRORS as err:
                raise UserError(f"cannot extract archive '{archive}': {err}; download it again") from None
            for path in tmp.rglob("*"):  # belt and braces: nothing may resolve outside the target
                if path.is_symlink() and not _inside(tmp, path):
                    raise _refuse(archive, str(path.relative_to(tmp)), "resolves outside the target folder")
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (target / EXTRACTED_MARKER).write_text(f"extracted from {archive}\n")
    return target
