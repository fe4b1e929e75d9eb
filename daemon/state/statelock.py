"""One writer at a time in a state directory: an advisory ``flock`` on the directory itself.

Enrolments, deletions and the start-up read of the templates take the lock; readers share it,
writers hold it alone. The lock is on the directory's own file descriptor, so there is no lock file
to leave behind, and the kernel drops it when the process dies (SIGKILL included): a crashed writer
never blocks the next one. Waits are bounded: a holder that does not let go within ``timeout_s``
raises :class:`~daemon.errors.StateBusy`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Callable

from daemon.errors import StateBusy, StoreError

log = logging.getLogger(__name__)

#: How long a writer waits for another one by default (an enrolment's save takes milliseconds).
DEFAULT_TIMEOUT_S = 30.0
_POLL_S = 0.01


class StateLock:
    """An advisory lock on a state directory, used as a context manager.

    :param directory: the state directory (it must exist).
    :param exclusive: True for writers, False for readers (shared).
    :param timeout_s: the longest wait for another holder.
    :param clock: a monotonic clock (injected by tests).
    :param sleep: how to wait between attempts (injected by tests).
    """

    def __init__(self, directory: str | os.PathLike, exclusive: bool = True,
                 timeout_s: float = DEFAULT_TIMEOUT_S, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.directory = Path(directory)
        self.exclusive = exclusive
        self.timeout_s = timeout_s
        self._clock, self._sleep = clock, sleep
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, waiting at most ``timeout_s``."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise StoreError(f"cannot open the state directory {self.directory} to lock it: "
                             f"{exc.strerror}") from exc
        operation = (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = self._clock() + self.timeout_s
        waited = False
        try:
            while True:
                try:
                    fcntl.flock(fd, operation)
                    break
                except BlockingIOError:
                    if self._clock() >= deadline:
                        raise StateBusy(f"state directory {self.directory} is busy: another avid "
                                        f"process has held its lock for {self.timeout_s:.0f} s "
                                        "(an enrolment or deletion still running?)") from None
                    if not waited:
                        log.info("waiting for another avid process to finish with %s", self.directory)
                        waited = True
                    self._sleep(_POLL_S)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock; calling it again does nothing."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the flock

    close = release

    def __enter__(self) -> "StateLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
