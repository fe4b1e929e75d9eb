"""A real ``avid run`` (real models, replayed recordings, mock GPIO) reporting to a real Mosquitto.

One replay holds two attempts: an enrolled person (alice, on a clip she did not enrol from) and a
stranger, then a quiet tail. Home Assistant is played by a recording client with HA's broker user.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from door_harness import FPS, door_config, enrol_alice, scene
from mqtt_broker import DOOR, PASSWORDS, Broker, Recorder

ROOT_DIR = Path(__file__).resolve().parent.parent
TOPIC = f"avid/{DOOR}"
UNLOCK_S = 1.0


@pytest.fixture(scope="module")
def enrolled_state(pipeline, tmp_path_factory):
    """A state folder with alice enrolled (copied for each run)."""
    state = tmp_path_factory.mktemp("enrolled") / "state"
    enrol_alice(pipeline, door_config(state))
    return state


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """alice, then a stranger, then ``tail`` seconds of an empty scene: one video, one WAV."""
    out = tmp_path_factory.mktemp("replay")
    video, sound = [], []
    for clip, tail in (("s1_bbaf4p", 2.0), ("gridX_lwbsza_lwbsza", 15.0)):
        frames, audio = scene(clip, lead_seconds=1.0, tail_seconds=tail)
        video += frames
        sound.append(audio)
    height, width = video[0].shape[:2]
    writer = cv2.VideoWriter(str(out / "video.avi"), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (width, height))
    for frame in video:
        writer.write(frame)
    writer.release()
    pcm = (np.clip(np.concatenate(sound), -1, 1) * 32767).astype("<i2")
    with wave.open(str(out / "audio.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(pcm.tobytes())
    return out


@pytest.fixture
def broker(tmp_path):
    broker = Broker(tmp_path / "broker").start()
    yield broker
    broker.stop()


def _start(tmp_path, enrolled_state, recording, mqtt: str):
    state = tmp_path / "state"
    shutil.copytree(enrolled_state, state)
    (tmp_path / "mqtt.password").write_text(PASSWORDS[DOOR])
    config = tmp_path / "config.yaml"
    config.write_text(f"""
state:
  directory: {state}
camera:
  backend: replay
  path: {recording / 'video.avi'}
microphone:
  backend: replay
  paths: [{recording / 'audio.wav'}]
attempt:
  cooldown_seconds: 0.5
lock:
  pin_factory: mock
  unlock_seconds: {UNLOCK_S}
