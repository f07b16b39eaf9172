"""Run records -> long DataFrames. The only module that knows the ``record.json`` layout.

``read_records`` finds and parses every record under a runs folder (an unreadable one is skipped with a one-line
warning); ``probe_frame``, ``pretext_frame`` and ``history_frame`` turn them into one row per shown probe metric,
per pretext run and per logged training step. Statistics, rendering and figures read only these frames.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ssl_ctx.errors import UserError, warn
from ssl_ctx.results.records import RECORD_NAME
from ssl_ctx.settings import UPSTREAM_PREFIX, describe_difference, first_difference, record_identity

# The headline metric of a probe whose record carries no ``tags.metric``.
PRIMARY_METRIC = {"classification": "top1", "multilabel_classification": "map", "detection": "map50",
                  "segmentation": "miou"}
# Older probe records lack ``probe.kind``: derive it from the probe mode.
KIND_OF_MODE = {"linear": "frozen", "finetune": "fine-tuned"}
# A pretext record's held-out L2 of the model, and the pixels it is measured on; the first one present is used.
PIXELS_OF_METRIC = {"eval_masked_l2": "hole", "eval_l2": "whole image"}
MEAN_FILL_METRIC = "eval_mean_fill_l2"

PROBE_COLUMNS = ["probe", "task", "kind", "protocol", "metric", "layer", "column", "method", "seed", "value",
                 "architecture", "paper", "path"]
PRETEXT_COLUMNS = ["method", "seed", "train_steps", "pixels", "model_l2", "mean_fill_l2", "path"]
HISTORY_COLUMNS = ["method", "seed", "step", "loss"]

Record = tuple[Path, dict[str, Any]]


@dataclass
class RecordSet:
    """Every readable ``record.json`` under a runs folder, by kind, the paths of the unreadable ones, and the
    method each probe and pretext record is shown as (:func:`method_labels`)."""

    probe: list[Record] = field(default_factory=list)
    pretext: list[Record] = field(default_factory=list)
    other: list[Record] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)
    methods: dict[Path, str] = field(default_factory=dict)

    def paths(self) -> list[str]:
        """The probe and pretext record files the tables are made from, sorted."""
        return sorted(str(path) for path, _ in self.probe + self.pretext)


def read_records(runs_dir: str | Path) -> RecordSet:
    """Parse every ``record.json`` under ``runs_dir``; a file that is not a JSON object is skipped with a
    one-line warning on stderr, so one half-written record does not hide all the others."""
    records = RecordSet()
    for path in sorted(Path(runs_dir).rglob(RECORD_NAME)):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            reason = f"not valid JSON ({err})" if isinstance(err, ValueError) else f"unreadable ({err})"
            _skip(records, path, reason)
            continue
        if not isinstance(record, dict):
            _skip(records, path, f"not a JSON object but a {type(record).__name__}")
            continue
        by_kind = {"probe": records.probe, "pretext": records.pretext}
        by_kind.get(record.get("kind"), records.other).append((path, record))
    records.methods = method_labels(records)
    return records


def _made_by(record: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """``(method, run name, pretext settings hash)`` of a probe or pretext record: for a probe, of the encoder it
    read (the record's ``probe.method`` and ``probe.pretext_run``; its ``probe.init`` in older records)."""
    config = _section(record, "config")
    if record.get("kind") == "pretext":
        return _section(config, "method").get("name") or "?", config.get("name"), record.get("settings_hash")
    probe, init = _section(record, "probe"), str(_section(config, "probe").get("init", "?"))
    upstream = _section(record, "settings").get("probe.init")
    upstream = upstream[len(UPSTREAM_PREFIX):] if isinstance(upstream, str) and upstream.startswith(UPSTREAM_PREFIX) \
        else None
    return probe.get("method") or init, probe.get("pretext_run"), upstream


def method_labels(records: RecordSet) -> dict[Path, str]:
    """The method each probe and pretext record is shown as: its ``tags.method`` (a bench's), else the method of
    the pretext run that trained the encoder (``random_init`` for a random one), so that a probe row and its
    pretext run share a name. Where runs of one method were made with different settings (two hand-made context
    encoders, say), each is named by its run's name instead; seeds of one setting share the method's name."""
    made = {path: _made_by(record) for path, record in records.probe + records.pretext
            if not _section(_section(record, "config"), "tags").get("method")}
    settings_of_method: dict[str, set[str]] = {}
    for method, _, upstream in made.values():
        if upstream:
            settings_of_method.setdefault(method, set()).add(upstream)
    labels = {path: str(_section(_section(record, "config"), "tags")["method"])
              for path, record in records.probe + records.pretext if path not in made}
    for path, (method, run, _) in made.items():
        labels[path] = run if run and len(settings_of_method.get(method, ())) > 1 else method
    return labels


def _skip(records: RecordSet, path: Path, reason: str) -> None:
    records.unreadable.append(path)
    warn(f"skipping {path}: {reason}")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _section(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    value = mapping.get(key)
    return value if isinstance(value, dict) else {}


def probe_rows(path: Path, record: dict[str, Any], method: str | None = None) -> list[dict[str, Any]]:
    """The rows of one probe record: its headline metric ``<base>`` and/or ``<base>@<layer>`` values, layers in
    the record's order. Other metrics (loss, pixel accuracy, ...) are not shown in the tables, except where the
    record's ``tags.tables`` maps several table sections to its metrics ({"classification": "top1",
    "localisation": "map50"}: one probe whose read-outs answer two questions); each section is then a probe of
    its own in the tables. ``method`` names the rows (default: the record's own, :func:`_made_by`)."""
    config = _section(record, "config")
    tags, probe_config, settings = _section(config, "tags"), _section(config, "probe"), _section(record, "probe")
    task = probe_config.get("task", "")
    metrics = _section(record, "metrics")
    numbers = {name: _number(value) for name, value in metrics.items() if _number(value) is not None}
    bases = [name.partition("@")[0] for name in numbers]
    base = next((b for b in (tags.get("metric"), PRIMARY_METRIC.get(task)) if b in bases), bases[0] if bases else None)
    name = tags.get("probe") or f"{task}:{_section(config, 'data').get('dataset', '')}"
    sections = {str(section): metric for section, metric in _section(tags, "tables").items() if metric in bases}
    common = {
        "task": task,
        "kind": settings.get("kind") or KIND_OF_MODE.get(probe_config.get("mode"), ""),
        "protocol": settings.get("protocol") or "",
        "method": method or tags.get("method") or _made_by(record)[0],
        "seed": record.get("seed", tags.get("seed")),
        "architecture": settings.get("encoder_architecture") or "",
        "paper": tags.get("paper") or "",  # the column of the paper's Table 2 this probe reproduces (bench: paper)
        "path": str(path),
    }
    rows = []
    for section, shown in (sections or {name: base}).items():
        for metric_name, value in numbers.items():
            metric, _, layer = metric_name.partition("@")
            if metric == shown:
                rows.append({**common, "probe": section, "metric": metric, "layer": layer, "column": layer or metric,
                             "value": value})
    return rows


def check_cells(records: RecordSet) -> None:
    """Refuse to tabulate records that must not be averaged or shown together: the seeds of one cell (probe x
    method, or a method's pretext) made with different settings, or one probe's column holding the metrics of
    two tasks. One UserError line names the first differing setting and two of the files."""
    cells: dict[tuple[str, ...], list[Record]] = {}
    columns: dict[str, dict[tuple[str, str], Path]] = {}
    for path, record in records.probe:
        rows = probe_rows(path, record, records.methods.get(path))
        if not rows:
            continue
        for row in {row["probe"]: row for row in rows}.values():  # one per table section of the record
            cells.setdefault(("probe", row["probe"], row["method"]), []).append((path, record))
            columns.setdefault(row["probe"], {}).setdefault((row["task"], row["metric"]), path)
    for path, record in records.pretext:
        cells.setdefault(("pretext", records.methods[path]), []).append((path, record))
    for probe, kinds in columns.items():
        if len(kinds) > 1:
            (task_a, metric_a), (task_b, metric_b) = list(kinds)[:2]
            files = list(kinds.values())
            raise UserError(f"probe '{probe}' has records of {task_a} ({metric_a}) and of {task_b} ({metric_b}) "
                            f"({files[0]}, {files[1]}); give the two probes different names (tags.probe)")
    for cell, members in cells.items():
        (first_path, first), *others = members
        first_settings, first_stored = record_identity(first)
        for path, record in others:
            settings, stored = record_identity(record)
            # A record from before settings were stored names its checkpoint by path, which differs by seed.
            skip = () if first_stored and stored else ("probe.init",)
            difference = first_difference(first_settings, settings, skip)
            if difference is not None:
                raise UserError(f"table cell {' / '.join(cell)} mixes records made with different settings "
                                f"({describe_difference(difference)}): {first_path} and {path}; keep one set of "
                                f"settings per runs folder (move the others elsewhere or re-run the bench)")


def probe_frame(records: RecordSet) -> pd.DataFrame:
    """One row per (probe record, shown metric): the columns of ``PROBE_COLUMNS``; ``value`` is unscaled."""
    rows = [row for path, record in records.probe for row in probe_rows(path, record, records.methods.get(path))]
    return pd.DataFrame(rows, columns=PROBE_COLUMNS)


def collect_records(runs_dir: str | Path) -> pd.DataFrame:
    """``probe_frame`` of every probe record under ``runs_dir``."""
    return probe_frame(read_records(runs_dir))


def pretext_frame(records: RecordSet) -> pd.DataFrame:
    """One row per pretext record: train steps, the model's held-out L2 and the pixels it covers ("hole" or
    "whole image"; empty for a method without held-out metrics, e.g. random_init) and the mean-fill L2 of the
    same pixels. Missing numbers are NaN."""
    rows = []
    for path, record in records.pretext:
        metrics = _section(record, "metrics")
        model_metric = next((name for name in PIXELS_OF_METRIC if _number(metrics.get(name)) is not None), None)
        rows.append({
            "method": records.methods[path],
            "seed": record.get("seed"),
            "train_steps": _number(metrics.get("train_steps")) or 0.0,
            "pixels": PIXELS_OF_METRIC.get(model_metric, ""),
            "model_l2": _number(metrics.get(model_metric)) if model_metric else math.nan,
            "mean_fill_l2": _nan_if_none(_number(metrics.get(MEAN_FILL_METRIC))),
            "path": str(path),
        })
    return pd.DataFrame(rows, columns=PRETEXT_COLUMNS)


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


def history_frame(records: RecordSet) -> pd.DataFrame:
    """One row per logged training step of every pretext record that has a ``history``."""
    rows = []
    for path, record in records.pretext:
        history = record.get("history")
        for entry in history if isinstance(history, list) else []:
            step, loss = (_number(entry.get(k)) if isinstance(entry, dict) else None for k in ("step", "loss"))
            if step is not None and loss is not None:
                rows.append({"method": records.methods[path], "seed": record.get("seed"), "step": step, "loss": loss})
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)
