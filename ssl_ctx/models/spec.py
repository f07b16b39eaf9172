"""An encoder's build spec (registered name + builder options), and building an encoder from one.

Checkpoints and exported encoder files carry the spec of the encoder they hold, so a probe rebuilds exactly that
architecture without the config (or the pretext method) that made it. An encoder registers the model settings its
builder takes: ``@ENCODERS.register("alexnet64", options=("norm", "width", "groups"))``; :func:`encoder_spec`
picks those from a model config. Every encoder :func:`build_encoder` returns keeps its spec as ``encoder.spec``.
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ssl_ctx.errors import UserError
from ssl_ctx.registry import ENCODERS

TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class EncoderSpec:
    """What rebuilds an encoder: its registered name (or ``timm:<model>``) and its builder's keyword options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, value: Any, source: str = "the file") -> EncoderSpec:
        """The spec a checkpoint or exported file stores (:meth:`to_dict`); anything else is one line."""
        if not (isinstance(value, Mapping) and isinstance(value.get("name"), str)
                and isinstance(value.get("options", {}), Mapping)):
            raise UserError(f"{source} has an unreadable encoder spec ({value!r}); pass a file written by ssl-ctx")
        return cls(value["name"], dict(value.get("options") or {}))


def encoder_spec(name: str, model: Any = None) -> EncoderSpec:
    """The spec of encoder ``name`` built with the model settings ``model`` (a ``ModelConfig`` or its dict, such
    as a checkpoint's ``config.model``): the settings the encoder registered as ``options``, defaults filling any
    the dict lacks. A ``timm:<model>`` name takes ``model.encoder_options`` (timm.create_model's keywords)."""
    from ssl_ctx.config import ModelConfig

    if isinstance(model, Mapping):
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        model = ModelConfig(**{key: value for key, value in model.items() if key in known})
    model = model if model is not None else ModelConfig()
    if name.startswith(TIMM_PREFIX):
        return EncoderSpec(name, dict(model.encoder_options or {}))
    if model.encoder_options:
        takes = ", ".join(ENCODERS.info(name).get("options", ())) or "none"
        raise UserError(f"model.encoder_options {dict(model.encoder_options)} is for timm:<model> encoders; "
                        f"'{name}' takes its settings from model.* ({takes})")
    values = dataclasses.asdict(model)
    return EncoderSpec(name, {key: values[key] for key in ENCODERS.info(name).get("options", ())})


def build_encoder(spec: EncoderSpec | str, **options: Any) -> nn.Module:
    """Build an encoder from its spec (or a name and options), which it keeps as ``encoder.spec``.

    ``timm:<model>`` wraps a timm model (options go to :class:`~ssl_ctx.models.timm_encoder.TimmEncoder`); any
    other name is looked up in ``ENCODERS``. An unknown name raises ``UserError`` listing the known ones.
    """
    from ssl_ctx.models.timm_encoder import TimmEncoder

    if isinstance(spec, str):
        spec = EncoderSpec(spec, options)
    elif options:
        spec = EncoderSpec(spec.name, {**spec.options, **options})
    if spec.name.startswith(TIMM_PREFIX):
        encoder = TimmEncoder(spec.name[len(TIMM_PREFIX):], **spec.options)
    else:
        encoder = ENCODERS.build(spec.name, **spec.options)
    encoder.spec = spec
    return encoder


def encoder_input_side(spec: EncoderSpec) -> int | None:
    """The side of the images the encoder of ``spec`` is built for (its ``input_size``), from a build on the meta
    device (no memory, no weights); None where it does not say or cannot be built so."""
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            side = getattr(build_encoder(spec), "input_size", None)
    except Exception:  # noqa: BLE001 - an encoder that cannot be built on the meta device says nothing
        return None
    return int(side) if side else None
