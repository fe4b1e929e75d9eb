"""``avid relock``: drive the relay pin to its locked level and exit (the unit's ``ExecStopPost=``).

A GPIO line keeps its level when the process that drove it dies, and SIGKILL, the OOM killer or a
crash in native code give the daemon no chance to relock. systemd runs ``ExecStopPost=`` after the
service's processes are gone, however they ended, so this command is the last word on the relay.
It does nothing else: no models, no state, no camera; it only claims the relay pin as an output
at the de-energised level (``initial_value=False``, as the daemon does) and releases it.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from daemon.config import EX_CONFIG, InvalidConfig, LockConfig, load_yaml
from daemon.errors import AvidError, LockError

log = logging.getLogger(__name__)


def relock_pin(lock_config: LockConfig, pin_factory=None) -> None:
    """De-energise the relay pin named by ``lock_config`` and release it.

    :param pin_factory: a gpiozero pin factory; default the one ``lock.pin_factory`` names.
    :raises LockError: the factory or the pin cannot be used, or the pin does not read back locked.
    """
    from gpiozero import OutputDevice

    from daemon.actuate.lock import make_pin_factory

    factory = pin_factory or make_pin_factory(lock_config.pin_factory)
    try:
        relay = OutputDevice(lock_config.relay_pin, active_high=lock_config.active_high,
                             initial_value=False, pin_factory=factory)
    except Exception as exc:
        raise LockError(f"relay on GPIO{lock_config.relay_pin} cannot be claimed: {exc}") from exc
    try:
        relay.off()
        if relay.value:
            raise LockError(f"relay on GPIO{lock_config.relay_pin} still reads energised")
    finally:
        relay.close()


def relock_command(config, args) -> int:
    """The ``avid relock`` sub-command (registered in :data:`daemon.commands.COMMANDS`)."""
    relock_pin(config.lock)
    _report(config.lock)
    return 0


def relock_with_broken_config(path: Path | None) -> int:
    """``avid relock`` when the whole config does not validate (edited while the daemon ran): its
    ``lock:`` section may still name the pin. Without a valid ``lock:`` section no pin is touched
    (it could be another device's) and the exit status is 78."""
    from daemon.files import read_regular_file
    from daemon.config import MAX_CONFIG_BYTES

    try:
        data, _ = load_yaml(read_regular_file(path, MAX_CONFIG_BYTES).decode("utf-8"), str(path))
        if not isinstance(data, dict) or not isinstance(data.get("lock"), dict):
            raise ValueError("no lock section")
        lock = LockConfig.model_validate(data["lock"])
    except (AvidError, ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        if isinstance(exc, InvalidConfig):
            exc = exc.report()
        print(f"avid relock: the lock section of {path} is not usable either, no pin touched: {exc}",
              file=sys.stderr)
        return EX_CONFIG
    relock_pin(lock)
    _report(lock)
    return 0


def _report(lock: LockConfig) -> None:
    # systemd sets these for ExecStopPost=: how the service ended.
    result, status = os.environ.get("SERVICE_RESULT"), os.environ.get("EXIT_STATUS")
    after = f" after the service ended ({result}, status {status})" if result else ""
    print(f"relay on GPIO{lock.relay_pin} de-energised{after}")
