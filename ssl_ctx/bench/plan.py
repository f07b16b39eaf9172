"""What a bench runs: its cells (pretext runs and probes of methods x seeds), each cell's config and folder, and
the check that a bench folder never mixes settings. Nothing here runs a cell; the flow is one way:
``runner`` (the command) -> ``plan`` (this) -> ``scheduler`` (when each cell starts) -> ``launchers`` (where) ->
``cell`` (how one cell runs).

Layout under ``<output_dir>/<name>/``::

    pretext/<method>/seed<k>/            record.json, checkpoints/last.pt, config.yaml, tensorboard/, features/
    probe/<probe>/<method>/seed<k>/      record.json, ...
    tables/                              table.md, table.csv, table.tex, figure.png, layers.png, delta.png, pretext.png
    bench.yaml                           the resolved bench config (an earlier, different one is kept beside it)
    .bench.lock                          held while a bench runs in this folder
    logs/, submitit/                     the output of cells run by worker processes, of submitit jobs

A folder never mixes settings: before anything runs, every started cell's settings (``ssl_ctx.settings``, from
its record or its ``config.yaml``) are compared with those this bench config gives it. A difference stops the
bench with one line naming the cell and the first differing key, unless ``replace_changed`` moves the changed
cells (and the probes of a changed pretext cell) aside to ``<folder>.replaced-<time>/`` to be recomputed.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssl_ctx.config import Config, config_to_dict, load_config, read_yaml, save_config
from ssl_ctx.errors import UserError, suggest, warn
from ssl_ctx.files import output_errors
from ssl_ctx.results.paper import PAPER_TASK_NAMES
from ssl_ctx.results.records import RECORD_NAME
from ssl_ctx.settings import (
    describe_difference,
    first_difference,
    flatten,
    record_identity,
    settings_hash,
    settings_of,
    upstream_of,
)

ERROR_NAME = "error.json"
_PROBE_KEYS = ("config", "metric", "tables", "paper")  # keys of a probe entry that are not config overrides


@dataclass(frozen=True)
class Cell:
    """One run of the matrix: a pretext run (probe is None) or a probe on a method's encoder."""

    method: str
    seed: int
    probe: str | None = None

    def run_dir(self, bench_dir: Path) -> Path:
        if self.probe is None:
            return bench_dir / "pretext" / self.method / f"seed{self.seed}"
        return bench_dir / "probe" / self.probe / self.method / f"seed{self.seed}"

    def label(self) -> str:
        return f"{self.probe or 'pretext'} / {self.method} / seed {self.seed}"

    @property
    def pretext(self) -> Cell:
        """The pretext cell whose encoder this cell reads (itself for a pretext cell)."""
        return Cell(self.method, self.seed)

    def checkpoint(self, bench_dir: Path) -> Path:
        return self.pretext.run_dir(bench_dir) / "checkpoints" / "last.pt"


def configs_root(bench_config_path: str | Path | None) -> Path:
    """Relative config paths in a bench config are relative to the configs/ folder holding it."""
    if bench_config_path is None:
        return Path("configs")
    path = Path(bench_config_path).resolve()
    return path.parent.parent if path.parent.name == "bench" else path.parent


def _resolve(path: str, root: Path) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() or candidate.exists() else root / candidate


def pretext_config(bench: Config, cell: Cell, root: Path) -> Config:
    if cell.method not in bench.bench.methods:
        raise UserError(f"bench method '{cell.method}' is not in bench.methods")
    entry = dict(bench.bench.methods[cell.method])
    config_path = entry.pop("config", bench.bench.pretext_config)  # a method may start from its own pretext config
    overrides = {**bench.bench.pretext_overrides, **entry,
                 "train.seed": cell.seed, "output_dir": str(cell.run_dir(bench.run_dir).parent),
                 "name": cell.run_dir(bench.run_dir).name,
                 "tags": {"bench": bench.name, "method": cell.method, "seed": cell.seed, "stage": "pretext"}}
    return load_config(_resolve(config_path, root), overrides)


