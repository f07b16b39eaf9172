"""User-facing errors: one line that names the bad value and the fix.

The CLI catches :class:`UserError`, prints ``ssl-ctx: error: <message>`` (and its ``detail``, the library's own
words, indented on a second line) and exits with status 2, so library code raises it wherever the cause is bad
input rather than a bug. :class:`Terminated` is SIGTERM, where a command asked for it: it unwinds as Ctrl-C does,
but the command exits with 143 (128 + SIGTERM) rather than Ctrl-C's 130.

Any other exception is a bug, which keeps its traceback, unless a plug-in raised it: then
:func:`plugin_failure` makes it one line too (status 2), naming the plug-in, the exception and where it was
raised; ``SSL_CTX_TRACEBACK=1`` shows the traceback instead.
"""
from __future__ import annotations

import difflib
import os
import re
import sys
import traceback
from collections.abc import Iterable, Mapping
from typing import NoReturn

DETAIL_CHARACTERS = 300  # a library's message beyond this is cut: the first sentences say what went wrong


class UserError(Exception):
    """Bad input from the user (path, config key, checkpoint, image). The message is one line; ``detail``, when
    given, is the library's text about it (one line, cut to ``DETAIL_CHARACTERS``), shown below the message."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = one_line(detail) if detail else None


TRACEBACK_VARIABLE = "SSL_CTX_TRACEBACK"  # set to 1: a plug-in's exception shows its traceback
INTERRUPTED, TERMINATED = 130, 143  # the shell's 128 + signal number: Ctrl-C (SIGINT 2), SIGTERM (15)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised by :func:`raise_terminated`: a KeyboardInterrupt, so every cleanup for Ctrl-C runs."""


def interrupt_status(err: KeyboardInterrupt) -> int:
    """The exit status of a command ended by ``err``: 143 for SIGTERM (:class:`Terminated`), 130 for Ctrl-C."""
    return TERMINATED if isinstance(err, Terminated) else INTERRUPTED


def raise_terminated(signum: int, frame: object) -> NoReturn:
    """A SIGTERM handler (``signal.signal(signal.SIGTERM, raise_terminated)``)."""
    raise Terminated


def warn(message: str) -> None:
    """Print ``ssl-ctx: warning: <message>`` on stderr: something the user should know that stops nothing."""
    print(f"ssl-ctx: warning: {message}", file=sys.stderr)


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty): what a UserError
    gives as its ``detail`` of a library's error."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def one_line(text: str, limit: int = DETAIL_CHARACTERS) -> str:
    """``text`` on one line (whitespace runs and terminal colour codes collapsed), cut to ``limit`` characters."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the one clearly nearest choice, or ``""``.

    Only a close match counts (a typo: a letter missing, doubled, swapped or changed, or the name cut short:
    ``random`` for ``random_init``); two equally close choices are no suggestion, and neither is a choice that
    differs only in its numbers (``alexnet65`` is not a typo of ``alexnet96`` or ``alexnet64``: the number is what
    was chosen, and the list of known names shows the valid ones).
    """
    def score(choice: str) -> float:
        if sorted(choice.lower()) == sorted(name.lower()):  # same letters in another order: 'sdg' for 'sgd'
            return 1.0
        if len(name) >= 4 and choice.lower().startswith(name.lower()):  # the name cut short
            return 0.9
        return difflib.SequenceMatcher(None, name.lower(), choice.lower()).ratio()

    scored = sorted(((score(choice), choice) for choice in set(choices) if choice != name), reverse=True)
    if not scored or scored[0][0] < 0.75 or (len(scored) > 1 and scored[1][0] == scored[0][0]):
        return ""
    best = scored[0][1]
    if re.sub(r"\d+", "#", best) == re.sub(r"\d+", "#", name):
        return ""
    return f" (did you mean '{best}'?)"


def unknown_name_error(kind: str, name: str, choices: Iterable[str]) -> UserError:
    """``unknown pretext method 'ctx'; known: a, b (did you mean 'a'?)``."""
    choices = sorted(choices)
    return UserError(f"unknown {kind} '{name}'; known: {', '.join(choices)}{suggest(name, choices)}")


def plugin_failure(err: BaseException, plugins: Mapping[str, str]) -> str | None:
    """The one line for ``err`` when a plug-in raised it, or None: a core bug (or ``SSL_CTX_TRACEBACK=1``), whose
    traceback is shown.

    ``plugins`` maps the top-level module of each plug-in to its name (``ssl_ctx.registry.plugin_modules``: the
    modules that registered an encoder, pretext method or probe from outside ``ssl_ctx``). The traceback is read
    from the innermost frame outwards, passing over other libraries (torch, numpy, the standard library): the
    first frame in a plug-in's module blames the plug-in, the first in ``ssl_ctx`` makes it a core bug. So a
    plug-in's own ``raise``, and an error inside torch called by a plug-in, are the plug-in's; a plug-in calling
    ``ssl_ctx`` code that fails inside it is reported as a core bug, with its traceback.
    """
    if os.environ.get(TRACEBACK_VARIABLE, "").strip() not in ("", "0"):
        return None
    for frame, line in reversed(list(traceback.walk_tb(err.__traceback__))):
        top = str(frame.f_globals.get("__name__", "")).split(".")[0]
        if top == "ssl_ctx":
            return None
        if top in plugins:
            return (f"plug-in {plugins[top]} raised {type(err).__name__}: {one_line(first_line(err))} "
                    f"(at {frame.f_code.co_filename}:{line}); {TRACEBACK_VARIABLE}=1 shows the traceback")
    return None
