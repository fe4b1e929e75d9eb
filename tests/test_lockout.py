"""The failed-attempt lockout: thresholds, doubling, persistence across restarts, failing closed."""

from __future__ import annotations

import json
import logging
import re

import pytest

from daemon import cli
from daemon.config import STATE_DIR_ENV
from daemon.decide.lockout import Lockout, LockoutPolicy

POLICY = LockoutPolicy(max_consecutive_failures=5, initial_delay_seconds=30, max_delay_seconds=900)


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "lockout.json"


def _fail(lockout: Lockout, times: int) -> None:
    for _ in range(times):
        lockout.record_failure()


def test_five_failures_lock_out_for_30_s_and_not_before(path, clock):
    lockout = Lockout(path, POLICY, clock)
    _fail(lockout, 4)
    assert not lockout.locked_out and lockout.remaining() == 0
    lockout.record_failure()
    assert lockout.locked_out and lockout.remaining() == 30
    clock.now += 29.9
    assert lockout.locked_out
    clock.now += 0.1
    assert not lockout.locked_out


def test_failures_while_locked_out_do_not_extend_it(path, clock):
    lockout = Lockout(path, POLICY, clock)
    _fail(lockout, 5)
    clock.now += 10
    _fail(lockout, 3)
    assert lockout.remaining() == 20 and lockout.level == 1


def test_each_later_failure_doubles_up_to_the_maximum(path, clock):
    lockout = Lockout(path, POLICY, clock)
    _fail(lockout, 5)
    delays = [lockout.remaining()]
    for _ in range(7):
        clock.now += lockout.remaining()
        assert not lockout.locked_out
        lockout.record_failure()  # one failure after expiry is enough
        delays.append(lockout.remaining())
    assert delays == [30, 60, 120, 240, 480, 900, 900, 900]


def test_very_long_attacks_stay_at_the_maximum(path, clock):
    # After 1024 lockouts, 30 * 2 ** level no longer fits in a float; the delay must still be 900 s.
    path.write_text(json.dumps({"consecutive_failures": 5000, "level": 1100, "remaining_seconds": 0}))
    lockout = Lockout(path, POLICY, clock)
    assert not lockout.locked_out
    lockout.record_failure()
    assert lockout.remaining() == 900 and lockout.level == 1101
    assert Lockout(path, POLICY, clock).remaining() == 900


def test_success_resets_everything(path, clock):
    lockout = Lockout(path, POLICY, clock)
    _fail(lockout, 5)
    clock.now += 30
    lockout.record_success()
    assert lockout.failures == 0 and lockout.level == 0 and not lockout.locked_out
    _fail(lockout, 4)
    assert not lockout.locked_out
    lockout.record_failure()
    assert lockout.remaining() == 30  # back to the first delay
    assert json.loads(path.read_text())["consecutive_failures"] == 5


def test_clear(path, clock):
    lockout = Lockout(path, POLICY, clock)
    _fail(lockout, 5)
    lockout.clear()
    assert not lockout.locked_out and lockout.failures == 0
    assert not Lockout(path, POLICY, FakeClock(0.0)).locked_out


def test_restart_keeps_the_lockout_with_its_remaining_delay(path, clock):
    lockout = Lockout(path, POLICY, clock)
    _fail(lockout, 5)
    clock.now += 12
    lockout.record_failure()  # saved with 18 s remaining
    # A restart: a new object, and the monotonic clock starts again from a different origin.
    after_boot = FakeClock(3.0)
    restarted = Lockout(path, POLICY, after_boot)
    assert restarted.locked_out and restarted.remaining() == pytest.approx(18)
    assert restarted.failures == 6 and restarted.level == 1
    after_boot.now += 18
    assert not restarted.locked_out
    restarted.record_failure()
    assert restarted.remaining() == 60  # the doubling survived the restart


def test_restart_without_a_file_is_not_locked_out(path, clock):
    assert not Lockout(path, POLICY, clock).locked_out
    assert not path.exists()


