"""The lock relay, driven through gpiozero.

Fail-secure: the relay is de-energised (door locked) from the first instant
(``initial_value=False``), after every grant once ``unlock_seconds`` have passed, on every error and
on :meth:`Lock.close`. Relocking runs on its own thread so that a wedged capture loop can never hold
the door open. The pin factory is created explicitly from the config: gpiozero's silent fallback
to another factory would be a misconfigured door, so any failure is a :class:`LockError` at start-up.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from typing import Callable

from gpiozero.exc import GPIODeviceClosed

from daemon.errors import LockError

log = logging.getLogger(__name__)

_FACTORIES = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"),
    "native": ("gpiozero.pins.native", "NativeFactory"),
    "mock": ("gpiozero.pins.mock", "MockFactory"),
}


def make_pin_factory(name: str):
    """Create the named gpiozero pin factory, or raise :class:`LockError` (never fall back)."""
    try:
        module_name, class_name = _FACTORIES[name]
    except KeyError:
        raise LockError(f"unknown pin factory {name!r}; choose one of {', '.join(_FACTORIES)}") from None
    try:
        return getattr(importlib.import_module(module_name), class_name)()
    except Exception as exc:
        raise LockError(f"GPIO pin factory {name!r} cannot start: {exc}; avid will not fall back to "
                        "another factory (check lock.pin_factory and the GPIO libraries)") from exc


class Lock:
    """A relay that unlocks the door for a bounded time.

    ``grant()`` energises the relay and schedules the relock ``unlock_seconds`` later on the
    injected monotonic ``clock``; ``relock()`` de-energises at once (door opened, error, shutdown).
    """

    def __init__(self, relay, unlock_seconds: float, clock: Callable[[], float] = time.monotonic):
        self._relay = relay
        self._unlock_seconds = unlock_seconds
        self._clock = clock
        self._relock_at: float | None = None
        self.granted_until = float("-inf")
        self._wake = threading.Condition()
        self._closed = False
        self._listeners: list[Callable[[bool], object]] = []
        self._relay.off()
        self._thread = threading.Thread(target=self._relock_when_due, name="avid-relock", daemon=True)
        self._thread.start()

    @property
    def unlock_seconds(self) -> float:
        """How long a grant keeps the relay energised."""
        return self._unlock_seconds

    @property
    def is_unlocked(self) -> bool:
        """True while the relay is energised (never after :meth:`close`)."""
        return not self._closed and bool(self._relay.value)

    def add_listener(self, listener: Callable[[bool], object]) -> None:
        """Call ``listener(locked)`` after each change of the relay, on the thread that made it.

        Listeners must not block (they may run on the relock thread); their errors are logged
        and never reach the lock.
        """
        self._listeners.append(listener)

    def _tell(self, locked: bool) -> None:
        for listener in self._listeners:
            try:
                listener(locked)
            except Exception:
                log.exception("lock listener failed")

    def grant(self, seconds: float | None = None) -> None:
        """Energise the relay for ``seconds`` (default ``unlock_seconds``)."""
        with self._wake:
            if self._closed:
                raise LockError("lock is closed")
            self._relock_at = self._clock() + (seconds or self._unlock_seconds)
            self.granted_until = self._relock_at
            try:
                self._relay.on()
            except GPIODeviceClosed:
                if self._closed:  # closed by a signal handler that ran inside this call
                    raise LockError("lock is closed") from None
                raise
            self._wake.notify()
        log.info("lock: relay energised for %.1f s", seconds or self._unlock_seconds)
        self._tell(False)

    def relock(self, reason: str = "timer") -> None:
        """De-energise the relay now; after :meth:`close` it already is, and this does nothing."""
        with self._wake:
            if self._closed:
                return
            try:
                was_unlocked = bool(self._relay.value)
                self._relock_at = None
                self._relay.off()
            except GPIODeviceClosed:
                # Python runs a signal handler between any two bytecodes, and this lock is
                # re-entrant: a handler that ran inside this call has closed the lock, relay off.
                if self._closed:
                    return
                raise
            self._wake.notify()
        if was_unlocked:
            log.info("lock: relay de-energised (%s)", reason)
            self._tell(True)

    def poll(self) -> None:
        """Relock if the grant has expired (the relock thread does this too)."""
        # Checked and acted on under the (re-entrant) lock, so that a grant made in between is
        # never cut short by the expiry of the one before it.
        with self._wake:
            if self._relock_at is not None and self._clock() >= self._relock_at:
                self.relock("timer")

    def _relock_when_due(self) -> None:
        while True:
            with self._wake:
                if self._closed:
                    return
                if self._relock_at is None:
                    self._wake.wait(timeout=1.0)
                    continue
                remaining = self._relock_at - self._clock()
                if remaining > 0:
                    # Bounded so that a clock that jumps (tests) or stalls is re-read regularly.
                    self._wake.wait(timeout=min(remaining, 0.05))
                    continue
                self.relock("timer")

    def close(self) -> None:
        """Relock and release the pin; idempotent."""
        with self._wake:
            if self._closed:
                return
            self._closed = True
            self._relock_at = None
            self._wake.notify()
        try:
            self._relay.off()
        finally:
            self._relay.close()
        self._thread.join(timeout=1.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_lock(lock_config, pin_factory=None, clock=time.monotonic) -> Lock:
    """Build the :class:`Lock` described by a :class:`~daemon.config.LockConfig`.

    ``pin_factory`` lets tests pass gpiozero's ``MockFactory`` they already hold.
    """
    from gpiozero import OutputDevice

    factory = pin_factory or make_pin_factory(lock_config.pin_factory)
    try:
        relay = OutputDevice(lock_config.relay_pin, active_high=lock_config.active_high,
                             initial_value=False, pin_factory=factory)
    except Exception as exc:
        raise LockError(f"relay on GPIO{lock_config.relay_pin} cannot be set up: {exc}") from exc
    return Lock(relay, lock_config.unlock_seconds, clock=clock)
