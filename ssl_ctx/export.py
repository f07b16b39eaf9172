"""`ssl-ctx export`: a pretext checkpoint's encoder as one safetensors file that travels.

The file format (weights, build spec, feature maps, source) is :mod:`ssl_ctx.encoder_file`'s.
"""
from __future__ import annotations

from pathlib import Path

from ssl_ctx.encoder_file import SUFFIX, write_encoder_file
from ssl_ctx.errors import UserError
from ssl_ctx.files import require_writable


def default_output(checkpoint: Path) -> Path:
    """``runs/<name>/checkpoints/last.pt`` -> ``runs/<name>/encoder.safetensors`` (else beside the file)."""
    folder = checkpoint.resolve().parent
    return (folder.parent if folder.name == "checkpoints" else folder) / f"encoder{SUFFIX}"


def export_encoder(checkpoint: str | Path, output: str | Path | None = None) -> Path:
    """Write the encoder of pretext checkpoint ``checkpoint`` to ``output`` (default: :func:`default_output`),
    atomically; returns the file's path. Refuses, in one line, a file that is not a pretext checkpoint."""
    from ssl_ctx.engine.checkpoint import load_checkpoint
    from ssl_ctx.models.foreign_weights import library_state_dict
    from ssl_ctx.probes.encoder_loading import pretext_encoder
    from ssl_ctx.settings import upstream_of

    checkpoint = Path(checkpoint)
    output = Path(output) if output is not None else default_output(checkpoint)
    if output.suffix != SUFFIX:
        raise UserError(f"export output '{output}' must end in {SUFFIX}; pass --output <name>{SUFFIX}")
    require_writable(output.parent)
    payload = load_checkpoint(checkpoint)
    encoder = pretext_encoder(checkpoint, payload)
    source = {"checkpoint": str(checkpoint.resolve()), "step": (payload.get("trainer_state") or {}).get("step"),
              "method": payload.get("method"), "run": (payload.get("config") or {}).get("name"),
              "settings_hash": upstream_of(str(checkpoint))}
    dataset = ((payload.get("config") or {}).get("data") or {}).get("dataset")
    return write_encoder_file(output, encoder, library_state_dict(encoder), source, dataset,
                              encoder.weights.encoder_input)
