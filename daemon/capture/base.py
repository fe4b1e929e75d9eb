"""What the frame and audio sources have in common: the :class:`Source` interface, a reader thread
and a bounded wait.

Camera and audio stacks can block forever after a cable fault, so no caller ever waits on the
hardware directly: a reader thread pulls items into a small queue and :meth:`ThreadedSource.read`
waits on that queue with a timeout. When the queue is full the oldest item is dropped (live sources:
a late frame is worth less than a fresh one) or, for lossless replay, the reader waits.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

from daemon.errors import SourceError, SourceTimeout

log = logging.getLogger(__name__)

_END = object()
#: The longest a read waits beyond its timeout while the source is held back by another stream.
HELD_BACK_LIMIT_SECONDS = 60.0


@dataclass(frozen=True)
class Item:
    """One captured item with its monotonic capture time in seconds."""

    data: Any
    t: float


@runtime_checkable
class Source(Protocol):
    """The interface of every frame and audio source (the capture loop needs nothing else).

    A backend is one class implementing it (in practice a :class:`ThreadedSource`) with a
    classmethod ``from_config(section, clock=..., **timing)`` that builds it from its own config
    model, listed in :mod:`daemon.capture.sources` under its ``backend`` name.
    """

    name: str

    def start(self) -> "Source":
        """Start capturing; idempotent."""

    def read(self, timeout: float) -> Item | None:
        """The next :class:`Item` within ``timeout`` seconds, ``None`` at the end of a finite stream;
        raises :class:`~daemon.errors.SourceTimeout` or :class:`~daemon.errors.SourceError`."""

    def close(self) -> None:
        """Stop and release the device; idempotent."""


class Pacer:
    """Sleeps so that item ``i`` is released at ``start + i / rate`` on the given clock."""

    def __init__(self, rate_hz: float, clock: Callable[[], float], sleep: Callable[[float], None]):
        self._period = 1.0 / rate_hz
        self._clock, self._sleep = clock, sleep
        self._start: float | None = None
        self._count = 0

    def wait(self) -> None:
        """Sleep until the next item is due (not at all when it is late)."""
        now = self._clock()
        if self._start is None:
            self._start = now
        due = self._start + self._count * self._period
        if due > now:
            self._sleep(due - now)
        self._count += 1


class ThreadedSource:
    """Base of every source: subclasses implement :meth:`_open`, :meth:`_grab` and :meth:`_release`.

    ``_grab()`` returns the next payload (stamped with ``clock()``) or an :class:`Item` it stamped
    itself, or ``None`` at the end of a finite stream; exceptions it raises reach the caller of
    :meth:`read` as :class:`SourceError`.
    """

    name = "source"

    def __init__(self, clock: Callable[[], float] = time.monotonic, queue_size: int = 4,
                 lossless: bool = False):
        self._clock = clock
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._lossless = lossless
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.dropped = 0

    # --- subclass hooks -------------------------------------------------------------------
    def _open(self) -> None:
        """Acquire the device or file (called in the reader thread)."""

    def _grab(self) -> Any:
        raise NotImplementedError

    def _release(self) -> None:
        """Release the device or file (called in the reader thread)."""

    def _delivered(self, item: Item) -> None:
        """Called in the reader's thread for each item :meth:`read` returns."""

    def _held_back(self) -> bool:
        """True while the next item waits for another stream (replays on a media clock)."""
        return False

    # --- public API -----------------------------------------------------------------------
    def start(self) -> "ThreadedSource":
        """Start the reader thread; idempotent."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"avid-{self.name}", daemon=True)
            self._thread.start()
        return self

    def read(self, timeout: float) -> Item | None:
        """Return the next item, ``None`` at the end of the stream.

        Raises :class:`SourceTimeout` when nothing arrives within ``timeout`` seconds and
        :class:`SourceError` when the device failed.
        """
        self.start()
        held = 0.0
        while True:
            try:
                item = self._queue.get(timeout=timeout)
                break
            except queue.Empty:
                # A replay held back on a media clock by a slower stream is not a stuck device.
                if self._held_back() and held < HELD_BACK_LIMIT_SECONDS:
                    held += timeout
                    continue
                raise SourceTimeout(f"{self.name}: nothing within {timeout:g} s") from None
        if item is _END:
            self._queue.put(_END)  # later reads see the end too
            return None
        if isinstance(item, BaseException):
            raise SourceError(f"{self.name}: {item}") from item
        self._delivered(item)
        return item

    def close(self) -> None:
        """Stop the reader thread and release the device; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            # The reader may be stuck inside the driver; it is a daemon thread, so do not wait long.
            self._thread.join(timeout=1.0)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # --- reader thread --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._open()
            while not self._stop.is_set():
                payload = self._grab()
                if payload is None:
                    self._put(_END)
                    return
                self._put(payload if isinstance(payload, Item) else Item(payload, self._clock()))
        except Exception as exc:  # delivered to the reader, who decides; the thread ends
            self._put(exc)
        finally:
            try:
                self._release()
            except Exception:
                log.debug("%s: release failed", self.name, exc_info=True)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                if self._lossless:
                    self._queue.put(item, timeout=0.1)
                else:
                    self._queue.put_nowait(item)
                return
            except queue.Full:
                if not self._lossless:
                    self._drop_oldest()

    def _drop_oldest(self) -> None:
        try:
            self._queue.get_nowait()
            self.dropped += 1
        except queue.Empty:
            pass
