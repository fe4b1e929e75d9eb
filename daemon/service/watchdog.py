"""Feeds the systemd watchdog only while the door loop is really working.

A watchdog pinged from a timer thread proves only that the interpreter is alive; a door controller
whose camera froze or whose detector throws on every frame is wedged all the same. So the capture
loop reports what it did, and :class:`HealthGate` sends ``WATCHDOG=1`` at the end of an iteration
only when a fresh frame was seen and an inference succeeded recently. When either goes stale the
pings stop, systemd kills the daemon after ``WatchdogSec=`` and ``Restart=on-failure`` starts it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from daemon.service.sdnotify import Notifier

log = logging.getLogger(__name__)

STALE_FRAMES = "stale frames"
NO_INFERENCE = "no inference"


class HealthGate:
    """Decides, once per loop iteration, whether the daemon is healthy enough to ping the watchdog.

    Call :meth:`frame_seen` when a fresh frame arrives and :meth:`inference_ok` after a successful
    model inference (detector run), from whichever worker thread did it, and :meth:`iteration_done`
    at the end of each complete iteration of the main loop; never from a timer.

    :param notifier: where ``WATCHDOG=1`` and ``STATUS=`` go.
    :param clock: monotonic clock in seconds (injected by tests).
    :param max_frame_age_s: the newest frame must be at most this old.
    :param max_inference_age_s: the last successful inference must be at most this old.
    """

    def __init__(
        self,
        notifier: Notifier,
        clock: Callable[[], float] = time.monotonic,
        max_frame_age_s: float = 2.0,
        max_inference_age_s: float = 5.0,
    ) -> None:
        if max_frame_age_s <= 0 or max_inference_age_s <= 0:
            raise ValueError("max_frame_age_s and max_inference_age_s must be positive")
        self._notifier = notifier
        self._clock = clock
        self.max_frame_age_s = max_frame_age_s
        self.max_inference_age_s = max_inference_age_s
        interval = notifier.watchdog_interval_s()
        # Half the timeout, as sd_watchdog_enabled(3) advises: one late ping does not kill the daemon.
        self._min_ping_spacing_s = interval / 2 if interval else None
        self._started_at: float | None = None
        self._last_frame_at: float | None = None
        self._last_inference_at: float | None = None
        self._last_ping_at: float | None = None
        self._ever_healthy = False
        self._withheld_reason: str | None = None

    @property
    def feeding(self) -> bool:
        """True while iterations are healthy (pings are being sent, rate-limited)."""
        return self._ever_healthy and self._withheld_reason is None

    def frame_seen(self) -> None:
        """Record that a fresh frame just arrived from the camera."""
        self._last_frame_at = self._clock()

    def inference_ok(self) -> None:
        """Record that a model inference (detector run) just succeeded."""
        self._last_inference_at = self._clock()

    def iteration_done(self) -> bool:
        """End of one loop iteration: ping the watchdog if healthy; return whether it was healthy."""
        now = self._clock()
        if self._started_at is None:
            # The grace starts with the loop, not at construction: models may take a while to load.
            self._started_at = now
        reason = self._unhealthy_reason(now)
        if reason is None:
            self._mark_healthy()
            self._ping(now)
            return True
        self._mark_unhealthy(reason, now)
        return False

    def _unhealthy_reason(self, now: float) -> str | None:
        if self._last_frame_at is None or now - self._last_frame_at > self.max_frame_age_s:
            return STALE_FRAMES
        if self._last_inference_at is None or now - self._last_inference_at > self.max_inference_age_s:
            return NO_INFERENCE
        return None

    def _mark_healthy(self) -> None:
        if self._withheld_reason is not None:
            log.info("watchdog: fresh frames and inference are back, feeding the systemd watchdog again")
            self._notifier.status("running")
        elif not self._ever_healthy:
            log.debug("watchdog: first healthy iteration, feeding the systemd watchdog")
        self._withheld_reason = None
        self._ever_healthy = True

    def _mark_unhealthy(self, reason: str, now: float) -> None:
        if self._withheld_reason is not None:
            return
        # Before the first healthy iteration the camera and detector get their own age limits as a grace.
        if not self._ever_healthy and now - self._started_at <= max(self.max_frame_age_s,
                                                                   self.max_inference_age_s):
            return
        self._withheld_reason = reason
        log.warning(
            "watchdog: not feeding the systemd watchdog: %s (last frame %s, last inference %s)",
            reason, self._age_text(self._last_frame_at, now), self._age_text(self._last_inference_at, now),
        )
        self._notifier.status(f"unhealthy: {reason}")

    def _ping(self, now: float) -> None:
        if self._min_ping_spacing_s is None:
            return
        if self._last_ping_at is not None and now - self._last_ping_at < self._min_ping_spacing_s:
            return
        self._notifier.watchdog()
        self._last_ping_at = now

    @staticmethod
    def _age_text(seen_at: float | None, now: float) -> str:
        return "never" if seen_at is None else f"{now - seen_at:.1f} s ago"
