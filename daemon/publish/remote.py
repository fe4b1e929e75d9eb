"""Remote lock commands from MQTT: parsing, the optional code, the rate limit.

Everything here runs on paho's network thread and only *judges* a command; a command that passes is
a :class:`RemoteCommand` handed to the main loop, which alone drives the relay.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from daemon.publish.discovery import PAYLOAD_LOCK, PAYLOAD_OPEN, PAYLOAD_UNLOCK

#: scrypt cost: about 50 ms and 16 MiB on a Pi 4, once per remote unlock (rate limited).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
#: A command older than this when the main loop reaches it is dropped, never acted on late.
COMMAND_MAX_AGE_SECONDS = 2.0
#: The window of the rate limit.
RATE_WINDOW_SECONDS = 60.0


def hash_code(code: str, salt: bytes | None = None) -> str:
    """A salted scrypt hash of a remote-unlock code, for ``mqtt.remote_unlock_code_hash``."""
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(code.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return "scrypt${}${}${}${}${}".format(SCRYPT_N, SCRYPT_R, SCRYPT_P, base64.b64encode(salt).decode(),
                                        base64.b64encode(digest).decode())


def check_code(code: str | None, stored: str) -> bool:
    """True when ``code`` matches ``stored`` (a :func:`hash_code` string); constant-time compare."""
    if not code:
        return False
    try:
        _, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(code.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                                p=int(p), dklen=len(expected), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class RemoteCommand:
    """An authorised command for the main loop: ``action`` is ``"unlock"`` or ``"lock"``."""

    action: str
    source: str
    received_at: float


def parse_command(payload: bytes) -> tuple[str | None, str | None]:
    """``(action, code)`` from a ``lock/set`` payload; action None when it is not a command.

    Plain ``OPEN``/``UNLOCK``/``LOCK`` (Home Assistant's default), or the JSON object the
    discovery's ``command_template`` makes when a code is required: ``{"action": ..., "code": ...}``.
    """
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, None
    code = None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None, None
        if not isinstance(data, dict):
            return None, None
        text, code = str(data.get("action", "")), data.get("code")
        code = str(code) if code not in (None, "") else None
    action = {PAYLOAD_OPEN: "unlock", PAYLOAD_UNLOCK: "unlock", PAYLOAD_LOCK: "lock"}.get(text.upper())
    return action, code


class RateLimit:
    """At most ``per_minute`` events in any 60 s (on the injected monotonic clock)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self._per_minute = per_minute
        self._clock = clock
        self._times: deque[float] = deque()

    def allow(self) -> bool:
        """Count one event if the limit allows it; False (and nothing counted) when it does not."""
        now = self._clock()
        while self._times and now - self._times[0] >= RATE_WINDOW_SECONDS:
            self._times.popleft()
        if len(self._times) >= self._per_minute:
            return False
        self._times.append(now)
        return True
