"""The Python client of the control socket (used by the CLI, later by a web page).

Each call opens a connection, sends one request and reads its reply (and, for a live enrolment,
the progress lines before it); nothing is kept open between calls.
"""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path
from typing import Callable

from daemon.control.protocol import (ControlTimeout, ControlUnavailable, ProtocolError, Unauthorised,
                                     encode_request, error_from_reply, parse_reply)

#: Longest reply line read (a status with its recent decisions is a few kB).
MAX_REPLY_BYTES = 1024 * 1024


class ControlClient:
    """Talks to the daemon listening on ``path``.

    :param path: the control socket (``control.socket_path`` in the config)
    :param timeout: seconds to wait for a reply (for a live enrolment: between two lines)
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 30.0):
        self.path = Path(path)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._spare: socket.socket | None = None

    def close(self) -> None:
        """Close a connection opened by :func:`connect_if_running` and not used yet; idempotent."""
        if self._spare is not None:
            self._spare.close()
            self._spare = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- operations ----------------------------------------------------------------------------
    def status(self) -> dict:
        """The door's status (see :meth:`daemon.control.api.DoorAdmin.status`)."""
        return self.request("status")

    def list_people(self) -> list[dict]:
        """Enrolled people: ``[{"name", "face_samples", "voice_samples"}, ...]``."""
        return self.request("list")["people"]

    def delete(self, name: str) -> bool:
        """Delete a person; False if nobody has that name."""
        return self.request("delete", name=name)["deleted"]

    def enrol_files(self, name: str, faces: list[bytes], voices: list[bytes], replace: bool = False,
                    digits: dict[str, list[bytes]] | None = None) -> dict:
        """Enrol from the contents of image and WAV files (read by the caller); ``digits`` maps
        each digit "0"-"9" to the WAV contents of its recordings (the challenge's material)."""
        return self.request("enrol_files", name=name, faces=list(faces), voices=list(voices), replace=replace,
                            digits=digits or None)

    def enrol_live(self, name: str, samples: int = 1, replace: bool = False,
                   on_progress: Callable[[dict], None] | None = None, live_digits: bool = False) -> dict:
        """Enrol at the door; ``on_progress`` receives each progress event as it arrives;
        ``live_digits`` also captures the digits 0-9 (twice each) after the sentences.

        Closing the connection (this process exiting or being killed) cancels the enrolment.
        """
        return self.request("enrol_live", on_progress=on_progress, name=name, samples=samples,
                            replace=replace, live_digits=live_digits or None)

    def lockout(self) -> dict:
        """``{"locked_out", "remaining_seconds", "consecutive_failures"}``."""
        return self.request("lockout")

    def clear_lockout(self) -> None:
        """Clear the failed-attempt lockout."""
        self.request("clear_lockout")

    # --- transport -----------------------------------------------------------------------------
    def request(self, op: str, on_progress: Callable[[dict], None] | None = None, **fields):
        """Send one request and return its ``result``.

        :raises ControlError: (a subclass for each error code) when the daemon answers with an error
        :raises ControlUnavailable: when no daemon listens; :class:`ControlTimeout` when it is silent
        """
        request_id = next(self._ids)
        line = encode_request(request_id, op, **fields)
        conn = self._connect()
        try:
            conn.settimeout(self.timeout)
            try:
                conn.sendall(line)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the daemon may have refused us before reading: its reply says why
            except socket.timeout:
                raise ControlTimeout(f"the daemon did not take the request within {self.timeout:g} s") from None
            buffer = bytearray()
            while True:
                message = self._read_message(conn, buffer)
                if message.get("event") == "progress":
                    if message.get("id") == request_id and on_progress is not None:
                        on_progress({k: v for k, v in message.items() if k not in ("v", "id", "event")})
                    continue
                if message.get("ok") is True:
                    return message.get("result")
                error = message.get("error") or {}
                raise error_from_reply(str(error.get("code", "failed")), str(error.get("message", "")))
        finally:
            conn.close()

    def _connect(self) -> socket.socket:
        if self._spare is not None:
            conn, self._spare = self._spare, None
            return conn
        return _open(self.path, self.timeout)

    def _read_message(self, conn: socket.socket, buffer: bytearray) -> dict:
        scanned = 0
        while True:
            end = buffer.find(b"\n", scanned)
            if end >= 0:
                line = bytes(buffer[:end])
                del buffer[:end + 1]
                return parse_reply(line)
            scanned = len(buffer)
            if scanned > MAX_REPLY_BYTES:
                raise ProtocolError(f"reply longer than {MAX_REPLY_BYTES} bytes")
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                raise ControlTimeout(f"no answer from the daemon within {self.timeout:g} s") from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise ControlUnavailable("the daemon closed the connection without an answer")
            buffer += chunk


def _open(path: Path, timeout: float) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    conn.settimeout(timeout)
    try:
        conn.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        conn.close()
        raise ControlUnavailable(f"no avid daemon listens on {path} ({exc.strerror})") from None
    except PermissionError:
        conn.close()
        raise Unauthorised(f"no permission to reach {path}: run the command with sudo") from None
    except OSError as exc:
        conn.close()
        raise ControlUnavailable(f"cannot connect to {path}: {exc}") from None
    return conn


def connect_if_running(path: str | os.PathLike, timeout: float = 30.0) -> ControlClient | None:
    """A client for the daemon listening on ``path``, or None when there is none.

    None means no socket file, or nobody accepting on it (a daemon that died): the caller may then
    work on the state directory itself.

    :raises Unauthorised: when the socket exists but this user may not reach it
    """
    try:
        conn = _open(Path(path), timeout)
    except ControlUnavailable:
        return None
    client = ControlClient(path, timeout)
    client._spare = conn  # the first request uses this connection: no second connect
    return client
