"""The ``mqtt:`` section, the discovery message and the remote-command rules (no broker needed)."""

import json

import pytest

from daemon.config import Config, InvalidConfig, parse_config
from daemon.publish import discovery
from daemon.publish.remote import RateLimit, check_code, hash_code, parse_command


def test_mqtt_is_off_by_default():
    assert Config().mqtt.enabled is False


def test_two_lines_put_a_door_on_mqtt():
    config = parse_config("mqtt:\n  url: unix:///run/mosquitto/mosquitto.sock\n  door_id: front_door\n")
    mqtt = config.mqtt
    assert mqtt.enabled and mqtt.door_id == "front_door"
    assert (mqtt.base_topic, mqtt.discovery_prefix, mqtt.remote_unlock) == ("avid", "homeassistant", False)


@pytest.mark.parametrize("url", ["mqtt://127.0.0.1:1883", "mqtt://localhost", "mqtt://[::1]:1883",
                                 "unix:///run/mosquitto/mosquitto.sock"])
def test_loopback_and_unix_urls_are_accepted(url):
    assert parse_config(f"mqtt:\n  url: '{url}'\n  door_id: d1\n").mqtt.url == url


def test_bad_mqtt_config_lists_every_error_with_its_key_path():
    text = """\
mqtt:
  url: mqtt://10.0.0.2:1883
  door_id: front door
  remote_unlock: true
  keepalive_seconds: 2
  ca_file: /etc/avid/ca.pem
  remote_unlock_code_hash: plain1234
"""
    with pytest.raises(InvalidConfig) as caught:
        parse_config(text, "bad.yaml")
    problems = {(p.path, p.line) for p in caught.value.problems}
    assert ("mqtt.url", 2) in problems                     # unencrypted to another host
    assert ("mqtt.door_id", 3) in problems                 # a space
    assert ("mqtt.remote_unlock", 4) in problems           # remote unlock without encryption
    assert ("mqtt.keepalive_seconds", 5) in problems
    assert ("mqtt.remote_unlock_code_hash", 7) in problems  # not a hash
    report = caught.value.report()
    assert "only allowed to loopback" in report and "refused over an unencrypted connection" in report


@pytest.mark.parametrize("mqtt, path", [
    ({"url": "mqtts://broker.lan:8883", "door_id": "d"}, "mqtt.ca_file"),
    ({"url": "unix:///run/m.sock"}, "mqtt.door_id"),
    ({"url": "mqtts://broker.lan", "door_id": "d", "ca_file": "/ca", "cert_file": "/c"}, "mqtt.cert_file"),
    ({"url": "unix://relative/m.sock", "door_id": "d"}, "mqtt.url"),
    ({"url": "http://127.0.0.1", "door_id": "d"}, "mqtt.url"),
    ({"url": "unix:///m.sock", "door_id": "d", "remote_unlock_code_hash": hash_code("1234")},
     "mqtt.remote_unlock_code_hash"),
])
def test_inconsistent_mqtt_settings_are_config_errors(mqtt, path):
    with pytest.raises(InvalidConfig) as caught:
        parse_config(json.dumps({"mqtt": mqtt}))
    assert path in [p.path for p in caught.value.problems]


def test_remote_unlock_over_tls_to_another_host_is_allowed():
    config = parse_config(json.dumps({"mqtt": {"url": "mqtts://broker.lan:8883", "door_id": "d",
                                               "ca_file": "/etc/avid/ca.pem", "remote_unlock": True}}))
    assert config.mqtt.remote_unlock


TOPICS = discovery.Topics("avid", "homeassistant", "front")


