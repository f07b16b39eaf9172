"""Finding a dataset on disk: which published form of it (archive or extracted folder) is read, and where.

``locate_source(spec)`` looks, for each of the dataset's published layouts (``datasets.py``) in order, for the
extracted folder in ``data_root()``, a copy extracted earlier under ``cache_root()/extracted/``, then the archive
in ``data_root()``, and says what to put where when none is there. A :class:`Source` opens as a file tree: a
folder is read in place, an archive member by member into memory (never written outside the cache), after the
safety check in ``archives.py``. ``extracted_root(name)`` is the dataset's folder as published, extracting an
archive once under the cache first.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssl_ctx.data.archives import EXTRACTED_MARKER, ArchiveTree, FileTree, FolderTree, archive_stem, extract_archive
from ssl_ctx.data.catalogue import folder_dataset, get_spec
from ssl_ctx.data.datasets import DatasetSpec, Layout
from ssl_ctx.data.roots import cache_root, data_root
from ssl_ctx.data.status import say
from ssl_ctx.errors import UserError


@dataclass
class Source:
    """Where a dataset was found: an archive or a folder, in one of its published layouts."""

    kind: str  # "archive" | "folder"
    path: Path
    layout: Layout
    tree: FileTree | None = None
    root: str | None = None

    def open(self, progress: bool = False) -> tuple[FileTree, str]:
        """The file tree and the dataset's root inside it (reads an archive into memory)."""
        if self.tree is None:
            say(f"reading {self.path}", progress)
            self.tree = ArchiveTree(self.path)
            self.root = self.layout.find_root(self.tree.files())
            if self.root is None:
                raise UserError(
                    f"archive '{self.path}' does not hold the expected layout; download the original file again"
                )
        return self.tree, self.root or ""

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "path": str(self.path)}


def _extracted_copy(archive: Path) -> Path:
    """Where ``archive`` is (or would be) extracted under the cache."""
    return cache_root() / "extracted" / archive_stem(archive)


def _folder_source(path: Path, layout: Layout) -> Source | None:
    if not path.is_dir():
        return None
    tree = FolderTree(path)
    root = layout.find_root(tree.files())
    return Source("folder", path, layout, tree, root) if root is not None else None


def locate_source(spec: DatasetSpec) -> Source:
    """The first published form of ``spec`` found; a :class:`UserError` saying what to put where otherwise."""
    if spec.folder is not None:
        tree, layout = FolderTree(spec.folder), spec.layouts[0]
        root = layout.find_root(tree.files())
        if root is None:
            prefix, entry = folder_dataset(spec)
            raise UserError(f"{entry.what} '{spec.folder}' does not hold the expected files: pass {prefix}<path> where "
                            f"{entry.holds}")
        return Source("folder", spec.folder, layout, tree, root)
    data = data_root()
    for layout in spec.layouts:
        for folder in layout.folders:
            found = _folder_source(data / folder, layout)
            if found:
                return found
        for archive in layout.archives:
            extracted = _extracted_copy(Path(archive))
            if (extracted / EXTRACTED_MARKER).is_file():
                found = _folder_source(extracted, layout)
                if found:
                    return found
        for archive in layout.archives:
            if (data / archive).is_file():
                return Source("archive", data / archive, layout)
    archives = " or ".join(layout.archives[0] for layout in spec.layouts)
    folders = " or ".join(f"{layout.folders[0]}/" for layout in spec.layouts)
    raise UserError(
        f"dataset '{spec.name}' not found: put {archives} (or the extracted {folders} folder) in "
        f"{data.absolute()} (set SSL_CTX_DATA to change the folder)"
    )


def extracted_root(name: str) -> Path:
    """The dataset's folder on disk, as published; an archive is first extracted (safely, once) under
    ``cache_root()/extracted/``."""
    spec = get_spec(name)
    source = locate_source(spec)
    if source.kind == "folder":
        return source.path / (source.root or "")
    target = extract_archive(source.path, _extracted_copy(source.path))
    root = source.layout.find_root(FolderTree(target).files())
    if root is None:
        raise UserError(f"archive '{source.path}' does not hold the expected layout; download it again")
    return target / root
