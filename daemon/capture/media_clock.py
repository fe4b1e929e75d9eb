"""A virtual media clock: replays run as fast as the machine computes, judged in media time.

In real time, replay sources are paced by the wall clock and the capture loop judges staleness,
attempt timeouts and the lock's relock on ``time.monotonic``. Where real time cannot be kept (an
emulated CPU), pacing by the wall clock makes frames stale and attempts time out. With a
:class:`MediaClock` instead:

* every replay source stamps its items with *media time* (frame ``n`` at ``n / fps``, audio block
  ``i`` at ``i * block``), as the real-time pacer would have released them;
* an item is released only when every other stream has been *read* up to its time, so the streams
  are merged in media-time order and neither runs ahead of the other by more than one item
  (however slow face detection is on this machine);
* while the pipeline works on what was released (:meth:`MediaClock.hold` / ``unhold``: an
  embedding, a decision), nothing later is released, so slow inference delays the replay instead
  of being overtaken by it: the same items reach the same stages in the same media-time order on
  any machine;
* the clock reads the latest released media time, so everything that takes the same clock (capture
  loop, lock, lockout) judges time as the recording does.

When every stream has ended, the clock runs on at wall-clock speed from the last media time, so the
lock still relocks and the loop still stops after the replay. Live devices cannot run on it.

Wiring: ``clock = MediaClock()``; pass ``clock`` wherever a clock is injected: the replay sources
(``open_frame_source(camera, clock=clock)``, ``ReplayFrames(..., clock=clock)``), the capture loop
(``build_loop(config, lock, clock=clock)``) and the lock (``open_lock(..., clock=clock)``). The
capture loop holds the clock for each embedding job queued and each finished attempt until it is
decided (``getattr(clock, "hold", ...)``; a wall clock has no ``hold``).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable, Iterable

from daemon.capture.base import Item, Pacer

log = logging.getLogger(__name__)

#: The streams of a door: the frame source and the audio source.
DOOR_STREAMS = ("frames", "audio")
#: How often a waiting producer re-checks its stop event (seconds of wall time).
_POLL_SECONDS = 0.1
_WORK = "<work in progress>"


class MediaClock:
    """Media time shared by replay sources and everything that judges time; call it to read it.

    :param streams: the names of the streams that take part; until a stream has joined, the others
        wait for it at the current media time.
    :param wall: the wall clock the media time follows once every stream has ended.
    """

    def __init__(self, streams: Iterable[str] = DOOR_STREAMS, wall: Callable[[], float] = time.monotonic):
        self._expected = tuple(streams)
        self._wall = wall
        self._changed = threading.Condition()
        self._streams: dict[str, MediaStream] = {}
        self._now = 0.0
        self._finished_at: float | None = None
        self._holds = 0

    def __call__(self) -> float:
        """The current media time in seconds (never goes back)."""
        with self._changed:
            if self._finished_at is not None:
                return self._now + max(0.0, self._wall() - self._finished_at)
            return self._now

    def join(self, name: str) -> "MediaStream":
        """Register the stream ``name`` (a source opening, or re-opening after a fault) starting at
        the current media time; it replaces a stream of that name."""
        if name not in self._expected:
            raise ValueError(f"stream {name!r} is not one of {self._expected}")
        with self._changed:
            self._now = self()  # after the end, a re-opened stream starts where the clock is
            self._finished_at = None
            old = self._streams.get(name)
            if old is not None:
                old._open = False
            stream = self._streams[name] = MediaStream(self, name, origin=self._now)
            self._changed.notify_all()
            return stream

    def hold(self) -> None:
        """Work on what was released so far is in progress (an embedding, a decision): release
        nothing later until the matching :meth:`unhold`, so that the replay never runs ahead of the
        pipeline, however slow this machine is."""
        with self._changed:
            self._holds += 1

    def unhold(self) -> None:
        """That work is done."""
        with self._changed:
            self._holds = max(0, self._holds - 1)
            self._changed.notify_all()

    # --- used by MediaStream, under self._changed ----------------------------------------------
    def _frontier(self, name: str) -> float:
        """The earliest media time of stream ``name`` not yet read (infinite once it has ended)."""
        stream = self._streams.get(name)
        return self._now if stream is None else stream._frontier()

    def _blockers(self, stream: "MediaStream", t: float) -> list[str]:
        """What item ``t`` waits for: the other streams not yet read up to it, work in progress."""
        blockers = [other for other in self._expected
                    if other != stream.name and self._frontier(other) < t]
        return blockers + [_WORK] if self._holds and t > self._now else blockers

    def _update(self) -> None:
        if self._finished_at is None and all(self._frontier(n) == float("inf") for n in self._expected):
            self._finished_at = self._wall()
            log.debug("media clock: every stream ended at %.2f s", self._now)
        self._changed.notify_all()

    def _leave(self, stream: "MediaStream") -> None:
        # A stream that ended stays until its reader has taken every item (its reader thread ends
        # before that); one closed early is gone, and the others wait at the current time until it
        # re-joins.
        if self._streams.get(stream.name) is stream and stream._next != float("inf"):
            del self._streams[stream.name]
        self._update()


class MediaStream:
    """One source's place on a :class:`MediaClock` (made by :meth:`MediaClock.join`)."""

    def __init__(self, clock: MediaClock, name: str, origin: float):
        self.name = name
        self.origin = origin
        self._clock = clock
        self._next = origin  # a lower bound of the media time of the next item to be released
        self._unread: collections.deque[float] = collections.deque()
        self._open = True
        self.held_back = False  # the next item waits for another stream or for work in progress

    def _frontier(self) -> float:
        return self._unread[0] if self._unread else self._next

    def release(self, offset: float, stop: threading.Event) -> float | None:
        """Wait until the item ``offset`` seconds after this stream's start may be released, and
        return its media time; ``None`` when ``stop`` is set (or the stream closed) first."""
        clock = self._clock
        t = self.origin + offset
        with clock._changed:
            self._next = max(self._next, t)
            clock._changed.notify_all()  # the others may be waiting for this stream to move on
            while blockers := clock._blockers(self, t):
                if stop.is_set() or not self._open:
                    self.held_back = False
                    return None
                # Held back by a slower reader; waiting for a stream that is away (a device
                # being re-opened) is not that, and reads time out as usual meanwhile.
                self.held_back = all(name in clock._streams or name == _WORK for name in blockers)
                clock._changed.wait(_POLL_SECONDS)
            self.held_back = False
            self._unread.append(t)
            clock._now = max(clock._now, t)
            clock._changed.notify_all()
            return t

    def consumed(self, t: float) -> None:
        """The reader has taken the item stamped ``t``."""
        with self._clock._changed:
            if self._unread and self._unread[0] == t:
                self._unread.popleft()
            self._clock._update()

    def end(self) -> None:
        """No item follows: once its items are read, the others no longer wait for this stream."""
        with self._clock._changed:
            self._next = float("inf")
            self._clock._update()

    def close(self) -> None:
        """Leave the clock (the source closed); idempotent."""
        with self._clock._changed:
            if self._open:
                self._open = False
                self._clock._leave(self)


