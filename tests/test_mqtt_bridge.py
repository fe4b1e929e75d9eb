"""The MQTT bridge against a real Mosquitto broker, with the real lock on gpiozero's MockFactory.

The test thread plays the main loop: it takes what the bridge submits and calls ``execute``, the
only path by which a remote command reaches the relay.
"""

import json
import logging
import queue
import time

import numpy as np
import pytest

from daemon.actuate.lock import open_lock
from daemon.config import Config
from daemon.publish.mqtt import MqttBridge
from daemon.publish.remote import hash_code
from mqtt_broker import DOOR, PASSWORDS, Broker, Recorder

UNLOCK_S = 0.6
PIN = 17
ROOT = f"avid/{DOOR}"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    broker = Broker(tmp_path_factory.mktemp("broker")).start()
    yield broker
    broker.stop()


@pytest.fixture
def recorder(broker):
    recorder = Recorder(broker)
    yield recorder
    recorder.close()


def _config(broker, tmp_path, **mqtt):
    password = tmp_path / "mqtt.password"
    password.write_text(PASSWORDS[DOOR] + "\n")
    settings = {"url": broker.unix_url, "door_id": DOOR, "password_file": str(password)} | mqtt
    return Config.model_validate({"mqtt": settings,
                                  "lock": {"pin_factory": "mock", "relay_pin": PIN, "unlock_seconds": UNLOCK_S}})


class Door:
    """A lock, a bridge and the command queue the main loop would drain."""

    def __init__(self, config, factory):
        self.lock = open_lock(config.lock, pin_factory=factory)
        self.pin = factory.pin(PIN)
        self.commands: queue.Queue = queue.Queue()
        self.bridge = MqttBridge(config.mqtt, config.lock, submit=self.commands.put)
        self.lock.add_listener(self.bridge.on_lock)
        self.bridge.on_lock(True)
        self.bridge.start()

    def run_commands(self, seconds: float) -> int:
        """Act as the main loop for ``seconds``; return how many commands energised the relay."""
        done, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                command = self.commands.get(timeout=0.05)
            except queue.Empty:
                continue
            done += self.bridge.execute(command, self.lock) and command.action == "unlock"
        return done

    def close(self):
        self.lock.relock("test over")
        self.lock.close()
        self.bridge.close()


@pytest.fixture
def make_door(mock_factory):
    doors = []

    def make(config):
        doors.append(Door(config, mock_factory))
        return doors[-1]

    yield make
    for door in doors:
        door.close()


def _online(recorder):
    recorder.wait_for(lambda ms: any(m.topic == f"{ROOT}/availability" and m.payload == b"online" for m in ms),
                      what="availability online")


def test_states_and_discovery_are_republished_when_home_assistant_announces_itself(
        broker, recorder, make_door, tmp_path):
    door = make_door(_config(broker, tmp_path))
    _online(recorder)
    config = recorder.wait_for(lambda ms: [m for m in ms if m.topic == "homeassistant/device/avid_front/config"])
    assert config[-1].json()["components"]["lock"]["platform"] == "binary_sensor"  # remote unlock off
    door.bridge.on_lockout({"locked_out": False, "consecutive_failures": 2, "remaining_seconds": 0})
    recorder.wait_for(lambda ms: [m for m in ms if m.topic == f"{ROOT}/lockout/state"])
    count = len(recorder.messages)
    recorder.publish("homeassistant/status", "online")
    again = recorder.wait_for(lambda ms: {m.topic for m in ms[count:]} >= {
        "homeassistant/device/avid_front/config", f"{ROOT}/availability", f"{ROOT}/lock/state",
        f"{ROOT}/lockout/state"}, what="everything republished")
    assert again
    # A client connecting later gets the states as retained messages.
    late = Recorder(broker, topics=(f"{ROOT}/#",))
    try:
        retained = late.wait_for(lambda ms: {m.topic: m for m in ms if m.retain}.keys() >= {
            f"{ROOT}/availability", f"{ROOT}/lock/state", f"{ROOT}/lockout/state"} and ms)
        states = {m.topic: m.payload for m in retained if m.retain}
        assert states[f"{ROOT}/lock/state"] == b"LOCKED"
        assert json.loads(states[f"{ROOT}/lockout/state"])["consecutive_failures"] == 2
    finally:
        late.close()


def test_without_remote_unlock_a_command_does_nothing(broker, recorder, make_door, tmp_path):
    door = make_door(_config(broker, tmp_path))
    _online(recorder)
    recorder.publish(f"{ROOT}/lock/set", "OPEN")
    assert door.run_commands(1.0) == 0
    assert door.pin.state is False


