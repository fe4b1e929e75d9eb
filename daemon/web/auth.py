"""Passwords (scrypt), sessions and the login backoff of the web page."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from daemon.errors import AvidError, ConfigError
from daemon.state.atomic import write_atomic

log = logging.getLogger(__name__)

#: scrypt cost: n=2**15, r=8 takes about 0.1 s on a desktop core, 0.3-0.5 s on a Pi 4, 32 MiB.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 15, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
USER_PATTERN = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
MIN_PASSWORD_CHARS = 10


class WebAuthError(AvidError):
    """A password file that cannot be read or written, or an unacceptable user or password."""


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A salted scrypt hash: ``scrypt$n$r$p$salt$hash`` (base64)."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32)
    return "$".join(["scrypt", str(n), str(r), str(p), base64.b64encode(salt).decode(),
                     base64.b64encode(digest).decode()])


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (from :func:`hash_password`); False for a malformed one."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt, validate=True), n=int(n),
                                r=int(r), p=int(p), maxmem=_SCRYPT_MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def read_passwords(path: Path) -> dict[str, str]:
    """``{user: hash}`` from the password file (``user:hash`` lines); empty when there is no file.

    :raises WebAuthError: when the file exists but cannot be read
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise WebAuthError(f"cannot read the web password file {path}: {exc}") from None
    users = {}
    for line in text.splitlines():
        user, sep, stored = line.strip().partition(":")
        if sep and USER_PATTERN.match(user):
            users[user] = stored
    return users


def set_password(path: Path, user: str, password: str) -> None:
    """Add or replace ``user`` in the password file (atomic, durable, mode 0600).

    When run as root the file is given to the owner of its folder (the web unit's StateDirectory),
    so that ``sudo avid web-passwd`` leaves it readable by the web service and nobody else.
    """
    if not USER_PATTERN.match(user):
        raise WebAuthError(f"invalid user name {user!r} (lower-case letters, digits, '_', '.', '-')")
    if len(password) < MIN_PASSWORD_CHARS:
        raise WebAuthError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    users = read_passwords(path)
    users[user] = hash_password(password)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(f"{u}:{h}\n" for u, h in sorted(users.items())).encode(), mode=0o600)
    if os.geteuid() == 0:
        folder = path.parent.stat()
        os.chown(path, folder.st_uid, folder.st_gid)


@dataclass
class Session:
    """A logged-in browser."""

    user: str
    created: float
    last_used: float


class Sessions:
    """Sessions kept in memory (a restart logs everyone out), keyed by a random 256-bit token.

    :param idle_seconds: a session unused this long ends
    :param max_seconds: a session ends this long after login
    :param clock: monotonic clock (injected for tests)
    """

    def __init__(self, idle_seconds: float, max_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.idle_seconds, self.max_seconds, self._clock = idle_seconds, max_seconds, clock
        self._sessions: dict[str, Session] = {}

    def create(self, user: str) -> str:
        """A new session for ``user``; returns its token (the cookie value)."""
        self._expire()
        token = secrets.token_urlsafe(32)
        now = self._clock()
        self._sessions[token] = Session(user, now, now)
        return token

    def get(self, token: str | None) -> Session | None:
        """The live session of ``token`` (and mark it used), or None."""
        if not token:
            return None
        self._expire()
        session = self._sessions.get(token)
        if session is not None:
            session.last_used = self._clock()
        return session

    def alive(self, token: str | None) -> bool:
        """True while ``token``'s session lasts; unlike :meth:`get`, does not count as use."""
        self._expire()
        return bool(token) and token in self._sessions

    def end(self, token: str | None) -> None:
        """Log a session out; unknown tokens are ignored."""
        if token:
            self._sessions.pop(token, None)

    def _expire(self) -> None:
        now = self._clock()
        for token, s in list(self._sessions.items()):
            if now - s.last_used > self.idle_seconds or now - s.created > self.max_seconds:
                del self._sessions[token]


class LoginBackoff:
    """After each failed login the next attempt must wait twice as long (1 s, 2 s, ... 5 min).

    One counter for all clients: behind ``ssh -L`` every browser comes from 127.0.0.1 anyway, and
    a guesser must not escape it by changing address. A successful login resets it.
    """

    def __init__(self, first_seconds: float = 1.0, max_seconds: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        self.first_seconds, self.max_seconds, self._clock = first_seconds, max_seconds, clock
        self.failures = 0
        self._not_before = 0.0

    def wait_seconds(self) -> float:
        """Seconds before the next login may be tried (0: now)."""
        return max(0.0, self._not_before - self._clock())

    def failed(self) -> None:
        """Record a failed login."""
        self.failures += 1
        delay = min(self.max_seconds, self.first_seconds * 2 ** (self.failures - 1))
        self._not_before = self._clock() + delay

    def succeeded(self) -> None:
        """Record a successful login."""
        self.failures = 0
        self._not_before = 0.0


def check_password_file(path: Path) -> None:
    """Refuse to serve without any user: nobody could log in, and it is surely an install mistake."""
    if not read_passwords(path):
        raise ConfigError(f"no web user in {path}: set one with 'sudo avid web-passwd USER' (web.password_file)")
