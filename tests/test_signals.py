"""Every terminating signal relocks the door before anything else, and `avid relock` de-energises
the pin after the process is gone (the unit's ExecStopPost=)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from daemon.actuate.lock import Lock, open_lock
from daemon.config import LockConfig
from daemon.errors import LockError
from daemon.service.relock import relock_pin
from daemon.service.signals import install_stop_handlers, terminating_signals

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "tests" / "gpio_line.py"


@pytest.fixture
def lock(mock_factory):
    lock = open_lock(LockConfig(pin_factory="mock", relay_pin=17, unlock_seconds=30), pin_factory=mock_factory)
    yield lock
    lock.close()


def _wait_for(predicate, timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_the_signals_of_the_issue_are_handled():
    handled = set(terminating_signals())
    for name in ("SIGHUP", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGTERM", "SIGINT", "SIGQUIT", "SIGPWR",
                 "SIGVTALRM", "SIGPROF", "SIGXCPU", "SIGIO"):
        assert getattr(signal, name) in handled, name
    assert signal.SIGRTMIN in handled and signal.SIGRTMAX in handled
    for name in ("SIGCHLD", "SIGWINCH", "SIGCONT", "SIGTSTP", "SIGKILL", "SIGSEGV", "SIGPIPE"):
        assert getattr(signal, name) not in handled, name


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGUSR1, signal.SIGALRM, signal.SIGTERM,
                                    signal.SIGINT, signal.SIGQUIT, signal.SIGRTMIN + 3])
def test_a_signal_during_an_unlock_relocks_then_stops(lock, mock_factory, signum):
    pin = mock_factory.pin(17)
    order = []
    handlers = install_stop_handlers(lock, lambda: order.append(("stop", pin.state)))
    try:
        lock.grant()
        assert pin.state == 1
        os.kill(os.getpid(), signum)
        assert _wait_for(lambda: order), "the stop callback never ran"
    finally:
        handlers.restore()
    assert order == [("stop", 0)]  # relocked before the loop was asked to stop
    assert handlers.received == [signum]
    with pytest.raises(Exception, match="closed"):
        lock.grant()  # a decision still in flight cannot open the door again
    assert pin.state == 0


def test_restore_puts_back_the_previous_handlers(lock):
    # SIGINT's handler depends on how the tests were started (a shell's background job inherits
    # it ignored), so each is compared with what it was before.
    before = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGINT)}
    handlers = install_stop_handlers(lock, lambda: None)
    assert signal.getsignal(signal.SIGUSR1) != before[signal.SIGUSR1]
    handlers.restore()
    handlers.restore()  # idempotent
    assert {s: signal.getsignal(s) for s in before} == before


def test_relock_does_not_wait_for_a_busy_main_thread(lock, mock_factory):
    """Python runs handlers only between bytecodes; the wakeup-fd watcher relocks at once even while
    the main thread is inside a long native call (here PBKDF2, standing in for a model)."""
    pin = mock_factory.pin(17)
    # Sized on this machine: a fixed count was too short on an idle, fast core.
    probe = time.monotonic()
    hashlib.pbkdf2_hmac("sha256", b"x", b"y", 100_000)
    iterations = int(100_000 * 1.5 / max(time.monotonic() - probe, 1e-3))
    handlers = install_stop_handlers(lock, lambda: None)
    relocked_at = []

    def watch():
        if _wait_for(lambda: pin.state == 0, timeout_s=10):
            relocked_at.append(time.monotonic())

    try:
        lock.grant()
        watcher = threading.Thread(target=watch)
        killer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGHUP))
        watcher.start()
        killer.start()
        started = time.monotonic()
        hashlib.pbkdf2_hmac("sha256", b"x", b"y", iterations)  # about 1.5 s of C, no bytecode
        busy_until = time.monotonic()
        watcher.join(timeout=10)
        killer.join(timeout=10)
    finally:
        handlers.restore()
    assert busy_until - started > 0.5, "the native call was too short to show anything"
    assert relocked_at and relocked_at[0] < busy_until - 0.1


def test_other_signals_do_not_touch_the_lock(lock, mock_factory):
    handlers = install_stop_handlers(lock, lambda: pytest.fail("stopped on SIGCHLD"))
    previous = signal.signal(signal.SIGCHLD, lambda *_: None)  # a Python handler: it uses the wakeup fd
    try:
        lock.grant()
        os.kill(os.getpid(), signal.SIGCHLD)
        time.sleep(0.2)
        assert mock_factory.pin(17).state == 1
    finally:
        signal.signal(signal.SIGCHLD, previous)
        handlers.restore()


# --- avid relock (ExecStopPost=) ------------------------------------------------------------
def test_relock_pin_drives_an_energised_line_to_locked(mock_factory):
    from gpiozero import OutputDevice

    left_on = OutputDevice(17, pin_factory=mock_factory)
    left_on.on()
    left_on.close()  # the process that drove it is gone; the level stays
    mock_factory.pin(17).function = "output"
    mock_factory.pin(17).state = 1
    relock_pin(LockConfig(pin_factory="mock", relay_pin=17), pin_factory=mock_factory)
    assert mock_factory.pin(17).state == 0


def test_relock_pin_with_an_active_low_relay(mock_factory):
    relock_pin(LockConfig(pin_factory="mock", relay_pin=22, active_high=False), pin_factory=mock_factory)
    assert mock_factory.pin(22).state == 1  # de-energised = high for an active-low board


def _line_env(gpio_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("AVID_STATE_DIR", "PYTHONPATH")}
    env["AVID_TEST_GPIO_DIR"] = str(gpio_dir)
    return env


def test_avid_relock_after_a_kill_leaves_the_line_locked(tmp_path):
    """A process killed mid-unlock leaves the line high; `avid relock` (in a new process, as
    systemd runs it) brings it low."""
    from gpio_line import levels

    config = tmp_path / "config.yaml"
    config.write_text("lock:\n  pin_factory: mock\n  relay_pin: 23\n")
    snippet = ("import os, sys, time; sys.path.insert(0, 'tests'); import gpio_line\n"
               "from daemon.actuate.lock import open_lock; from daemon.config import LockConfig\n"
               "lock = open_lock(LockConfig(pin_factory='mock', relay_pin=23), gpio_line.LineFactory())\n"
               "lock.grant(); print('on', flush=True); time.sleep(60)\n")
    env = _line_env(tmp_path)
    process = subprocess.Popen([sys.executable, "-c", snippet], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout.readline().strip() == "on"
    finally:
        process.kill()
        process.wait(timeout=10)
    assert levels(tmp_path, 23)[-1] == 1  # what SIGKILL leaves behind
    result = subprocess.run([sys.executable, str(LINE), "relock", "--config", str(config)], cwd=ROOT,
                            env=dict(env, SERVICE_RESULT="signal", EXIT_STATUS="KILL"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "GPIO23 de-energised after the service ended (signal, status KILL)" in result.stdout
    assert levels(tmp_path, 23)[-1] == 0


def test_avid_relock_with_a_config_broken_elsewhere_still_uses_its_lock_section(tmp_path):
    from gpio_line import levels

    (tmp_path / "GPIO6").write_text("1\n")
    config = tmp_path / "config.yaml"
    config.write_text("lock:\n  pin_factory: mock\n  relay_pin: 6\ncamera:\n  fps: -1\n")
    result = subprocess.run([sys.executable, str(LINE), "relock", "--config", str(config)], cwd=ROOT,
                            env=_line_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "camera.fps" in result.stderr
    assert levels(tmp_path, 6)[-1] == 0


def test_avid_relock_touches_no_pin_without_a_valid_lock_section(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("lock:\n  pin_factory: mock\n  relay_pin: 99\n")
    result = subprocess.run([sys.executable, str(LINE), "relock", "--config", str(config)], cwd=ROOT,
                            env=_line_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
    assert "no pin touched" in result.stderr
    assert not any(tmp_path.glob("GPIO*"))


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 0), (signal.SIGINT, 0), (signal.SIGHUP, 0),
                                            (signal.SIGUSR1, 128 + signal.SIGUSR1),
                                            (signal.SIGALRM, 128 + signal.SIGALRM)])
def test_exit_status_lets_systemd_restart_after_a_stray_signal(lock, signum, status):
    handlers = install_stop_handlers(lock, lambda: None)
    try:
        assert handlers.exit_status() == 0
        os.kill(os.getpid(), signum)
        assert _wait_for(lambda: handlers.received)
    finally:
        handlers.restore()
    assert handlers.exit_status() == status


def test_after_finish_a_late_signal_is_ignored_not_fatal(lock):
    handlers = install_stop_handlers(lock, lambda: None)
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert _wait_for(lambda: handlers.received)
        assert handlers.finish() == 128 + signal.SIGUSR2
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGUSR1)  # would end pytest if it were not ignored
        time.sleep(0.1)
    finally:
        handlers.restore()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


class _InterruptingPin(MockPin):
    """A mock pin that, once armed, sends this process a signal while its level is read: Python
    then runs that signal's handler in the middle of whatever code was reading the pin."""

    armed: int | None = None

    def _get_state(self):
        if _InterruptingPin.armed is not None:
            signum, _InterruptingPin.armed = _InterruptingPin.armed, None
            os.kill(os.getpid(), signum)
        return super()._get_state()


