"""The encoder a probe measures: ``random``, ``timm:<name>``, or the encoder of a pretext checkpoint.

Initialisations (``probe.init``)
- ``random``: the paper's "random Gaussian" baseline, built as the released code initialises every network
  (``ssl_ctx.models.gaussian_init_``): conv and linear weights ~ N(0, 0.02), biases 0, BatchNorm scales
  ~ N(1, 0.02) and shifts 0; the draw is fixed by ``train.seed``.
- ``timm:<name>``: a timm model through ``features_only`` (randomly initialised; timm's pretrained weights
  would need a download).
- anything else: a checkpoint written by ``ssl-ctx pretrain`` (``runs/<name>/checkpoints/last.pt``). Only
  the encoder's weights (keys under the checkpoint's ``encoder_prefix``, ``encoder.``) are taken; the
  encoder is rebuilt with the architecture options the checkpoint was trained with (``model.norm``,
  ``model.width``), whatever the probe's config says. A checkpoint holding another encoder than the probe
  asks for (``model.encoder``), or whose weights do not fit that encoder, is refused with one line naming
  the checkpoint, what it holds, what was expected and the fix.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_ctx.errors import UserError

RANDOM = "random"
TIMM_PREFIX = "timm:"
# Prefixes a wrapped model adds in front of parameter names (torch.compile, DistributedDataParallel).
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def encoder_options(encoder_name: str, model: Any = None) -> dict[str, Any]:
    """The architecture options of ``model`` (a ``ModelConfig`` or its dict, e.g. from a checkpoint) that
    ``encoder_name``'s builder accepts (AlexNet: ``norm``, ``width``), exactly as pretext methods pass them."""
    from ssl_ctx.config import Config, ModelConfig
    from ssl_ctx.pretext.base import encoder_kwargs

    if isinstance(model, dict):
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        model = ModelConfig(**{k: v for k, v in model.items() if k in known})
    model = dataclasses.replace(model or ModelConfig(), encoder=encoder_name)
    return encoder_kwargs(Config(model=model))


def load_encoder(init: str, encoder_name: str, **encoder_kwargs: Any) -> nn.Module:
    """Build the encoder a probe measures (see the module docstring for ``init``).

    ``encoder_name`` is the encoder the probe expects (``model.encoder``); ``encoder_kwargs`` go to
    ``build_encoder`` for ``random`` (a checkpoint brings its own options; ``timm:<name>`` takes none).
    """
    from ssl_ctx.models import build_encoder, gaussian_init_

    if init == RANDOM:
        return gaussian_init_(build_encoder(encoder_name, **encoder_kwargs))
    if init.startswith(TIMM_PREFIX):
        # ``encoder_kwargs`` describe model.encoder (e.g. AlexNet's norm), not the timm model: not passed on.
        return build_encoder(init)
    return load_checkpoint_encoder(init, encoder_name)


def _strip_wrappers(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def encoder_state_dict(model_state: dict[str, torch.Tensor], prefix: str = "encoder.") -> dict[str, torch.Tensor]:
    """The entries of a pretext model's state dict under ``prefix``, with the prefix removed."""
    state = {}
    for key, value in model_state.items():
        key = _strip_wrappers(key)
        if key.startswith(prefix):
            state[key[len(prefix):]] = value
    return state


def _mismatch(encoder: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """A short description of how ``state`` fails to fit ``encoder`` exactly, or None when it fits."""
    expected = encoder.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:2])})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:2])})")
    if shapes:
        parts.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
    return "; ".join(parts) or None


def load_checkpoint_encoder(path: str | Path, expected_encoder: str) -> nn.Module:
    """The encoder of a pretext checkpoint, holding exactly its weights; refuses another architecture."""
    from ssl_ctx.engine.checkpoint import load_checkpoint
    from ssl_ctx.models import build_encoder

    path = Path(path)
    if not path.is_file():
        raise UserError(f"probe.init '{path}' is neither 'random', 'timm:<name>' nor an existing checkpoint; "
                        f"pass one written by `ssl-ctx pretrain` (runs/<name>/checkpoints/last.pt)")
    payload = load_checkpoint(path)
    held = payload.get("encoder")
    prefix = payload.get("encoder_prefix", "encoder.")
    if not isinstance(held, str) or not isinstance(payload.get("model"), dict):
        raise UserError(f"checkpoint '{path}' names no encoder (keys: {', '.join(sorted(payload))}); "
                        f"pass a checkpoint written by `ssl-ctx pretrain`")
    if held != expected_encoder:
        raise UserError(f"checkpoint '{path}' holds encoder '{held}' but the probe expects '{expected_encoder}'; "
                        f"pass model.encoder={held} (with its input size, data.input_size) or a checkpoint "
                        f"of {expected_encoder}")
    state = encoder_state_dict(payload["model"], prefix)
    if not state:
        raise UserError(f"checkpoint '{path}' holds no encoder weights (no '{prefix}' keys in its model) while "
                        f"the probe expects {expected_encoder}; pass a pretext checkpoint from `ssl-ctx pretrain`")
    options = encoder_options(held, (payload.get("config") or {}).get("model") or {})
    encoder = build_encoder(held, **options)
    problem = _mismatch(encoder, state)
    if problem:
        raise UserError(f"checkpoint '{path}' holds weights that do not fit {held}"
                        f"{' ' + str(options) if options else ''} as the probe expects ({problem}); "
                        f"pass a checkpoint of {expected_encoder} written by this version of ssl-ctx")
    encoder.load_state_dict(state, strict=True)
    return encoder


def describe_encoder(encoder: nn.Module) -> str:
    """``"channels 48-128-192-192-128-128, norm batch, 1.23M parameters"``: the architecture actually probed."""
    channels = "-".join(str(info["num_chs"]) for info in encoder.feature_info)
    norm = getattr(encoder, "norm", None)
    parameters = sum(p.numel() for p in encoder.parameters()) / 1e6
    return f"channels {channels}{f', norm {norm}' if isinstance(norm, str) else ''}, {parameters:.2f}M parameters"
