"""The encoder a probe measures, and where its weights come from (``probe.init``).

Initialisations
- ``random``: the paper's "random Gaussian" baseline of the probe's ``model.*`` architecture, built as the released
  code initialises every network (``ssl_ctx.models.gaussian_init_``): conv and linear weights ~ N(0, 0.02), biases
  0, BatchNorm scales ~ N(1, 0.02) and shifts 0; the draw is fixed by ``train.seed``. ``model.encoder=timm:<name>``
  makes it a random timm network.
- ``random:<file>``: the same random init, of the architecture a pretext checkpoint or exported encoder holds (its
  build spec), so a random baseline matches the encoder it is compared with.
- ``timm:<name>``: timm's *pretrained* weights for ``<name>`` (default tag, or ``resnet18.tv_in1k``), read from the
  local caches, never downloaded here (:func:`ssl_ctx.models.timm_encoder.cached_pretrained_file`).
- a checkpoint written by ``ssl-ctx pretrain`` (``runs/<name>/checkpoints/last.pt``). Only the encoder's
  weights (keys under the checkpoint's ``encoder_prefix``, ``encoder.``) are taken; the encoder is rebuilt from
  the build spec the checkpoint stores (``encoder_spec``: name and options such as AlexNet's ``norm``, ``width``,
  ``groups``; :mod:`ssl_ctx.models.spec`), whatever the probe's ``model.*`` says. A checkpoint written before
  checkpoints stored a spec gets it from its config's ``model`` section.
- an encoder written by ``ssl-ctx export`` (``.safetensors``, :mod:`ssl_ctx.encoder_file`): rebuilt from the spec in
  its metadata, as a checkpoint's.
- weights trained elsewhere: a state dict (``torch.save``'d, a Lightning / solo-learn / MoCo checkpoint, or a
  safetensors file without ssl_ctx's metadata). It names no architecture, so the encoder is built from the probe's
  ``model.*``, and the encoder's tensors are found under the trainer's wrappers and prefixes, in the library names
  of its architecture or a declared foreign layout (:mod:`ssl_ctx.models.foreign_weights`): torchvision's and
  timm's ResNets, torchvision's AlexNet layout where the shapes fit (torchvision's own ``alexnet()``, 64-192-384-
  256-256 channels, fits none of the paper's CaffeNet-width AlexNets and is refused).

Every encoder returned carries ``weights``: a :class:`WeightsOrigin` naming its table row and saying in one line
where its weights came from (printed, and stored in the probe's record), and the input its pretext method declared
(``encoder_input``, in a checkpoint's ``data_info`` or an export's ``input`` metadata; rgb where they say nothing),
which :func:`load_encoder` makes the encoder convert its batches to, so that every probe feeds it alike. A file
holding another encoder than the probe asks for, or whose weights do not fit it, is refused with one line naming
the file, the misfit and the fix.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_ctx.errors import UserError
from ssl_ctx.models import TIMM_PREFIX, EncoderSpec, build_encoder, encoder_spec, gaussian_init_
from ssl_ctx.models.encoder_input import RGB, check_encoder_input, feed_encoder_input
from ssl_ctx.models.foreign_weights import describe_misfit, flatten_tensors, load_library_state_dict, match_weights

RANDOM = "random"
RANDOM_LIKE = "random:"  # random:<file>: a random init of the architecture the file holds
RANDOM_METHOD = "random_init"  # the table row of a random init: the baseline's name
# Prefixes a wrapped model adds in front of parameter names (torch.compile, DistributedDataParallel).
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


@dataclass(frozen=True)
class WeightsOrigin:
    """Where a probed encoder's weights come from: ``method`` names its table row (the pretext method of a
    checkpoint, ``random_init``, ``timm_pretrained(<name>)`` or a foreign file's name), ``description`` says it in
    one line, ``pretext_run`` is the name of the pretext run that trained it, where there is one,
    ``pretext_input_size`` the (H, W) it was trained at, where its checkpoint says, and ``encoder_input`` the input
    it was trained on (``ssl_ctx.models.encoder_input.ENCODER_INPUTS``), which probes feed it."""

    method: str
    description: str
    pretext_run: str | None = None
    pretext_input_size: list[int] | None = None
    encoder_input: str = RGB


def load_encoder(init: str, expected: EncoderSpec) -> nn.Module:
    """Build the encoder a probe measures (see the module docstring for ``init``), with its ``weights`` origin.

    ``expected`` is the encoder the probe's ``model.*`` describes: what ``random`` builds, what a file must hold
    (its name), and what a foreign state dict is loaded into (a checkpoint brings its own spec; ``timm:<name>`` is
    its own). The encoder converts what it is fed into the input its weights were trained on
    (``weights.encoder_input``), whichever probe calls it.
    """
    return fed_as_trained(_encoder_of_init(init, expected))


def _encoder_of_init(init: str, expected: EncoderSpec) -> nn.Module:
    if init == RANDOM:
        return _random_encoder(expected, f"{expected.name} from the probe's model.*")
    if init.startswith(RANDOM_LIKE):  # random weights were trained on nothing: rgb, as the random_init baseline
        path = Path(init[len(RANDOM_LIKE):])
        return _random_encoder(file_spec(path), f"the architecture of '{path}'")
    if init.startswith(TIMM_PREFIX):
        return timm_pretrained_encoder(init[len(TIMM_PREFIX):])
    return load_encoder_file(init, expected)


def fed_as_trained(encoder: nn.Module) -> nn.Module:
    """``encoder`` converting its input batches into the input its weights declare (``weights.encoder_input``),
    said in one line and in its description (the probe record's ``weights``) where that is not rgb. The one place
    probes honour the declaration."""
    origin = encoder.weights
    if origin.encoder_input != RGB:
        print(f"probe: the encoder takes {origin.encoder_input} input (its pretext method's declaration); images "
              f"are converted")
        encoder.weights = dataclasses.replace(
            origin, description=f"{origin.description}, fed {origin.encoder_input} input as its method declares")
    return feed_encoder_input(encoder, origin.encoder_input)


def _random_encoder(spec: EncoderSpec, what: str) -> nn.Module:
    encoder = gaussian_init_(build_encoder(spec))
    encoder.weights = WeightsOrigin(RANDOM_METHOD, f"random Gaussian init N(0, 0.02) of {what} ({describe_spec(spec)})")
    return encoder


def describe_spec(spec: EncoderSpec) -> str:
    """``alexnet64 norm=batch width=0.25 groups=2``."""
    return " ".join([spec.name, *(f"{key}={value}" for key, value in spec.options.items())])


def timm_pretrained_encoder(name: str) -> nn.Module:
    """timm model ``name`` (``resnet18`` or ``resnet18.tv_in1k``) holding timm's pretrained weights from the local
    caches; weights not cached are one line saying how to provide them."""
    from ssl_ctx.models.timm_encoder import cached_pretrained_file

    encoder = build_encoder(encoder_spec(TIMM_PREFIX + name.partition(".")[0]))
    tagged, path = cached_pretrained_file(name)
    match = match_weights(read_weights_file(path), encoder, f"timm's pretrained {tagged} ('{path}')",
                          "its cached file is not that model's: remove it and cache it again")
    load_library_state_dict(encoder, match.state)
    encoder.weights = WeightsOrigin(f"timm_pretrained({tagged})",
                                    f"timm's pretrained weights {tagged} from '{path}': {match.summary()}")
    return encoder


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a ``torch.save`` or safetensors file, by dotted name (:func:`flatten_tensors`)."""
    from ssl_ctx.encoder_file import SUFFIX, read_safetensors
    from ssl_ctx.engine.checkpoint import read_torch_file

    return read_safetensors(path)[0] if path.suffix == SUFFIX else flatten_tensors(read_torch_file(path))


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


def _require_file(path: Path, option: str = "probe.init") -> None:
    if not path.is_file():
        raise UserError(f"{option} '{path}' is neither 'random', 'random:<file>', 'timm:<name>' nor an existing "
                        f"file; pass a checkpoint written by `ssl-ctx pretrain` (runs/<name>/checkpoints/last.pt), "
                        f"an encoder written by `ssl-ctx export` or a state dict")


def file_spec(path: Path) -> EncoderSpec:
    """The build spec of the encoder a pretext checkpoint or an exported encoder file holds; a state dict names no
    architecture and is refused in one line."""
    from ssl_ctx.encoder_file import ENCODER_FORMATS, SUFFIX, exported_spec, read_safetensors
    from ssl_ctx.engine.checkpoint import is_checkpoint, read_torch_file

    _require_file(path, "probe.init=random:")
    if path.suffix == SUFFIX:
        metadata = read_safetensors(path)[1]
        if metadata.get("format") in ENCODER_FORMATS:
            return EncoderSpec.from_dict(exported_spec(metadata), f"exported encoder '{path}'")
    else:
        payload = read_torch_file(path)
        if is_checkpoint(payload):
            return checkpoint_spec(path, payload)
    raise UserError(f"'{path}' names no architecture (a state dict, not an ssl-ctx checkpoint or export); for a "
                    f"random init set the architecture with model.* and probe.init=random")


def load_encoder_file(path: str | Path, expected: EncoderSpec | None) -> nn.Module:
    """The encoder in file ``path`` (a checkpoint, an exported encoder, or a state dict: the module docstring),
    holding exactly its weights. A checkpoint or exported file must hold ``expected.name`` (None: any); a state
    dict, which names no encoder, is loaded into ``expected``."""
    from ssl_ctx.encoder_file import ENCODER_FORMATS, SUFFIX, read_safetensors
    from ssl_ctx.engine.checkpoint import is_checkpoint, read_torch_file

    path = Path(path)
    _require_file(path)
    if path.suffix == SUFFIX:
        tensors, metadata = read_safetensors(path)
        if metadata.get("format") in ENCODER_FORMATS:
            return _exported_encoder(path, tensors, metadata, expected)
    else:
        payload = read_torch_file(path)
        if is_checkpoint(payload):
            return pretext_encoder(path, payload, expected)
        tensors = flatten_tensors(payload)
        if not tensors:
            raise UserError(f"'{path}' is neither an ssl_ctx checkpoint nor a state dict (it holds no tensors); "
                            f"pass a checkpoint written by `ssl-ctx pretrain`, an encoder from `ssl-ctx export` "
                            f"or a state dict")
    if expected is None:
        raise UserError(f"'{path}' is a state dict, which names no encoder; pass the encoder to build it as "
                        f"(model.encoder)")
    return _state_dict_encoder(path, tensors, expected)


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
    encoder = build_encoder(spec)
    problem = describe_misfit(encoder.state_dict(), state)
    if problem:
        raise UserError(f"checkpoint '{path}' holds weights that do not fit {describe_spec(spec)} ({problem}); "
                        f"pass a checkpoint of {spec.name} written by this version of ssl-ctx")
    encoder.load_state_dict(state, strict=True)
    method = payload.get("method") or "?"
    step = (payload.get("trainer_state") or {}).get("step")
    data_info = payload.get("data_info") or {}
    trained_at = data_info.get("input_size")
    encoder.weights = WeightsOrigin(method, f"pretext checkpoint '{path}' ({method}, step {step})",
                                    ((payload.get("config") or {}).get("name")),
                                    [int(v) for v in trained_at] if trained_at else None,
                                    check_encoder_input(data_info.get("encoder_input", RGB), f"checkpoint '{path}'"))
    return encoder


def _exported_encoder(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str],
                      expected: EncoderSpec | None) -> nn.Module:
    import json

    from ssl_ctx.encoder_file import exported_input, exported_spec

    spec = EncoderSpec.from_dict(exported_spec(metadata), f"exported encoder '{path}'")
    _check_held(path, "exported encoder", spec.name, expected)
    encoder = build_encoder(spec)
    match = match_weights(tensors, encoder, f"exported encoder '{path}'",
                          f"pass a file of {spec.name} written by `ssl-ctx export`")
    load_library_state_dict(encoder, match.state)
    source = json.loads(metadata.get("source") or "{}")
    method = source.get("method") or path.name
    fed = check_encoder_input(exported_input(metadata), f"exported encoder '{path}'")
    encoder.weights = WeightsOrigin(method, f"exported encoder '{path}' ({method}, from {source.get('checkpoint')})",
                                    source.get("run"), encoder_input=fed)
    return encoder


