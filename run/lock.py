"""One run per workdir: an advisory lock held for the whole run.

The lock is `workdir/.lock`, held with `fcntl.flock` on an open descriptor, so the kernel
releases it when the holding process dies, however it dies; the file's JSON content names the
holder (host, PID, mode, start time) for the message a second run prints. A lock file whose
holder is gone (the flock is free) is taken over, with a message naming the run that left it.
All ranks of one torchrun job are one run: rank 0 holds the lock for them.

The lock file is opened with `O_NOFOLLOW` and must be a regular file with one name: a link
(symbolic or hard) planted at `.lock` is refused, never written through. `flock` is advisory
and local: two machines sharing the workdir over NFS may not see each other's lock.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import socket
import time
from pathlib import Path
from typing import Optional


class WorkdirLocked(RuntimeError):
    """Another live run holds the workdir (bad input: exit 2)."""


class WorkdirLock:
    """`with WorkdirLock(workdir, mode):` holds the workdir for this process; `taken_over`
    names the dead run whose lock was taken over, if any."""

    def __init__(self, workdir, mode: str):
        self.path = Path(workdir) / ".lock"
        self.mode = mode
        self._fd: Optional[int] = None
        self.taken_over: Optional[str] = None

    def acquire(self) -> "WorkdirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open_regular(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe(_read(fd))
            os.close(fd)
            raise WorkdirLocked(f"workdir {self.path.parent} is in use by {holder}; wait for it "
                                f"to finish or use another --workdir") from None
        previous = _read(fd)
        if previous:
            self.taken_over = describe(previous)
        record = {"host": socket.gethostname(), "pid": os.getpid(), "mode": self.mode,
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # a clean exit leaves no holder to report
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _open_regular(path: Path) -> int:
    """A descriptor of the lock file, opened without following a link; refuses anything but a
    regular file of one name (a link at `.lock` would make the lock write elsewhere)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        raise WorkdirLocked(f"{path} is a symbolic link; the lock is never written through a "
                            f"link: remove it") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        kind = "a hard link to another file" if stat.S_ISREG(info.st_mode) else "not a file"
        raise WorkdirLocked(f"{path} is {kind}; the lock is never written through it: remove it")
    return fd


def _read(fd: int) -> dict:
    try:
        raw = os.pread(fd, 4096, 0)
        return json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        return {"unreadable": True}


def describe(record: dict) -> str:
    """'a train run (host h, PID p, started t)' for a lock file's record."""
    if not record or "pid" not in record:
        return "another run (holder unknown)"
    return (f"a {record.get('mode', '?')} run (host {record.get('host', '?')}, PID "
            f"{record['pid']}, started {record.get('started', '?')})")
