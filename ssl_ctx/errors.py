"""User-facing errors: one line that names the bad value and the fix.

The CLI catches :class:`UserError`, prints ``ssl-ctx: error: <message>`` and exits with status 2,
so library code raises it wherever the cause is bad input rather than a bug.
"""
from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user (path, config key, checkpoint, image). The message is one line."""


def warn(message: str) -> None:
    """Print ``ssl-ctx: warning: <message>`` on stderr: something the user should know that stops nothing."""
    print(f"ssl-ctx: warning: {message}", file=sys.stderr)


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty): what a one-line
    UserError quotes of a library's error."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the nearest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_name_error(kind: str, name: str, choices: Iterable[str]) -> UserError:
    """``unknown pretext method 'ctx'; known: a, b (did you mean 'a'?)``."""
    choices = sorted(choices)
    return UserError(f"unknown {kind} '{name}'; known: {', '.join(choices)}{suggest(name, choices)}")
