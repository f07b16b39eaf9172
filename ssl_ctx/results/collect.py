"""Run records -> long DataFrames. The only module that knows the ``record.json`` layout.

``read_records`` finds and parses every record under a runs folder (an unreadable one is skipped with a one-line
warning); ``probe_frame``, ``pretext_frame`` and ``history_frame`` turn them into one row per shown probe metric,
per pretext run and per logged training step, and ``trained_on_frame`` into one row per record saying what it was
trained and evaluated on (dataset, splits, image counts, input size, held-out images, pretext steps), which every
table and figure states in its caption. Records written before the ``data`` and ``steps`` blocks existed fall back
to their config and metrics; what they do not say is left empty. Statistics, rendering and figures read only these
frames.
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
# How a pretext record from before records carried ``held_out_metrics`` (the method's declaration) is read: the
# first of these present, as the built-in reconstructions declare them now.
OLDER_HELD_OUT_METRICS = ({"metric": "eval_masked_l2", "label": "hole", "reference": "eval_mean_fill_l2",
                           "reference_label": "mean fill"},
                          {"metric": "eval_l2", "label": "whole image", "reference": "eval_mean_fill_l2",
                           "reference_label": "mean fill"})

PROBE_COLUMNS = ["probe", "task", "kind", "protocol", "metric", "layer", "column", "method", "seed", "value",
                 "architecture", "paper", "path"]
PRETEXT_COLUMNS = ["method", "seed", "train_steps", "metric", "pixels", "value", "mean_fill", "reference_label",
                   "on_training_images", "held_out", "path"]
HISTORY_COLUMNS = ["method", "seed", "step", "loss"]
# What a record was trained on (``trained_on_frame``); counts are NaN and text "" where the record does not say.
TRAINED_ON_COLUMNS = ["kind", "probe", "method", "seed", "dataset", "train_split", "eval_split", "train_images",
                      "eval_images", "train_limit", "eval_limit", "input_size", "held_out", "on_training_images",
                      "steps", "planned_steps", "steps_bound", "pretext_input_size", "path"]

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


def _probe_name(config: dict[str, Any]) -> str:
    """The probe a record belongs to: its ``tags.probe`` (a bench's), else ``<task>:<dataset>``."""
    task = _section(config, "probe").get("task", "")
    return _section(config, "tags").get("probe") or f"{task}:{_section(config, 'data').get('dataset', '')}"


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
    name = _probe_name(config)
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


def shown_held_out_metrics(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The held-out metrics of a pretext record that the pretext table shows, each ``{"metric", "label",
    "reference"}``: those its method declared (the record's ``held_out_metrics``) that its metrics hold, in
    order; a record from before the declarations were recorded shows the first of ``OLDER_HELD_OUT_METRICS`` it
    holds."""
    metrics = _section(record, "metrics")
    declared = record.get("held_out_metrics")
    if not isinstance(declared, list):
        return [d for d in OLDER_HELD_OUT_METRICS if _number(metrics.get(d["metric"])) is not None][:1]
    return [d for d in declared if isinstance(d, dict) and isinstance(d.get("metric"), str)
            and _number(metrics.get(d["metric"])) is not None]


def pretext_frame(records: RecordSet) -> pd.DataFrame:
    """One row per pretext record and shown held-out metric (:func:`shown_held_out_metrics`): train steps, the
    ``metric``, what it measures (``pixels``: the declared label, for a reconstruction the pixels it covers,
    "hole" or "whole image"), its ``value`` and ``mean_fill``, the value of the declared reference (the mean
    fill of the same pixels; NaN without one). A record without any (random_init) is one row with an empty
    metric and NaN. ``on_training_images`` is True when the evaluation images were trained on (so the value is no
    held-out score) and ``held_out`` says which images were held out, where the record says
    (:func:`training_data`)."""
    rows = []
    for path, record in records.pretext:
        metrics = _section(record, "metrics")
        data = training_data(record)
        common = {"method": records.methods[path], "seed": record.get("seed"),
                  "train_steps": _number(metrics.get("train_steps")) or 0.0,
                  "on_training_images": data["on_training_images"], "held_out": data["held_out"], "path": str(path)}
        shown = shown_held_out_metrics(record) or [{"metric": "", "label": ""}]
        for metric in shown:
            reference = metric.get("reference")
            rows.append({**common, "metric": metric["metric"], "pixels": str(metric.get("label") or metric["metric"]),
                         "value": _nan_if_none(_number(metrics.get(metric["metric"]))),
                         "mean_fill": _nan_if_none(_number(metrics.get(reference)) if isinstance(reference, str)
                                                   else None),
                         # HeldOutMetric's default: a reference declared without a label is the mean fill
                         "reference_label": str(metric.get("reference_label")
                                                or ("mean fill" if isinstance(reference, str) else ""))})
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


def _size(value: Any) -> tuple[int, int] | None:
    """``[H, W]`` or ``S`` (a square side, as ``data.input_size``) -> (H, W); anything else -> None."""
    if _number(value) is not None and value > 0:
        return int(value), int(value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) for v in value):
        return int(value[0]), int(value[1])
    return None


def _first_number(*values: Any) -> float:
    return next((number for number in map(_number, values) if number is not None), math.nan)


def training_data(record: dict[str, Any]) -> dict[str, Any]:
    """What a pretext or probe record was trained and evaluated on: ``dataset``, ``train_split``, ``eval_split``,
    image counts (``train_images``/``eval_images``, NaN when unknown; ``train_limit``/``eval_limit``, the
    ``data.limit``s, at most that many), the network's ``input_size`` (H, W) or None, ``held_out`` (which images
    were held out of a single-split dataset, "" when none were) and ``on_training_images`` (the evaluation
    images were trained on).

    The record's ``data`` block is read first; a record from before it falls back to ``config.data``, a probe's
    ``metrics.train_images``/``eval_images`` and ``data.input_size`` (else ``cache_size``); ``on_training_images``
    then means "evaluated on the training split" (same dataset, same split). A probe's input size is its
    ``probe.input_size`` first."""
    config, data = _section(record, "config"), _section(record, "data")
    data_config, metrics, probe = _section(config, "data"), _section(record, "metrics"), _section(record, "probe")
    is_probe = record.get("kind") == "probe"

    def text(key: str) -> str:
        return str(data.get(key) or data_config.get(key) or "")

    train_split, eval_split = text("train_split"), text("eval_split")
    on_training = data.get("eval_on_training_images")
    if not isinstance(on_training, bool):
        on_training = bool(train_split) and train_split == eval_split
    # A probe's own ``probe.input_size`` is the size its network saw (a probe may read other than data.input_size).
    input_size = ((_size(probe.get("input_size")) if is_probe else None) or _size(data.get("input_size"))
                  or _size(data_config.get("input_size")) or _size(data_config.get("cache_size")))
    held_out = data.get("held_out")
    return {
        "dataset": text("dataset"), "train_split": train_split, "eval_split": eval_split,
        "train_images": _first_number(data.get("train_images"), metrics.get("train_images") if is_probe else None),
        "eval_images": _first_number(data.get("eval_images"), metrics.get("eval_images") if is_probe else None),
        "train_limit": _first_number(data_config.get("limit")),
        "eval_limit": _first_number(data_config.get("eval_limit")),
        "input_size": input_size, "held_out": held_out if isinstance(held_out, str) else "",
        "on_training_images": on_training,
    }


def _steps(record: dict[str, Any]) -> dict[str, Any]:
    """A pretext record's steps: those taken (``metrics.train_steps``), those planned and the setting that bound
    them (its ``steps`` block; an older record whose steps equal ``train.max_steps`` was bound by it)."""
    steps, metrics = _section(record, "steps"), _section(record, "metrics")
    taken = _number(metrics.get("train_steps"))
    planned = _first_number(steps.get("planned"))
    bound = steps.get("bound") if isinstance(steps.get("bound"), str) else ""
    max_steps = _number(_section(_section(record, "config"), "train").get("max_steps"))
    if not bound and max_steps and taken == max_steps:
        bound = f"train.max_steps={int(max_steps)}"
    return {"steps": _first_number(taken, planned), "planned_steps": planned, "steps_bound": bound}


def trained_on_frame(records: RecordSet) -> pd.DataFrame:
    """One row per pretext and probe record (columns ``TRAINED_ON_COLUMNS``): what it was trained and evaluated on
    (:func:`training_data`), a pretext run's steps, and for a probe its record's probe name (``tags.probe``, not
    the table sections it fills) and the input size its encoder was pretrained at (``probe.pretext_input_size``:
    None for a random or timm encoder; an older record without it takes its method's trained pretext runs' size,
    where they state one)."""
    rows = []
    for path, record in records.pretext:
        rows.append({"kind": "pretext", "probe": "", "method": records.methods[path], "seed": record.get("seed"),
                     **training_data(record), **_steps(record), "pretext_input_size": None, "path": str(path)})
    pretext_sizes: dict[str, set[tuple[int, int]]] = {}
    for row in rows:
        if row["input_size"] and row["steps"] > 0:
            pretext_sizes.setdefault(row["method"], set()).add(row["input_size"])
    for path, record in records.probe:
        method = records.methods.get(path) or _made_by(record)[0]
        probe = _section(record, "probe")
        if "pretext_input_size" in probe:
            pretext_size = _size(probe.get("pretext_input_size"))
        else:
            sizes = pretext_sizes.get(method, set())
            pretext_size = next(iter(sizes)) if len(sizes) == 1 else None
        rows.append({"kind": "probe", "probe": _probe_name(_section(record, "config")), "method": method,
                     "seed": record.get("seed"), **training_data(record), "steps": math.nan,
                     "planned_steps": math.nan, "steps_bound": "", "pretext_input_size": pretext_size,
                     "path": str(path)})
    return pd.DataFrame(rows, columns=TRAINED_ON_COLUMNS)
