"""Name -> builder registries for encoders, pretext methods and probes.

Installed packages extend a registry through an entry-point group (``ssl_ctx.encoders``,
``ssl_ctx.pretext_methods``); an entry point names a module or object whose import registers
its classes, so a plug-in needs no change to this package.
"""
from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from ssl_ctx.errors import unknown_name_error

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of builders. ``register`` raises on a duplicate name."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is already registered by {self._items[name]!r}")
            self._items[name] = obj
            return obj

        return decorator

    def _load_plugins(self) -> None:
        if self._plugins_loaded or self.entry_point_group is None:
            return
        self._plugins_loaded = True
        for entry_point in entry_points(group=self.entry_point_group):
            entry_point.load()  # importing the target registers it

    def get(self, name: str) -> T:
        if name not in self._items:
            self._load_plugins()
        if name not in self._items:
            raise unknown_name_error(self.kind, name, self.names())
        return self._items[name]

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._items


ENCODERS: Registry[Callable[..., Any]] = Registry("encoder", "ssl_ctx.encoders")
PRETEXT_METHODS: Registry[type] = Registry("pretext method", "ssl_ctx.pretext_methods")
PROBES: Registry[Callable[..., Any]] = Registry("probe", "ssl_ctx.probes")


def import_builtins() -> None:
    """Import the modules whose decorators fill the registries (kept lazy to make the CLI start fast)."""
    for module in ("ssl_ctx.models", "ssl_ctx.pretext", "ssl_ctx.probes"):
        import_module(module)
