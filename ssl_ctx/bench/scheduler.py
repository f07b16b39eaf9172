"""Running the bench's cells: in the bench process one after another, or in worker processes or submitit jobs,
each probe after its pretext cell.

The bench process keeps everything around the cells (the lock, the settings check, ``bench.yaml``, the progress
lines, the table) and hands out *units*: one cell, or a method and seed's pretext cell followed by its probes
(``--slurm-group pretext``). A :mod:`launcher <ssl_ctx.bench.launchers>` runs each unit, in the bench process or in
another, through :func:`run_cells`, which calls :func:`~ssl_ctx.bench.runner.run_cell`: records, errors and
checkpoints are written the same way wherever a cell runs, and resuming works the same.

A unit starts when the launcher has a free slot and, for a probe, once its pretext cell has finished (in this run or
before); a probe whose pretext cell failed is not run. Units start in the bench's order (seed by seed), so early
seeds still complete first. After the ``--stop-after`` deadline no unit starts, and running cells checkpoint at
their next logging step. Ctrl-C or SIGTERM stops every worker or job before the bench exits.
"""
from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

from ssl_ctx.bench.cell import BLOCKING, OUTCOMES
from ssl_ctx.bench.plan import ERROR_NAME, Cell
from ssl_ctx.bench.progress import BenchProgress, duration
from ssl_ctx.config import Config
from ssl_ctx.errors import raise_terminated
from ssl_ctx.results.records import RECORD_NAME


class Launcher(Protocol):
    """Runs units elsewhere (``ssl_ctx.bench.launchers``). A handle has a ``where`` for the progress lines."""

    slots: int | None  # units running at once; None: every ready unit (a cluster queues them)
    group: bool  # one unit per method and seed instead of one per cell
    poll_seconds: float

    def start(self, unit: list[Cell], slot: int) -> Any: ...

    def finished(self, handle: Any) -> list[str] | None:
        """Each cell's outcome once the unit has ended, else None."""

    def stop(self, handles: list[Any]) -> None:
        """End these units now (Ctrl-C): they leave only whole files."""


def units(cells: list[Cell], group: bool) -> list[list[Cell]]:
    """What one worker or job runs, in order: each cell alone, or (``group``) each method and seed's cells, its
    pretext cell first (``cells`` is in the bench's order, where a pretext cell precedes its probes)."""
    if not group:
        return [[cell] for cell in cells]
    groups: dict[Cell, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.pretext, []).append(cell)
    return list(groups.values())


def run_plan(bench: Config, plan: list[Cell], launcher: Launcher, deadline: float | None,
             progress: BenchProgress) -> dict[str, int] | None:
    """Run the unfinished cells of ``plan`` through ``launcher``. Returns how many cells ended each way
    (``OUTCOMES``), or None when a time limit stopped the bench (said so: the same command continues)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    outcome: dict[Cell, str] = {}
    number = {cell: index for index, cell in enumerate(plan, start=1)}

    def settle(cell: Cell, result: str, seconds: float) -> None:
        outcome[cell] = result
        counts[result] += 1
        progress.after(cell, result, seconds)
        if result != "skipped":
            print(f"bench [{number[cell]}/{len(plan)}] {cell.label()} {_ending(bench, cell, result, seconds)}",
                  flush=True)

    for cell in plan:
        if (cell.run_dir(bench.run_dir) / RECORD_NAME).exists():
            settle(cell, "skipped", 0.0)
    waiting = units([cell for cell in plan if cell not in outcome], launcher.group)
    slots = launcher.slots or max(1, len(waiting))
    running: dict[int, tuple[list[Cell], Any, float]] = {}  # slot -> (unit, handle, start time)
    with _sigterm_as_interrupt():
        try:
            while waiting or running:
                for slot, (unit, handle, started) in list(running.items()):
                    results = launcher.finished(handle)
                    if results is not None:
                        del running[slot]
                        for cell, result in zip(unit, results):
                            settle(cell, result, (time.time() - started) / len(unit))
                late = deadline is not None and time.time() >= deadline
                for unit in [] if late else list(waiting):
                    upstream = outcome.get(unit[0].pretext) if unit[0].probe else "done"
                    if upstream in BLOCKING:
                        waiting.remove(unit)
                        for cell in unit:
                            settle(cell, "not run", 0.0)
                    elif upstream in ("done", "skipped") and len(running) < slots:
                        slot = min(set(range(slots)) - set(running))
                        waiting.remove(unit)
                        handle = launcher.start(unit, slot)
                        running[slot] = (unit, handle, time.time())
                        print(progress.before(number[unit[0]], unit[0], _starting(unit, handle)), flush=True)
                if late and not running:
                    break
                if running:
                    time.sleep(launcher.poll_seconds)
        except BaseException:
            launcher.stop([handle for _, handle, _ in running.values()])
            raise
    unstarted = sum(len(unit) for unit in waiting)
    if unstarted or counts["stopped"]:
        print(f"bench: time limit reached: {counts['stopped']} cell(s) stopped (a training cell checkpoints "
              f"first), {unstarted} not started; run the same command again to continue")
        return None
    return counts


def _starting(unit: list[Cell], handle: Any) -> str:
    probes = f" and its {len(unit) - 1} probe cell(s)" if len(unit) > 1 else ""
    return f"{probes} started on {handle.where}" if handle.where else probes


def _ending(bench: Config, cell: Cell, result: str, seconds: float) -> str:
    if result == "not run":
        return "not run: its pretext cell failed"
    if result == "stopped":
        return f"stopped at the time limit after {duration(seconds)}"
    if result == "failed":
        path = cell.run_dir(bench.run_dir) / ERROR_NAME
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            return f"failed after {duration(seconds)}: {json.loads(path.read_text())['error']} (see {path})"
        return f"failed after {duration(seconds)} (see {path})"
    return f"{result} in {duration(seconds)}"


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the bench as Ctrl-C does, so that its workers are stopped first (Python's default dies at once);
    the command then exits with SIGTERM's status, 143."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
