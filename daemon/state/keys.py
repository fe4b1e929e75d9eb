"""The device key that protects templates at rest.

Looked up in this order: ``state.key_file`` from the config; the systemd credential
``$CREDENTIALS_DIRECTORY/avid-key`` (``LoadCredential=`` in the unit); ``<state dir>/device.key``.
A key is 32 raw bytes or 64 hex characters, in a file that only the service user and root can read
(and whose folders only they can write: :mod:`daemon.state.permissions`).

A key is created only by :func:`create_device_key`, which never replaces an existing one; whether a
door may create one (never beside existing templates) is decided by :mod:`daemon.state.store`.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from daemon.errors import NotInitialised, StoreError
from daemon.state.atomic import create_exclusive
from daemon.state.permissions import check_private_file

log = logging.getLogger(__name__)

KEY_BYTES = 32
CREDENTIAL_NAME = "avid-key"
# Enough for a hex key with a newline and spaces; anything longer is not a key.
_MAX_KEY_FILE_BYTES = 4 * KEY_BYTES


def _parse_key(raw: bytes, source: Path) -> bytes:
    text = raw.strip()
    if len(raw) == KEY_BYTES:
        return raw
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            pass
    raise StoreError(f"device key {source} must be {KEY_BYTES} raw bytes or {2 * KEY_BYTES} hex characters")


def key_path(state_dir: Path, key_file: Path | None = None) -> Path:
    """Where the device key is read from (see the module documentation for the order)."""
    if key_file is not None:
        return Path(key_file)
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).is_file():
        return Path(credentials) / CREDENTIAL_NAME
    return Path(state_dir) / "device.key"


def read_key_file(path: Path) -> bytes:
    """Read and parse a key file after checking who can read and change it.

    :raises NotInitialised: the file does not exist.
    :raises UnsafePermissions: someone other than the service user and root can read or change it.
    :raises StoreError: it cannot be read or is not a key.
    """
    check_private_file(path, may_be_read=False)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise NotInitialised(f"device key not found: {path}") from None
    except OSError as exc:
        raise StoreError(f"cannot read the device key {path}: {exc.strerror} (avid must run as the "
                         "service user, with the key it was installed with)") from exc
    return _parse_key(raw, path)


def load_device_key(state_dir: Path, key_file: Path | None = None, create: bool = False) -> bytes:
    """Return the device key; with ``create``, make ``<state dir>/device.key`` if it is absent.

    Only the state directory's own ``device.key`` is ever created: a configured ``key_file`` or a
    systemd credential that is missing is an error. Prefer :func:`daemon.state.store.open_store`,
    which also refuses to create a key beside existing templates.
    """
    path = key_path(state_dir, key_file)
    try:
        return read_key_file(path)
    except NotInitialised:
        if not create or key_file is not None or path != Path(state_dir) / "device.key":
            raise
    records = count_records(state_dir)
    if records:
        # A new key would make every one of them unreadable, for good.
        raise NotInitialised(
            f"device key {path} is missing but {records} template file(s) exist in "
            f"{Path(state_dir) / 'templates'}: restore the key from its backup (or give the "
            "service's key with state.key_file / the systemd credential); avid does not create a "
            "new key beside existing templates")
    return create_device_key(path)


def count_records(state_dir: Path) -> int:
    """How many template files (records or wrapped keys) the state directory holds.

    :raises StoreError: ``templates/`` exists but cannot be listed.
    """
    directory = Path(state_dir) / "templates"
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise StoreError(f"cannot list {directory}: {exc.strerror}") from exc
    return sum(1 for name in names if name.endswith((".tpl", ".key")))


def create_device_key(path: Path) -> bytes:
    """Write 32 random bytes to ``path`` (0600, atomically) and return them; never overwrites.

    If another process created the key first, that key is returned instead.
    """
    key = secrets.token_bytes(KEY_BYTES)
    try:
        create_exclusive(path, key)
    except FileExistsError:
        return read_key_file(path)
    except OSError as exc:
        raise StoreError(f"cannot create the device key {path}: {exc.strerror}") from exc
    log.warning("created a new device key in %s: back it up, templates cannot be read without it", path)
    return key
