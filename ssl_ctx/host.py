"""The machine this process runs on, without importing torch: the CPU's model and the cores this process may use.

Torch-free so that ``ssl-ctx data prepare`` (its default number of decoding workers) and the data benchmarks can
ask too; ``ssl_ctx.engine.device`` describes devices with it.
"""
from __future__ import annotations

import contextlib
import os
import platform
import re
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        model = found.group(1).strip() if found else model
    return model


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask, as taskset or a SLURM allocation set it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