@pytest.mark.parametrize("content", [
    b"", b"{", b"\xff\xfe\x00garbage", b"[]", b'"text"', b"{}",
    b'{"consecutive_failures": 0, "level": 0}',
    b'{"consecutive_failures": -1, "level": 0, "remaining_seconds": 0}',
    b'{"consecutive_failures": 0, "level": 0, "remaining_seconds": -5}',
    b'{"consecutive_failures": 0, "level": 0, "remaining_seconds": NaN}',
    b'{"consecutive_failures": 0, "level": 0, "remaining_seconds": Infinity}',
    b'{"consecutive_failures": "many", "level": 0, "remaining_seconds": 0}',
    b'{"consecutive_failures": null, "level": 0, "remaining_seconds": 0}',
    # Numbers Python parses but cannot convert (OverflowError) or that mean "forever" / "never".
    b'{"consecutive_failures": 1e999, "level": 0, "remaining_seconds": 0}',
    b'{"consecutive_failures": 0, "level": 1e999, "remaining_seconds": 0}',
    b'{"consecutive_failures": 0, "level": 0, "remaining_seconds": 1e999}',
    b'{"consecutive_failures": 0, "level": 0, "remaining_seconds": -Infinity}',
    b'{"consecutive_failures": Infinity, "level": 0, "remaining_seconds": 0}',
    b'{"consecutive_failures": 0, "level": 0, "remaining_seconds": "0"}',
    b'{"consecutive_failures": 99999999999999999999, "level": 0, "remaining_seconds": 0}',
    b'{"consecutive_failures": 0, "level": 0, "remaining_seconds": ' + b"9" * 400 + b"}",
    b'{"consecutive_failures": 0.5, "level": 0, "remaining_seconds": 0}',
    b'{"consecutive_failures": false, "level": false, "remaining_seconds": 0}',
    b'{"consecutive_failures": 0, "level": 0, "remaining_seconds": 0, "unlocked": true}',
    b'{"consecutive_failures": 0, "level": 0, "remaining_seconds": 0}' + b" " * 5000,
    # Nesting deeper than the interpreter's stack (RecursionError).
    b'{"consecutive_failures": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b"[" * 1_000_000,
])
def test_a_corrupt_file_fails_closed(path, clock, content, caplog):
    path.write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="daemon.decide.lockout"):
        lockout = Lockout(path, POLICY, clock)
    assert lockout.locked_out and lockout.remaining() == 30
    assert "corrupt" in caplog.text
    # The next failure after the delay escalates instead of starting over.
    clock.now += 30
    lockout.record_failure()
    assert lockout.remaining() == 60


def test_a_directory_in_place_of_the_file_fails_closed(path, clock):
    path.mkdir()
    assert Lockout(path, POLICY, clock).locked_out


# --- the installer's view: `avid lockout` after a restart ---------------------------------------
@pytest.fixture
def installer(tmp_path, monkeypatch):
    """A config file and a state directory given through AVID_STATE_DIR; logging restored after."""
    state = tmp_path / "state"
    monkeypatch.setenv(STATE_DIR_ENV, str(state))
    config = tmp_path / "config.yaml"
    config.write_text("lockout:\n  max_consecutive_failures: 3\n  initial_delay_seconds: 600\n")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield state, config
    root.handlers[:] = handlers
    root.setLevel(level)


def test_lockout_command_shows_and_clears_after_a_restart(installer, capsys):
    state, config = installer
    assert cli.main(["lockout", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == "consecutive failures: 0; not locked out"
    # The daemon (which ran before a reboot) recorded three failures.
    daemon = Lockout(state / "lockout.json", LockoutPolicy(3, 600, 900), FakeClock(50.0))
    _fail(daemon, 3)
    del daemon
    assert cli.main(["lockout", "--config", str(config)]) == 0
    shown = capsys.readouterr().out.strip()
    match = re.fullmatch(r"consecutive failures: 3; locked out for (\d+) s more", shown)
    assert match and 595 <= int(match.group(1)) <= 600, shown
    assert cli.main(["lockout", "--config", str(config), "--clear"]) == 0
    assert capsys.readouterr().out.strip() == "lockout cleared"
    assert cli.main(["lockout", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == "consecutive failures: 0; not locked out"
    assert not Lockout(state / "lockout.json", LockoutPolicy(3, 600, 900), FakeClock()).locked_out


def test_a_remaining_delay_beyond_the_maximum_is_capped(path, clock):
    path.write_text('{"consecutive_failures": 9, "level": 3, "remaining_seconds": 1e300}')
    lockout = Lockout(path, POLICY, clock)
    assert lockout.remaining() == POLICY.max_delay_seconds


def test_temp_files_of_dead_writers_are_removed_and_live_ones_kept(path, clock):
    import os
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = path.parent / f".{path.name}.tmp{dead.pid}.0123abcd"
    ours = path.parent / f".{path.name}.tmp{os.getpid()}.0123abcd"
    other = path.parent / f".calibration.json.tmp{dead.pid}.0123abcd"
    for tmp in (stale, ours, other):
        tmp.write_bytes(b"{")
    Lockout(path, POLICY, clock)
    assert not stale.exists() and ours.exists() and other.exists()
