"""Topics and payloads that describe a door to Home Assistant (MQTT device discovery).

One retained device message at ``<prefix>/device/avid_<door_id>/config`` carries the device and
origin blocks and every component (entity). States live under ``<base>/<door_id>/``; Home
Assistant reads them through the topics named here. Pure functions: nothing is sent from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

#: ``event_type`` values of the access event entity.
EVENT_TYPES = ("granted", "denied", "locked_out", "request_to_exit", "door_forced", "door_held_open",
               "remote_unlock")
#: Alarms reported on ``alarm/state`` (both need a door contact).
ALARMS = ("door_forced", "door_held_open")
ONLINE, OFFLINE = "online", "offline"
LOCKED, UNLOCKED = "LOCKED", "UNLOCKED"
DOOR_OPEN, DOOR_CLOSED = "open", "closed"
#: Payloads Home Assistant sends on ``lock/set`` (its defaults, named here for clarity).
PAYLOAD_OPEN, PAYLOAD_UNLOCK, PAYLOAD_LOCK = "OPEN", "UNLOCK", "LOCK"


def software_version() -> str:
    """avid's installed version, for the device and origin blocks."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("avid")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class Topics:
    """Every topic of one door."""

    base: str
    prefix: str
    door_id: str

    @property
    def root(self) -> str:
        return f"{self.base}/{self.door_id}"

    @property
    def availability(self) -> str:
        return f"{self.root}/availability"

    @property
    def lock_state(self) -> str:
        return f"{self.root}/lock/state"

    @property
    def lock_set(self) -> str:
        return f"{self.root}/lock/set"

    @property
    def door_state(self) -> str:
        return f"{self.root}/door/state"

    @property
    def alarm_state(self) -> str:
        return f"{self.root}/alarm/state"

    @property
    def lockout_state(self) -> str:
        return f"{self.root}/lockout/state"

    @property
    def event(self) -> str:
        return f"{self.root}/event"

    @property
    def discovery(self) -> str:
        return f"{self.prefix}/device/avid_{self.door_id}/config"

    @property
    def ha_status(self) -> str:
        """Where Home Assistant announces itself (``online``) after it starts."""
        return f"{self.prefix}/status"


def discovery_payload(topics: Topics, name: str, *, remote_unlock: bool, code_required: bool,
                      door_contact: bool, version: str | None = None) -> dict:
    """The device discovery message of one door.

    :param remote_unlock: a controllable ``lock`` entity; otherwise a read-only ``binary_sensor``
        (device class ``lock``: on means unlocked).
    :param code_required: Home Assistant asks for a code and sends it with the command.
    :param door_contact: a door contact is wired: add the door sensor and the two alarms.
    """
    version = version or software_version()
    uid = f"avid_{topics.door_id}"

    def entity(key: str, platform: str, label: str, **options) -> dict:
        return {"platform": platform, "name": label, "unique_id": f"{uid}_{key}",
                "default_entity_id": f"{platform}.{uid}_{key}", **options}

    components = {
        "access": entity("access", "event", "Access", state_topic=topics.event,
                         event_types=list(EVENT_TYPES), icon="mdi:door-closed-lock"),
        "lockout": entity("lockout", "binary_sensor", "Lockout", device_class="problem",
                          state_topic=topics.lockout_state,
                          value_template="{{ 'ON' if value_json.locked_out else 'OFF' }}",
                          json_attributes_topic=topics.lockout_state),
    }
    if remote_unlock:
        lock = entity("lock", "lock", "Lock", state_topic=topics.lock_state,
                      command_topic=topics.lock_set, payload_lock=PAYLOAD_LOCK,
                      payload_unlock=PAYLOAD_UNLOCK, payload_open=PAYLOAD_OPEN,
                      state_locked=LOCKED, state_unlocked=UNLOCKED, optimistic=False, retain=False)
        if code_required:
            lock["code_format"] = r"^\S{4,}$"
            lock["command_template"] = '{"action": "{{ value }}", "code": "{{ code }}"}'
        components["lock"] = lock
    else:
        components["lock"] = entity("lock", "binary_sensor", "Lock", device_class="lock",
                                    state_topic=topics.lock_state, payload_on=UNLOCKED,
                                    payload_off=LOCKED)
    if door_contact:
        components["door"] = entity("door", "binary_sensor", "Door", device_class="door",
                                    state_topic=topics.door_state, payload_on=DOOR_OPEN,
                                    payload_off=DOOR_CLOSED)
        for alarm in ALARMS:
            components[alarm] = entity(
                alarm, "binary_sensor", alarm.replace("_", " ").capitalize(), device_class="problem",
                state_topic=topics.alarm_state,
                value_template="{{ 'ON' if value_json.%s else 'OFF' }}" % alarm)
    return {
        "device": {"identifiers": [uid], "name": name, "manufacturer": "avid",
                   "model": "audio-visual door identity daemon", "sw_version": version},
        "origin": {"name": "avid", "sw_version": version},
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "qos": 1,
        "components": components,
    }


def utc_now() -> str:
    """The wall-clock time in UTC, ISO 8601 with a Z (for humans and Home Assistant, not timers)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rounded(value, digits: int = 2):
    return None if value is None else round(float(value), digits)


def decision_payload(event) -> dict:
    """The ``event`` message of a decided attempt (a loop ``DecisionEvent``).

    Scores, reasons and timings only: a :class:`~daemon.decide.decision.Decision` never holds
    embeddings or images, and nothing else is read from the event.
    """
    decision = event.decision
    if decision.accepted:
        kind = "granted"
    elif decision.reason == "locked_out":
        kind = "locked_out"
    else:
        kind = "denied"
    speech = getattr(event, "speech_seconds", None)
    end = getattr(event, "end_reason", None)
    reason = decision.reason
    if kind == "denied" and end == "timeout" and not speech:
        reason = "abandoned"  # someone passed by without speaking, as the decision log line says
    return {
        "event_type": kind,
        "attempt": int(event.attempt_id),
        # A denied attempt names nobody, not even the closest enrolled person.
        "person": decision.person if decision.accepted else None,
        "reason": reason,
        "scores": {"face": _rounded(decision.face), "voice": _rounded(decision.voice),
                   "fused": _rounded(decision.fused), "runner_up": _rounded(decision.runner_up)},
        "liveness": _rounded(decision.liveness),
        "speech_seconds": _rounded(speech, 1),
        "latency_ms": _rounded(event.latency_ms, 1),
        "end": end,
        "time": utc_now(),
    }


def simple_event(kind: str, **fields) -> dict:
    """An ``event`` message that is not a decision (door alarms, exit button, remote unlock)."""
    return {"event_type": kind, **fields, "time": utc_now()}


def dumps(payload: dict) -> str:
    """Compact JSON, as sent."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)
