"""The encoder file format of ``ssl-ctx export``: one safetensors file holding an encoder and its build spec.

The file holds the encoder's weights only, under the names of the library its architecture comes from (version 2
of the format): ssl_ctx's for the AlexNets (``conv1.conv.weight`` ...), timm's for ``timm:<name>`` encoders
(``conv1.weight``, ``layer1.0.conv1.weight`` ...), so that ``timm.create_model(name, num_classes=0)`` (and, for a
ResNet, torchvision's ``resnet18()`` less its ``fc``) loads the file strictly. Version 1 files, whose timm keys
carry ssl_ctx's ``model.`` prefix, load too. In safetensors' string metadata is what rebuilding and feeding the
encoder needs:

================  =================================================================================
format            ``ssl_ctx.encoder/2``
encoder           the registered encoder name (``alexnet227``, ``timm:resnet18``)
encoder_options   JSON: the builder's keyword arguments (AlexNet: ``norm``, ``width``, ``groups``)
feature_info      JSON: the feature maps ``forward`` returns (name, channels, stride), in order
input             JSON: the nominal input side, the value range ([-1, 1]), the pretext's dataset and
                  ``encoder_input``, what the encoder was trained on: ``rgb``, or ``gray`` (the ITU-R BT.601
                  luminance on all 3 channels, :mod:`ssl_ctx.models.encoder_input`); a file without it is rgb
source            JSON: the checkpoint, its step, the pretext method and run name, and the settings hash when
                  the run has a record (a probe of the file is then tied to that pretext run, as one of the checkpoint)
================  =================================================================================

``encoder`` and ``encoder_options`` are the encoder's build spec (:mod:`ssl_ctx.models.spec`), as checkpoints
store it. Safetensors rather than a pickle: reading it cannot run code, needs neither ssl_ctx nor torch's pickle
format, and loads lazily. ``probe.init`` accepts the file (:mod:`ssl_ctx.probes.encoder_loading`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ssl_ctx.errors import UserError, first_line

ENCODER_FORMAT = "ssl_ctx.encoder/2"
ENCODER_FORMATS = ("ssl_ctx.encoder/1", ENCODER_FORMAT)  # what probe.init reads
SUFFIX = ".safetensors"


def write_encoder_file(path: Path, encoder: Any, tensors: dict[str, Any], source: dict[str, Any],
                       dataset: str | None, encoder_input: str = "rgb") -> Path:
    """Write ``encoder`` (built by ``build_encoder``: it carries its spec) to ``path`` atomically: its
    ``tensors`` under their library names (``ssl_ctx.models.foreign_weights.library_state_dict``) and the metadata
    above; ``source`` and ``dataset`` say where its weights come from, ``encoder_input`` what they were trained
    on."""
    from safetensors.torch import save_file

    from ssl_ctx.files import atomic_write, tensor_bytes

    state = {key: value.contiguous() for key, value in tensors.items()}
    metadata = {
        "format": ENCODER_FORMAT,
        "encoder": encoder.spec.name,
        "encoder_options": json.dumps(encoder.spec.options),
        "feature_info": json.dumps(encoder.feature_info),
        "input": json.dumps({"size": getattr(encoder, "input_size", None), "range": [-1, 1], "dataset": dataset,
                             "encoder_input": encoder_input}),
        "source": json.dumps(source),
    }
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=metadata), needed_bytes=tensor_bytes(state))
    return path


def exported_spec(metadata: dict[str, str]) -> dict[str, Any]:
    """The build spec an exported file's metadata carries, as ``EncoderSpec.to_dict`` gives it (``name``,
    ``options``): what :func:`write_encoder_file` stored under ``encoder`` and ``encoder_options``."""
    return {"name": metadata.get("encoder", ""), "options": json.loads(metadata.get("encoder_options") or "{}")}


def exported_input(metadata: dict[str, str]) -> str:
    """What the exported encoder was trained on (the ``input`` entry's ``encoder_input``; rgb for a file written
    before it was recorded)."""
    stored = json.loads(metadata.get("input") or "{}")
    return stored.get("encoder_input", "rgb") if isinstance(stored, dict) else "rgb"


def read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file; an unreadable file is one UserError line."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
    except Exception as err:  # noqa: BLE001 - any failure to read is the same user-facing problem
        raise UserError(f"'{path}' cannot be read as safetensors; pass a file written by `ssl-ctx export` or "
                        f"safetensors.torch.save_file", detail=first_line(err)) from None


def exported_source(path: Path) -> dict[str, Any] | None:
    """The ``source`` entry of an exported encoder file (see the module docstring), or None for any other file."""
    from safetensors import safe_open

    if path.suffix != SUFFIX or not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        source = json.loads(metadata["source"]) if metadata.get("format") in ENCODER_FORMATS else None
    except Exception:  # noqa: BLE001 - not an exported encoder: no source
        return None
    return source if isinstance(source, dict) else None
