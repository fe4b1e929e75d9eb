"""Signals at generated moments against a real `avid run`: the relay always ends locked.

A real daemon (real models, replay camera and microphone of an enrolled person, so that the door
does open) runs with a mock GPIO line that keeps its level across processes (tests/gpio_line.py).
Hypothesis picks a moment (while starting, once READY=1, or while the relay is energised, plus a
delay) and one or two signals among every terminating one, SIGKILL included. After the process is
gone, the line must be low for every catchable signal, and after the unit's ExecStopPost command
(`avid relock`) for SIGKILL too.

Two targets run the same scenario:

- **forked**: each daemon is forked from a zygote that imported avid once (tests/daemon_zygote.py);
  the child runs the unchanged entry point and ends with the interpreter's own shutdown. About
  1.5 s and 0.3 s of CPU per example, so it runs AVID_FUZZ_EXAMPLES examples (default 6).
- **fresh**: each daemon is a new interpreter, so that a signal can also land while Python imports
  avid (about 0.45 s of CPU the fork skips). It runs a hundredth of AVID_FUZZ_EXAMPLES (at least 4).

The long run, 10,000 forked examples in ten concurrent shards (most of an example is waiting for
the real-time replay; about 70 minutes on a 2-core machine; a shard is one pytest process with its
own seed) and 100 fresh ones::

    for seed in $(seq 1 10); do AVID_FUZZ_EXAMPLES=1000 pytest -q -p no:cacheprovider \
        --hypothesis-seed=$seed "tests/test_signal_fuzz.py::test_forked" & done; wait
    AVID_FUZZ_EXAMPLES=10000 pytest -q "tests/test_signal_fuzz.py::test_fresh"
"""

from __future__ import annotations

