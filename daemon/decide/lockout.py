"""Refuse attempts after repeated failures, and remember it across restarts.

After ``max_consecutive_failures`` denied attempts the door refuses every attempt for
``initial_delay_seconds``; each further failure once the delay has run out locks it again for twice
as long, up to ``max_delay_seconds``. An accepted attempt resets everything. The counter is written
atomically after every change. The monotonic clock restarts at boot, so the file stores the delay
still to run: after a restart the whole remaining delay runs again (never less, but never more
than ``max_delay_seconds``).

A counter file that cannot be trusted as written (unparsable, out of range, huge numbers, deep
nesting, a directory, unreadable) means *locked out*, never a crash and never "no failures". One that
others could write is refused outright (:class:`~daemon.errors.UnsafePermissions`): the door does
not start.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from daemon.errors import StoreError, UnsafePermissions
from daemon.state.atomic import is_stale_temporary, write_atomic
from daemon.state.permissions import check_private_file

log = logging.getLogger(__name__)

#: The file is three small numbers; anything larger is not ours.
MAX_FILE_BYTES = 4096
#: Larger counts than any real door sees; bounds keep arithmetic on them ordinary.
MAX_COUNT = 10 ** 9
_KEYS = {"consecutive_failures", "level", "remaining_seconds"}


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number of seconds")


def parse_counter(raw: bytes) -> tuple[int, int, float]:
    """``(failures, level, remaining_seconds)`` from the file's bytes.

    :raises ValueError: for anything but the exact format avid writes (OverflowError,
        RecursionError and the like are turned into ValueError too).
    """
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError, OverflowError, MemoryError) as exc:
        raise ValueError(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict) or set(data) != _KEYS:
        raise ValueError(f"expected exactly the keys {sorted(_KEYS)}")
    failures, level, remaining = data["consecutive_failures"], data["level"], data["remaining_seconds"]
    for name, value in (("consecutive_failures", failures), ("level", level)):
        if type(value) is not int or not 0 <= value <= MAX_COUNT:
            raise ValueError(f"{name} is not an integer from 0 to {MAX_COUNT}")
    try:
        # An integer of 400 digits is valid JSON but no float (OverflowError).
        seconds = float(remaining) if type(remaining) in (int, float) else math.nan
    except OverflowError:
        seconds = math.nan
    if not 0 <= seconds < math.inf:
        # NaN and infinity would mean "not locked"; 1e999 parses as infinity.
        raise ValueError("remaining_seconds is not a finite number >= 0")
    return failures, level, seconds


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
            check_private_file(self.path, may_be_read=True)
        except UnsafePermissions:
            raise
        except StoreError as exc:
            problem: Exception | None = exc  # a directory in its place: corrupt, handled below
        else:
            problem = None
        self._remove_stale_temporaries()
        try:
            if problem is not None:
                raise problem
            with open(self.path, "rb") as handle:
                failures, level, remaining = parse_counter(handle.read(MAX_FILE_BYTES + 1))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            # Unreadable counters must not open a way around the lockout: start locked out.
            log.error("lockout file %s is corrupt (%s): locking out for %.0f s", self.path, exc,
                      self.policy.initial_delay_seconds)
            failures, level = self.policy.max_consecutive_failures, 1
            remaining = self.policy.initial_delay_seconds
        if remaining > self.policy.max_delay_seconds:
            log.warning("lockout file %s asks for %.0f s, more than max_delay_seconds: %.0f s",
                        self.path, remaining, self.policy.max_delay_seconds)
            remaining = self.policy.max_delay_seconds
        self.failures, self.level = failures, level
        self._until = self._clock() + remaining if remaining > 0 else None
        if remaining > 0:
            log.warning("lockout in force after restart: %.0f s remaining", remaining)

    def _remove_stale_temporaries(self) -> None:
        # A write cut short by a crash or power loss leaves its temp file; failed writes remove
        # their own (daemon/state/atomic.py).
        prefix = f".{self.path.name}.tmp"
        try:
            names = [n for n in os.listdir(self.path.parent) if n.startswith(prefix)]
        except OSError:
            return
        for name in names:
            if is_stale_temporary(self.path.parent / name):
                try:
                    (self.path.parent / name).unlink()
                except OSError:
                    pass

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
