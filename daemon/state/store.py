"""Open a door's template store: the one place that decides whether a state directory may be used.

Rules, in order:

1. The state directory and everything above it must be safe (:mod:`daemon.state.permissions`);
   so must the key and every template. Otherwise nothing is read or written.
2. Without ``create_key`` (``avid run``, ``list``, ``delete``, ``verify``) the state directory and
   the device key must already exist: a mistyped ``AVID_STATE_DIR`` or a lost key is an error, not
   an empty door.
3. With ``create_key`` (``avid enroll``, the demo) a missing state directory is created (0700) and
   a missing ``<state dir>/device.key`` is created, but only while no template exists: a key is
   never made beside templates it cannot read.

The door is initialised by ``tools/install.sh`` (``/etc/avid/device.key``, handed to the service as
a systemd credential) or, for a plain state directory, by the first ``avid enroll``.
"""

from __future__ import annotations

import os
from pathlib import Path

from daemon.errors import NotInitialised, StoreError
from daemon.state.atomic import make_private_dirs
from daemon.state.keys import count_records, load_device_key
from daemon.state.permissions import check_state_dir
from daemon.state.statelock import StateLock
from daemon.state.templates import TemplateStore

_INITIALISE = ("initialise the door first: 'sudo tools/install.sh' on the Pi (then enrol with "
               "'sudo avid enroll NAME ...' while the door runs, docs/install.md), or 'avid enroll "
               "NAME ...' for a plain state directory (the first enrolment creates <state dir>/device.key)")


def open_store(state_dir: str | os.PathLike, key_file: str | os.PathLike | None, fingerprint: str,
               create_key: bool = False) -> TemplateStore:
    """The template store of the door whose state is in ``state_dir``, unlocked with its key.

    :param state_dir: the state directory (``config.state_dir``).
    :param key_file: ``config.state.key_file`` (None: the systemd credential, else
        ``<state dir>/device.key``).
    :param fingerprint: the models' fingerprint (``pipeline.models_fingerprint``).
    :param create_key: True only for commands that may initialise a new door (``enroll``).
    :raises UnsafePermissions: a path can be changed (or, for secrets, read) by someone else.
    :raises NotInitialised: no state directory or no key, and they may not be created.
    :raises StoreError: anything else that makes the state unusable (unreadable, not a directory...).
    """
    state_dir = Path(state_dir)
    check_state_dir(state_dir)
    if not state_dir.is_dir():
        if not create_key:
            raise NotInitialised(f"state directory {state_dir} does not exist (a mistyped "
                                 f"AVID_STATE_DIR or state.directory?); to start a new door, {_INITIALISE}")
        try:
            make_private_dirs(state_dir)
        except OSError as exc:
            raise StoreError(f"cannot create the state directory {state_dir}: {exc.strerror}") from exc
        check_state_dir(state_dir)
    # Two first enrolments at once must not make two keys: creation happens under the lock.
    with StateLock(state_dir, exclusive=create_key):
        try:
            key = load_device_key(state_dir, Path(key_file) if key_file is not None else None,
                                  create=create_key)
        except NotInitialised as exc:
            if create_key:
                raise
            records = count_records(state_dir)
            if records:
                raise NotInitialised(f"{exc}, but {records} template file(s) exist in "
                                     f"{state_dir / 'templates'}: restore the key from its backup, "
                                     "or give the key this door was set up with (state.key_file, "
                                     "or the systemd credential avid-key)") from None
            raise NotInitialised(f"{exc}; to start a new door, {_INITIALISE}") from None
    return TemplateStore(state_dir, key, fingerprint)
