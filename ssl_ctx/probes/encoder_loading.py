"""The encoder a probe measures: ``random``, ``timm:<name>``, or the encoder of a pretext checkpoint.

Initialisations (``probe.init``)
- ``random``: the paper's "random Gaussian" baseline, built as the released code initialises every network
  (``ssl_ctx.models.gaussian_init_``): conv and linear weights ~ N(0, 0.02), biases 0, BatchNorm scales
  ~ N(1, 0.02) and shifts 0; the draw is fixed by ``train.seed``.
- ``timm:<name>``: a timm model through ``features_only`` (randomly initialised; timm's pretrained weights
  would need a download).
- a checkpoint written by ``ssl-ctx pretrain`` (``runs/<name>/checkpoints/last.pt``). Only the encoder's
  weights (keys under the checkpoint's ``encoder_prefix``, ``encoder.``) are taken; the encoder is rebuilt from
  the build spec the checkpoint stores (``encoder_spec``: name and options such as AlexNet's ``norm``, ``width``,
  ``groups``; :mod:`ssl_ctx.models.spec`), whatever the probe's ``model.*`` says. A checkpoint written before
  checkpoints stored a spec gets it from its config's ``model`` section.
- an encoder written by ``ssl-ctx export`` (``.safetensors``, :mod:`ssl_ctx.encoder_file`): rebuilt from the spec in
  its metadata, as a checkpoint's.
- a bare state dict (``torch.save``'d, possibly under ``state_dict`` or ``model``, or a safetensors file without
  ssl_ctx's metadata), in ssl_ctx's parameter names or in torchvision's AlexNet layout (``features.0`` ...
  ``features.10``; the classifier is ignored). It names no architecture, so the encoder is built from the
  probe's ``model.*`` options, and the shapes must fit: torchvision's own ``alexnet()`` weights (64-192-384-256-256
  channels) fit none of the paper's CaffeNet-width AlexNets and are refused.

A file holding another encoder than the probe asks for (``model.encoder``), or whose weights do not fit it, is
refused with one line naming the file, what it holds (the layer and both shapes), what was expected and the fix.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_ctx.errors import UserError
from ssl_ctx.models import TIMM_PREFIX, EncoderSpec, build_encoder, encoder_spec, gaussian_init_

RANDOM = "random"
# Prefixes a wrapped model adds in front of parameter names (torch.compile, DistributedDataParallel).
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def load_encoder(init: str, expected: EncoderSpec) -> nn.Module:
    """Build the encoder a probe measures (see the module docstring for ``init``).

    ``expected`` is the encoder the probe's ``model.*`` describes: what ``random`` builds, what a file must hold
    (its name), and what a bare state dict is loaded into (a checkpoint brings its own spec; ``timm:<name>`` is
    its own).
    """
    if init == RANDOM:
        return gaussian_init_(build_encoder(expected))
    if init.startswith(TIMM_PREFIX):
        return build_encoder(encoder_spec(init))
    return load_encoder_file(init, expected)


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


def load_encoder_file(path: str | Path, expected: EncoderSpec | None) -> nn.Module:
    """The encoder in file ``path`` (a checkpoint, an exported encoder, or a state dict: the module docstring),
    holding exactly its weights. A checkpoint or exported file must hold ``expected.name`` (None: any); a bare
    state dict, which names no encoder, is loaded into ``expected``."""
    from ssl_ctx.engine.checkpoint import is_checkpoint, read_torch_file
    from ssl_ctx.encoder_file import ENCODER_FORMAT, SUFFIX, read_safetensors

    path = Path(path)
    if not path.is_file():
        raise UserError(f"probe.init '{path}' is neither 'random', 'timm:<name>' nor an existing file; pass a "
                        f"checkpoint written by `ssl-ctx pretrain` (runs/<name>/checkpoints/last.pt), an encoder "
                        f"written by `ssl-ctx export` or an AlexNet state dict")
    if path.suffix == SUFFIX:
        state, metadata = read_safetensors(path)
        if metadata.get("format") == ENCODER_FORMAT:
            return _exported_encoder(path, state, metadata, expected)
    else:
        payload = read_torch_file(path)
        if is_checkpoint(payload):
            return pretext_encoder(path, payload, expected)
        state = _bare_state_dict(payload)
        if state is None:
            raise UserError(f"'{path}' is neither an ssl_ctx checkpoint nor a state dict (a dict of tensors); "
                            f"pass a checkpoint written by `ssl-ctx pretrain` or an encoder from `ssl-ctx export`")
    if expected is None:
        raise UserError(f"'{path}' is a bare state dict, which names no encoder; pass the encoder to build it as "
                        f"(model.encoder)")
    return _state_dict_encoder(path, state, expected)


def checkpoint_spec(path: Path, payload: dict[str, Any]) -> EncoderSpec:
    """The build spec of the encoder a pretext checkpoint holds (from its config for an older checkpoint)."""
    if payload.get("encoder_spec") is not None:
        return EncoderSpec.from_dict(payload["encoder_spec"], f"checkpoint '{path}'")
    held = payload.get("encoder")
    if not isinstance(held, str):
        raise UserError(f"checkpoint '{path}' names no encoder (keys: {', '.join(sorted(payload))}); "
                        f"pass a checkpoint written by `ssl-ctx pretrain`")
    return encoder_spec(held, (payload.get("config") or {}).get("model") or {})


def pretext_encoder(path: Path, payload: dict[str, Any], expected: EncoderSpec | None = None) -> nn.Module:
    """The encoder of a pretext checkpoint's content ``payload`` (``encoder.spec`` says how it is built), holding
    exactly its weights; refuses another architecture than ``expected.name`` (None: any)."""
    spec = checkpoint_spec(path, payload)
    prefix = payload.get("encoder_prefix", "encoder.")
    if not isinstance(payload.get("model"), dict):
        raise UserError(f"checkpoint '{path}' holds no model weights (keys: {', '.join(sorted(payload))}); "
                        f"pass a checkpoint written by `ssl-ctx pretrain`")
    _check_held(path, "checkpoint", spec.name, expected)
    state = encoder_state_dict(payload["model"], prefix)
    if not state:
        raise UserError(f"checkpoint '{path}' holds no encoder weights (no '{prefix}' keys in its model) while "
                        f"the probe expects {expected.name if expected else spec.name}; pass a pretext checkpoint "
                        f"from `ssl-ctx pretrain`")
    return _fitted(path, "checkpoint", spec, state)


def _exported_encoder(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str],
                      expected: EncoderSpec | None) -> nn.Module:
    from ssl_ctx.encoder_file import exported_spec

    spec = EncoderSpec.from_dict(exported_spec(metadata), f"exported encoder '{path}'")
    _check_held(path, "exported encoder", spec.name, expected)
    return _fitted(path, "exported encoder", spec, state)


def _check_held(path: Path, what: str, held: str, expected: EncoderSpec | None) -> None:
    if expected is not None and held != expected.name:
        raise UserError(f"{what} '{path}' holds encoder '{held}' but the probe expects '{expected.name}'; "
                        f"pass model.encoder={held} (with its input size, data.input_size) or a file "
                        f"of {expected.name}")


def _fitted(path: Path, what: str, spec: EncoderSpec, state: dict[str, torch.Tensor], advice: str = "") -> nn.Module:
    """The encoder of ``spec`` holding ``state``, which must fit it exactly, else one line naming ``what`` the
    file holds, the misfit and ``advice`` (default: a file of that encoder from this version)."""
    encoder = build_encoder(spec)
    problem = _mismatch(encoder, state)
    if problem:
        options = f" {spec.options}" if spec.options else ""
        raise UserError(f"{what} '{path}' holds weights that do not fit {spec.name}{options} ({problem}); "
                        f"{advice or f'pass a file of {spec.name} written by this version of ssl-ctx'}")
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


def _state_dict_encoder(path: Path, state: dict[str, torch.Tensor], expected: EncoderSpec) -> nn.Module:
    """``expected`` (the probe's ``model.*``) holding a bare state dict in ssl_ctx's names or in torchvision's
    AlexNet layout, whose shapes must fit (else one line naming the layer and both shapes)."""
    from ssl_ctx.models import ALEXNET_VARIANTS

    state = {_strip_wrappers(key): value for key, value in state.items()}
    torchvision_layout = expected.name in ALEXNET_VARIANTS and any(key.startswith("features.") for key in state)
    if torchvision_layout:
        state = {new + key[len(old):]: value for key, value in state.items()
                 for old, new in TORCHVISION_ALEXNET_CONVS.items() if key.startswith(old)}
    what = "torchvision AlexNet state dict" if torchvision_layout else "state dict"
    hint = ("torchvision's alexnet() has 64-192-384-256-256 channels and no groups, CaffeNet's have "
            "96-256-384-384-256: its own weights fit no AlexNet of the paper; " if torchvision_layout else "")
    return _fitted(path, what, expected, state,
                   advice=f"{hint}the probe builds the encoder from its model.* settings (model.width, model.groups, "
                          f"model.norm): set them to the file's architecture, or pass a file that fits")


def describe_encoder(encoder: nn.Module) -> str:
    """``"channels 48-128-192-192-128-128, norm batch, 1.23M parameters"``: the architecture actually probed."""
    channels = "-".join(str(info["num_chs"]) for info in encoder.feature_info)
    norm = getattr(encoder, "norm", None)
    parameters = sum(p.numel() for p in encoder.parameters()) / 1e6
    return f"channels {channels}{f', norm {norm}' if isinstance(norm, str) else ''}, {parameters:.2f}M parameters"
