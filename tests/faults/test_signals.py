"""Fault class: a command stopped by a signal ends the way the shell convention says (128 + the signal's number:
130 for Ctrl-C, 143 for SIGTERM), after the same cleanup and with one line."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.faults.conftest import the_line

# A command that waits where the bench waits for its cells: inside the bench's SIGTERM handling.
WAITING_COMMAND = """
import sys, time
import ssl_ctx.cli as cli
from ssl_ctx.bench.scheduler import _sigterm_as_interrupt

def wait(args):
    with _sigterm_as_interrupt():
        print("waiting", flush=True)
        time.sleep(60)

setattr(cli, sys.argv[1], wait)
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("sent, status, ending", [
    (signal.SIGTERM, 143, "terminated (SIGTERM)"),
    (signal.SIGINT, 130, "interrupted"),
])
@pytest.mark.parametrize("handler, argv, kept", [
    # a verb with --resume continues from its checkpoints; a data prepare continues with the same command and says
    # so itself
    ("cmd_pretrain", ["pretrain", "any.yaml"], "; checkpoints written so far are kept (continue with --resume)"),
    ("cmd_data_prepare", ["data", "prepare", "cifar10"], ""),
])
def test_sigterm_exits_143_and_ctrl_c_130(sent, status, ending, handler, argv, kept):
    process = subprocess.Popen([sys.executable, "-c", WAITING_COMMAND, handler, *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "waiting\n"
        process.send_signal(sent)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == status, err[-2000:]
    assert the_line(err) == f"ssl-ctx: {ending}{kept}"
    assert "Traceback" not in err