def test_authorised_open_energises_the_relay_for_unlock_seconds(broker, recorder, make_door, tmp_path, caplog):
    door = make_door(_config(broker, tmp_path, remote_unlock=True))
    _online(recorder)
    door.pin.clear_states()
    with caplog.at_level(logging.WARNING, logger="daemon.publish.mqtt"):
        recorder.publish(f"{ROOT}/lock/set", "OPEN")
        assert door.run_commands(UNLOCK_S + 1.0) == 1
    levels = [s.state for s in door.pin.states]
    assert levels[-2:] == [True, False]
    assert UNLOCK_S * 0.9 <= door.pin.states[-1].timestamp <= UNLOCK_S + 0.5
    assert any("remote_unlock" in r.getMessage() and "lock/set" in r.getMessage() for r in caplog.records)
    event = recorder.wait_for(lambda ms: [m.json() for m in ms if m.topic == f"{ROOT}/event"])[-1]
    assert event["event_type"] == "remote_unlock" and event["source"]
    states = recorder.wait_for(lambda ms: [m.payload for m in ms if m.topic == f"{ROOT}/lock/state"][-1:]
                               == [b"LOCKED"] and [m.payload for m in ms if m.topic == f"{ROOT}/lock/state"])
    assert b"UNLOCKED" in states
    # LOCK relocks at once.
    recorder.publish(f"{ROOT}/lock/set", "UNLOCK")
    recorder.publish(f"{ROOT}/lock/set", "LOCK")
    door.run_commands(0.3)
    assert door.pin.state is False


def test_retained_command_is_ignored_and_cleared(broker, recorder, make_door, tmp_path):
    recorder.publish(f"{ROOT}/lock/set", "OPEN", retain=True)  # waiting for avid to subscribe
    door = make_door(_config(broker, tmp_path, remote_unlock=True))
    _online(recorder)
    door.pin.clear_states()
    assert door.run_commands(1.0) == 0
    assert all(s.state is False for s in door.pin.states)
    late = Recorder(broker, topics=(f"{ROOT}/lock/set",))
    try:
        time.sleep(0.5)
        assert not [m for m in late.messages if m.retain], "the retained command is still stored"
    finally:
        late.close()


def test_wrong_code_rate_limit_and_clients_without_rights_do_not_unlock(
        broker, recorder, make_door, tmp_path):
    door = make_door(_config(broker, tmp_path, remote_unlock=True, remote_unlock_per_minute=3,
                             remote_unlock_code_hash=hash_code("4711")))
    _online(recorder)
    code_format = recorder.wait_for(lambda ms: [m.json() for m in ms if m.topic.endswith("/config")])[-1]
    assert code_format["components"]["lock"]["code_format"]
    intruder = Recorder(broker, user="intruder", topics=("avid/#",))
    try:
        intruder.publish(f"{ROOT}/lock/set", '{"action": "OPEN", "code": "4711"}')  # the ACL drops it
        recorder.publish(f"{ROOT}/lock/set", "OPEN")                                # no code
        recorder.publish(f"{ROOT}/lock/set", '{"action": "OPEN", "code": "1234"}')  # wrong code
        assert door.run_commands(1.0) == 0
        assert door.pin.state is False
        recorder.publish(f"{ROOT}/lock/set", '{"action": "OPEN", "code": "4711"}')
        assert door.run_commands(0.5) == 1
        # Two refused codes and one unlock used the three per minute: the right code is refused now.
        recorder.publish(f"{ROOT}/lock/set", '{"action": "OPEN", "code": "4711"}')
        assert door.run_commands(0.5) == 0
    finally:
        intruder.close()


def test_broker_away_is_logged_once_and_back_once(tmp_path, make_door, caplog):
    broker = Broker(tmp_path / "late")  # configured, not started yet
    with caplog.at_level(logging.INFO, logger="daemon.publish.mqtt"):
        door = make_door(_config(broker, tmp_path))
        for i in range(20):
            door.lock.grant()
            door.bridge.on_lock(True)
        time.sleep(1.5)  # paho retries with back-off meanwhile
        broker.start()
        try:
            recorder = Recorder(broker)
            _online(recorder)
            recorder.close()
        finally:
            broker.stop()
        deadline = time.monotonic() + 10
        while sum("unavailable" in r.getMessage() for r in caplog.records) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # room for a wrong, repeated line to show up
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 2, messages  # before the start, after the stop
    assert sum("is back" in m for m in messages) == 1, messages


