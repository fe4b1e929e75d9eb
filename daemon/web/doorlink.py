"""The web page's link to the running door: control-socket calls, a shared status poller and a
cancellable live enrolment."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from pathlib import Path
from typing import Callable

from daemon.control.client import ControlClient, _open
from daemon.control.protocol import (ControlError, ControlTimeout, ControlUnavailable, encode_request,
                                     error_from_reply, parse_reply)

log = logging.getLogger(__name__)

#: Decisions kept for a page that connects later (the daemon keeps its own, shorter list).
HISTORY = 50


class DoorLink:
    """Everything the web page asks of the door, over the control socket.

    :param socket_path: ``control.socket_path``
    :param poll_seconds: how often the live view polls ``status``
    :param timeout: seconds to wait for the daemon's reply
    """

    def __init__(self, socket_path: Path, poll_seconds: float = 1.0, timeout: float = 30.0):
        self.socket_path, self.poll_seconds, self.timeout = Path(socket_path), poll_seconds, timeout
        self._subscribers: set[asyncio.Queue] = set()
        self._poller: asyncio.Task | None = None
        self._last_attempt: int | None = None
        self._status: dict | None = None

    def client(self) -> ControlClient:
        """A new client (each call is one connection)."""
        return ControlClient(self.socket_path, self.timeout)

    # --- live view: one poller for all open pages ---------------------------------------------
    def subscribe(self) -> asyncio.Queue:
        """A queue of ``(event, data)`` for one page; starts the poller with the first page."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=100)
        self._subscribers.add(queue)
        if self._status is not None:
            queue.put_nowait(("status", self._status))
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        """Stop feeding ``queue``; the poller stops with the last page."""
        self._subscribers.discard(queue)

    def _publish(self, event: str, data: dict) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait((event, data))
            except asyncio.QueueFull:
                pass  # a stalled page misses events; the next status snapshot catches it up

    async def _poll(self) -> None:
        # Polling (not a subscription) keeps the daemon's protocol unchanged and costs it one
        # short request per interval, whatever the number of open pages.
        unavailable = False
        while self._subscribers:
            try:
                status = await asyncio.to_thread(self.client().status)
            except ControlError as exc:
                if not unavailable:
                    log.warning("web: the door does not answer: %s", exc)
                unavailable = True
                self._status = {"running": False, "error": str(exc)}
                self._publish("status", self._status)
            else:
                if unavailable:
                    log.info("web: the door answers again")
                unavailable = False
                status["running"] = True
                self._status = status
                for decision in _new_decisions(status.get("last_decisions") or [], self._last_attempt):
                    self._last_attempt = decision.get("attempt")
                    self._publish("decision", decision)
                self._publish("status", status)
            await asyncio.sleep(self.poll_seconds)

    async def close(self) -> None:
        """Stop the poller; idempotent."""
        self._subscribers.clear()
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 -- shutting down
                pass
            self._poller = None


def _new_decisions(decisions: list[dict], last_attempt: int | None) -> list[dict]:
    """Decisions after ``last_attempt`` (all of them the first time: a page shows recent history)."""
    if last_attempt is None:
        return list(decisions)
    newer = [d for d in decisions if isinstance(d.get("attempt"), int) and d["attempt"] > last_attempt]
    # A restarted daemon counts from 1 again: its attempts are all new.
    if not newer and decisions and isinstance(decisions[-1].get("attempt"), int) \
            and decisions[-1]["attempt"] < last_attempt:
        return list(decisions)
    return newer


class LiveEnrolment:
    """One ``enrol_live`` request whose connection another thread can close (which cancels it).

    :param socket_path: the control socket
    :param timeout: seconds allowed between two lines from the daemon
    """

    def __init__(self, socket_path: Path, timeout: float = 60.0):
        self.socket_path, self.timeout = Path(socket_path), timeout
        self._conn: socket.socket | None = None
        self._lock = threading.Lock()
        self._cancelled = False

    def run(self, name: str, samples: int, on_progress: Callable[[dict], None], live_digits: bool = False) -> dict:
        """Enrol ``name`` at the door (``live_digits``: the challenge's digits too, after the
        sentences); blocks until done. Raises :class:`ControlError` subclasses."""
        conn = _open(self.socket_path, self.timeout)
        with self._lock:
            if self._cancelled:
                conn.close()
                raise error_from_reply("cancelled", "cancelled before it started")
            self._conn = conn
        try:
            conn.sendall(encode_request(1, "enrol_live", name=name, samples=samples, replace=False,
                                        live_digits=live_digits or None))
            reader = conn.makefile("rb")
            while True:
                try:
                    line = reader.readline(1024 * 1024)
                except socket.timeout:
                    raise ControlTimeout(f"no word from the daemon for {self.timeout:g} s") from None
                except OSError:
                    line = b""
                if not line:
                    if self._cancelled:
                        raise error_from_reply("cancelled", "live enrolment cancelled")
                    raise ControlUnavailable("the daemon closed the connection without an answer")
                message = parse_reply(line.rstrip(b"\n"))
                if message.get("event") == "progress":
                    on_progress({k: v for k, v in message.items() if k not in ("v", "id", "event")})
                    continue
                if message.get("ok") is True:
                    return message["result"]
                error = message.get("error") or {}
                raise error_from_reply(str(error.get("code", "failed")), str(error.get("message", "")))
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Close the connection: the daemon cancels the enrolment and resumes the door. Idempotent."""
        with self._lock:
            self._cancelled = True
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
