"""Name -> builder registries for encoders, pretext methods and probes.

Each registry fills itself on first use: it imports the package module holding the built-in entries, then every
entry point of its group (``ssl_ctx.encoders``, ``ssl_ctx.pretext_methods``, ``ssl_ctx.probes``). An entry point
names a module or object whose import registers its entries, so a plug-in needs one file and one registration,
and no change to this package. A registry imports only its own built-ins: looking up a probe does not import
the pretext methods.

A plug-in's code is part of what a result depends on: :meth:`Registry.distribution` names the installed
distribution (and its version) whose entry point registered an entry, which the settings (``code.<distribution>``)
and the records' ``packages`` carry; :func:`plugin_modules` names the modules of every entry registered from
outside this package, from which ``ssl_ctx.errors.plugin_failure`` tells a plug-in's exception from a core bug.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from ssl_ctx.errors import unknown_name_error

T = TypeVar("T")


@dataclass(frozen=True)
class PluginEntryPoint:
    """One entry point of a registry's group: its name, the module it imports, its distribution and version."""

    name: str
    module: str
    distribution: str
    version: str

    def holds(self, module: str) -> bool:
        """Whether ``module`` is the entry point's module or inside it."""
        return module == self.module or module.startswith(self.module + ".")


@cache
def plugin_entry_points(group: str) -> tuple[PluginEntryPoint, ...]:
    """The entry points of ``group`` that belong to an installed distribution, read once per process (nothing is
    imported: the versions are the installed metadata's)."""
    found = []
    for entry_point in entry_points(group=group):
        dist = entry_point.dist
        if dist is not None:
            found.append(PluginEntryPoint(entry_point.name, entry_point.module, dist.name, dist.version))
    return tuple(found)


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

    def distribution(self, name: str) -> tuple[str, str] | None:
        """``(distribution name, version)`` of the installed package whose entry point registered ``name``; None for
        a built-in entry, an unknown name, or an entry registered without an entry point (a test's).

        An entry point is named after what it registers by convention (rotation's is ``rotation``), which is found
        without importing anything; otherwise the registry is loaded and the registered object's module is matched
        to the entry points' modules.
        """
        plugins = plugin_entry_points(self.entry_point_group) if self.entry_point_group else ()
        if not plugins:
            return None
        named = next((plugin for plugin in plugins if plugin.name == name), None)
        if named is None:
            if name not in self:
                return None
            named = _plugin_of(_module_of(self._items[name]), plugins)
        return None if named is None else (named.distribution, named.version)

    def plugin_modules(self) -> dict[str, str]:
        """``{top-level module: what to call it}`` for the entries registered so far from outside ``ssl_ctx``:
        their distribution's name, else the registering module's (nothing is loaded)."""
        plugins = plugin_entry_points(self.entry_point_group) if self.entry_point_group else ()
        found: dict[str, str] = {}
        for obj in self._items.values():
            module = _module_of(obj)
            if module and module.split(".")[0] != "ssl_ctx":
                plugin = _plugin_of(module, plugins)
                found.setdefault(module.split(".")[0], plugin.distribution if plugin else module)
        return found

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items


def _module_of(obj: Any) -> str:
    """The module defining ``obj`` (a ``functools.partial``'s function's)."""
    while isinstance(obj, partial):
        obj = obj.func
    return getattr(obj, "__module__", None) or ""


def _plugin_of(module: str, plugins: tuple[PluginEntryPoint, ...]) -> PluginEntryPoint | None:
    return next((plugin for plugin in plugins if module and plugin.holds(module)), None)


ENCODERS: Registry[Callable[..., Any]] = Registry("encoder", "ssl_ctx.encoders", "ssl_ctx.models")
PRETEXT_METHODS: Registry[type] = Registry("pretext method", "ssl_ctx.pretext_methods", "ssl_ctx.pretext")
PROBES: Registry[type] = Registry("probe", "ssl_ctx.probes", "ssl_ctx.probes")


def plugin_modules() -> dict[str, str]:
    """:meth:`Registry.plugin_modules` of every registry: the plug-ins' top-level modules, each with its name."""
    found: dict[str, str] = {}
    for registry in (ENCODERS, PRETEXT_METHODS, PROBES):
        for module, name in registry.plugin_modules().items():
            found.setdefault(module, name)
    return found
