"""Weights trained elsewhere: find an encoder's tensors in another library's file, or say exactly why they do not fit.

Trainers wrap an encoder's weights in containers and name prefixes: PyTorch Lightning and solo-learn save
``{"state_dict": {"backbone.conv1.weight": ...}}``, MoCo ``{"state_dict": {"module.encoder_q.conv1.weight": ...}}``,
DistributedDataParallel adds ``module.``, ``torch.compile`` ``_orig_mod.``; torchvision and timm save the bare
``model.state_dict()``. :func:`match_weights` flattens nested dicts to dotted names, tries every prefix made of the
wrapper names in ``WRAPPERS`` (never ``momentum_backbone.`` or ``encoder_k.``: the other network of a two-network
method) and keeps the one under which most tensors carry the encoder's *library names*: the names the library its
architecture comes from gives them (timm's for ``timm:<name>``, whose ResNets torchvision names alike; ssl_ctx's
for the AlexNets), or those of another layout the encoder class declares in ``foreign_layouts`` (torchvision's
AlexNet). A classifier head (``HEADS``) is left out, a missing BatchNorm ``num_batches_tracked`` counter is
allowed; any other key that does not fit is refused in one line naming the first few.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ssl_ctx.errors import UserError

# Name components a trainer puts in front of a network's own names (nested dict keys count as components).
WRAPPERS = ("state_dict", "model", "module", "_orig_mod", "backbone", "encoder", "encoder_q", "base_encoder", "trunk")
# First name components of the classifier heads an encoder leaves out (torchvision, timm, VISSL).
HEADS = ("fc", "classifier", "head", "heads", "last_linear")
# A counter BatchNorm keeps for momentum=None; files from older torch versions lack it, and it changes no output.
OPTIONAL_SUFFIX = "num_batches_tracked"
SHOWN = 3  # how many names a refusal quotes


def library_prefix(encoder: nn.Module) -> str:
    """What ``encoder.state_dict()`` puts in front of its library names (a wrapper's attribute, e.g. ``model.``)."""
    return getattr(encoder, "library_prefix", "")


def library_state_dict(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """``encoder``'s tensors under its library names: what ``ssl-ctx export`` writes, so that the library's own
    model (``timm.create_model(name, num_classes=0)``, torchvision's ``resnet18()`` less its ``fc``) loads them."""
    prefix = library_prefix(encoder)
    return {key[len(prefix):]: value for key, value in encoder.state_dict().items()}


def load_library_state_dict(encoder: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load tensors named as :func:`library_state_dict` names them, strictly."""
    prefix = library_prefix(encoder)
    encoder.load_state_dict({prefix + key: value for key, value in state.items()}, strict=True)


def flatten_tensors(payload: Any, prefix: str = "", depth: int = 6) -> dict[str, torch.Tensor]:
    """Every tensor in nested dicts, under its dotted path (``{"state_dict": {"a.b": t}}`` -> ``{"state_dict.a.b":
    t}``); other values (epochs, optimiser lists, hyper-parameters) are passed over."""
    tensors: dict[str, torch.Tensor] = {}
    if not isinstance(payload, Mapping) or depth == 0:
        return tensors
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            tensors[name] = value
        elif isinstance(value, Mapping):
            tensors.update(flatten_tensors(value, name + ".", depth - 1))
    return tensors


def _wrapper_prefixes(key: str) -> list[str]:
    """``"state_dict.module.encoder_q.conv1.weight"`` -> ``["", "state_dict.", "state_dict.module.",
    "state_dict.module.encoder_q."]``: each leading run of wrapper names."""
    parts = key.split(".")
    prefixes = [""]
    for i, part in enumerate(parts[:-1]):
        if part not in WRAPPERS:
            break
        prefixes.append(".".join(parts[: i + 1]) + ".")
    return prefixes


def _renamed(state: dict[str, torch.Tensor], renames: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """``state`` with each key's leading ``old`` part replaced by ``new`` (``renames``: old -> new prefixes); keys
    that match no rename keep their name."""
    out = {}
    for key, value in state.items():
        old = next((old for old in renames if key.startswith(old)), None)
        out[key if old is None else renames[old] + key[len(old):]] = value
    return out


@dataclass
class WeightsMatch:
    """The encoder's tensors found in a file: ``state`` (library names, ready for
    :func:`load_library_state_dict`), the ``prefix`` stripped, the ``layout`` renamed from (``""``: the library's
    own names), and what was left out: classifier ``head`` keys and the count of tensors ``outside`` the prefix."""

    state: dict[str, torch.Tensor]
    prefix: str
    layout: str = ""
    head: list[str] = field(default_factory=list)
    outside: int = 0

    def summary(self) -> str:
        """``120 tensors under 'state_dict.module.encoder_q.' (left out: 2 classifier tensor(s), 123 other(s) outside
        the prefix)``."""
        where = f"under '{self.prefix}'" if self.prefix else "with no prefix"
        layout = f" in {self.layout} names" if self.layout else ""
        left = [f"{len(self.head)} classifier tensor(s)" if self.head else "",
                f"{self.outside} other(s) outside the prefix" if self.outside else ""]
        left_out = ", ".join(part for part in left if part)
        return f"{len(self.state)} tensors {where}{layout}" + (f" (left out: {left_out})" if left_out else "")


def describe_misfit(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                    optional: tuple[str, ...] = ()) -> str | None:
    """How ``state`` fails to fit ``expected`` (both name -> tensor): missing, unexpected and other-shaped keys with
    the first few names; None when it fits. Keys ending in one of ``optional`` may be missing."""
    missing = [k for k in expected if k not in state and not (optional and k.endswith(optional))]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:SHOWN])})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:SHOWN])})")
    if shapes:
        parts.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
    return "; ".join(parts) or None


def match_weights(tensors: Mapping[str, torch.Tensor], encoder: nn.Module, source: str, advice: str) -> WeightsMatch:
    """Find ``encoder``'s tensors in ``tensors`` (a file's, :func:`flatten_tensors`) as the module docstring says.

    ``source`` names the file in messages (``"state dict 'x.ckpt'"``); ``advice`` ends a refusal (the fix). Returns
    the match, whose ``state`` fits ``encoder`` exactly but for optional counters the encoder's own fill in.
    """
    expected = library_state_dict(encoder)
    layouts = {"": {}, **getattr(encoder, "foreign_layouts", {})}
    best: tuple[int, int, str, str, dict[str, torch.Tensor]] | None = None  # score, -len(prefix), prefix, layout, group
    for prefix in sorted({p for key in tensors for p in _wrapper_prefixes(key)}):
        under = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
        for layout, renames in layouts.items():
            group = _renamed(under, renames)
            score = sum(key in expected for key in group)
            if best is None or (score, -len(prefix)) > best[:2]:
                best = (score, -len(prefix), prefix, layout, group)
    name = encoder.spec.name if hasattr(encoder, "spec") else type(encoder).__name__
    if best is None or best[0] == 0:
        shown = ", ".join(list(tensors)[:SHOWN]) or "none"
        raise UserError(f"{source} holds no tensor named like {name}'s (e.g. {', '.join(list(expected)[:2])}); its "
                        f"tensors are named like {shown}; {advice}")
    _, _, prefix, layout, group = best
    head = [key for key in group if key not in expected and key.split(".")[0] in HEADS]
    state = {key: value for key, value in group.items() if key not in head}
    problem = describe_misfit(expected, state, optional=(OPTIONAL_SUFFIX,))
    if problem:
        where = (f" under '{prefix}'" if prefix else "") + (f" in {layout} names" if layout else "")
        raise UserError(f"{source} does not fit {name}{where} ({problem}); {advice}")
    for key, value in expected.items():  # optional counters the file lacks: the encoder's own
        state.setdefault(key, value)
    return WeightsMatch(state, prefix, layout, head, outside=sum(not key.startswith(prefix) for key in tensors))
