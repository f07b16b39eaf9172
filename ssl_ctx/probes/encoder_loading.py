"""The encoder a probe measures: ``random``, ``timm:<name>``, or the encoder of a pretext checkpoint.

Initialisations (``probe.init``)
- ``random``: the paper's "random Gaussian" baseline, built as the released code initialises every network
  (``ssl_ctx.models.gaussian_init_``): conv and linear weights ~ N(0, 0.02), biases 0, BatchNorm scales
  ~ N(1, 0.02) and shifts 0; the draw is fixed by ``train.seed``.
- ``timm:<name>``: a timm model through ``features_only`` (randomly initialised; timm's pretrained weights
  would need a download).
- a checkpoint written by ``ssl-ctx pretrain`` (``runs/<name>/checkpoints/last.pt``). Only the encoder's
  weights (keys under the checkpoint's ``encoder_prefix``, ``encoder.``) are taken; the encoder is rebuilt
  with the architecture options the checkpoint was trained with (``model.norm``, ``model.width``,
  ``model.groups``), whatever the probe's config says.
- an encoder written by ``ssl-ctx export`` (``.safetensors``, :mod:`ssl_ctx.export`): rebuilt from the options
  in its metadata, as a checkpoint's.
- a bare state dict (``torch.save``'d, possibly under ``state_dict`` or ``model``, or a safetensors file without
  ssl_ctx's metadata), in ssl_ctx's parameter names or in torchvision's AlexNet layout (``features.0`` ...
  ``features.10``; the classifier is ignored). It names no architecture, so the encoder is built from the
  probe's ``model.*`` options, and the shapes must fit: torchvision's own ``alexnet()`` weights (64-192-384-256-256
  channels) fit none of the paper's CaffeNet-width AlexNets and are refused.

A file holding another encoder than the probe asks for (``model.encoder``), or whose weights do not fit it, is
refused with one line naming the file, what it holds (the layer and both shapes), what was expected and the fix.
"""
from __future__ import annotations

import dataclasses
import json
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
    return load_encoder_file(init, encoder_name, **encoder_kwargs)


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


def load_encoder_file(path: str | Path, expected_encoder: str | None, **options: Any) -> nn.Module:
    """The encoder in file ``path`` (a checkpoint, an exported encoder, or a state dict: the module docstring),
    holding exactly its weights. ``options`` build ``expected_encoder`` for a bare state dict, which names none;
    ``expected_encoder`` None takes the encoder a checkpoint or exported file names, whichever it is."""
    from ssl_ctx.engine.checkpoint import is_checkpoint, read_torch_file
    from ssl_ctx.export import ENCODER_FORMAT, SUFFIX, read_safetensors

    path = Path(path)
    if not path.is_file():
        raise UserError(f"probe.init '{path}' is neither 'random', 'timm:<name>' nor an existing file; pass a "
                        f"checkpoint written by `ssl-ctx pretrain` (runs/<name>/checkpoints/last.pt), an encoder "
                        f"written by `ssl-ctx export` or an AlexNet state dict")
    if path.suffix == SUFFIX:
        state, metadata = read_safetensors(path)
        if metadata.get("format") == ENCODER_FORMAT:
            return _exported_encoder(path, state, metadata, expected_encoder)
    else:
        payload = read_torch_file(path)
        if is_checkpoint(payload):
            return pretext_encoder(path, payload, expected_encoder)[0]
        state = _bare_state_dict(payload)
        if state is None:
            raise UserError(f"'{path}' is neither an ssl_ctx checkpoint nor a state dict (a dict of tensors); "
                            f"pass a checkpoint written by `ssl-ctx pretrain` or an encoder from `ssl-ctx export`")
    if expected_encoder is None:
        raise UserError(f"'{path}' is a bare state dict, which names no encoder; pass the encoder to build it as "
                        f"(model.encoder)")
    return _state_dict_encoder(path, state, expected_encoder, options)


def pretext_encoder(path: Path, payload: dict[str, Any], expected_encoder: str | None = None,
                    ) -> tuple[nn.Module, str, dict[str, Any]]:
    """``(encoder, its name, its build options)`` of a pretext checkpoint's content ``payload``, holding exactly
    its weights; refuses another architecture than ``expected_encoder`` (None: any)."""
    held = payload.get("encoder")
    prefix = payload.get("encoder_prefix", "encoder.")
    if not isinstance(held, str) or not isinstance(payload.get("model"), dict):
        raise UserError(f"checkpoint '{path}' names no encoder (keys: {', '.join(sorted(payload))}); "
                        f"pass a checkpoint written by `ssl-ctx pretrain`")
    _check_held(path, "checkpoint", held, expected_encoder)
    state = encoder_state_dict(payload["model"], prefix)
    if not state:
        raise UserError(f"checkpoint '{path}' holds no encoder weights (no '{prefix}' keys in its model) while "
                        f"the probe expects {expected_encoder or held}; pass a pretext checkpoint from "
                        f"`ssl-ctx pretrain`")
    options = encoder_options(held, (payload.get("config") or {}).get("model") or {})
    return _fitted(path, "checkpoint", held, options, state), held, options


