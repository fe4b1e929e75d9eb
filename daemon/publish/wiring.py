"""Connects an :class:`~daemon.publish.mqtt.MqttBridge` to a running door (the one place to re-point).

What it hooks: the lock's listener (relay changes), the door monitor's listener (contact, alarms,
exit button), the loop's decision listener (access events and the lockout state) and the loop's
command queue (remote commands run on the main thread).
"""

from __future__ import annotations

import logging
import time

from daemon.publish.mqtt import MqttBridge

log = logging.getLogger(__name__)

#: Door monitor events → (door open?, alarm raised or None).
_DOOR_EVENTS = {
    "door_open_at_start": (True, None),
    "door_opened": (True, None),
    "door_forced": (True, "door_forced"),
    "door_closed": (False, None),
}


def lockout_state(lockout) -> dict:
    """The retained ``lockout/state`` payload of a :class:`~daemon.decide.lockout.Lockout`."""
    from datetime import datetime, timedelta, timezone

    remaining = lockout.remaining()
    # Published once per decision, so the absolute end tells Home Assistant when it is over.
    until = (datetime.now(timezone.utc) + timedelta(seconds=remaining)).isoformat(timespec="seconds") \
        .replace("+00:00", "Z") if remaining > 0 else None
    return {"locked_out": bool(lockout.locked_out), "consecutive_failures": int(lockout.failures),
            "remaining_seconds": round(remaining, 1), "until": until}


def attach(loop, lock, monitor, config, clock=time.monotonic) -> MqttBridge | None:
    """Start reporting the door to MQTT when ``config.mqtt`` is enabled; None when it is off.

    :param loop: the :class:`~daemon.service.loop.CaptureLoop` (decision listener, ``submit``).
    :param lock: the :class:`~daemon.actuate.lock.Lock`.
    :param monitor: the :class:`~daemon.actuate.door_io.DoorMonitor`, or None when nothing is wired.
    :param config: the whole :class:`~daemon.config.Config`.

    The caller must :meth:`~MqttBridge.close` the bridge at shutdown (after the lock has relocked).
    """
    if not config.mqtt.enabled:
        return None
    bridge: MqttBridge | None = None

    def submit(command) -> None:
        loop.submit(lambda: bridge.execute(command, lock))

    door_contact = monitor is not None and monitor.is_open is not None
    bridge = MqttBridge(config.mqtt, config.lock, clock=clock, submit=submit, door_contact=door_contact)
    bridge.on_lock(not lock.is_unlocked)
    bridge.on_lockout(lockout_state(loop.lockout))
    if door_contact:
        bridge.on_door(monitor.is_open)
    lock.add_listener(bridge.on_lock)

    def on_decision(event) -> None:
        bridge.on_decision(event)
        bridge.on_lockout(lockout_state(loop.lockout))

    loop.add_decision_listener(on_decision)
    if monitor is not None:
        def on_door_event(name: str) -> None:
            if name == "request_to_exit":
                bridge.on_exit_request()
            elif name == "door_held_open":
                bridge.on_alarm("door_held_open", True)
            elif name in _DOOR_EVENTS:
                is_open, alarm = _DOOR_EVENTS[name]
                bridge.on_door(is_open)
                if alarm:
                    bridge.on_alarm(alarm, True)

        monitor.add_listener(on_door_event)
    return bridge.start()
