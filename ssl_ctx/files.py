"""File writing shared by every stage; torch-free so `ssl-ctx data prepare` starts fast.

One home for three rules every writer follows:

* a file is written under a temporary name unique to its writer (process id + random suffix) and renamed into
  place, so a reader, a killed writer or a second writer never leaves or sees a half-written file;
* a failed write removes its temporary file, so the last good copy stays and nothing is left behind;
* a write that fails for a reason the user can fix (full disk, read-only or forbidden folder) is one
  :class:`~ssl_ctx.errors.UserError` line naming the folder, the space needed and the fix; every command that
  writes checks its output folder first (:func:`require_writable`), before any work.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ssl_ctx.errors import UserError

try:  # POSIX only; elsewhere locks are not taken.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

_FIXABLE = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
            errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}


def temporary_sibling(path: str | os.PathLike) -> Path:
    """``dir/.name.tmp-<pid>-<hex>``: a name beside ``path`` that no other writer uses."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Free space of the file system holding ``folder`` (or its nearest existing parent); None if unknown."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"  # pragma: no cover


def write_error(err: OSError, folder: str | os.PathLike, needed_bytes: int | None = None,
                fix: str = "free some space or choose another output folder",
                free: int | None = None) -> UserError | None:
    """The one-line UserError for an ``OSError`` a user can fix (full disk, read-only folder); None otherwise.

    ``free``: the free space before the write began (default: now; a failed writer may still hold its space).
    """
    reason = _FIXABLE.get(err.errno)
    if reason is None:
        return None
    folder = Path(folder)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free if free is not None else free_bytes(folder)
        need = f"needs about {human_bytes(needed_bytes)}" if needed_bytes else "needs more space"
        have = f", {human_bytes(free)} free" if free is not None else ""
        return UserError(f"cannot write to '{folder}': {reason} ({need}{have}); {fix}")
    return UserError(f"cannot write to '{folder}': {reason}; make it writable or choose another output folder")


@contextlib.contextmanager
def output_errors(folder: str | os.PathLike, needed_bytes: int | None = None,
                  fix: str = "free some space or choose another output folder") -> Iterator[None]:
    """Turn a fixable ``OSError`` raised inside the block into :func:`write_error`'s one line (the free space it
    names is measured when the block starts)."""
    free = free_bytes(folder) if needed_bytes else None
    try:
        yield
    except OSError as err:
        user_error = write_error(err, folder, needed_bytes, fix, free)
        if user_error is None:
            raise
        raise user_error from None


def require_writable(folder: str | os.PathLike) -> Path:
    """``folder``, once a file could be created (and removed) in it, or in its nearest existing parent when it
    does not exist yet: a command calls this before any work, so a read-only or forbidden output folder is one
    :func:`write_error` line at once, not a traceback from some writer later on."""
    folder = Path(folder)
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write to '{folder}': '{existing}' is a file, not a folder; choose another "
                        f"output folder")
    probe = temporary_sibling(existing / "write-test")
    with output_errors(existing):
        probe.touch(exist_ok=False)
    probe.unlink(missing_ok=True)
    return folder


@contextlib.contextmanager
def removed_if_failed(run_dir: str | os.PathLike, kept: str = "checkpoints") -> Iterator[Path]:
    """Run a block that makes ``run_dir``: when the block raises and the folder did not exist before it and holds
    nothing under ``kept`` (work a later ``--resume`` continues from), the folder is removed, so a run that failed
    at its start (a bad split name, a method's own error) leaves no half-made folder (TensorBoard files, a config)
    behind. A folder that existed before, or holds a checkpoint, is left as it is."""
    run_dir = Path(run_dir)
    existed = run_dir.exists()
    try:
        yield run_dir
    except BaseException:
        if not existed and not any(path.is_file() for path in (run_dir / kept).rglob("*")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def tensor_bytes(value: Any) -> int:
    """Bytes of the tensors in a nested dict/list (anything with ``numel`` and ``element_size``, as torch tensors
    have): about the size of the file they are saved to, the space a writer reserves."""
    if hasattr(value, "numel") and hasattr(value, "element_size"):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    return 0


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], needed_bytes: int | None = None) -> Path:
    """Call ``write(tmp)`` for a :func:`temporary_sibling` of ``path``, then rename it to ``path``.

    On any failure the temporary file is removed and ``path`` (the last good copy) is untouched; a full disk or
    read-only folder is one UserError line (:func:`write_error`).
    """
    path = Path(path)
    with output_errors(path.parent, needed_bytes):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_sibling(path)
        try:
            write(tmp)
            os.replace(tmp, path)
        except OSError:
            raise
        except Exception as err:
            # Some writers report a full disk as another error: torch.save's zip writer raises RuntimeError
            # ("unexpected pos ..."). Less free space than the file needs is a full disk.
            free = free_bytes(path.parent)
            if needed_bytes and free is not None and free < needed_bytes:
                raise OSError(errno.ENOSPC, str(err)) from err
            raise
        finally:
            tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), len(text.encode()))


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented JSON with :func:`atomic_write`."""
    return write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str, holder: str = "", wait: bool = False) -> Iterator[None]:
    """Hold an advisory lock on ``path`` (created if needed) for the block, or fail at once with one UserError line
    naming the process that holds it (``wait``: block until it is free instead).

    The lock is ``flock``'s: the kernel releases it when its process dies, so a lock left by a killed process is
    simply taken over. The file holds the holder's pid, host, start time and ``holder`` (say, its command line)
    for that message; it is never needed for correctness.
    """
    path = Path(path)
    with output_errors(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole block
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                handle.seek(0)
                held_by = " ".join(handle.read().split()) or "another process"
                raise UserError(f"{what} is in use by {held_by}; wait for it to finish or stop it, "
                                f"then run the command again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}{' (' + holder + ')' if holder else ''}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock
