"""HealthGate pings the systemd watchdog only while frames are fresh and inference works."""

from __future__ import annotations

import logging
import os
import socket

import pytest

from daemon.service.sdnotify import Notifier
from daemon.service.watchdog import HealthGate

WATCHDOG_S = 10.0
LOGGER = "daemon.service.watchdog"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def systemd(tmp_path):
    """A real datagram socket standing in for systemd's notify socket, with a 10 s watchdog."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6)),
           "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier(env)
    yield sock, notifier
    notifier.close()
    sock.close()


def drain(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def pings(sock: socket.socket) -> int:
    return drain(sock).count("WATCHDOG=1")


def healthy_iteration(gate: HealthGate, clock: FakeClock, step_s: float = 0.5) -> bool:
    clock.advance(step_s)
    gate.frame_seen()
    gate.inference_ok()
    return gate.iteration_done()


def test_fresh_iterations_ping_at_most_every_half_interval(systemd):
    sock, notifier = systemd
    clock = FakeClock()
    gate = HealthGate(notifier, clock=clock)
    assert healthy_iteration(gate, clock)
    assert pings(sock) == 1
    # 0.5 s steps for 12 s: one ping per 5 s (half of WatchdogSec=10s).
    for _ in range(24):
        assert healthy_iteration(gate, clock)
    assert pings(sock) == 2
    assert gate.feeding


def test_no_ping_before_any_frame_or_inference(systemd):
    sock, notifier = systemd
    clock = FakeClock()
    gate = HealthGate(notifier, clock=clock)
    clock.advance(0.5)
    assert gate.iteration_done() is False
    gate.frame_seen()
    assert gate.iteration_done() is False
    assert pings(sock) == 0
    gate.inference_ok()
    assert gate.iteration_done() is True
    assert pings(sock) == 1


def test_stops_on_stale_frames_and_resumes_with_single_log_lines(systemd, caplog):
    sock, notifier = systemd
    clock = FakeClock()
    gate = HealthGate(notifier, clock=clock, max_frame_age_s=2.0, max_inference_age_s=5.0)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    for _ in range(4):
        healthy_iteration(gate, clock)
    drain(sock)

    # The camera freezes: iterations go on (e.g. on read time-outs) with no new frame.
    for _ in range(30):
        clock.advance(0.5)
        gate.inference_ok()
        gate.iteration_done()
    messages = drain(sock)
    assert messages.count("WATCHDOG=1") == 0  # last ping was < 5 s before the frames went stale
    assert "STATUS=unhealthy: stale frames" in messages
    assert not gate.feeding
    stopped = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(stopped) == 1
    assert "stale frames" in stopped[0].getMessage()

    # 15 s with no ping: well past WatchdogSec, so systemd would have restarted us by now.
    clock.advance(15)
    assert gate.iteration_done() is False
    assert pings(sock) == 0

    for _ in range(10):
        healthy_iteration(gate, clock)
    messages = drain(sock)
    assert messages.count("WATCHDOG=1") == 1
    assert "STATUS=running" in messages
    resumed = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(resumed) == 1
    assert [r.levelno for r in caplog.records].count(logging.WARNING) == 1
    assert gate.feeding


def test_stops_when_inference_keeps_failing(systemd, caplog):
    sock, notifier = systemd
    clock = FakeClock()
    gate = HealthGate(notifier, clock=clock, max_frame_age_s=2.0, max_inference_age_s=3.0)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    healthy_iteration(gate, clock)
    drain(sock)
    # Frames keep coming but the detector throws every time: inference_ok() is never called.
    for _ in range(20):
        clock.advance(0.5)
        gate.frame_seen()
        gate.iteration_done()
    assert "WATCHDOG=1" not in drain(sock)[1:]
    assert len(caplog.records) == 1
    assert "no inference" in caplog.records[0].getMessage()


def test_camera_that_never_delivers_is_reported_after_the_grace(systemd, caplog):
    sock, notifier = systemd
    clock = FakeClock()
    gate = HealthGate(notifier, clock=clock, max_frame_age_s=2.0, max_inference_age_s=5.0)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for _ in range(8):  # 4 s: still inside the start-up grace
        clock.advance(0.5)
        gate.iteration_done()
    assert caplog.records == []
    for _ in range(4):
        clock.advance(0.5)
        gate.iteration_done()
    assert len(caplog.records) == 1
    assert "stale frames" in caplog.records[0].getMessage()
    assert "never" in caplog.records[0].getMessage()
    assert pings(sock) == 0


def test_without_a_watchdog_nothing_is_sent_but_health_is_tracked(tmp_path):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    try:
        clock = FakeClock()
        gate = HealthGate(Notifier({"NOTIFY_SOCKET": str(path)}), clock=clock)
        assert healthy_iteration(gate, clock)
        assert pings(sock) == 0
    finally:
        sock.close()


def test_outside_systemd_the_gate_still_works():
    clock = FakeClock()
    gate = HealthGate(Notifier({}), clock=clock)
    assert healthy_iteration(gate, clock)
    clock.advance(3.0)
    assert gate.iteration_done() is False


def test_rejects_non_positive_limits():
    with pytest.raises(ValueError):
        HealthGate(Notifier({}), max_frame_age_s=0)


def test_grace_starts_with_the_first_iteration_not_at_construction(systemd, caplog):
    sock, notifier = systemd
    clock = FakeClock()
    gate = HealthGate(notifier, clock=clock, max_frame_age_s=2.0, max_inference_age_s=5.0)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock.advance(30.0)  # loading the models
    gate.iteration_done()
    assert caplog.records == []
    assert healthy_iteration(gate, clock)
    assert pings(sock) == 1
