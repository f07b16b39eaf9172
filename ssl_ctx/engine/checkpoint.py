"""Checkpoints: plain dicts of tensors and primitives, written atomically, read without unpickling code.

``torch.load(weights_only=True)`` refuses arbitrary objects, so a checkpoint from an untrusted source cannot
run code; everything we store (state dicts, the resolved config as a dict, counters) passes that filter.
"""
from __future__ import annotations

import os
import pickle
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
    """The content of a ``torch.save`` file, read without unpickling code; any failure is one UserError line:
    a file that is not a ``torch.save`` file at all, one that holds objects only unsafe unpickling could build,
    or a damaged one."""
    kind = _not_torch_file(path)
    if kind is not None:
        raise UserError(f"'{path}' is not a PyTorch checkpoint ({kind}); pass a checkpoint written by ssl-ctx "
                        f"(runs/<name>/checkpoints/last.pt)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refused an object: a genuine safety refusal
        reason = next((line.strip() for line in str(err).splitlines() if "WeightsUnpickler error:" in line),
                      first_line(err))
        raise UserError(f"checkpoint '{path}' cannot be read safely: it holds objects that only unsafe unpickling "
                        f"could build; pass a checkpoint written by ssl-ctx, or, for weights from a source you "
                        f"trust, re-save only its tensors: torch.save(torch.load(f, weights_only=False)"
                        f"['state_dict'], 'weights.pt')", detail=reason) from None
    except Exception as err:  # noqa: BLE001 - any other failure to read is a damaged file
        raise UserError(f"checkpoint '{path}' cannot be read (damaged or cut short?); write it again or pass "
                        f"another checkpoint written by ssl-ctx", detail=first_line(err)) from None


# How a torch.save file starts: a zip archive (the format since torch 1.6), or a pickle whose first object is
# torch's magic number (the legacy format).
_ZIP_HEADER, _LEGACY_MAGIC = b"PK\x03\x04", b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
# What a file that is not one is likely to be, for the message.
_OTHER_HEADERS = {b"\xff\xd8\xff": "a JPEG image", b"\x89PNG": "a PNG image", b"GIF8": "a GIF image",
                  b"\x80": "a plain pickle, not a torch.save file"}


def _not_torch_file(path: Path) -> str | None:
    """None for a file that starts as a ``torch.save`` file does; else what it seems to be instead."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(32)
    except OSError:  # unreadable: torch.load says why
        return None
    if head.startswith(_ZIP_HEADER) or (head.startswith(b"\x80") and _LEGACY_MAGIC in head):
        return None
    if not head:
        return "the file is empty"
    if all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head):
        return "it is a text file"
    if head[8:10] == b'{"':  # an 8-byte header length, then the JSON header
        return "it is a safetensors file"
    seems = next((what for header, what in _OTHER_HEADERS.items() if head.startswith(header)), None)
    return f"it is {seems}" if seems else f"it starts with bytes {head[:8].hex(' ')}"


def is_checkpoint(payload: Any) -> bool:
    """Whether a file's content is a checkpoint written by :func:`save_checkpoint` (its format tag)."""
    return isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT
