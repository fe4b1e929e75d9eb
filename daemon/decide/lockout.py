"""Refuse attempts after repeated failures, and remember it across restarts.

After ``max_consecutive_failures`` denied attempts the door refuses every attempt for
``initial_delay_seconds``; each further failure once the delay has run out locks it again for twice
as long, up to ``max_delay_seconds``. An accepted attempt resets everything. The counter is written
atomically after every change. The monotonic clock restarts at boot, so the file stores the delay
still to run: after a restart the whole remaining delay runs again (never less).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from daemon.errors import StoreError
from daemon.state.atomic import write_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockoutPolicy:
    """When and for how long to lock out."""

    max_consecutive_failures: int = 5
    initial_delay_seconds: float = 30.0
    max_delay_seconds: float = 900.0


class Lockout:
    """The consecutive-failure counter and the lockout delay, persisted in ``path``."""

    def __init__(self, path: Path, policy: LockoutPolicy = LockoutPolicy(),
                 clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.policy = policy
        self._clock = clock
        self.failures = 0
        self.level = 0
        self._until: float | None = None
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
            failures, level = int(data["consecutive_failures"]), int(data["level"])
            remaining = float(data["remaining_seconds"])
            if failures < 0 or level < 0 or not 0 <= remaining < math.inf:
                raise ValueError("negative or non-finite values")  # NaN would mean "not locked"
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Unreadable counters must not open a way around the lockout: start locked out.
            log.error("lockout file %s is corrupt (%s): locking out for %.0f s", self.path, exc,
                      self.policy.initial_delay_seconds)
            failures, level = self.policy.max_consecutive_failures, 1
            remaining = self.policy.initial_delay_seconds
        self.failures, self.level = failures, level
        self._until = self._clock() + remaining if remaining > 0 else None
        if remaining > 0:
            log.warning("lockout in force after restart: %.0f s remaining", remaining)

    def _save(self) -> None:
        data = {"consecutive_failures": self.failures, "level": self.level,
                "remaining_seconds": round(self.remaining(), 3)}
        try:
            write_atomic(self.path, json.dumps(data).encode())
        except OSError as exc:
            raise StoreError(f"cannot write lockout state {self.path}: {exc}") from exc

    def remaining(self) -> float:
        """Seconds of lockout left (0 when attempts are allowed)."""
        if self._until is None:
            return 0.0
        return max(0.0, self._until - self._clock())

    @property
    def locked_out(self) -> bool:
        """True while attempts must be refused."""
        return self.remaining() > 0

    def record_failure(self) -> None:
        """Count a denied attempt; may start a lockout."""
        self.failures += 1
        if self.failures >= self.policy.max_consecutive_failures and not self.locked_out:
            # The exponent is capped: after ~1000 lockouts 2 ** level no longer fits in a float.
            delay = min(self.policy.initial_delay_seconds * 2.0 ** min(self.level, 64),
                        self.policy.max_delay_seconds)
            self.level += 1
            self._until = self._clock() + delay
            log.warning("lockout: %d consecutive failures, attempts refused for %.0f s",
                        self.failures, delay)
        self._save()

    def record_success(self) -> None:
        """An accepted attempt: reset the counter and the delay."""
        if self.failures or self.level or self._until is not None:
            self.failures, self.level, self._until = 0, 0, None
            self._save()

    def clear(self) -> None:
        """Installer override (``avid lockout --clear``)."""
        self.failures, self.level, self._until = 0, 0, None
        self._save()
        log.warning("lockout cleared by the installer")
