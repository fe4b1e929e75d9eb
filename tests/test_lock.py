"""The lock relay through gpiozero's MockFactory: fail-secure at start, after a grant and on close."""

from __future__ import annotations

import time

import pytest
from gpiozero.pins.mock import MockFactory

from daemon.actuate.lock import make_pin_factory, open_lock
from daemon.config import LockConfig
from daemon.errors import LockError

PIN = 17
UNLOCK_S = 0.2


@pytest.fixture
def factory(mock_factory) -> MockFactory:
    """gpiozero's own mock pins (conftest's ``mock_factory``, which closes every device after)."""
    return mock_factory


def _lock(factory, **overrides):
    settings = dict(pin_factory="mock", relay_pin=PIN, unlock_seconds=UNLOCK_S) | overrides
    return open_lock(LockConfig(**settings), pin_factory=factory)


def _wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_relay_starts_de_energised(factory):
    lock = _lock(factory)
    pin = factory.pin(PIN)
    try:
        assert pin.function == "output"
        assert pin.state is False
        assert lock.is_unlocked is False
        # It never went high on the way to output mode.
        assert all(state.state is False for state in pin.states)
    finally:
        lock.close()


def test_grant_energises_and_relocks_after_unlock_seconds(factory):
    lock = _lock(factory)
    pin = factory.pin(PIN)
    try:
        pin.clear_states()
        granted_at = time.monotonic()
        lock.grant()
        assert pin.state is True and lock.is_unlocked
        assert _wait_until(lambda: not pin.state, timeout_s=2.0)
        relocked_after = time.monotonic() - granted_at
        assert UNLOCK_S * 0.9 <= relocked_after <= UNLOCK_S + 0.5
        # PinState timestamps are the time since the previous change: high for about 0.2 s.
        levels = [state.state for state in pin.states]
        assert levels[-2:] == [True, False]
        assert UNLOCK_S * 0.9 <= pin.states[-1].timestamp <= UNLOCK_S + 0.5
    finally:
        lock.close()


def test_grant_with_explicit_seconds(factory):
    lock = _lock(factory, unlock_seconds=30.0)
    pin = factory.pin(PIN)
    try:
        lock.grant(0.1)
        assert pin.state is True
        assert _wait_until(lambda: not pin.state, timeout_s=1.0)
    finally:
        lock.close()


def test_relock_is_immediate(factory):
    lock = _lock(factory, unlock_seconds=30.0)
    pin = factory.pin(PIN)
    try:
        lock.grant()
        assert pin.state is True
        lock.relock("door opened")
        assert pin.state is False and not lock.is_unlocked
    finally:
        lock.close()


def test_relock_runs_on_an_injected_clock(factory):
    now = [100.0]
    lock = open_lock(LockConfig(pin_factory="mock", relay_pin=PIN, unlock_seconds=5.0),
                     pin_factory=factory, clock=lambda: now[0])
    pin = factory.pin(PIN)
    try:
        lock.grant()
        time.sleep(0.15)
        assert pin.state is True  # 5 s have not passed on the injected clock
        now[0] += 5.0
        assert _wait_until(lambda: not pin.state, timeout_s=1.0)
    finally:
        lock.close()


def test_poll_relocks_an_expired_grant(factory):
    now = [0.0]
    lock = open_lock(LockConfig(pin_factory="mock", relay_pin=PIN, unlock_seconds=1.0),
                     pin_factory=factory, clock=lambda: now[0])
    try:
        lock.grant()
        lock.poll()
        assert lock.is_unlocked
        now[0] = 1.0
        lock.poll()
        assert not lock.is_unlocked
    finally:
        lock.close()


def test_close_is_idempotent_and_leaves_the_relay_de_energised(factory):
    lock = _lock(factory, unlock_seconds=30.0)
    pin = factory.pin(PIN)
    lock.grant()
    assert pin.state is True
    started = time.monotonic()
    lock.close()
    assert time.monotonic() - started < 1.0
    assert pin.state is False
    lock.close()
    assert pin.state is False
    assert not lock._thread.is_alive()


def test_grant_after_close_raises(factory):
    lock = _lock(factory)
    lock.close()
    with pytest.raises(LockError, match="closed"):
        lock.grant()
    assert factory.pin(PIN).state is False


def test_relock_and_state_after_close_are_harmless(factory):
    """A door-contact callback may still fire during shutdown: relocking a closed lock is a no-op."""
    lock = _lock(factory)
    lock.close()
    lock.relock("door opened")
    lock.poll()
    assert lock.is_unlocked is False


def test_active_low_relay_inverts_the_pin(factory):
    lock = _lock(factory, active_high=False, unlock_seconds=30.0)
    pin = factory.pin(PIN)
    try:
        assert pin.state is True and not lock.is_unlocked  # high = relay off on such boards
        lock.grant()
        assert pin.state is False and lock.is_unlocked
        lock.relock()
        assert pin.state is True
    finally:
        lock.close()
    assert pin.state is True


def test_lgpio_factory_on_a_machine_without_it_refuses_to_start():
    with pytest.raises(LockError, match="will not fall back"):
        make_pin_factory("lgpio")


def test_unknown_factory_is_refused():
    with pytest.raises(LockError, match="unknown pin factory"):
        make_pin_factory("sysfs")


def test_pin_in_use_is_a_lock_error(factory):
    first = _lock(factory)
    try:
        with pytest.raises(LockError, match="GPIO17"):
            _lock(factory)
    finally:
        first.close()