mqtt:
  door_id: {DOOR}
  password_file: {tmp_path / 'mqtt.password'}
{mqtt}""")
    env = {k: v for k, v in os.environ.items() if k not in ("AVID_STATE_DIR", "NOTIFY_SOCKET")}
    env["INVOCATION_ID"] = "test"  # journald format: <N> priority prefixes
    stderr = open(tmp_path / "stderr.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "daemon", "run", "--config", str(config)],
                               cwd=ROOT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    return process, tmp_path / "stderr.log"


def _events(messages):
    return [m.json() for m in messages if m.topic == f"{TOPIC}/event"]


def _decisions(log_text: str) -> list[tuple[str, str]]:
    """(decision, person) of every decision line avid wrote."""
    return re.findall(r"decision=(\w+) person=(\S+)", log_text)


def test_run_reports_to_home_assistant_takes_a_remote_open_and_the_will_says_offline(
        tmp_path, broker, enrolled_state, recording):
    ha = Recorder(broker)
    process, log = _start(tmp_path, enrolled_state, recording,
                          f"  url: {broker.unix_url}\n  remote_unlock: true\n")
    try:
        discovery = ha.wait_for(lambda ms: [m.json() for m in ms
                                            if m.topic == f"homeassistant/device/avid_{DOOR}/config"],
                                timeout=60, what="discovery")[-1]
        assert {"access", "lock", "lockout"} <= set(discovery["components"])
        assert discovery["components"]["lock"]["platform"] == "lock"
        ha.wait_for(lambda ms: [m for m in ms if m.topic == f"{TOPIC}/availability" and m.payload == b"online"])
        events = ha.wait_for(lambda ms: len(_events(ms)) >= 2 and _events(ms), timeout=60, what="two events")
        granted, denied = events[:2]
        assert (granted["event_type"], granted["person"], granted["reason"]) == ("granted", "alice", "match")
        assert denied["event_type"] == "denied" and denied["person"] is None
        for event in (granted, denied):
            assert set(event) >= {"attempt", "reason", "scores", "liveness", "speech_seconds", "latency_ms", "time"}
            assert event["time"].endswith("Z")
            # Scores and timings only: no list of numbers (an embedding) anywhere.
            assert all(not isinstance(v, list) for v in event.values())
        assert granted["scores"]["fused"] > 0 and granted["speech_seconds"] >= 1  # at least the early-accept minimum
        lockout = ha.wait_for(lambda ms: [m.json() for m in ms if m.topic == f"{TOPIC}/lockout/state"])[-1]
        assert lockout["locked_out"] is False
        states = lambda ms: [m.payload for m in ms if m.topic == f"{TOPIC}/lock/state"]  # noqa: E731
        ha.wait_for(lambda ms: states(ms)[-1:] == [b"LOCKED"] and b"UNLOCKED" in states(ms), what="grant, relock")

        # Home Assistant opens the door: the relay is energised for unlock_seconds.
        before = len(ha.messages)
        ha.publish(f"{TOPIC}/lock/set", "OPEN")
        ha.wait_for(lambda ms: states(ms[before:])[:2] == [b"UNLOCKED", b"LOCKED"], timeout=10,
                    what="remote unlock then relock")
        remote = ha.wait_for(lambda ms: [e for e in _events(ms) if e["event_type"] == "remote_unlock"])
        assert remote[0]["unlock_seconds"] == UNLOCK_S

        process.kill()  # no clean stop: the broker publishes the last will
        process.wait(timeout=10)
        ha.wait_for(lambda ms: [m for m in ms if m.topic == f"{TOPIC}/availability"][-1].payload == b"offline",
                    timeout=10, what="offline from the will")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        ha.close()
    later = Recorder(broker, topics=(f"{TOPIC}/availability",))
    try:
        retained = later.wait_for(lambda ms: [m for m in ms if m.retain], timeout=5, what="retained availability")
        assert retained[-1].payload == b"offline"
    finally:
        later.close()
    text = log.read_text()
    assert re.search(r"<4>.*event=remote_unlock .*lock/set", text), text[-3000:]


def test_broker_that_disappears_mid_run_changes_no_decision(tmp_path, broker, enrolled_state, recording):
    ha = Recorder(broker)
    process, log = _start(tmp_path, enrolled_state, recording,
                          f"  url: {broker.tls_url}\n  ca_file: {broker.ca_file}\n")
    try:
        ha.wait_for(lambda ms: [m for m in ms if m.topic == f"{TOPIC}/availability" and m.payload == b"online"],
                    timeout=60, what="online over TLS")
        ha.close()
        broker.stop()
        # Both attempts are decided while the broker is away; it comes back for the quiet tail.
        deadline = time.monotonic() + 60
        while len(_decisions(log.read_text())) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        broker.start()
        ha = Recorder(broker)
        deadline = time.monotonic() + 30
        while "is back" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)  # a clean stop, as systemctl stop does
        process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
    text = log.read_text()
    assert process.returncode == 0, text[-3000:]
    assert _decisions(text)[:2] == [("accept", "alice"), ("deny", "-")], text[-3000:]
    assert len(re.findall(r"MQTT broker \S+ unavailable", text)) == 1, text[-3000:]
    assert len(re.findall(r"MQTT broker \S+ is back", text)) == 1, text[-3000:]
    # Both decisions were made while the broker was away.
    away = re.search(r"MQTT broker \S+ unavailable", text).start()
    back = re.search(r"MQTT broker \S+ is back", text).start()
    assert all(away < m.start() < back for m in re.finditer(r"decision=", text)), text[-3000:]
    # A clean stop publishes offline itself (the restarted broker kept nothing from before).
    try:
        ha.wait_for(lambda ms: [m for m in ms if m.topic == f"{TOPIC}/availability"][-1:]
                    and [m for m in ms if m.topic == f"{TOPIC}/availability"][-1].payload == b"offline",
                    timeout=5, what="offline at the clean stop")
    finally:
        ha.close()
