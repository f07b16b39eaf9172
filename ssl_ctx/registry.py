"""Name -> builder registries for encoders, pretext methods and probes.

Each registry fills itself on first use: it imports the package module holding the built-in entries, then every
entry point of its group (``ssl_ctx.encoders``, ``ssl_ctx.pretext_methods``, ``ssl_ctx.probes``). An entry point
names a module or object whose import registers its entries, so a plug-in needs one file and one registration,
and no change to this package. A registry imports only its own built-ins: looking up a probe does not import
the pretext methods.
"""
from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from ssl_ctx.errors import unknown_name_error

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of builders, each with optional facts about it (``info``).

    Args:
        kind: what an entry is, for messages (``"encoder"``).
        entry_point_group: the entry-point group plug-ins register through (None: no plug-ins).
        builtins: the module whose import registers the built-in entries (None: they register where defined).
    """

    def __init__(self, kind: str, entry_point_group: str | None = None, builtins: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.builtins = builtins
        self._items: dict[str, T] = {}
        self._info: dict[str, dict[str, Any]] = {}
        self._loaded = False

    def register(self, name: str, **info: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; raises on a name another object holds."""

        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is already registered by {self._items[name]!r}")
            self._items[name] = obj
            self._info[name] = info
            return obj

        return decorator

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.builtins is not None:
            import_module(self.builtins)
        for entry_point in entry_points(group=self.entry_point_group) if self.entry_point_group else ():
            entry_point.load()  # importing the target registers it

    def get(self, name: str) -> T:
        self._load()
        if name not in self._items:
            raise unknown_name_error(self.kind, name, self.names())
        return self._items[name]

    def info(self, name: str) -> dict[str, Any]:
        """What ``name`` was registered with besides its builder (an encoder's ``options``)."""
        self.get(name)
        return dict(self._info[name])

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items


ENCODERS: Registry[Callable[..., Any]] = Registry("encoder", "ssl_ctx.encoders", "ssl_ctx.models")
PRETEXT_METHODS: Registry[type] = Registry("pretext method", "ssl_ctx.pretext_methods", "ssl_ctx.pretext")
PROBES: Registry[type] = Registry("probe", "ssl_ctx.probes", "ssl_ctx.probes")
