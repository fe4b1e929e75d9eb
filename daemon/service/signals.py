"""Every signal that would end the daemon relocks the door first, then stops the loop.

Python's default for most signals (SIGHUP when an SSH session drops, SIGUSR1, SIGALRM, SIGTERM
from systemd...) is to kill the process on the spot, and a GPIO line keeps its level when its
process dies: a door mid-unlock would stay open. :func:`install_stop_handlers` catches every signal
whose default action ends the process and can be caught. The relock happens twice over: at once on
a watcher thread woken by :func:`signal.set_wakeup_fd` (the C-level handler writes to it even while
the main thread is busy in a model), and again in the Python handler on the main thread, which then
asks the loop to stop. After a terminating signal the lock is closed, so no decision still in
flight can energise the relay again.

SIGKILL and the OOM killer cannot be caught: the systemd unit's ``ExecStopPost=avid relock``
de-energises the pin after the process is gone, whatever ended it. Faults raised by the CPU
(SIGSEGV, SIGBUS, SIGFPE, SIGILL) and SIGABRT are left to their default action, because a handler
that returns would run the faulting instruction again; ``ExecStopPost`` covers them as well.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from typing import Callable

log = logging.getLogger(__name__)

# Default action "ignore", "stop" or "continue", or uncatchable: not terminating, or not ours.
_NOT_TERMINATING = {"SIGCHLD", "SIGCLD", "SIGCONT", "SIGURG", "SIGWINCH", "SIGSTOP", "SIGTSTP",
                    "SIGTTIN", "SIGTTOU", "SIGKILL"}
# Synchronous faults (see the module documentation) and SIGPIPE, which Python ignores so that a
# closed pipe is an exception where it happens.
_LEFT_ALONE = {"SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGIOT", "SIGTRAP", "SIGSYS",
               "SIGPIPE"}


def terminating_signals() -> list[signal.Signals]:
    """The catchable signals whose default action ends the process (real-time signals included)."""
    chosen = []
    for number in sorted(signal.valid_signals()):
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"SIGRT{number}"  # a real-time signal without a name of its own: terminates
        if name in _NOT_TERMINATING or name in _LEFT_ALONE:
            continue
        chosen.append(number)
    return chosen


def _name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class StopHandlers:
    """The installed handlers; :meth:`restore` puts the previous ones back (idempotent)."""

    def __init__(self, lock, stop_callback: Callable[[], None],
                 signals: list[int] | None = None):
        self._lock = lock
        self._stop_callback = stop_callback
        self._stopping = threading.Event()
        self.received: list[int] = []
        self._previous: dict[int, object] = {}
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(True)
        self._writer.setblocking(False)
        self._closed = False
        self._handling = False
        self._previous_wakeup = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        try:
            for number in signals if signals is not None else terminating_signals():
                try:
                    self._previous[number] = signal.signal(number, self._on_signal)
                except (OSError, ValueError):  # not settable on this platform
                    continue
        except BaseException:
            self.restore()
            raise
        self._watcher = threading.Thread(target=self._watch, name="avid-signal-relock", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while True:
            try:
                data = self._reader.recv(64)
            except OSError:
                return
            if not data or self._closed:
                return
            # Each byte is the number of a signal that has a Python-level handler; act on ours only.
            ours = [number for number in data if number in self._previous]
            if ours:
                self._relock(f"signal {_name(ours[0])}")

    def _relock(self, reason: str) -> None:
        try:
            self._lock.relock(reason)
        finally:
            # Closed (after the relock) so that no grant still in flight can open the door again.
            self._lock.close()

    def _on_signal(self, number: int, frame) -> None:
        self.received.append(number)
        if self._handling:
            # Python runs a handler between any two bytecodes, another handler's included: this
            # signal interrupted the handling of an earlier one, which relocks and stops by itself
            # (relocking here too would close the relay under the earlier handler's feet).
            return
        self._handling = True
        try:
            name = _name(number)
            self._relock(name)
            if self._stopping.is_set():
                return
            self._stopping.set()
            log.info("%s: relocked; stopping", name)
            self._stop_callback()
        finally:
            self._handling = False

    def exit_status(self) -> int:
        """The exit status for a daemon stopped by the first signal received: 0 for SIGTERM, SIGINT
        and SIGHUP (what systemd counts as a clean stop), 128 + the number for any other, so that
        ``Restart=on-failure`` starts again a daemon that SIGUSR1 or SIGALRM ended; 0 if none came."""
        if not self.received or self.received[0] in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            return 0
        return 128 + self.received[0]

    def finish(self) -> int:
        """Call once the lock is closed and the process is about to exit: from now on terminating
        signals are ignored, and the exit status (:meth:`exit_status`) is returned.

        Python resets every handler it installed to the default action while the interpreter shuts
        down, so a second signal at that moment would end the process by that signal; the door is
        locked by then, but the exit status would lie. Ignored signals are left ignored.
        """
        for number in self._previous:
            try:
                signal.signal(number, signal.SIG_IGN)
            except (OSError, ValueError):
                pass
        return self.exit_status()

    def restore(self) -> None:
        """Put back the handlers and wakeup fd that were there before; stop the watcher thread."""
        if self._closed:
            return
        self._closed = True
        for number, previous in self._previous.items():
            try:
                signal.signal(number, previous)
            except (OSError, ValueError, TypeError):
                pass
        try:
            signal.set_wakeup_fd(self._previous_wakeup)
        except ValueError:
            signal.set_wakeup_fd(-1)
        self._writer.close()
        self._reader.shutdown(socket.SHUT_RDWR)
        self._reader.close()
        if hasattr(self, "_watcher"):
            self._watcher.join(timeout=1.0)


def install_stop_handlers(lock, stop_callback: Callable[[], None],
                          signals: list[int] | None = None) -> StopHandlers:
    """Relock, then stop, on every terminating signal. Call from the main thread, right after the
    lock is opened.

    :param lock: a :class:`~daemon.actuate.lock.Lock`; relocked and closed on the first signal.
    :param stop_callback: called once, on the main thread, after the relock (e.g. ``loop.stop``).
    :param signals: the signals to handle; default :func:`terminating_signals`.
    :returns: a :class:`StopHandlers` whose ``restore()`` undoes the installation.
    """
    return StopHandlers(lock, stop_callback, signals)
