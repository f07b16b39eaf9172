"""`ssl-ctx bench`: the matrix of pretext methods x probes x seeds, one resumable cell at a time.

Layout under ``<output_dir>/<name>/``::

    pretext/<method>/seed<k>/            record.json, checkpoints/last.pt, config.yaml, tensorboard/
    probe/<probe>/<method>/seed<k>/      record.json, ...
    tables/                              table.md, table.csv, table.tex, figure.png
    bench.yaml                           the resolved bench config (an earlier, different one is kept beside it)
    .bench.lock                          held while a bench runs in this folder
    logs/, submitit/                     the output of cells run by worker processes, of submitit jobs

A cell is finished when its ``record.json`` exists (records are written atomically, last). Re-running the
bench skips finished cells and resumes unfinished ones from their checkpoints; a cell that fails writes
``error.json`` with the error and the bench goes on with the others (it is retried on the next run).
By default the cells run one after another in the bench process; ``--workers`` and ``--launcher`` run them in
parallel, each probe after its pretext cell, in worker processes or submitit jobs (``ssl_ctx.bench.scheduler``).

A folder never mixes settings: before anything runs, every started cell's settings (``ssl_ctx.settings``, from
its record or its ``config.yaml``) are compared with those this bench config gives it. A difference stops the
bench with one line naming the cell and the first differing key, unless ``replace_changed`` moves the changed
cells (and the probes of a changed pretext cell) aside to ``<folder>.replaced-<time>/`` to be recomputed.
"""
from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_ctx.config import Config, config_to_dict, load_config, read_yaml, save_config
from ssl_ctx.errors import UserError, warn
from ssl_ctx.files import exclusive_lock, output_errors, write_json_atomic
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

if TYPE_CHECKING:
    from ssl_ctx.bench.launchers import Launch

ERROR_NAME = "error.json"
_PROBE_KEYS = ("config", "metric")  # keys of a probe entry that are not config overrides


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
    overrides = {**bench.bench.pretext_overrides, **bench.bench.methods[cell.method],
                 "train.seed": cell.seed, "output_dir": str(cell.run_dir(bench.run_dir).parent),
                 "name": cell.run_dir(bench.run_dir).name,
                 "tags": {"bench": bench.name, "method": cell.method, "seed": cell.seed, "stage": "pretext"}}
    return load_config(_resolve(bench.bench.pretext_config, root), overrides)


def probe_config(bench: Config, cell: Cell, root: Path, checkpoint: Path) -> Config:
    entry = dict(bench.bench.probes[cell.probe])
    if "config" not in entry:
        raise UserError(f"bench probe '{cell.probe}' needs a 'config' key naming its probe config file")
    overrides = {**bench.bench.probe_overrides,
                 **{key: value for key, value in entry.items() if key not in _PROBE_KEYS}}
    overrides.update({"probe.init": str(checkpoint), "train.seed": cell.seed,
                      "output_dir": str(cell.run_dir(bench.run_dir).parent), "name": cell.run_dir(bench.run_dir).name,
                      "tags": {"bench": bench.name, "method": cell.method, "seed": cell.seed, "stage": "probe",
                               "probe": cell.probe, "metric": entry.get("metric")}})
    return load_config(_resolve(entry["config"], root), overrides)


def cells(bench: Config) -> list[Cell]:
    """Pretext cells first for each seed, then that seed's probes: early seeds give a complete table soonest."""
    if not bench.bench.methods or not bench.bench.probes:
        raise UserError("a bench config needs bench.methods and bench.probes; see configs/bench/quick.yaml")
    order = []
    for seed in bench.bench.seeds:
        order += [Cell(method, seed) for method in bench.bench.methods]
        order += [Cell(method, seed, probe) for probe in bench.bench.probes for method in bench.bench.methods]
    return order


def run_cell(bench: Config, cell: Cell, root: Path, deadline: float | None = None) -> str:
    """Run one cell unless its record exists. Returns 'done', 'skipped' or 'failed'.

    ``TimeLimitReached`` passes through: the cell has checkpointed and the next run resumes it.
    """
    from ssl_ctx.engine.trainer import TimeLimitReached
    from ssl_ctx.pretext.run import run_pretrain
    from ssl_ctx.probes import run_probe

    run_dir = cell.run_dir(bench.run_dir)
    if (run_dir / RECORD_NAME).exists():
        return "skipped"
    try:
        if cell.probe is None:
            run_pretrain(pretext_config(bench, cell, root), resume=True, deadline=deadline)
        else:
            checkpoint = cell.checkpoint(bench.run_dir)
            if not (checkpoint.parent.parent / RECORD_NAME).exists():
                raise UserError(f"pretext cell {cell.method}/seed{cell.seed} has not finished; see its error.json")
            run_probe(probe_config(bench, cell, root, checkpoint), resume=True, deadline=deadline)
    except (KeyboardInterrupt, TimeLimitReached):
        raise
    except Exception as err:  # noqa: BLE001 - one failing cell must not stop the others
        write_cell_error(bench.run_dir, cell, f"{type(err).__name__}: {err}", traceback.format_exc())
        print(f"bench: cell {cell.label()} failed: {type(err).__name__}: {err} (see {run_dir / ERROR_NAME})")
        return "failed"
    (run_dir / ERROR_NAME).unlink(missing_ok=True)
    return "done"


