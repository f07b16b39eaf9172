"""Checkpoints: plain dicts of tensors and primitives, written atomically, read without unpickling code.

``torch.load(weights_only=True)`` refuses arbitrary objects, so a checkpoint from an untrusted source cannot
run code; everything we store (state dicts, the resolved config as a dict, counters) passes that filter.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ssl_ctx.errors import UserError, first_line
from ssl_ctx.files import atomic_write, tensor_bytes

CHECKPOINT_FORMAT = "ssl_ctx.checkpoint/1"


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the format tag) to ``path`` through a temporary file unique to this writer and an
    atomic rename (``ssl_ctx.files.atomic_write``): the last good checkpoint survives a kill, a full disk (one
    line naming the folder and the space needed) or a second writer."""
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp), needed_bytes=tensor_bytes(payload))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; any other file gives one UserError line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' does not exist; pass a file written by `ssl-ctx pretrain` "
                        f"(runs/<name>/checkpoints/last.pt)")
    payload = read_torch_file(path, map_location)
    if not is_checkpoint(payload):
        raise UserError(f"checkpoint '{path}' is not an ssl_ctx checkpoint (no '{CHECKPOINT_FORMAT}' tag); "
                        f"pass a file written by `ssl-ctx pretrain`")
    return payload


def read_torch_file(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """The content of a ``torch.save`` file, read without unpickling code; any failure is one UserError line."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to read is the same user-facing problem
        raise UserError(f"checkpoint '{path}' cannot be read safely ({first_line(err)}); "
                        f"pass a checkpoint written by ssl-ctx") from None


def is_checkpoint(payload: Any) -> bool:
    """Whether a file's content is a checkpoint written by :func:`save_checkpoint` (its format tag)."""
    return isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT
