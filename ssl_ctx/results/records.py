"""Run records: one JSON file per run holding its metrics, resolved config and environment.

Tables and figures are made from these records only (``ssl_ctx.results.tables``).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from ssl_ctx.config import Config, config_to_dict
from ssl_ctx.engine.device import describe_device
from ssl_ctx.files import write_json_atomic
from ssl_ctx.settings import fingerprint, plugin_versions, settings_hash, settings_of, upstream_of

RECORD_NAME = "record.json"
_PACKAGES = ("ssl-ctx", "torch", "torchvision", "timm", "numpy", "scipy", "pycocotools", "opencv-python-headless")


def git_commit() -> str:
    """The commit of the source tree this package runs from, with ``+dirty`` for local edits."""
    source = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """The installed versions of this package and the libraries its numbers depend on (a run's plug-ins are
    added by :func:`write_record`)."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def write_record(run_dir: str | os.PathLike, kind: str, metrics: dict[str, Any], config: Config,
                 wall_time: float, device: torch.device | str | None = None,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write ``run_dir/record.json`` atomically and return its path.

    The record carries the run's settings, their hash and its fingerprint (``ssl_ctx.settings``); a probe that
    read a pretext run's checkpoint names that run's settings hash instead of the checkpoint's path. ``packages``
    adds the distributions of the plug-ins the run used (its pretext method, probe or encoder), as the settings do.
    """
    resolved = config_to_dict(config)
    settings = settings_of(resolved, upstream=upstream_of(config.probe.init) if kind == "probe" else None, kind=kind)
    record = {
        "kind": kind,
        "name": config.name,
        "metrics": metrics,
        "seed": config.train.seed,
        "wall_time_s": round(wall_time, 3),
        "device": describe_device(device),
        "git_commit": git_commit(),
        "packages": {**package_versions(), **plugin_versions(resolved, kind)},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings_hash": settings_hash(settings),
        "fingerprint": fingerprint(settings, config.train.seed),
        "settings": settings,
        "config": resolved,
        **(extra or {}),
    }
    return write_json_atomic(Path(run_dir) / RECORD_NAME, record)


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
