"""Signals at generated moments against a real `avid run`: the relay always ends locked.

A real daemon (real models, replay camera and microphone of an enrolled person, so that the door
does open) runs with a mock GPIO line that keeps its level across processes (tests/gpio_line.py).
Hypothesis picks a moment (while starting, once READY=1, or while the relay is energised, plus a
delay) and one or two signals among every terminating one, SIGKILL included. After the process is
gone, the line must be low for every catchable signal, and after the unit's ExecStopPost command
(`avid relock`) for SIGKILL too.

Every example starts a daemon that loads its models and replays a 4 s attempt (5-10 s per example
on a 2-core machine), so this target runs a hundredth of AVID_FUZZ_EXAMPLES (at least 4, the
default): the long run, 100 examples, takes about 10 minutes::

    AVID_FUZZ_EXAMPLES=10000 pytest tests/test_signal_fuzz.py
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from daemon.service.signals import terminating_signals
from door_harness import DEMO, door_config, enrol_alice
from gpio_line import GPIO_DIR_ENV, levels

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "tests" / "gpio_line.py"
PIN = 17
# AVID_FUZZ_EXAMPLES counts examples of the cheap fuzzers; here each one is a daemon start.
EXAMPLES = max(4, int(os.environ.get("AVID_FUZZ_EXAMPLES", "0")) // 100)
SIGNALS = sorted(set(terminating_signals()) | {signal.SIGKILL})


@pytest.fixture(scope="module")
def enrolled_state(pipeline, tmp_path_factory):
    state = tmp_path_factory.mktemp("enrolled") / "state"
    enrol_alice(pipeline, door_config(state))
    return state


def _config(folder: Path, state: Path) -> Path:
    clip = DEMO / "s1_bbaf4p"
    config = folder / "config.yaml"
    config.write_text(f"""
state:
  directory: {state}
camera:
  backend: replay
  path: {clip / 'video.mpg'}
microphone:
  backend: replay
  paths: [{clip / 'audio_16k.wav'}]
  gap_seconds: 1.0
lock:
  pin_factory: mock
  relay_pin: {PIN}
  unlock_seconds: 2.0
""")
    return config


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _ready(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b"READY=1"
    except (socket.timeout, BlockingIOError):
        return False


# No shrinking: each step would start another daemon; a failure prints its example as it is.
@settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(moment=st.sampled_from(["starting", "ready", "unlocked"]),
       delay_ms=st.integers(0, 600),
       signals=st.lists(st.sampled_from(SIGNALS), min_size=1, max_size=2),
       gap_ms=st.integers(0, 300))
# Found by this test: a second signal 187 ms after the first, while Python was shutting down.
@example(moment="unlocked", delay_ms=365, signals=[signal.SIGRTMIN + 20, signal.SIGRTMIN + 23], gap_ms=187)
def test_any_signal_at_any_moment_leaves_the_relay_locked(enrolled_state, moment, delay_ms, signals,
                                                           gap_ms):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        state = folder / "state"
        shutil.copytree(enrolled_state, state)
        gpio = folder / "gpio"
        gpio.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("AVID_STATE_DIR", "PYTHONPATH")}
        env[GPIO_DIR_ENV] = str(gpio)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(folder / "notify.sock"))
        sock.settimeout(0.05)
        env.update(NOTIFY_SOCKET=str(folder / "notify.sock"))
        config = _config(folder, state)
        process = subprocess.Popen([sys.executable, str(LINE), "run", "--config", str(config)], cwd=ROOT,
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            if moment == "ready":
                assert _wait(lambda: _ready(sock), 60), "no READY=1"
            elif moment == "unlocked":
                opened = _wait(lambda: levels(gpio, PIN)[-1:] == [1], 60)
                assert opened, "the enrolled person was never let in"
            time.sleep(delay_ms / 1000)
            sent = []
            for i, signum in enumerate(signals):
                if process.poll() is None:
                    process.send_signal(signum)
                    sent.append(signum)
                time.sleep(gap_ms / 1000 if i == 0 else 0)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            sock.close()
        stderr = process.stderr.read()
        process.stderr.close()
        killed = signal.SIGKILL in sent
        if not killed:
            assert levels(gpio, PIN)[-1:] in ([], [0]), (moment, signals, stderr[-2000:])
            if moment != "starting" and sent:  # once running, every signal is handled, never fatal
                clean = sent[0] in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
                assert process.returncode == (0 if clean else 128 + sent[0]), stderr[-2000:]
            assert "Traceback" not in stderr or moment == "starting", stderr[-3000:]
        # systemd's ExecStopPost=, whatever ended the process.
        relock = subprocess.run([sys.executable, str(LINE), "relock", "--config", str(config)], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=60)
        assert relock.returncode == 0, relock.stderr
        assert levels(gpio, PIN)[-1:] in ([], [0])  # never driven, or driven back low