def _exported_encoder(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str],
                      expected_encoder: str | None) -> nn.Module:
    held = metadata.get("encoder", "")
    _check_held(path, "exported encoder", held, expected_encoder)
    return _fitted(path, "exported encoder", held, json.loads(metadata.get("encoder_options") or "{}"), state)


def _check_held(path: Path, what: str, held: str, expected_encoder: str | None) -> None:
    if expected_encoder is not None and held != expected_encoder:
        raise UserError(f"{what} '{path}' holds encoder '{held}' but the probe expects '{expected_encoder}'; "
                        f"pass model.encoder={held} (with its input size, data.input_size) or a file "
                        f"of {expected_encoder}")


def _fitted(path: Path, what: str, name: str, options: dict[str, Any], state: dict[str, torch.Tensor],
            advice: str = "") -> nn.Module:
    """``name`` built with ``options`` and holding ``state``, which must fit it exactly, else one line naming
    ``what`` the file holds, the misfit and ``advice`` (default: a file of ``name`` from this version)."""
    from ssl_ctx.models import build_encoder

    encoder = build_encoder(name, **options)
    problem = _mismatch(encoder, state)
    if problem:
        raise UserError(f"{what} '{path}' holds weights that do not fit {name}{' ' + str(options) if options else ''}"
                        f" ({problem}); {advice or f'pass a file of {name} written by this version of ssl-ctx'}")
    encoder.load_state_dict(state, strict=True)
    return encoder


# torchvision's AlexNet (``torchvision.models.alexnet``) keeps its convolutions in ``features``; its classifier is
# not part of the encoder. These are the indices of conv1..conv5 there.
TORCHVISION_ALEXNET_CONVS = {"features.0.": "conv1.conv.", "features.3.": "conv2.conv.", "features.6.": "conv3.conv.",
                             "features.8.": "conv4.conv.", "features.10.": "conv5.conv."}


def _bare_state_dict(payload: Any) -> dict[str, torch.Tensor] | None:
    """The tensors of a plain state dict, also when nested under ``state_dict`` or ``model`` (as training scripts
    save them); None when ``payload`` is not one."""
    for key in ("state_dict", "model"):
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            payload = payload[key]
    if not isinstance(payload, dict) or not payload:
        return None
    if not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in payload.items()):
        return None
    return payload


def _state_dict_encoder(path: Path, state: dict[str, torch.Tensor], expected_encoder: str,
                        options: dict[str, Any]) -> nn.Module:
    """``expected_encoder`` built with the probe's ``options``, holding a bare state dict in ssl_ctx's names or
    in torchvision's AlexNet layout, whose shapes must fit (else one line naming the layer and both shapes)."""
    from ssl_ctx.models import ALEXNET_VARIANTS

    state = {_strip_wrappers(key): value for key, value in state.items()}
    torchvision_layout = expected_encoder in ALEXNET_VARIANTS and any(key.startswith("features.") for key in state)
    if torchvision_layout:
        state = {new + key[len(old):]: value for key, value in state.items()
                 for old, new in TORCHVISION_ALEXNET_CONVS.items() if key.startswith(old)}
    what = "torchvision AlexNet state dict" if torchvision_layout else "state dict"
    hint = ("torchvision's alexnet() has 64-192-384-256-256 channels and no groups, CaffeNet's have "
            "96-256-384-384-256: its own weights fit no AlexNet of the paper; " if torchvision_layout else "")
    return _fitted(path, what, expected_encoder, options, state,
                   advice=f"{hint}the probe builds the encoder from its model.* settings (model.width, model.groups, "
                          f"model.norm): set them to the file's architecture, or pass a file that fits")


def describe_encoder(encoder: nn.Module) -> str:
    """``"channels 48-128-192-192-128-128, norm batch, 1.23M parameters"``: the architecture actually probed."""
    channels = "-".join(str(info["num_chs"]) for info in encoder.feature_info)
    norm = getattr(encoder, "norm", None)
    parameters = sum(p.numel() for p in encoder.parameters()) / 1e6
    return f"channels {channels}{f', norm {norm}' if isinstance(norm, str) else ''}, {parameters:.2f}M parameters"
