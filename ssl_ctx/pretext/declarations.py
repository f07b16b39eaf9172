"""What a pretext method declares about itself, beside its code: the ``method.options`` it reads
(:class:`MethodOption`) and the held-out metrics the pretext table shows (:class:`HeldOutMetric`). The third
declaration, the input its encoder takes, is a word of :data:`ssl_ctx.models.encoder_input.ENCODER_INPUTS`.

:class:`~ssl_ctx.pretext.base.PretextMethod` holds the class attributes and honours them; this module checks a
config's options against the declarations (:func:`resolve_options`), so that the bench can check them without
building a network.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ssl_ctx.errors import UserError, suggest

OPTION_TYPES = (bool, int, float, str, list)  # what YAML and the command line give
TYPE_WORDS = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "a list",
              dict: "a mapping", type(None): "null"}


@dataclass(frozen=True)
class MethodOption:
    """One ``method.options.<name>`` a method reads: its ``default`` (whose type is the option's: bool, int,
    float, str or list; an int is accepted where a float is expected) and one line of ``help``."""

    default: bool | int | float | str | list
    help: str

    def __post_init__(self) -> None:
        if type(self.default) not in OPTION_TYPES:
            raise TypeError(f"MethodOption default {self.default!r} is a {type(self.default).__name__}; use one of "
                            f"{', '.join(t.__name__ for t in OPTION_TYPES)}")

    @property
    def type(self) -> type:
        return type(self.default)

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` has the option's type (bool is no int here, as YAML's ``true`` is no number)."""
        if self.type is float:
            return type(value) in (int, float)
        return type(value) is self.type

    def resolved(self, value: Any) -> Any:
        """``value`` as the method reads it: an int given for a float becomes a float, a list is copied."""
        if self.type is float:
            return float(value)
        return list(value) if self.type is list else value


@dataclass(frozen=True)
class HeldOutMetric:
    """One held-out metric of a method, ``eval_<name>`` in its record, as the pretext table shows it: ``label``
    says in a few words what it measures (the built-in reconstructions name the pixels: "hole", "whole image"),
    ``reference`` names the ``eval_<reference>`` metric of a trivial predictor of the same pixels (the built-in
    reconstructions: filling them with the dataset mean), which the table shows beside it with the ratio, and
    ``reference_label`` says what that predictor is (None: the method has no such baseline; the table shows "—")."""

    name: str
    label: str
    reference: str | None = None
    reference_label: str = "mean fill"

    def to_record(self) -> dict[str, str | None]:
        """The record's form (``held_out_metrics``): full metric names, so tables need no plug-in to read it."""
        return {"metric": f"eval_{self.name}", "label": self.label,
                "reference": f"eval_{self.reference}" if self.reference else None,
                "reference_label": self.reference_label if self.reference else None}


def type_words(kind: type) -> str:
    """"a float", "an integer": a type as messages name it."""
    return TYPE_WORDS.get(kind, f"a {kind.__name__}")


def format_value(value: Any) -> str:
    """An option's value as YAML writes it: ``0.75``, ``true``, ``"raw"``, ``[1, 2]``."""
    return json.dumps(value, default=str)


def resolve_options(method: str, declared: Mapping[str, MethodOption], given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` (``method.options``) checked against what ``method`` declares, with the defaults filled in.

    An unknown option, an option of a method that declares none and a value of another type are each one UserError
    line naming the option and the fix."""
    for key, value in given.items():
        if key not in declared:
            raise _unknown_option(method, declared, key)
        option = declared[key]
        if not option.accepts(value):
            expected = type_words(option.type)
            raise UserError(f"method.options.{key}={format_value(value)} is {type_words(type(value))}, but pretext "
                            f"method '{method}' expects {expected} (default {format_value(option.default)}); set "
                            f"method.options.{key} to {expected}")
    return {key: option.resolved(given.get(key, option.default)) for key, option in declared.items()}


def _unknown_option(method: str, declared: Mapping[str, MethodOption], key: str) -> UserError:
    if not declared:
        return UserError(f"pretext method '{method}' declares no options, so it takes no method.options; remove "
                         f"method.options.{key}")
    known = ", ".join(f"{name}={format_value(option.default)}" for name, option in declared.items())
    return UserError(f"unknown option method.options.{key} of pretext method '{method}'{suggest(key, declared)}; "
                     f"known (with their defaults): {known}")


def describe_options(declared: Mapping[str, MethodOption]) -> list[str]:
    """One line per declared option, ``method.options.mask_ratio=0.75  fraction of the patches removed``, for
    ``ssl-ctx list``."""
    width = max((len(f"{name}={format_value(o.default)}") for name, o in declared.items()), default=0)
    return [f"method.options.{f'{name}={format_value(option.default)}':<{width}}  {option.help}"
            for name, option in declared.items()]
