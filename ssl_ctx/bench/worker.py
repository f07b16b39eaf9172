"""`python -m ssl_ctx.bench.worker`: one bench cell in a fresh interpreter, for ``ssl-ctx bench --workers``.

It reads the pickled keyword arguments of :func:`ssl_ctx.bench.cell.run_cells` (one cell) from stdin and
exits with the cell's outcome as its status (``STATUS``). The bench keeps stdin open while the cell runs: its end
(the bench stopping its workers, or dying) interrupts the cell as Ctrl-C would, so only whole files are left.
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import threading

from ssl_ctx.errors import interrupt_status, raise_terminated

STATUS = {"done": 0, "skipped": 0, "failed": 10, "stopped": 11, "not run": 12}


def _interrupt_when_closed() -> None:
    # The raw descriptor: a daemon thread blocked in sys.stdin's buffered read would hold its lock at exit.
    while os.read(sys.stdin.fileno(), 1 << 16):
        pass
    os.kill(os.getpid(), signal.SIGINT)


def main() -> int:
    arguments = pickle.load(sys.stdin.buffer)
    # KeyboardInterrupt on both, even where SIGINT came ignored (a background job): an interrupted cell cleans up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_terminated)
    threading.Thread(target=_interrupt_when_closed, daemon=True).start()
    from ssl_ctx.bench.cell import run_cells

    try:
        (outcome,) = run_cells(**arguments)
    except KeyboardInterrupt as err:
        return interrupt_status(err)
    return STATUS[outcome]


if __name__ == "__main__":
    raise SystemExit(main())