def test_wiring_reports_door_contact_alarms_exit_button_and_runs_commands_on_the_loop(
        broker, recorder, mock_factory, pipeline, tmp_path):
    from daemon.actuate.door_io import open_door_monitor
    from daemon.publish.wiring import attach
    from daemon.service.door import build_door
    from daemon.service.loop import CaptureLoop
    from door_harness import ScriptedAudio, ScriptedFrames, door_config, initialised

    password = tmp_path / "mqtt.password"
    password.write_text(PASSWORDS[DOOR])
    config = door_config(tmp_path / "state", door={"contact_pin": 5, "exit_button_pin": 6},
                         mqtt={"url": broker.unix_url, "door_id": DOOR, "password_file": str(password),
                               "remote_unlock": True})
    lock = open_lock(config.lock, pin_factory=mock_factory)
    monitor = open_door_monitor(config.door, lock, mock_factory)
    contact, exit_pin, relay = mock_factory.pin(5), mock_factory.pin(6), mock_factory.pin(PIN)
    contact.drive_low()  # the door is closed
    # Replay sources that end at once: the loop only runs its main thread here.
    loop = CaptureLoop(build_door(initialised(config), pipeline=pipeline), lock, lambda: ScriptedFrames([]),
                       lambda: ScriptedAudio(np.zeros(0, np.float32)))
    bridge = attach(loop, lock, monitor, config)
    try:
        _online(recorder)
        components = recorder.wait_for(lambda ms: [m.json() for m in ms if m.topic.endswith("/config")])[-1]
        assert {"door", "door_forced", "door_held_open"} <= set(components["components"])

        def last(topic):
            return lambda ms: ([m.payload for m in ms if m.topic == f"{ROOT}/{topic}"] or [None])[-1]

        recorder.wait_for(lambda ms: last("door/state")(ms) == b"closed", what="door closed at start")
        contact.drive_high()  # opened without a grant
        recorder.wait_for(lambda ms: last("door/state")(ms) == b"open", what="door open")
        alarms = recorder.wait_for(lambda ms: (last("alarm/state")(ms) or b"{}").count(b"true") and
                                   json.loads(last("alarm/state")(ms)))
        assert alarms == {"door_forced": True, "door_held_open": False}
        contact.drive_low()
        recorder.wait_for(lambda ms: last("door/state")(ms) == b"closed" and
                          json.loads(last("alarm/state")(ms)) == {"door_forced": False, "door_held_open": False},
                          what="door closed, alarms cleared")
        exit_pin.drive_low()  # pressed
        events = recorder.wait_for(lambda ms: {e["event_type"] for e in
                                               (m.json() for m in ms if m.topic == f"{ROOT}/event")}
                                   >= {"door_forced", "request_to_exit"}, what="events")
        assert events
        exit_pin.drive_high()
        lock.relock("test")
        # A remote OPEN is queued for the loop; the loop's main thread (run here) carries it out.
        relay.clear_states()
        recorder.publish(f"{ROOT}/lock/set", "OPEN")
        time.sleep(0.3)
        assert relay.state is False  # nothing touches the relay until the main loop drains its queue
        loop.run(duration_s=0.5)
        assert [s.state for s in relay.states][-2:] == [True, False], "the loop did not run the queued command"
    finally:
        bridge.close()
        monitor.close()
        lock.close()


def test_unreadable_secrets_are_start_up_errors(broker, tmp_path):
    from daemon.errors import ConfigError

    missing = _config(broker, tmp_path, password_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="password_file"):
        MqttBridge(missing.mqtt, missing.lock)
    no_ca = _config(broker, tmp_path, url=broker.tls_url, ca_file=str(tmp_path / "no-ca.pem"))
    with pytest.raises(ConfigError, match="TLS"):
        MqttBridge(no_ca.mqtt, no_ca.lock)


def test_close_is_idempotent_and_bounded_with_a_broker_that_never_answers(tmp_path):
    import socket
    import threading

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # accepts connections into its backlog, never reads or answers
    try:
        config = Config.model_validate({"mqtt": {"url": f"mqtt://127.0.0.1:{silent.getsockname()[1]}",
                                                 "door_id": DOOR}})
        bridge = MqttBridge(config.mqtt, config.lock).start()
        bridge.on_lock(False)
        bridge.on_exit_request()
        closer = threading.Thread(target=lambda: (bridge.close(), bridge.close()))
        closer.start()
        closer.join(timeout=20)
        assert not closer.is_alive(), "close() hangs on a silent broker"
        bridge.on_lock(True)  # after close: ignored, no error
    finally:
        silent.close()
