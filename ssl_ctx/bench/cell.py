"""How one bench cell runs, wherever it runs (in the bench process, a worker process or a submitit job): its
record, its ``error.json`` on failure, its checkpoints for resuming, and the encoder's cached features removed once
every probe of that encoder has its record.
"""
from __future__ import annotations

import math
import shutil
import time
import traceback
from pathlib import Path

from ssl_ctx.bench.plan import ERROR_NAME, Cell, pretext_config, probe_config
from ssl_ctx.config import Config
from ssl_ctx.errors import UserError
from ssl_ctx.files import write_json_atomic
from ssl_ctx.results.records import RECORD_NAME

OUTCOMES = ("done", "skipped", "failed", "not run", "stopped")
BLOCKING = ("failed", "not run")  # a probe does not run after its pretext cell ended so


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
    if cell.probe is not None and not bench.bench.keep_features:
        remove_features_when_probed(bench, cell.pretext)
    return "done"


def remove_features_when_probed(bench: Config, pretext: Cell) -> None:
    """Delete the frozen features cached beside ``pretext``'s checkpoint once every probe of the bench has a record
    for that encoder (probes of one encoder on the same images read one copy: classification and localisation)."""
    probes = [Cell(pretext.method, pretext.seed, probe) for probe in bench.bench.probes]
    if all((cell.run_dir(bench.run_dir) / RECORD_NAME).exists() for cell in probes):
        shutil.rmtree(pretext.run_dir(bench.run_dir) / "features", ignore_errors=True)


def write_cell_error(bench_dir: Path, cell: Cell, error: str, details: str) -> Path:
    """Write the cell's ``error.json``: ``error`` is one line, ``details`` the traceback or the log's tail."""
    return write_json_atomic(cell.run_dir(bench_dir) / ERROR_NAME, {
        "cell": cell.label(), "error": error, "traceback": details, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def run_cells(bench: Config, cells: list[Cell], root: Path, deadline: float | None = None,
              threads: int | None = None, job_seconds: float | None = None) -> list[str]:
    """Run ``cells`` one after another in this process: what a worker process or a submitit job does.

    Returns each cell's outcome: ``run_cell``'s ('done', 'skipped', 'failed'), 'stopped' (a time limit came first:
    the cell checkpointed, or never started) or 'not run' (its pretext cell failed just before). ``threads``: torch
    threads of this process. ``job_seconds``: the job's own time limit, which stops a cell as ``deadline`` does.
    """
    import torch

    from ssl_ctx.engine.trainer import TimeLimitReached

    if threads:
        torch.set_num_threads(threads)
    if job_seconds is not None:
        deadline = min(deadline or math.inf, time.time() + job_seconds)
    outcomes: dict[Cell, str] = {}
    for cell in cells:
        if deadline is not None and time.time() >= deadline:
            outcomes[cell] = "stopped"
        elif cell.probe and outcomes.get(cell.pretext) in BLOCKING:
            outcomes[cell] = "not run"
        else:
            try:
                outcomes[cell] = run_cell(bench, cell, root, deadline)
            except TimeLimitReached:
                outcomes[cell] = "stopped"
    return [outcomes[cell] for cell in cells]
