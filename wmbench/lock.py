"""One writer per folder: an advisory lock (``fcntl.flock``) on a lock file, holding the writer's process id.

``wmbench run`` and ``wmbench world-model`` (new or resumed) hold their run folder's lock for the whole run, a sweep
its sweep folder's, and a sweep's cell job its cell's; a second writer gets one line naming the holder's pid and
exit code 2. The kernel releases the lock when its process ends, however it ends (``kill -9`` included), so a lock
left by a killed process is simply taken over: the file stays, its pid is stale, and nobody holds it. On a
filesystem without locks (some network filesystems) the lock is skipped.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from wmbench.errors import WmbenchError


def _pid(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL)
"""What ``flock`` says on a filesystem without locks."""


def acquire(path: Path, what: str, wait: bool = False) -> int:
    """Take the lock at ``path`` (created with its folder if missing); returns its open file descriptor, which holds
    the lock until closed (or the process ends). Held by another process: a WmbenchError naming ``what`` and the
    holder's pid, or with ``wait``, blocking until that process lets go."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError as exc:
        if exc.errno in UNSUPPORTED:
            return fd
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise WmbenchError(
                f"{what} is in use by process {_pid(path)} (lock {path}); wait for it to end, or stop it"
            ) from None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@contextlib.contextmanager
def hold(path: Path, what: str) -> Iterator[None]:
    """Hold the lock at ``path`` for the block (see :func:`acquire`)."""
    fd = acquire(path, what)
    try:
        yield
    finally:
        os.close(fd)