def test_discovery_without_remote_unlock_shows_a_read_only_lock():
    payload = discovery.discovery_payload(TOPICS, "Front", remote_unlock=False, code_required=False,
                                          door_contact=False, version="1")
    components = payload["components"]
    assert components["lock"]["platform"] == "binary_sensor"
    assert "command_topic" not in json.dumps(payload)
    assert set(components) == {"access", "lock", "lockout"}
    assert components["access"]["event_types"] == list(discovery.EVENT_TYPES)
    assert payload["device"]["identifiers"] == ["avid_front"] and payload["origin"]["name"] == "avid"
    assert payload["availability_topic"] == "avid/front/availability"
    for key, component in components.items():
        assert component["default_entity_id"] == f"{component['platform']}.avid_front_{key}"
        assert "object_id" not in component


def test_discovery_with_remote_unlock_and_a_contact():
    payload = discovery.discovery_payload(TOPICS, "Front", remote_unlock=True, code_required=True,
                                          door_contact=True, version="1")
    components = payload["components"]
    lock = components["lock"]
    assert lock["platform"] == "lock" and lock["command_topic"] == "avid/front/lock/set"
    assert (lock["payload_open"], lock["state_locked"], lock["state_unlocked"]) == ("OPEN", "LOCKED", "UNLOCKED")
    assert "{{ code }}" in lock["command_template"] and lock["code_format"]
    assert {"door", "door_forced", "door_held_open"} <= set(components)
    assert components["door"]["device_class"] == "door"
    assert TOPICS.discovery == "homeassistant/device/avid_front/config"


def test_commands_are_parsed_plain_or_as_json():
    assert parse_command(b"OPEN") == ("unlock", None)
    assert parse_command(b"UNLOCK") == ("unlock", None)
    assert parse_command(b"LOCK") == ("lock", None)
    assert parse_command(b'{"action": "OPEN", "code": "4711"}') == ("unlock", "4711")
    assert parse_command(b'{"action": "OPEN", "code": ""}') == ("unlock", None)
    for junk in (b"", b"open sesame", b"[1]", b"{", b"\xff\xfe"):
        assert parse_command(junk)[0] is None


def test_code_hash_accepts_only_the_code():
    stored = hash_code("4711")
    assert stored.startswith("scrypt$") and "4711" not in stored
    assert check_code("4711", stored)
    assert not check_code("4712", stored)
    assert not check_code(None, stored)
    assert not check_code("4711", "scrypt$broken")
    assert hash_code("4711") != stored  # salted


def test_rate_limit_counts_a_sliding_minute():
    now = [0.0]
    limit = RateLimit(2, clock=lambda: now[0])
    assert limit.allow() and limit.allow()
    assert not limit.allow()
    now[0] = 59.9
    assert not limit.allow()
    now[0] = 60.0
    assert limit.allow()


def _event(accepted, reason, person="alice", end="speech_end", speech=2.0):
    from types import SimpleNamespace

    decision = SimpleNamespace(accepted=accepted, reason=reason, person=person, face=1.234, voice=-2.0,
                               fused=None, runner_up=None, liveness=0.5)
    return SimpleNamespace(attempt_id=7, decision=decision, latency_ms=12.345, end_reason=end,
                           speech_seconds=speech)


def test_event_payload_names_only_granted_people_and_carries_no_embeddings():
    granted = discovery.decision_payload(_event(True, "match"))
    assert (granted["event_type"], granted["person"], granted["attempt"]) == ("granted", "alice", 7)
    assert granted["scores"] == {"face": 1.23, "voice": -2.0, "fused": None, "runner_up": None}
    denied = discovery.decision_payload(_event(False, "face_mismatch"))
    assert (denied["event_type"], denied["person"], denied["reason"]) == ("denied", None, "face_mismatch")
    assert discovery.decision_payload(_event(False, "locked_out"))["event_type"] == "locked_out"
    passer_by = discovery.decision_payload(_event(False, "no_speech", person=None, end="timeout", speech=0.0))
    assert passer_by["reason"] == "abandoned"
    for payload in (granted, denied):
        assert set(payload) == {"event_type", "attempt", "person", "reason", "scores", "liveness",
                                "speech_seconds", "latency_ms", "end", "time"}
        json.loads(discovery.dumps(payload))
