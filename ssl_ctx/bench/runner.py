"""`ssl-ctx bench`: the matrix of pretext methods x probes x seeds, each cell resumable, then the table.

The flow is one way, top-down: this module locks the bench folder and checks its settings (``plan``), hands the
cells to ``scheduler.run_plan`` (which starts each when a slot is free and its pretext cell has finished), which
starts them through a launcher (``launchers``: in this process, worker processes or submitit jobs), which runs
them with ``cell.run_cells``. Then it writes the tables.

A cell is finished when its ``record.json`` exists (records are written atomically, last). Re-running the
bench skips finished cells and resumes unfinished ones from their checkpoints; a cell that fails writes
``error.json`` with the error and the bench goes on with the others (it is retried on the next run).
By default the cells run one after another in the bench process; ``--workers`` (or ``bench.workers``) and
``--launcher`` run them in parallel.
"""
from __future__ import annotations

import time
from pathlib import Path

from ssl_ctx.bench.launchers import Launch, make_launcher
from ssl_ctx.bench.plan import cells, check_method_options, check_settings, configs_root, save_bench_config
from ssl_ctx.bench.progress import BenchProgress
from ssl_ctx.bench.scheduler import run_plan
from ssl_ctx.config import Config
from ssl_ctx.files import exclusive_lock, require_writable


def run_bench(bench: Config, config_path: str | Path | None = None, overrides: list[str] | None = None,
              stop_after: float | None = None, replace_changed: bool = False, launch: Launch | None = None) -> bool:
    """Run every cell of ``bench`` (skipping finished ones), then write and print the comparison table.

    ``stop_after`` (seconds) makes a resumable piece: no cell starts after it, and a training cell running at
    that moment checkpoints and stops. ``replace_changed``: move aside cells started with other settings
    instead of refusing (module docstring). ``launch``: where the cells run; by default one after another in this
    process, else in parallel in worker processes or submitit jobs (``ssl_ctx.bench.scheduler``). Only one bench
    runs in a folder at a time. Returns True when every cell has a record (the table is then written).
    """
    launch = launch or Launch()
    launch.check()
    require_writable(bench.run_dir)
    command = " ".join(["ssl-ctx bench", str(config_path or ""), *(overrides or [])]).strip()
    with exclusive_lock(bench.run_dir / ".bench.lock", f"bench folder '{bench.run_dir}'", holder=command):
        return _run_locked(bench, config_path, command, stop_after, replace_changed, launch)


def _run_locked(bench: Config, config_path: str | Path | None, command: str, stop_after: float | None,
                replace_changed: bool, launch: Launch) -> bool:
    from ssl_ctx.results.tables import table_command

    root = configs_root(config_path)
    plan = cells(bench)
    check_method_options(bench, root)
    check_settings(bench, plan, root, replace_changed)
    save_bench_config(bench)
    started = time.time()
    deadline = started + stop_after if stop_after is not None else None
    launcher = make_launcher(launch, bench, root, deadline)
    counts = run_plan(bench, plan, launcher, deadline, BenchProgress(plan, launcher.slots or 1))
    if counts is None:
        return False
    elapsed = time.time() - started
    not_run = f", {counts['not run']} not run (their pretext cell failed)" if counts.get("not run") else ""
    print(f"bench: {counts['done']} cells run, {counts['skipped']} already finished, {counts['failed']} failed"
          f"{not_run} in {elapsed:.0f} s")
    table_command(bench.run_dir, baseline=bench.bench.baseline, command=command, overwrite=True,
                  comparisons=[tuple(pair) for pair in bench.bench.comparisons], baselines=bench.bench.baselines)
    return counts["failed"] + counts.get("not run", 0) == 0
