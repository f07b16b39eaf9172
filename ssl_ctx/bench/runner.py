"""`ssl-ctx bench`: the matrix of pretext methods x probes x seeds, one resumable cell at a time.

Layout under ``<output_dir>/<name>/``::

    pretext/<method>/seed<k>/            record.json, checkpoints/last.pt, config.yaml, tensorboard/
    probe/<probe>/<method>/seed<k>/      record.json, ...
    tables/                              table.md, table.csv, table.tex, figure.png
    bench.yaml                           the resolved bench config

A cell is finished when its ``record.json`` exists (records are written atomically, last). Re-running the
bench skips finished cells and resumes unfinished ones from their checkpoints; a cell that fails writes
``error.json`` with the error and the bench goes on with the others (it is retried on the next run).
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from ssl_ctx.config import Config, load_config, save_config
from ssl_ctx.errors import UserError
from ssl_ctx.files import write_json_atomic
from ssl_ctx.results.records import RECORD_NAME

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
            checkpoint = Cell(cell.method, cell.seed).run_dir(bench.run_dir) / "checkpoints" / "last.pt"
            if not (checkpoint.parent.parent / RECORD_NAME).exists():
                raise UserError(f"pretext cell {cell.method}/seed{cell.seed} has not finished; see its error.json")
            run_probe(probe_config(bench, cell, root, checkpoint), resume=True, deadline=deadline)
    except (KeyboardInterrupt, TimeLimitReached):
        raise
    except Exception as err:  # noqa: BLE001 - one failing cell must not stop the others
        write_json_atomic(run_dir / ERROR_NAME, {
            "cell": cell.label(), "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        print(f"bench: cell {cell.label()} failed: {type(err).__name__}: {err} (see {run_dir / ERROR_NAME})")
        return "failed"
    (run_dir / ERROR_NAME).unlink(missing_ok=True)
    return "done"


def run_bench(bench: Config, config_path: str | Path | None = None, overrides: list[str] | None = None,
              stop_after: float | None = None) -> bool:
    """Run every cell of ``bench`` (skipping finished ones), then write and print the comparison table.

    ``stop_after`` (seconds) makes a resumable piece: no cell starts after it, and a training cell running at
    that moment checkpoints and stops. Returns True when every cell has a record (the table is then written).
    """
    from ssl_ctx.engine.trainer import TimeLimitReached
    from ssl_ctx.results.tables import table_command

    root = configs_root(config_path)
    bench_dir = bench.run_dir
    save_config(bench, bench_dir / "bench.yaml")
    plan = cells(bench)
    started = time.time()
    deadline = started + stop_after if stop_after is not None else None
    progress = BenchProgress(plan)
    counts = {"done": 0, "skipped": 0, "failed": 0}
    for number, cell in enumerate(plan, start=1):
        if deadline is not None and time.time() >= deadline:
            print(f"bench: time limit of {stop_after:.0f} s reached before cell {number}/{len(plan)}; "
                  f"run the same command again to continue")
            return False
        print(progress.before(number, cell), flush=True)
        cell_started = time.time()
        try:
            outcome = run_cell(bench, cell, root, deadline)
        except TimeLimitReached as stop:
            print(f"bench: {stop}; run the same command again to continue")
            return False
        progress.after(cell, outcome, time.time() - cell_started)
        counts[outcome] += 1
    elapsed = time.time() - started
    print(f"bench: {counts['done']} cells run, {counts['skipped']} already finished, {counts['failed']} failed "
          f"in {elapsed:.0f} s")
    command = " ".join(["ssl-ctx bench", str(config_path or ""), *(overrides or [])]).strip()
    table_command(bench_dir, baseline=bench.bench.baseline, command=command, overwrite=True)
    return counts["failed"] == 0


class BenchProgress:
    """The bench's overall progress line: cell number, elapsed time and an estimate of the time left.

    The estimate adds, for every cell still to run, the mean duration of the cells of its kind that ran in this
    process (kind = its probe, or the pretext of its method). Kinds differ by minutes (a context encoder's pretext)
    to a second (random init's), so there is no estimate until every kind still to run has been timed once: after
    the first seed, as cells run seed by seed.
    """

    def __init__(self, plan: list[Cell]) -> None:
        self.plan = plan
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
        return sum(_mean(self.durations[self.kind(cell)]) for cell in left)

    def before(self, number: int, cell: Cell) -> str:
        elapsed = time.time() - self.started
        left = self.remaining_seconds()
        estimate = f", about {_duration(left)} left" if left is not None else ", time left known after the first seed"
        return f"bench [{number}/{len(self.plan)}] {cell.label()} ({_duration(elapsed)} elapsed{estimate})"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
