"""How the data layer tells the user what it is doing: status lines and warnings while caches are built.

Everything goes through the ``ssl_ctx.data`` logger, except status lines asked for with ``progress``, which are
written on stderr; both keep a running tqdm progress bar intact. ``counts_text`` formats images per split the
same way in every line that reports them.
"""
from __future__ import annotations

import logging
import sys

from tqdm import tqdm

logger = logging.getLogger("ssl_ctx.data")


def say(message: str, progress: bool) -> None:
    """Status line: on stderr when the caller asked for progress output, otherwise to the log."""
    if progress:
        tqdm.write(message, file=sys.stderr)
    else:
        logger.info(message)


def log_warning(message: str) -> None:
    """A warning to the log, written above a running progress bar."""
    with tqdm.external_write_mode(file=sys.stderr):  # keep a running progress bar intact
        logger.warning(message)


def counts_text(counts: dict[str, int]) -> str:
    """``{"train": 10, "test": 2}`` -> ``"train 10, test 2"``."""
    return ", ".join(f"{split} {count}" for split, count in counts.items())