class ReplayPacing:
    """When a replay source releases item ``n`` (one every ``period_s`` of the recording): paced in
    real time on ``clock``, as fast as possible, or, when ``clock`` is a :class:`MediaClock`, in
    media-time order with the other streams (stamped with media time)."""

    def __init__(self, stream: str, period_s: float, realtime: bool, clock, sleep=time.sleep):
        self._name, self._period = stream, period_s
        self._media = clock if isinstance(clock, MediaClock) else None
        self._pacer = Pacer(1.0 / period_s, clock, sleep) if realtime and self._media is None else None
        self._stream: MediaStream | None = None
        self._count = 0

    def open(self) -> None:
        """Join the media clock (called when the source opens)."""
        if self._media is not None:
            self._stream = self._media.join(self._name)

    def release(self, payload, stop: threading.Event):
        """``payload`` when it is due: as is (stamped by the source), or as an :class:`Item` stamped
        with media time; ``None`` if ``stop`` is set while waiting."""
        if self._stream is not None:
            t = self._stream.release(self._count * self._period, stop)
            self._count += 1
            return None if t is None else Item(payload, t)
        if self._pacer is not None:
            self._pacer.wait()
        return payload

    def end(self) -> None:
        """The recording is over."""
        if self._stream is not None:
            self._stream.end()

    def delivered(self, item: Item) -> None:
        """The reader took ``item``."""
        if self._stream is not None:
            self._stream.consumed(item.t)

    def held_back(self) -> bool:
        """True while the next item waits for another stream to be read up to its time."""
        return self._stream is not None and self._stream.held_back

    def close(self) -> None:
        """Leave the media clock; idempotent."""
        if self._stream is not None:
            self._stream.close()
