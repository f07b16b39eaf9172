"""Settings fingerprints: which resolved settings determine a run's result, and whether two runs share them.

A run's *settings* are its resolved config flattened to dotted keys (``optim.lr``, ``probe.layer`` ...), less
the keys that cannot change its numbers (``IGNORED``: names, folders, labels, logging and checkpoint
intervals, the device), plus the code version and, for a probe reading a pretext checkpoint, that pretext run's
settings hash in place of the checkpoint's path. The seed is kept apart, so that the seeds of one table cell
share one *settings hash*; the *fingerprint* adds the seed and identifies one cell's result.

The git commit is recorded in every record but is not part of the settings: a commit that changes results
bumps ``ssl_ctx.__version__``, which is. Likewise a plug-in's version: where the config's pretext method,
probe task or encoder comes from an installed plug-in, its distribution's version is the key
``code.<distribution>`` (:func:`plugin_versions`); a config of built-ins only gets no such key. Records, the
bench's refusal to mix settings, the table's check of its cells and ``--resume`` all read these three functions.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ssl_ctx
from ssl_ctx.registry import ENCODERS, PRETEXT_METHODS, PROBES

CODE_PREFIX = "code."
CODE_VERSION_KEY = CODE_PREFIX + "version"
UPSTREAM_PREFIX = "pretext settings "
# Keys that do not change a run's numbers (a section name alone ignores the whole section).
IGNORED = ("name", "output_dir", "tags", "bench", "inpaint", "train.seed", "train.device", "train.progress",
           "train.log_every", "train.image_every", "train.checkpoint_every", "probe.keep_checkpoint",
           "probe.keep_features")


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}`` (free-form option dicts are flattened too; an empty one
    adds no key, so ``{}`` and an absent mapping compare equal)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _ignored(key: str) -> bool:
    return any(key == name or key.startswith(name + ".") for name in IGNORED)


def plugin_versions(config: dict[str, Any], kind: str | None = None) -> dict[str, str]:
    """``{distribution: version}`` of the installed plug-ins a resolved config runs: the one registering its
    pretext method (``method.name``; for ``kind`` ``pretext`` or None), its probe (``probe.task``; for ``probe`` or
    None) and its encoder (``model.encoder``; any kind). Empty for a config of built-ins only
    (``ssl_ctx.registry.Registry.distribution`` finds them)."""
    looked_up = [(ENCODERS, "model", "encoder")]
    if kind in (None, "pretext"):
        looked_up.append((PRETEXT_METHODS, "method", "name"))
    if kind in (None, "probe"):
        looked_up.append((PROBES, "probe", "task"))
    versions: dict[str, str] = {}
    for registry, section, key in looked_up:
        name = config.get(section, {}).get(key) if isinstance(config.get(section), dict) else None
        found = registry.distribution(name) if isinstance(name, str) else None
        if found is not None:
            versions[found[0]] = found[1]
    return versions


def settings_of(config: dict[str, Any], code_version: str | None = None, upstream: str | None = None,
                kind: str | None = None) -> dict[str, Any]:
    """The settings (sorted dotted keys) of a resolved config dict (``config_to_dict`` or a record's ``config``).

    ``upstream``: the settings hash of the pretext run whose checkpoint ``probe.init`` names, which then replaces
    the path (so a moved folder or another seed's checkpoint path does not count as a change). ``kind``: the run's
    (``pretext``, ``probe``; None: either), which says whose plug-in versions count (:func:`plugin_versions`).
    """
    settings = {key: value for key, value in flatten(config).items() if not _ignored(key)}
    if upstream is not None:
        settings["probe.init"] = UPSTREAM_PREFIX + upstream
    settings[CODE_VERSION_KEY] = code_version or ssl_ctx.__version__
    for distribution, version in plugin_versions(config, kind).items():
        settings[CODE_PREFIX + distribution] = version
    return dict(sorted(settings.items()))


def settings_hash(settings: dict[str, Any]) -> str:
    """A short stable hash of ``settings`` (12 hex digits of SHA-256 of its canonical JSON)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def fingerprint(settings: dict[str, Any], seed: Any) -> str:
    """The identity of one result: its settings and its seed."""
    return settings_hash({"settings": settings_hash(settings), "seed": seed})


def first_difference(old: dict[str, Any], new: dict[str, Any], skip: Iterable[str] = ()) -> tuple[str, Any, Any] | None:
    """``(key, old value, new value)`` of the first key (in sorted order) whose values differ; None if none."""
    skip = set(skip)
    missing = object()
    for key in sorted(set(old) | set(new)):
        if key in skip:
            continue
        before, after = old.get(key, missing), new.get(key, missing)
        if before != after:
            return key, (None if before is missing else before), (None if after is missing else after)
    return None


def describe_difference(difference: tuple[str, Any, Any]) -> str:
    """``optim.lr 0.0002 -> 0.001``."""
    key, before, after = difference
    return f"{key} {_short(before)} -> {_short(after)}"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def upstream_of(init: str) -> str | None:
    """The settings hash of the pretext run that wrote checkpoint ``init`` (``<run>/checkpoints/last.pt`` with
    ``<run>/record.json``) or that ``ssl-ctx export`` made a file of, or None when ``init`` is neither (random,
    timm:..., a foreign file)."""
    from ssl_ctx.encoder_file import SUFFIX, exported_source

    path = Path(init)
    if path.suffix == SUFFIX:
        value = (exported_source(path) or {}).get("settings_hash")
        return value if isinstance(value, str) else None
    record = path.parent.parent / "record.json"
    if path.suffix != ".pt" or not record.is_file():
        return None
    try:
        value = json.loads(record.read_text()).get("settings_hash")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def record_identity(record: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``(settings, stored)`` of a record: those it stores, or for a record written before settings were stored,
    those derived from its config (``stored`` False; its ``probe.init`` path is then not comparable)."""
    stored = record.get("settings")
    if isinstance(stored, dict):
        return stored, True
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    packages = record.get("packages") if isinstance(record.get("packages"), dict) else {}
    settings = settings_of(config, code_version=packages.get("ssl-ctx"), kind=record.get("kind"))
    for key in settings:
        if key != CODE_VERSION_KEY and key.startswith(CODE_PREFIX) and key[len(CODE_PREFIX):] in packages:
            settings[key] = packages[key[len(CODE_PREFIX):]]  # the plug-in version the record ran with
    return settings, False