def _check_held(path: Path, what: str, held: str, expected: EncoderSpec | None) -> None:
    if expected is not None and held != expected.name:
        raise UserError(f"{what} '{path}' holds encoder '{held}' but the probe expects '{expected.name}'; "
                        f"pass model.encoder={held} (with its input size, data.input_size) or a file "
                        f"of {expected.name}")


def _state_dict_encoder(path: Path, tensors: dict[str, torch.Tensor], expected: EncoderSpec) -> nn.Module:
    """``expected`` (the probe's ``model.*``) holding a foreign state dict's tensors, found as
    :func:`~ssl_ctx.models.foreign_weights.match_weights` finds them (else one line naming the misfit)."""
    from ssl_ctx.models import ALEXNET_VARIANTS

    encoder = build_encoder(expected)
    torchvision_alexnet = expected.name in ALEXNET_VARIANTS and any(".features." in f".{key}" for key in tensors)
    hint = ("torchvision's alexnet() has 64-192-384-256-256 channels and no groups, CaffeNet's have "
            "96-256-384-384-256: its own weights fit no AlexNet of the paper; " if torchvision_alexnet else "")
    match = match_weights(tensors, encoder, f"state dict '{path}'",
                          f"{hint}the probe builds the encoder from its model.* settings (model.encoder, "
                          f"model.width, model.groups, model.norm): set them to the file's architecture, or pass a "
                          f"file that fits")
    load_library_state_dict(encoder, match.state)
    encoder.weights = WeightsOrigin(path.name, f"state dict '{path}': {match.summary()} into {describe_spec(expected)}")
    return encoder


def describe_encoder(encoder: nn.Module) -> str:
    """``"channels 48-128-192-192-128-128, norm batch, 1.23M parameters"``: the architecture actually probed."""
    channels = "-".join(str(info["num_chs"]) for info in encoder.feature_info)
    norm = getattr(encoder, "norm", None)
    parameters = sum(p.numel() for p in encoder.parameters()) / 1e6
    return f"channels {channels}{f', norm {norm}' if isinstance(norm, str) else ''}, {parameters:.2f}M parameters"