import json
import os
import select
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
ZYGOTE = ROOT / "tests" / "daemon_zygote.py"
PIN = 17
FUZZ = int(os.environ.get("AVID_FUZZ_EXAMPLES", "0"))
FORKED_EXAMPLES = FUZZ or 6
FRESH_EXAMPLES = max(4, FUZZ // 100)
SIGNALS = sorted(set(terminating_signals()) | {signal.SIGKILL})


@pytest.fixture(scope="module")
def enrolled_state(pipeline, tmp_path_factory):
    state = tmp_path_factory.mktemp("enrolled") / "state"
    enrol_alice(pipeline, door_config(state))
    return state


class FreshProcess:
    """``avid <argv>`` in a new interpreter."""

    def __init__(self, argv: list[str], env: dict, stderr: Path):
        with open(stderr, "w") as err:
            self._popen = subprocess.Popen([sys.executable, str(LINE), *argv], cwd=ROOT, env=env,
                                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)

    def poll(self):
        return self._popen.poll()

    def send_signal(self, signum: int) -> None:
        self._popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self._popen.wait(timeout=timeout)

    def kill(self) -> None:
        self._popen.kill()


class Zygote:
    """tests/daemon_zygote.py: forks ``avid <argv>`` from an interpreter that imported avid once."""

    def __init__(self):
        self._popen = subprocess.Popen([sys.executable, str(ZYGOTE)], cwd=ROOT, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, bufsize=1)

    def _reply(self, timeout: float | None) -> dict | None:
        ready, _, _ = select.select([self._popen.stdout], [], [], timeout)
        if not ready:
            return None
        line = self._popen.stdout.readline()
        assert line, "the zygote ended"
        return json.loads(line)

    def start(self, argv: list[str], env: dict, stderr: Path) -> "ForkedProcess":
        unset = [name for name in ("AVID_STATE_DIR", "PYTHONPATH", "NOTIFY_SOCKET") if name not in env]
        self._popen.stdin.write(json.dumps({"argv": argv, "env": env, "unset": unset,
                                            "stderr": str(stderr)}) + "\n")
        self._popen.stdin.flush()
        return ForkedProcess(self, self._reply(30)["pid"])

    def close(self) -> None:
        self._popen.stdin.close()
        self._popen.wait(timeout=30)
        self._popen.stdout.close()


class ForkedProcess:
    """A child of the zygote, with the part of Popen's interface the scenario uses."""

    def __init__(self, zygote: Zygote, pid: int):
        self._zygote, self.pid, self.returncode = zygote, pid, None

    def poll(self):
        if self.returncode is None:
            reply = self._zygote._reply(0)
            if reply is not None:
                assert reply["pid"] == self.pid
                self.returncode = reply["returncode"]
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:  # ended, and reaped by the zygote, since the poll
                pass

    def wait(self, timeout: float) -> int:
        if self.returncode is None:
            reply = self._zygote._reply(timeout)
            if reply is None:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            self.returncode = reply["returncode"]
        return self.returncode

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@pytest.fixture(scope="module")
def zygote():
    zygote = Zygote()
    yield zygote
    zygote.close()


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


def _scenario(start, enrolled_state: Path, moment: str, delay_ms: int, signals: list[int],
              gap_ms: int) -> None:
    """Start a door, signal it at the moment, and check the relay and the exit (and the relock)."""
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
        process = start(["run", "--config", str(config)], env, folder / "run.err")
        sent = []
        try:
            if moment == "ready":
                assert _wait(lambda: _ready(sock), 60), "no READY=1"
            elif moment == "unlocked":
                opened = _wait(lambda: levels(gpio, PIN)[-1:] == [1], 60)
                assert opened, ("the enrolled person was never let in",
                                (folder / "run.err").read_text(errors="replace")[-3000:])
            time.sleep(delay_ms / 1000)
            for i, signum in enumerate(signals):
                if process.poll() is None:
                    process.send_signal(signum)
                    sent.append(signum)
                time.sleep(gap_ms / 1000 if i == 0 else 0)
            returncode = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            sock.close()
        stderr = (folder / "run.err").read_text(errors="replace")
        killed = signal.SIGKILL in sent
        if not killed:
            assert levels(gpio, PIN)[-1:] in ([], [0]), (moment, signals, stderr[-2000:])
            if moment != "starting" and sent:  # once running, every signal is handled, never fatal
                # The status is that of the first signal handled. Two signals that are pending
                # together (sent at once, or while the main thread was in a long native call) are
                # handled in the order of their numbers, not the order they were sent.
                allowed = {0 if s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) else 128 + s
                           for s in sent}
                assert returncode in allowed, (returncode, sent, stderr[-2000:])
            assert "Traceback" not in stderr or moment == "starting", stderr[-3000:]
        # systemd's ExecStopPost=, whatever ended the process.
        relock = start(["relock", "--config", str(config)], env, folder / "relock.err")
        assert relock.wait(timeout=60) == 0, (folder / "relock.err").read_text(errors="replace")
        assert levels(gpio, PIN)[-1:] in ([], [0])  # never driven, or driven back low


moments = st.sampled_from(["starting", "ready", "unlocked"])
delays = st.integers(0, 600)
signal_lists = st.lists(st.sampled_from(SIGNALS), min_size=1, max_size=2)
gaps = st.integers(0, 300)
# Found by this test: a second signal 187 ms after the first, while Python was shutting down.
shutdown_find = example(moment="unlocked", delay_ms=365,
                        signals=[signal.SIGRTMIN + 20, signal.SIGRTMIN + 23], gap_ms=187)


# No shrinking: each step would start another daemon; a failure prints its example as it is.
@settings(max_examples=FORKED_EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(moment=moments, delay_ms=delays, signals=signal_lists, gap_ms=gaps)
@shutdown_find
def test_forked(zygote, enrolled_state, moment, delay_ms, signals, gap_ms):
    """Any signal at any moment of a daemon forked after its imports leaves the relay locked."""
    _scenario(zygote.start, enrolled_state, moment, delay_ms, signals, gap_ms)


@settings(max_examples=FRESH_EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(moment=moments, delay_ms=delays, signals=signal_lists, gap_ms=gaps)
@shutdown_find
def test_fresh(enrolled_state, moment, delay_ms, signals, gap_ms):
    """The same with a new interpreter per daemon: signals may also land during the imports."""
    _scenario(FreshProcess, enrolled_state, moment, delay_ms, signals, gap_ms)
