"""One writer per run directory: an advisory lock held for the life of a train / resume.

``<run-dir>/.streamx.lock`` is locked with ``fcntl.flock`` (exclusive, non-blocking) by the
process that trains or resumes the run, and holds that process's PID. The operating system
drops the lock when the process ends, however it ends (kill -9 included), so a lock is never
left behind: a lock file whose PID names a process that is gone but whose flock is free is
*stale* and is simply taken over. A second process that tries to write the same directory
(another ``--resume``, a sweep rerun while a worker still trains it) is refused with
:class:`~streamx.errors.RunLockedError`, naming the holder's PID.

The lock is re-entrant within one process (a sweep worker holds it around its decision and the
run it starts). The file itself is never deleted: deleting a lock file while others may have
it open would let two processes hold "the" lock on two different files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from streamx.errors import ConfigError, RunLockedError

__all__ = ["LOCK_FILE", "holder", "run_lock"]

LOCK_FILE = ".streamx.lock"

_held: dict[str, list[int]] = {}  # resolved run dir → [file descriptor, depth], in this process


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def holder(run_dir: str | Path) -> int | None:
    """The PID of the live process holding the run directory's lock, or None when it is free."""
    import fcntl

    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(run_dir: str | Path, create: bool = True) -> Iterator[int | None]:
    """Hold the run directory's lock for the ``with`` block; yields the PID of a previous holder
    that died without releasing it (a stale lock, taken over), else None.

    ``create`` makes the directory when it does not exist (a new run)."""
    import fcntl

    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if key in _held:  # this process holds it already (re-entrant)
        _held[key][1] += 1
        try:
            yield None
        finally:
            _held[key][1] -= 1
        return
    try:
        if create:
            run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"run directory {run_dir} is not writable ({exc.strerror}); "
                          "choose another with --run-dir") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        who = f"process {pid}" if pid else "another process"
        raise RunLockedError(f"run directory {run_dir} is in use by {who} (it is training or resuming this run); "
                             "wait for it to finish or stop it, then try again") from None
    previous = _read_pid(fd)
    stale = previous if previous is not None and previous != os.getpid() else None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = [fd, 1]
    try:
        yield stale
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # released cleanly: an empty file is not stale
        os.close(fd)  # closing drops the flock
