"""A minimal sd_notify client: tells systemd the daemon is ready, alive, or stopping.

systemd passes the address of its notification socket in ``$NOTIFY_SOCKET`` (a file system path, or
an abstract socket name starting with ``@``); each message is one datagram of ``KEY=value`` lines.
Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op, so the daemon runs the same from a
shell. A failed send never raises into the caller: the door loop must not die because systemd is
restarting; the first failure is logged at warning, later ones at debug.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)

USEC_PER_SEC = 1_000_000


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """Return the watchdog timeout systemd expects pings within, in seconds, or None if none is set.

    Reads ``WATCHDOG_USEC``; when ``WATCHDOG_PID`` is set and names another process the watchdog is
    not ours (the variables leaked into a child) and None is returned.
    """
    env = os.environ if environ is None else environ
    usec_text = env.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = env.get("WATCHDOG_PID")
    if pid_text:
        try:
            if int(pid_text) != os.getpid():
                return None
        except ValueError:
            log.warning("ignoring the systemd watchdog: WATCHDOG_PID=%r is not a number", pid_text)
            return None
    try:
        usec = int(usec_text)
    except ValueError:
        log.warning("ignoring the systemd watchdog: WATCHDOG_USEC=%r is not a number", usec_text)
        return None
    if usec <= 0:
        return None
    return usec / USEC_PER_SEC


def _socket_address(notify_socket: str) -> str:
    # An '@' prefix names a socket in the abstract namespace, spelt with a leading NUL byte.
    if notify_socket.startswith("@"):
        return "\0" + notify_socket[1:]
    return notify_socket


class Notifier:
    """Sends state notifications to systemd over ``$NOTIFY_SOCKET``; a no-op outside systemd.

    :param environ: where to read ``NOTIFY_SOCKET``/``WATCHDOG_*`` from (default :data:`os.environ`).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._environ = dict(env)
        notify_socket = env.get("NOTIFY_SOCKET", "")
        self._socket_name = notify_socket
        self._address = _socket_address(notify_socket) if notify_socket else None
        self._socket: socket.socket | None = None
        # Reentrant: a signal handler in the main thread may notify while a send is under way.
        self._lock = threading.RLock()
        self._closed = False
        self._failure_logged = False
        if self._address is None:
            log.debug("NOTIFY_SOCKET is not set: systemd notifications are off")

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notification socket and not closed."""
        return self._address is not None and not self._closed

    def watchdog_interval_s(self) -> float | None:
        """Return the systemd watchdog timeout in seconds, or None when no watchdog applies."""
        if self._address is None:
            return None
        return watchdog_interval_s(self._environ)

    def ready(self) -> bool:
        """Tell systemd start-up is complete (``READY=1``)."""
        return self.notify("READY=1")

    def status(self, text: str) -> bool:
        """Set the one-line status shown by ``systemctl status``."""
        return self.notify("STATUS=" + " ".join(str(text).splitlines()))

    def stopping(self) -> bool:
        """Tell systemd the daemon is shutting down (``STOPPING=1``)."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """Ping the systemd watchdog (``WATCHDOG=1``)."""
        return self.notify("WATCHDOG=1")

    def notify(self, message: str) -> bool:
        """Send one raw notification; return True if it was delivered, False otherwise."""
        with self._lock:
            if not self.enabled:
                return False
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.sendto(message.encode("utf-8", "replace"), self._address)
            except OSError as exc:
                self._log_failure(message, exc)
                return False
            return True

    def close(self) -> None:
        """Close the socket; later notifications are no-ops. Safe to call more than once."""
        with self._lock:
            self._closed = True
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    def _log_failure(self, message: str, exc: OSError) -> None:
        if self._failure_logged:
            log.debug("sd_notify %r failed: %s", message, exc)
            return
        self._failure_logged = True
        log.warning("cannot notify systemd (%r to %s): %s; further failures are logged at debug",
                    message, self._socket_name, exc)

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
