"""The device key that protects templates at rest.

Looked up in this order: ``state.key_file`` from the config; the systemd credential
``$CREDENTIALS_DIRECTORY/avid-key`` (``LoadCredential=`` in the unit); ``<state dir>/device.key``,
created with 32 random bytes on first use when ``create`` is true. A key is 32 raw bytes or 64 hex
characters.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from daemon.errors import StoreError
from daemon.state.atomic import write_atomic

log = logging.getLogger(__name__)

KEY_BYTES = 32
CREDENTIAL_NAME = "avid-key"


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


def load_device_key(state_dir: Path, key_file: Path | None = None, create: bool = False) -> bytes:
    """Return the device key, creating ``<state dir>/device.key`` if allowed and absent."""
    path = key_path(state_dir, key_file)
    try:
        return _parse_key(path.read_bytes(), path)
    except FileNotFoundError:
        if not create or key_file is not None or path.parent != Path(state_dir):
            raise StoreError(f"device key not found: {path}") from None
    key = secrets.token_bytes(KEY_BYTES)
    write_atomic(path, key)
    log.warning("created a new device key in %s: back it up, templates cannot be read without it", path)
    return key
