"""The door's other wires: a door contact and a request-to-exit button (both optional).

* Door contact (closed = pin low, through the internal pull-up): when the door opens during a grant
  the relay is de-energised at once (the door is through; no reason to leave it unlocked); when it
  opens without a grant or exit request, a ``door_forced`` alarm is logged; when it stays open longer
  than ``held_open_seconds``, a ``door_held_open`` alarm is logged (once per opening).
* Exit button: unlocks for ``unlock_seconds`` and suppresses the forced alarm for that opening.
  The way out must never depend on the Pi: this button is a convenience next to a mechanical exit.

Alarms are journald lines at error/warning priority with stable ``event=`` fields.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

#: Seconds after a grant or exit request during which an opening is still legitimate
#: (people pull the door a moment after the strike has relocked).
GRACE_SECONDS = 3.0


class DoorMonitor:
    """Watches the contact and the exit button; ``lock`` is a :class:`~daemon.actuate.lock.Lock`."""

    def __init__(self, lock, contact=None, exit_button=None, held_open_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self._lock = lock
        self._contact, self._exit = contact, exit_button
        self._held_open_seconds = held_open_seconds
        self._clock = clock
        self._opened_at: float | None = None
        self._held_reported = False
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self.events: list[str] = []
        self._listeners: list[Callable[[str], object]] = []
        if contact is not None:
            contact.when_released = self._door_opened   # contact opens: pin pulled high
            contact.when_pressed = self._door_closed
            if not contact.is_pressed:
                self._opened_at = clock()
                self._event(logging.WARNING, "door_open_at_start", "the door is open as avid starts")
        if exit_button is not None:
            exit_button.when_pressed = self._exit_requested
        self._thread = threading.Thread(target=self._watch, name="avid-door", daemon=True)
        self._thread.start()

    @property
    def is_open(self) -> bool | None:
        """Whether the door is open; None without a contact."""
        return None if self._contact is None else self._opened_at is not None

    def add_listener(self, listener: Callable[[str], object]) -> None:
        """Call ``listener(event_name)`` after each event (``door_opened``, ``door_forced``, ...).

        Listeners run on gpiozero's or the monitor's thread and must not block; their errors are
        logged and never reach the monitor.
        """
        self._listeners.append(listener)

    def _event(self, level: int, name: str, detail: str) -> None:
        self.events.append(name)
        log.log(level, "event=%s %s", name, detail)
        for listener in self._listeners:
            try:
                listener(name)
            except Exception:
                log.exception("door listener failed")

    def _exit_requested(self) -> None:
        self._event(logging.INFO, "request_to_exit", "exit button pressed: unlocking")
        self._lock.grant()

    def _door_opened(self) -> None:
        with self._guard:
            now = self._clock()
            self._opened_at, self._held_reported = now, False
            authorised = now <= self._lock.granted_until + GRACE_SECONDS
        if authorised:
            self._event(logging.INFO, "door_opened", "after a grant: relocking now")
            self._lock.relock("door opened")
        else:
            self._event(logging.ERROR, "door_forced", "door opened without a grant or exit request")

    def _door_closed(self) -> None:
        with self._guard:
            self._opened_at = None
        self._event(logging.INFO, "door_closed", "door closed")

    def poll(self) -> None:
        """Raise ``door_held_open`` when due (the monitor's thread calls this too)."""
        with self._guard:
            due = (self._opened_at is not None and not self._held_reported
                   and self._clock() - self._opened_at >= self._held_open_seconds)
            if due:
                self._held_reported = True
        if due:
            self._event(logging.WARNING, "door_held_open",
                        f"door open for more than {self._held_open_seconds:g} s")

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            self.poll()

    def close(self) -> None:
        """Stop watching and release the pins; idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=1.0)
        for device in (self._contact, self._exit):
            if device is not None:
                device.close()


def open_door_monitor(door_config, lock, pin_factory, clock=time.monotonic) -> DoorMonitor | None:
    """Build the monitor from a :class:`~daemon.config.DoorConfig`; None when nothing is wired."""
    if door_config.contact_pin is None and door_config.exit_button_pin is None:
        return None
    from gpiozero import Button

    from daemon.errors import LockError

    try:
        contact = Button(door_config.contact_pin, pull_up=True, pin_factory=pin_factory) \
            if door_config.contact_pin is not None else None
        exit_button = Button(door_config.exit_button_pin, pull_up=True, bounce_time=0.05,
                             pin_factory=pin_factory) if door_config.exit_button_pin is not None else None
    except Exception as exc:
        raise LockError(f"door inputs cannot be set up: {exc}") from exc
    return DoorMonitor(lock, contact, exit_button, door_config.held_open_seconds, clock=clock)
