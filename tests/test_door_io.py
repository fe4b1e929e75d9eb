"""Door contact and exit button through gpiozero's MockFactory, with an injected clock."""

import logging

import pytest

from daemon.actuate.door_io import GRACE_SECONDS, open_door_monitor
from daemon.actuate.lock import open_lock
from daemon.config import DoorConfig, LockConfig

CONTACT, EXIT = 5, 6


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def door(mock_factory):
    clock = FakeClock()
    lock = open_lock(LockConfig(pin_factory="mock", relay_pin=17, unlock_seconds=5), mock_factory, clock)
    monitor = open_door_monitor(DoorConfig(contact_pin=CONTACT, exit_button_pin=EXIT, held_open_seconds=30),
                                lock, mock_factory, clock)
    contact = mock_factory.pin(CONTACT)
    # The pull-up leaves an unwired contact high (open) at start; close the door.
    assert monitor.events == ["door_open_at_start"]
    contact.drive_low()
    monitor.events.clear()
    yield monitor, lock, contact, mock_factory.pin(EXIT), clock, mock_factory.pin(17)
    monitor.close()
    lock.close()


def test_door_opened_after_grant_relocks_at_once(door):
    monitor, lock, contact, _, clock, relay = door
    lock.grant()
    assert relay.state
    clock.now += 1
    contact.drive_high()  # door opens
    assert not relay.state
    assert monitor.events[-1] == "door_opened"


def test_door_forced_without_grant(door, caplog):
    monitor, lock, contact, _, clock, relay = door
    with caplog.at_level(logging.ERROR):
        contact.drive_high()
    assert monitor.events[-1] == "door_forced"
    assert any("event=door_forced" in r.getMessage() for r in caplog.records)
    assert not relay.state


def test_opening_just_after_relock_is_not_forced(door):
    monitor, lock, contact, _, clock, _ = door
    lock.grant()
    clock.now += lock.unlock_seconds + GRACE_SECONDS - 0.5
    lock.poll()
    contact.drive_high()
    assert monitor.events[-1] == "door_opened"
    contact.drive_low()
    clock.now += GRACE_SECONDS + 1
    contact.drive_high()
    assert monitor.events[-1] == "door_forced"


def test_exit_button_unlocks_and_suppresses_forced_alarm(door):
    monitor, lock, contact, exit_pin, clock, relay = door
    exit_pin.drive_low()  # pressed (pull-up)
    assert relay.state
    assert "request_to_exit" in monitor.events
    clock.now += 2
    contact.drive_high()
    assert "door_forced" not in monitor.events
    assert not relay.state


def test_held_open_alarm_once(door):
    monitor, lock, contact, _, clock, _ = door
    lock.grant()
    contact.drive_high()
    clock.now += 29
    monitor.poll()
    assert "door_held_open" not in monitor.events
    clock.now += 2
    monitor.poll()
    monitor.poll()
    assert monitor.events.count("door_held_open") == 1
    contact.drive_low()
    assert monitor.events[-1] == "door_closed"


def test_nothing_wired_means_no_monitor(mock_factory):
    lock = open_lock(LockConfig(pin_factory="mock"), mock_factory)
    try:
        assert open_door_monitor(DoorConfig(), lock, mock_factory) is None
    finally:
        lock.close()