def probe_config(bench: Config, cell: Cell, root: Path, checkpoint: Path) -> Config:
    entry = dict(bench.bench.probes[cell.probe])
    if "config" not in entry:
        raise UserError(f"bench probe '{cell.probe}' needs a 'config' key naming its probe config file")
    overrides = {**bench.bench.probe_overrides,
                 **{key: value for key, value in entry.items() if key not in _PROBE_KEYS}}
    # The probe rebuilds the encoder its method's pretext run trained (a bench may compare architectures).
    trained = pretext_config(bench, cell.pretext, root).model
    overrides.update({"model.encoder": trained.encoder, "model.encoder_options": dict(trained.encoder_options)})
    overrides.update({"probe.init": str(checkpoint), "train.seed": cell.seed,
                      "output_dir": str(cell.run_dir(bench.run_dir).parent), "name": cell.run_dir(bench.run_dir).name,
                      "tags": {"bench": bench.name, "method": cell.method, "seed": cell.seed, "stage": "probe",
                               "probe": cell.probe, "metric": entry.get("metric"),
                               **({"tables": dict(entry["tables"])} if entry.get("tables") else {}),
                               **({"paper": entry["paper"]} if entry.get("paper") else {})}})
    return load_config(_resolve(entry["config"], root), overrides)


def cells(bench: Config) -> list[Cell]:
    """Pretext cells first for each seed, then that seed's probes: early seeds give a complete table soonest."""
    if not bench.bench.methods or not bench.bench.probes:
        raise UserError("a bench config needs bench.methods and bench.probes; see configs/bench/quick.yaml")
    for name, entry in bench.bench.probes.items():
        tables = entry.get("tables") if isinstance(entry, dict) else None
        if tables is not None and not (isinstance(tables, dict) and tables
                                       and all(isinstance(v, str) for v in tables.values())):
            raise UserError(f"bench probe '{name}': tables must map table sections to metrics, e.g. "
                            f"{{classification: top1, localisation: map50}}, not {tables!r}")
        paper = entry.get("paper") if isinstance(entry, dict) else None
        if paper is not None and paper not in PAPER_TASK_NAMES:
            raise UserError(f"bench probe '{name}': paper '{paper}' is no column of the paper's Table 2"
                            f"{suggest(str(paper), PAPER_TASK_NAMES)}; known: {', '.join(PAPER_TASK_NAMES)}")
    for pair in bench.bench.comparisons:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or any(m not in bench.bench.methods for m in pair):
            raise UserError(f"bench.comparisons entry {pair!r} must be [method, other method], both among "
                            f"bench.methods ({', '.join(bench.bench.methods)})")
    for method, baseline in bench.bench.baselines.items():
        if method not in bench.bench.methods or baseline not in bench.bench.methods:
            raise UserError(f"bench.baselines entry {method}: {baseline} must map a method to its baseline, both "
                            f"among bench.methods ({', '.join(bench.bench.methods)})")
    order = []
    for seed in bench.bench.seeds:
        order += [Cell(method, seed) for method in bench.bench.methods]
        order += [Cell(method, seed, probe) for probe in bench.bench.probes for method in bench.bench.methods]
    return order


def check_method_options(bench: Config, root: Path) -> None:
    """Refuse, before any cell runs, a bench method whose ``method.options`` its pretext method does not declare
    or types otherwise (one line naming the bench method). Only the method's class is needed, no network."""
    from ssl_ctx.registry import PRETEXT_METHODS

    for method in bench.bench.methods:
        config = pretext_config(bench, Cell(method, next(iter(bench.bench.seeds), 0)), root)
        try:
            PRETEXT_METHODS.get(config.method.name).resolve_options(config.method.options)
        except UserError as err:
            raise UserError(f"bench method '{method}': {err}") from None


# ------------------------------------------------------------------------------------- same settings


def expected_settings(bench: Config, cell: Cell, root: Path) -> dict[str, Any]:
    """The settings this bench config gives ``cell`` (a probe names its pretext cell's settings hash)."""
    if cell.probe is None:
        return settings_of(config_to_dict(pretext_config(bench, cell.pretext, root)), kind="pretext")
    upstream = settings_hash(expected_settings(bench, cell.pretext, root))
    config = probe_config(bench, cell, root, cell.checkpoint(bench.run_dir))
    return settings_of(config_to_dict(config), upstream=upstream, kind="probe")


