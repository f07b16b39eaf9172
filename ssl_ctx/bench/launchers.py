"""Where the bench (:mod:`ssl_ctx.bench.scheduler`) runs its cells: in its own process, worker processes, or
submitit jobs.

* :class:`InProcess` (the default): the cells one after another in the bench process, each with its output on the
  terminal.
* :class:`WorkerProcesses` (``--workers N`` or ``--workers gpus``): each cell runs in a fresh interpreter
  (``python -m ssl_ctx.bench.worker``), at most N at once. A fresh interpreter costs a second or two of start-up,
  against cells of minutes, and buys isolation: no torch state, CUDA context or memory passes from one cell to the
  next, a crash ends one cell only, and stopping a cell is stopping its process. The workers share the cores: each
  runs torch with ``max(1, cores // N)`` threads. ``gpus`` starts one worker per visible GPU, and worker i sees
  only GPU i (``CUDA_VISIBLE_DEVICES``); with a number, the workers see the GPUs the bench sees. A cell's output
  goes to ``<bench folder>/logs/<cell>.log`` (appended by each try) instead of the terminal, where the lines of
  several workers would interleave.
* :class:`SubmititJobs` (``--launcher slurm`` or ``--launcher local``): one submitit job per cell, or per method and
  seed with ``--slurm-group pretext`` (the pretext cell, then its probes, in one job), through
  ``submitit.AutoExecutor(cluster="slurm")`` or ``submitit.LocalExecutor`` (jobs on this machine, on the CPU, at
  most ``--workers`` at once). submitit's files and logs go to ``<bench folder>/submitit/``. A SLURM job stops its
  cell a little before the job's time limit (the cell checkpoints), so the next run of the bench resumes it.

All run :func:`ssl_ctx.bench.cell.run_cells`. A worker or job that dies without reporting (killed, out of
memory) leaves each of its unfinished cells an ``error.json`` written here from its exit status or exception and
its log.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssl_ctx.bench.cell import run_cells, write_cell_error
from ssl_ctx.bench.plan import Cell
from ssl_ctx.bench.worker import STATUS
from ssl_ctx.config import Config
from ssl_ctx.host import cpu_cores
from ssl_ctx.errors import UserError, first_line
from ssl_ctx.files import output_errors
from ssl_ctx.results.records import RECORD_NAME

SLURM_MINUTES = 240  # default time limit of a SLURM job; a cell that needs longer resumes in the next run
LOCAL_MINUTES = 60 * 24 * 365  # no time limit for a LocalExecutor job (submitit's default kills it after 2 min)
STOP_SECONDS = 30  # how long a stopped worker may take to clean up before it is killed
_OUTCOME_OF_STATUS = {status: outcome for outcome, status in STATUS.items() if outcome != "skipped"}


@dataclass(frozen=True)
class Launch:
    """How ``ssl-ctx bench`` runs its cells (its --workers, --launcher and --slurm-* options). The default runs
    them one after another in the bench process."""

    workers: str | None = None  # "N" or "gpus"; with a launcher, how many jobs run at once
    launcher: str | None = None  # None: worker processes; "local" or "slurm": submitit jobs
    slurm_partition: str | None = None
    slurm_gpus_per_job: int | None = None
    slurm_cpus_per_job: int | None = None
    slurm_time_minutes: int | None = None
    slurm_group: str | None = None  # "cell" (default) or "pretext": one job per method and seed

    @property
    def in_process(self) -> bool:
        """The sequential bench: every cell in the bench process, one after another."""
        return self.launcher is None and self.workers in (None, "1")

    def check(self) -> None:
        """Refuse bad options in one line, before the bench locks or writes anything."""
        workers = self.workers
        if workers is not None and workers != "gpus" and not (workers.isdigit() and int(workers) >= 1):
            raise UserError(f"--workers must be a number of worker processes (1 or more) or 'gpus', not '{workers}'")
        slurm_only = {"--slurm-partition": self.slurm_partition, "--slurm-gpus-per-job": self.slurm_gpus_per_job,
                      "--slurm-cpus-per-job": self.slurm_cpus_per_job,
                      "--slurm-time-minutes": self.slurm_time_minutes}
        given = [flag for flag, value in slurm_only.items() if value is not None]
        if given and self.launcher != "slurm":
            raise UserError(f"{given[0]} is an option of --launcher slurm; add --launcher slurm or leave it out")
        if self.slurm_group is not None and self.launcher is None:
            raise UserError("--slurm-group needs --launcher slurm or --launcher local (worker processes run one "
                            "cell each)")
        for flag, least in (("--slurm-gpus-per-job", 0), ("--slurm-cpus-per-job", 1), ("--slurm-time-minutes", 1)):
            if slurm_only[flag] is not None and slurm_only[flag] < least:
                raise UserError(f"{flag} must be {least} or more, not {slurm_only[flag]}")
        if workers == "gpus" and self.launcher is not None:
            raise UserError("--workers gpus starts one worker process per GPU of this machine; with --launcher give "
                            "the number of jobs at once (--workers N), and SLURM jobs their GPUs with "
                            "--slurm-gpus-per-job")
        if workers == "gpus" and not visible_gpus():
            raise UserError("--workers gpus found no GPU on this machine (torch.cuda.device_count() is 0); use "
                            "--workers N for N CPU worker processes")
        needed = ("sbatch", "srun") if self.launcher == "slurm" else ()
        missing = [name for name in needed if shutil.which(name) is None]
        if missing:
            raise UserError(f"--launcher slurm needs SLURM's sbatch and srun on PATH, and {missing[0]} is not there; "
                            f"run the bench on a SLURM login node, or use --launcher local or --workers N here")


def make_launcher(launch: Launch, bench: Config, root: Path, deadline: float | None) -> Any:
    """The launcher (``scheduler.Launcher``) of a checked ``launch``."""
    if launch.in_process:
        return InProcess(bench, root, deadline)
    if launch.launcher is None:
        return WorkerProcesses(bench, root, deadline, launch.workers)
    return SubmititJobs(bench, root, deadline, launch)


def visible_gpus() -> list[str]:
    """The GPUs this process sees, each as ``CUDA_VISIBLE_DEVICES`` names it for a child process."""
    import torch

    count = torch.cuda.device_count()
    listed = [name.strip() for name in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if name.strip()]
    return listed[:count] if listed else [str(index) for index in range(count)]


def died(bench_dir: Path, cell: Cell, reason: str, details: str) -> str:
    """The outcome of a cell whose worker or job ended without reporting it: 'done' when its record exists, else
    'failed' with an ``error.json`` saying why."""
    if (cell.run_dir(bench_dir) / RECORD_NAME).exists():
        return "done"
    write_cell_error(bench_dir, cell, reason, details)
    return "failed"


@dataclass
class _Unit:
    cells: list[Cell]
    where: str | None = None  # in the bench process: nothing to say


class InProcess:
    """The sequential bench: a unit runs in the bench process when the scheduler first asks whether it has
    finished, so its progress line is printed before it runs."""

    slots = 1
    group = False
    poll_seconds = 0.0

    def __init__(self, bench: Config, root: Path, deadline: float | None) -> None:
        self.bench, self.root, self.deadline = bench, root, deadline

    def start(self, unit: list[Cell], slot: int) -> _Unit:
        return _Unit(unit)

    def finished(self, handle: _Unit) -> list[str]:
        return run_cells(self.bench, handle.cells, self.root, self.deadline)

    def stop(self, handles: list[_Unit]) -> None:
        """Nothing runs elsewhere: an interrupted cell has already stopped with the bench."""


@dataclass
class _Worker:
    process: subprocess.Popen
    cell: Cell
    log: Path
    where: str


class WorkerProcesses:
    """``--workers N|gpus``: one cell per worker process (module docstring)."""

    group = False
    poll_seconds = 0.2

    def __init__(self, bench: Config, root: Path, deadline: float | None, workers: str) -> None:
        self.bench, self.root, self.deadline = bench, root, deadline
        self.gpus = visible_gpus() if workers == "gpus" else []
        self.slots = len(self.gpus) or int(workers)
        self.threads = max(1, cpu_cores() // self.slots)

    def start(self, unit: list[Cell], slot: int) -> _Worker:
        (cell,) = unit
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot]
        log = self.bench.run_dir / "logs" / f"{cell.probe or 'pretext'}.{cell.method}.seed{cell.seed}.log"
        with output_errors(log.parent):
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a", encoding="utf-8") as output:
                # A session of its own: Ctrl-C reaches the bench only, which then stops the workers (stop()).
                process = subprocess.Popen([sys.executable, "-m", "ssl_ctx.bench.worker"], stdin=subprocess.PIPE,
                                           stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        arguments = {"bench": self.bench, "cells": [cell], "root": self.root, "deadline": self.deadline,
                     "threads": self.threads}
        with contextlib.suppress(BrokenPipeError):  # it died at start: its exit status says so
            process.stdin.write(pickle.dumps(arguments))
            process.stdin.flush()
        return _Worker(process, cell, log, f"worker {slot + 1}")

    def finished(self, worker: _Worker) -> list[str] | None:
        status = worker.process.poll()
        if status is None:
            return None
        with contextlib.suppress(BrokenPipeError):
            worker.process.stdin.close()
        outcome = _OUTCOME_OF_STATUS.get(status)
        if outcome is None:
            outcome = died(self.bench.run_dir, worker.cell, f"its worker process exited with status {status}",
                           _tail(worker.log))
        return [outcome]

    def stop(self, workers: list[_Worker]) -> None:
        """Close each worker's stdin (it interrupts its cell, which cleans up); kill those still running after
        ``STOP_SECONDS``."""
        for worker in workers:
            with contextlib.suppress(BrokenPipeError):
                worker.process.stdin.close()
        end = time.time() + STOP_SECONDS
        for worker in workers:
            try:
                worker.process.wait(timeout=max(0.0, end - time.time()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


@dataclass
class _Job:
    job: Any  # submitit.Job
    unit: list[Cell]
    where: str


class SubmititJobs:
    """``--launcher slurm|local``: one submitit job per unit (module docstring)."""

    poll_seconds = 1.0

    def __init__(self, bench: Config, root: Path, deadline: float | None, launch: Launch) -> None:
        import submitit

        self.bench, self.root, self.deadline = bench, root, deadline
        self.group = launch.slurm_group == "pretext"
        self.local = launch.launcher == "local"
        folder = bench.run_dir / "submitit"
        if self.local:
            self.executor = submitit.LocalExecutor(folder=folder)
            self.executor.update_parameters(timeout_min=LOCAL_MINUTES)
            self.slots = int(launch.workers or 1)
            self.threads = max(1, cpu_cores() // self.slots)
            self.job_seconds = None
        else:
            minutes = launch.slurm_time_minutes or SLURM_MINUTES
            self.executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
            self.executor.update_parameters(timeout_min=minutes, gpus_per_node=launch.slurm_gpus_per_job,
                                            cpus_per_task=launch.slurm_cpus_per_job,
                                            slurm_partition=launch.slurm_partition)
            self.slots = int(launch.workers) if launch.workers else None  # the cluster queues the rest
            self.threads = launch.slurm_cpus_per_job
            self.job_seconds = minutes * 60 - min(600, minutes * 6)  # 10 % of the limit (at most 10 min) to stop

    def start(self, unit: list[Cell], slot: int) -> _Job:
        from submitit.core.utils import FailedSubmissionError

        head = unit[0]
        self.executor.update_parameters(name=f"{self.bench.name}.{head.probe or 'pretext'}.{head.method}."
                                             f"seed{head.seed}")
        try:
            with output_errors(self.executor.folder):
                job = self.executor.submit(run_cells, self.bench, unit, self.root, self.deadline, self.threads,
                                           self.job_seconds)
        except (FailedSubmissionError, subprocess.CalledProcessError) as err:
            raise UserError(f"submitting the job of {head.label()} failed; check the --slurm-* options, and the job "
                            f"file under {self.executor.folder}", detail=first_line(err)) from None
        return _Job(job, unit, f"job {job.job_id}")

    def finished(self, handle: _Job) -> list[str] | None:
        if not handle.job.done():
            return None
        try:
            return handle.job.result()
        except Exception as err:  # noqa: BLE001 - the job died (killed, out of memory, past its time limit)
            reason = f"submitit job {handle.job.job_id} ended without a result: {first_line(err)}"
            return [died(self.bench.run_dir, cell, reason, str(err)) for cell in handle.unit]

    def stop(self, handles: list[_Job]) -> None:
        for handle in handles:
            with contextlib.suppress(Exception):  # one that has just ended cannot be cancelled
                handle.job.cancel(check=False)
        end = time.time() + STOP_SECONDS
        while self.local and time.time() < end and not all(handle.job.done() for handle in handles):
            time.sleep(0.2)  # a local job interrupts its cell, which cleans up, before the bench exits


def _tail(log: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""