def test_a_signal_inside_the_handling_of_another_neither_raises_nor_reopens():
    """Found by the signal fuzz: SIGUSR2 and SIGXFSZ at once; the second handler closed the relay
    while the first was reading it, and avid ended with a traceback."""
    factory = MockFactory(pin_class=_InterruptingPin)
    lock = open_lock(LockConfig(pin_factory="mock", relay_pin=17, unlock_seconds=30), pin_factory=factory)
    stops = []
    relay_pin = factory.pin(17)
    handlers = install_stop_handlers(lock, lambda: stops.append(1))
    try:
        lock.grant()
        assert relay_pin.state == 1
        _InterruptingPin.armed = signal.SIGXFSZ
        os.kill(os.getpid(), signal.SIGUSR2)  # its handler reads the relay: SIGXFSZ arrives then
        assert _wait_for(lambda: stops)
        assert relay_pin.state == 0
    finally:
        _InterruptingPin.armed = None
        handlers.restore()
        lock.close()
        factory.close()
    assert handlers.received == [signal.SIGUSR2, signal.SIGXFSZ]
    assert stops == [1] and handlers.exit_status() == 128 + signal.SIGUSR2


def test_a_signal_inside_a_grant_leaves_the_relay_off_with_a_lock_error(mock_factory):
    """A handler that runs inside grant() (between its check and driving the relay) closes the
    lock: the grant then fails as on a closed lock, and the relay stays off."""
    armed = []

    def clock():
        if armed:
            os.kill(os.getpid(), armed.pop())
        return time.monotonic()

    relay_pin = mock_factory.pin(17)
    lock = open_lock(LockConfig(pin_factory="mock", relay_pin=17, unlock_seconds=30), pin_factory=mock_factory,
                     clock=clock)
    handlers = install_stop_handlers(lock, lambda: None)
    try:
        armed.append(signal.SIGUSR1)
        with pytest.raises(LockError, match="closed"):
            lock.grant()
    finally:
        handlers.restore()
        lock.close()
    assert handlers.received == [signal.SIGUSR1]
    assert relay_pin.state == 0