def started_settings(run_dir: Path) -> tuple[dict[str, Any], bool] | None:
    """(settings, comparable init) of a cell that has started: from its record when finished, else from the
    ``config.yaml`` its run wrote first; None when it has not started. A record that cannot be read is kept as
    ``record.json.unreadable`` with a warning, and the cell counts as unfinished (it runs again)."""
    record_path = run_dir / RECORD_NAME
    if record_path.exists():
        try:
            record = json.loads(record_path.read_text())
            if not isinstance(record, dict):
                raise ValueError(f"a JSON {type(record).__name__}, not an object")
            return record_identity(record)
        except (OSError, ValueError) as err:
            kept = record_path.with_name(RECORD_NAME + ".unreadable")
            os.replace(record_path, kept)
            warn(f"{record_path} cannot be read ({' '.join(str(err).split())[:120]}); kept as {kept.name}, and "
                 f"the cell runs again")
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        return None
    config = read_yaml(config_path)
    is_probe = (config.get("tags") or {}).get("stage") == "probe"
    upstream = upstream_of((config.get("probe") or {}).get("init", "")) if is_probe else None
    settings = settings_of(config, upstream=upstream, kind="probe" if is_probe else "pretext")
    return settings, not is_probe or upstream is not None


def changed_cells(bench: Config, plan: list[Cell], root: Path) -> list[tuple[Cell, str]]:
    """Every started cell whose settings differ from the bench config's, with the first difference."""
    changed = []
    for cell in plan:
        started = started_settings(cell.run_dir(bench.run_dir))
        if started is None:
            continue
        settings, comparable = started
        skip = () if comparable else ("probe.init",)
        difference = first_difference(settings, expected_settings(bench, cell, root), skip)
        if difference is not None:
            changed.append((cell, describe_difference(difference)))
    return changed


def move_aside(bench_dir: Path, plan: list[Cell], changed: list[Cell]) -> Path:
    """Move the folders of ``changed`` cells, and of the probes reading a changed pretext cell, to
    ``<bench_dir>.replaced-<time>/`` (same layout); nothing is deleted. Returns that folder."""
    pretexts = {cell for cell in changed if cell.probe is None}
    moving = [cell for cell in plan if cell in changed or (cell.probe and cell.pretext in pretexts)]
    target = bench_dir.with_name(f"{bench_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    with output_errors(target.parent):
        for cell in moving:
            source = cell.run_dir(bench_dir)
            if source.exists():
                destination = cell.run_dir(target)
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, destination)
    return target


def check_settings(bench: Config, plan: list[Cell], root: Path, replace_changed: bool) -> None:
    """Refuse (one line) or, with ``replace_changed``, move aside the cells started with other settings."""
    changed = changed_cells(bench, plan, root)
    if not changed:
        return
    cell, difference = changed[0]
    if not replace_changed:
        raise UserError(f"bench folder '{bench.run_dir}' holds {len(changed)} cell(s) made with other settings, "
                        f"first {cell.label()} ({difference}); pass --replace-changed to move them aside and "
                        f"recompute them, or choose another name=...")
    target = move_aside(bench.run_dir, plan, [cell for cell, _ in changed])
    print(f"bench: {len(changed)} cell(s) made with other settings (first {cell.label()}: {difference}) moved "
          f"to {target} with the probes that read them; they run again")


def save_bench_config(bench: Config) -> Path:
    """Write ``bench.yaml``; a different one already there is kept as ``bench-<time>.yaml``, and said so."""
    path = bench.run_dir / "bench.yaml"
    if path.exists():
        previous = read_yaml(path)
        difference = first_difference(flatten(previous), flatten(config_to_dict(bench)))
        if difference is None:
            return path
        kept = path.with_name(f"bench-{time.strftime('%Y%m%d-%H%M%S')}.yaml")
        os.replace(path, kept)
        print(f"bench: the bench config changed ({describe_difference(difference)}); the previous one is kept as "
              f"{kept}")
    return save_config(bench, path)