def write_cell_error(bench_dir: Path, cell: Cell, error: str, details: str) -> Path:
    """Write the cell's ``error.json``: ``error`` is one line, ``details`` the traceback or the log's tail."""
    return write_json_atomic(cell.run_dir(bench_dir) / ERROR_NAME, {
        "cell": cell.label(), "error": error, "traceback": details, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


# ------------------------------------------------------------------------------------- same settings


def expected_settings(bench: Config, cell: Cell, root: Path) -> dict[str, Any]:
    """The settings this bench config gives ``cell`` (a probe names its pretext cell's settings hash)."""
    if cell.probe is None:
        return settings_of(config_to_dict(pretext_config(bench, cell.pretext, root)))
    upstream = settings_hash(expected_settings(bench, cell.pretext, root))
    config = probe_config(bench, cell, root, cell.checkpoint(bench.run_dir))
    return settings_of(config_to_dict(config), upstream=upstream)


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
    return settings_of(config, upstream=upstream), not is_probe or upstream is not None


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


# -------------------------------------------------------------------------------------------- running


def run_bench(bench: Config, config_path: str | Path | None = None, overrides: list[str] | None = None,
              stop_after: float | None = None, replace_changed: bool = False, launch: Launch | None = None) -> bool:
    """Run every cell of ``bench`` (skipping finished ones), then write and print the comparison table.

    ``stop_after`` (seconds) makes a resumable piece: no cell starts after it, and a training cell running at
    that moment checkpoints and stops. ``replace_changed``: move aside cells started with other settings
    instead of refusing (module docstring). ``launch``: where the cells run; by default one after another in this
    process, else in parallel in worker processes or submitit jobs (``ssl_ctx.bench.scheduler``). Only one bench
    runs in a folder at a time. Returns True when every cell has a record (the table is then written).
    """
    from ssl_ctx.bench.launchers import Launch

    launch = launch or Launch()
    launch.check()
    command = " ".join(["ssl-ctx bench", str(config_path or ""), *(overrides or [])]).strip()
    with exclusive_lock(bench.run_dir / ".bench.lock", f"bench folder '{bench.run_dir}'", holder=command):
        return _run_locked(bench, config_path, command, stop_after, replace_changed, launch)


def _run_locked(bench: Config, config_path: str | Path | None, command: str, stop_after: float | None,
                replace_changed: bool, launch: Launch) -> bool:
    from ssl_ctx.results.tables import table_command

    root = configs_root(config_path)
    plan = cells(bench)
    check_settings(bench, plan, root, replace_changed)
    save_bench_config(bench)
    started = time.time()
    deadline = started + stop_after if stop_after is not None else None
    from ssl_ctx.bench.launchers import make_launcher
    from ssl_ctx.bench.scheduler import run_plan

    launcher = make_launcher(launch, bench, root, deadline)
    counts = run_plan(bench, plan, launcher, deadline, BenchProgress(plan, launcher.slots or 1))
    if counts is None:
        return False
    elapsed = time.time() - started
    not_run = f", {counts['not run']} not run (their pretext cell failed)" if counts.get("not run") else ""
    print(f"bench: {counts['done']} cells run, {counts['skipped']} already finished, {counts['failed']} failed"
          f"{not_run} in {elapsed:.0f} s")
    table_command(bench.run_dir, baseline=bench.bench.baseline, command=command, overwrite=True)
    return counts["failed"] + counts.get("not run", 0) == 0


class BenchProgress:
    """The bench's overall progress line: cell number, elapsed time and an estimate of the time left.

    The estimate adds, for every cell still to run, the mean duration of the cells of its kind that ran in this
    process (kind = its probe, or the pretext of its method), divided by the number of cells running at once.
    Kinds differ by minutes (a context encoder's pretext) to a second (random init's), so there is no estimate
    until every kind still to run has been timed once: after the first seed, as cells run seed by seed.
    """

    def __init__(self, plan: list[Cell], parallel: int = 1) -> None:
        self.plan = plan
        self.parallel = parallel
        self.started = time.time()
        self.durations: dict[str, list[float]] = {}
        self.finished: set[Cell] = set()

    @staticmethod
    def kind(cell: Cell) -> str:
        return cell.probe or f"pretext {cell.method}"

    def after(self, cell: Cell, outcome: str, seconds: float) -> None:
        self.finished.add(cell)
        if outcome == "done":
            self.durations.setdefault(self.kind(cell), []).append(seconds)

    def remaining_seconds(self) -> float | None:
        left = [cell for cell in self.plan if cell not in self.finished]
        if any(self.kind(cell) not in self.durations for cell in left):
            return None
        return sum(_mean(self.durations[self.kind(cell)]) for cell in left) / self.parallel

    def before(self, number: int, cell: Cell, event: str = "") -> str:
        """The line printed as cell ``number`` starts; ``event`` follows its label (e.g. `` started on worker 2``)."""
        elapsed = time.time() - self.started
        left = self.remaining_seconds()
        estimate = f", about {_duration(left)} left" if left is not None else ", time left known after the first seed"
        return f"bench [{number}/{len(self.plan)}] {cell.label()}{event} ({_duration(elapsed)} elapsed{estimate})"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
