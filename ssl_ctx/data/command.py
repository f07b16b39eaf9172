"""What the ``ssl-ctx data`` verbs print: each runs its job, then prints a short summary on stdout.

``prepare_command`` (``ssl-ctx data prepare``) prepares a cache, decoding with every core this process may use
unless told otherwise, and prints its folder, images per split, files skipped and resize policy in words;
``scenes_command`` (``ssl-ctx data scenes``) writes the street + facade image folder and prints its images per
split and class, and how to train on it. Errors are :class:`~ssl_ctx.errors.UserError`, printed by
``ssl_ctx.cli``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ssl_ctx.data.cache import read_cache_meta
from ssl_ctx.data.decode import UNRECORDED_RESIZE, describe_resize
from ssl_ctx.data.prepare import prepare
from ssl_ctx.data.scenes import COMPLETE_MARKER, build_scene_folder
from ssl_ctx.data.status import counts_text
from ssl_ctx.host import cpu_cores


def prepare_command(
    name: str,
    size: int | str | Sequence[int] | None = None,
    limit: int | None = None,
    workers: int | None = None,
    resize: str | None = None,
) -> Path:
    """``ssl-ctx data prepare``: prepare with ``workers`` decoding processes (None = every core this process may
    use, :func:`~ssl_ctx.host.cpu_cores`) and the resize policy ``resize`` (None = the dataset's), then print one
    summary line (folder, images per split, skipped files, the policy in words)."""
    folder = prepare(name, size, limit, progress=True, workers=cpu_cores() if workers is None else workers,
                     resize=resize)
    meta = read_cache_meta(folder)
    print(f"{folder}: {counts_text(meta['splits'])} images; {meta['skipped']} file(s) skipped; "
          f"{describe_resize(meta.get('resize', UNRECORDED_RESIZE), meta['size'])}")
    return folder


def scenes_command(target: str | os.PathLike) -> Path:
    """``ssl-ctx data scenes``: write the street + facade image folder, then print its counts and its dataset name."""
    folder = build_scene_folder(target)
    print(f"{folder}: {(folder / COMPLETE_MARKER).read_text().strip().replace(chr(10), ', ')}")
    print(f"train on it with data.dataset=imagefolder:{folder}")
    return folder
