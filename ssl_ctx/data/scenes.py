"""Street + facade scenes as one image folder, so one pretext run can train on both.

The data layer reads one dataset per run; the paper's inpainting model was trained on street and facade
scenes (Paris StreetView). ``build_scene_folder`` writes ``<target>/<split>/street/`` (CamVid) and
``<target>/<split>/facade/`` (CMP facade base set) as symbolic links to the published files (extracted once
under the cache by ``sources.extracted_root``), in the ``imagefolder`` layout ``<path>/<split>/<class>/``, so
that::

    ssl-ctx data scenes /path/to/street-facade
    ssl-ctx pretrain configs/inpaint/center_l2.yaml data.dataset=imagefolder:/path/to/street-facade

trains on CamVid train + CMP facade train (367 + 303 images) and holds out CamVid test + CMP facade test.
Splits are the datasets' own (CMP's fixed one: every 5th image in sorted order is test), read by their
indexers in ``ssl_ctx.data.datasets``; nothing is copied or decoded here.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ssl_ctx.data.archives import FolderTree
from ssl_ctx.data.catalogue import get_spec
from ssl_ctx.data.sources import extracted_root
from ssl_ctx.errors import UserError
from ssl_ctx.files import temporary_sibling

# class folder -> (dataset, {our split: the dataset's split})
SCENE_SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "street": ("camvid", {"train": "train", "test": "test"}),
    "facade": ("cmp-facade", {"train": "train", "test": "test"}),
}
COMPLETE_MARKER = ".scenes-complete"


def build_scene_folder(target: str | os.PathLike) -> Path:
    """Write (once) the street + facade image folder at ``target`` and return it; idempotent."""
    target = Path(target).absolute()
    if (target / COMPLETE_MARKER).is_file():
        return target
    if target.exists() and any(target.iterdir()):
        raise UserError(f"'{target}' exists and is not a finished scene folder; remove it or choose another path")
    tmp = temporary_sibling(target)
    tmp.mkdir(parents=True)
    try:
        counts = {}
        for class_name, (dataset, splits) in SCENE_SOURCES.items():
            root = extracted_root(dataset)
            index = get_spec(dataset).layouts[0].index(FolderTree(root), "")
            for ours, theirs in splits.items():
                folder = tmp / ours / class_name
                folder.mkdir(parents=True)
                for item in index.splits[theirs]:
                    source = (root / item.path).resolve()
                    (folder / source.name).symlink_to(source)
                counts[f"{ours}/{class_name}"] = len(index.splits[theirs])
        (tmp / COMPLETE_MARKER).write_text("".join(f"{k} {v}\n" for k, v in counts.items()))
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
