"""`avid run` as systemd runs it: READY=1 only after a successful start-up, WATCHDOG=1 only while
fresh frames arrive, STOPPING=1 at the end; a broken model means no READY, a non-zero exit and a
relay that was never energised."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from door_harness import DEMO
from daemon.state.keys import create_device_key

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield sock, path
    sock.close()


def _config(tmp_path, clip="s1_bbaf4p", models_dir=None, extra=""):
    # An initialised door (as tools/install.sh or a first enrolment leaves it): `avid run` never
    # creates a device key itself.
    create_device_key(tmp_path / "state" / "device.key")
    config = tmp_path / "config.yaml"
    config.write_text(f"""
models:
  directory: {models_dir or ''}
state:
  directory: {tmp_path / 'state'}
camera:
  backend: replay
  path: {DEMO / clip / 'video.mpg'}
microphone:
  backend: replay
  paths: [{DEMO / clip / 'audio_16k.wav'}]
  gap_seconds: 1.0
lock:
  pin_factory: mock
{extra}""")
    return config


def _run(config, sock_path, timeout=60, **env):
    environment = {k: v for k, v in os.environ.items() if k != "AVID_STATE_DIR"}
    environment.update(NOTIFY_SOCKET=str(sock_path), INVOCATION_ID="test", WATCHDOG_USEC="1000000",
                       **env)
    return subprocess.Popen([sys.executable, "-m", "daemon", "run", "--config", str(config)],
                            cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _messages(sock, process, timeout=60):
    messages, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            messages.append(sock.recv(4096).decode())
        except socket.timeout:
            if process.poll() is not None:
                break
    return messages


def test_ready_then_watchdog_then_stopping(tmp_path, notify_socket):
    sock, path = notify_socket
    process = _run(_config(tmp_path), path)
    messages = _messages(sock, process)
    process.wait(timeout=30)
    assert process.returncode == 0, process.stderr.read()
    ready = messages.index("READY=1")
    watchdog = [i for i, m in enumerate(messages) if m == "WATCHDOG=1"]
    assert watchdog and min(watchdog) > ready
    assert "STOPPING=1" in messages[ready:], messages
    stderr = process.stderr.read()
    # journald format: priority prefixes, no timestamps.
    assert any(line.startswith("<6>") for line in stderr.splitlines())
    assert "decision=" in stderr


def test_stale_frames_stop_the_watchdog(tmp_path, notify_socket):
    # A folder with one image replayed in a loop is a camera handing out the same frame: the
    # loop declares it frozen after max_frame_age_seconds, and the watchdog is no longer fed.
    sock, path = notify_socket
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2
    from door_harness import clip_frames
    cv2.imwrite(str(frames / "0.png"), clip_frames("s1_bbaf4p")[10])
    config = _config(tmp_path, extra="watchdog:\n  max_frame_age_seconds: 1.0\n")
    text = config.read_text().replace(f"path: {DEMO / 's1_bbaf4p' / 'video.mpg'}",
                                      f"path: {frames}\n  loop: true").replace(
        "gap_seconds: 1.0", "gap_seconds: 0.0")
    config.write_text(text)
    process = _run(config, path)
    received = []
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        try:
            received.append((time.monotonic(), sock.recv(4096).decode()))
        except socket.timeout:
            pass
    process.terminate()
    process.wait(timeout=10)
    while True:
        try:
            received.append((time.monotonic(), sock.recv(4096).decode()))
        except socket.timeout:
            break
    ready_at = next(t for t, m in received if m == "READY=1")
    pings = [t for t, m in received if m == "WATCHDOG=1"]
    assert any("camera unavailable" in m for _, m in received)
    # Pings may come while the first frames are fresh, never in the last several seconds.
    assert not pings or max(pings) < ready_at + 3.0
    assert "STOPPING=1" in [m for _, m in received]


def test_broken_model_no_ready_and_non_zero_exit(tmp_path, notify_socket):
    sock, path = notify_socket
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    data = (models / "face_encoder.tflite").read_bytes()
    (models / "face_encoder.tflite").write_bytes(data[: len(data) // 2])
    process = _run(_config(tmp_path, models_dir=models), path)
    messages = _messages(sock, process, timeout=30)
    process.wait(timeout=30)
    assert process.returncode == 1
    assert "READY=1" not in messages
    assert "face_encoder" in process.stderr.read()


def test_bad_config_exits_78_without_ready(tmp_path, notify_socket):
    sock, path = notify_socket
    config = tmp_path / "bad.yaml"
    config.write_text("lock:\n  relay_pin: 99\n  unlock_secs: 3\n")
    process = _run(config, path)
    messages = _messages(sock, process, timeout=20)
    process.wait(timeout=20)
    assert process.returncode == 78
    assert "READY=1" not in messages
    err = process.stderr.read()
    assert "lock.relay_pin" in err and "did you mean 'unlock_seconds'" in err
