"""The control protocol, version 1: newline-delimited JSON messages, one schema, size limits.

A request is one line holding one JSON object::

    {"v": 1, "id": 7, "op": "delete", "name": "alice"}

``v`` is the protocol version, ``id`` an integer or a short string the reply repeats, ``op`` one of
:data:`OPS`; the other fields are the operation's (below), and any other field is an error. Bytes
(enrolment files) travel as base64 strings. The daemon answers each request with one line::

    {"v": 1, "id": 7, "ok": true, "result": {"deleted": true}}
    {"v": 1, "id": 7, "ok": false, "error": {"code": "bad_request", "message": "..."}}

and, for ``enrol_live`` only, any number of progress lines before that reply::

    {"v": 1, "id": 7, "event": "progress", "prompt": "...", "step": 1, "of": 3}

Error codes are :data:`ERROR_CODES`. Everything here is pure: no sockets, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from daemon.errors import AvidError
from daemon.state.templates import NAME_PATTERN

VERSION = 1
#: Longest request line the server reads (a full enrol_files request with base64 payloads).
MAX_LINE_BYTES = 12 * 1024 * 1024
#: Largest single enrolment file (a photo or a WAV clip), and most files per modality.
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_FILES = 5
#: Largest total of the decoded enrolment files of one request.
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
MAX_LIVE_SAMPLES = 10
MAX_ID_CHARS = 64
#: Most recordings of one digit (the challenge's material: two takes recommended), and the largest
#: one (a spoken digit lasts at most 1.5 s; a few seconds of 16-bit audio with room to spare).
MAX_DIGIT_TAKES = 3
MAX_DIGIT_FILE_BYTES = 512 * 1024

ERROR_CODES = (
    "bad_request",          # not JSON, not an object, unknown op or field, wrong type or range
    "unsupported_version",  # "v" is not VERSION
    "too_large",            # a line, a file or the payload over its limit
    "timeout",              # the request did not arrive in time (or a live enrolment ran out)
    "unauthorised",         # the peer is not root, the daemon's user or in the admin group
    "busy",                 # too many clients, or a live enrolment already running
    "refused",              # the door refused: unusable samples, name taken or invalid
    "cancelled",            # the live enrolment was cancelled
    "failed",               # the door could not do it (a device or storage error)
    "internal",             # a bug; the journal has the details
)


@dataclass(frozen=True)
class _Field:
    kind: str            # "name", "bool", "samples", "files", "digit_files"
    required: bool = True


#: Every operation and its own fields.
OPS: dict[str, dict[str, _Field]] = {
    "status": {},
    "list": {},
    "delete": {"name": _Field("name")},
    "enrol_files": {"name": _Field("name"), "faces": _Field("files"), "voices": _Field("files"),
                    "digits": _Field("digit_files", required=False),
                    "replace": _Field("bool", required=False)},
    "enrol_live": {"name": _Field("name"), "samples": _Field("samples", required=False),
                   "live_digits": _Field("bool", required=False),
                   "replace": _Field("bool", required=False)},
    "lockout": {},
    "clear_lockout": {},
}
#: Operations that change the door (logged at info with their outcome; reads at debug).
MUTATING_OPS = frozenset({"delete", "enrol_files", "enrol_live", "clear_lockout"})
_ENVELOPE = ("v", "id", "op")
_DEFAULTS = {"replace": False, "samples": 1, "live_digits": False, "digits": None}


# --- errors ------------------------------------------------------------------------------------
class ControlError(AvidError):
    """A control request failed; ``code`` is one of :data:`ERROR_CODES`.

    ``request_id`` is the id of the request it answers, when that is known.
    """

    code = "failed"

    def __init__(self, message: str, code: str | None = None, request_id: int | str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.request_id = request_id


class ProtocolError(ControlError, ValueError):
    """A message breaks the protocol (malformed, unknown, oversized)."""

    code = "bad_request"


class Unauthorised(ControlError, PermissionError):
    """The caller may not administer this door."""

    code = "unauthorised"


class Busy(ControlError):
    """Too many clients, or a live enrolment is already running."""

    code = "busy"


class Cancelled(ControlError):
    """A live enrolment was cancelled (the client went away or asked)."""

    code = "cancelled"


class ControlTimeout(ControlError, TimeoutError):
    """No (complete) message within the time limit."""

    code = "timeout"


class ControlUnavailable(ControlError, ConnectionError):
    """No daemon answers on the control socket."""


_ERROR_CLASSES = {"bad_request": ProtocolError, "unsupported_version": ProtocolError,
                  "too_large": ProtocolError, "unauthorised": Unauthorised, "busy": Busy,
                  "cancelled": Cancelled, "timeout": ControlTimeout}


def error_from_reply(code: str, message: str) -> ControlError:
    """The exception a client raises for an error reply."""
    return _ERROR_CLASSES.get(code, ControlError)(message, code)


# --- requests ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """A validated request: ``args`` hold the operation's fields, files decoded to bytes."""

    id: int | str
    op: str
    args: dict[str, Any] = field(default_factory=dict)


def request_id_of(message: Any) -> int | str | None:
    """The request's id if it has a valid one (for error replies), else None."""
    if isinstance(message, dict):
        value = message.get("id")
        if _valid_id(value):
            return value
    return None


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= 2 ** 53
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS


def parse_request(line: bytes) -> Request:
    """Validate one request line (without its newline) against the schema.

    :raises ProtocolError: with ``code`` ``bad_request``, ``unsupported_version`` or ``too_large``,
        and the request's ``request_id`` when it had a valid one
    """
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"request longer than {MAX_LINE_BYTES} bytes", "too_large")
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"not a JSON object on one line: {type(exc).__name__}") from None
    try:
        return _validate(message)
    except ProtocolError as exc:
        exc.request_id = request_id_of(message)
        raise


def _validate(message: Any) -> Request:
    if not isinstance(message, dict):
        raise ProtocolError("a request is a JSON object")
    if "v" not in message:
        raise ProtocolError('missing "v" (the protocol version, 1)')
    if isinstance(message["v"], bool) or not isinstance(message["v"], int):
        raise ProtocolError('"v" must be an integer')
    if message["v"] != VERSION:
        raise ProtocolError(f"protocol version {message['v']} is not supported (this daemon speaks "
                            f"{VERSION})", "unsupported_version")
    if not _valid_id(message.get("id")):
        raise ProtocolError(f'"id" must be an integer or a string of 1-{MAX_ID_CHARS} characters')
    op = message.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise ProtocolError(f'"op" must be one of {", ".join(OPS)}')
    schema = OPS[op]
    unknown = sorted(str(k) for k in message if k not in schema and k not in _ENVELOPE)
    if unknown:
        raise ProtocolError(f"unknown field(s) for {op}: {', '.join(unknown)[:200]}")
    args: dict[str, Any] = {}
    total = 0
    for name, spec in schema.items():
        if name not in message:
            if spec.required:
                raise ProtocolError(f'{op} needs "{name}"')
            args[name] = _DEFAULTS[name]
            continue
        value = message[name]
        if spec.kind == "name":
            if not isinstance(value, str) or not NAME_PATTERN.match(value):
                raise ProtocolError(f'"{name}" must be 1-64 letters, digits, ".", "_" or "-", '
                                    "starting with a letter or digit")
        elif spec.kind == "bool":
            if not isinstance(value, bool):
                raise ProtocolError(f'"{name}" must be true or false')
        elif spec.kind == "samples":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIVE_SAMPLES:
                raise ProtocolError(f'"{name}" must be an integer from 1 to {MAX_LIVE_SAMPLES}')
        elif spec.kind == "files":
            value = _decode_files(name, value)
            total += sum(len(v) for v in value)
        elif spec.kind == "digit_files":
            value = _decode_digit_files(name, value)
            total += sum(len(v) for files in value.values() for v in files)
        if total > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"enrolment files over {MAX_PAYLOAD_BYTES} bytes in all", "too_large")
        args[name] = value
    return Request(message["id"], op, args)


def _decode_files(name: str, value: Any, max_files: int = MAX_FILES,
                  max_bytes: int = MAX_FILE_BYTES) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(f'"{name}" must be a list of base64 strings')
    if len(value) > max_files:
        raise ProtocolError(f'"{name}": at most {max_files} files', "too_large")
    files = []
    for index, text in enumerate(value, 1):
        # base64 is 4/3 of the bytes: refuse an oversized file before decoding it.
        if len(text) > (max_bytes + 2) // 3 * 4:
            raise ProtocolError(f'"{name}" file {index} is over {max_bytes} bytes', "too_large")
        try:
            data = base64.b64decode(text.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error, ValueError):
            raise ProtocolError(f'"{name}" file {index} is not valid base64') from None
        if not data:
            raise ProtocolError(f'"{name}" file {index} is empty')
        if len(data) > max_bytes:
            raise ProtocolError(f'"{name}" file {index} is over {max_bytes} bytes', "too_large")
        files.append(data)
    return files


def _decode_digit_files(name: str, value: Any) -> dict[str, list[bytes]]:
    """``{"0": [base64 WAV, ...], ..., "9": [...]}``: the recordings of each digit."""
    if not isinstance(value, dict) or not value:
        raise ProtocolError(f'"{name}" must be an object from digits "0"-"9" to lists of base64 WAV files')
    bad = sorted(str(k)[:8] for k in value if not (isinstance(k, str) and len(k) == 1 and k.isdigit()
                                                   and k.isascii()))
    if bad:
        raise ProtocolError(f'"{name}": keys must be the digits "0"-"9", not {", ".join(bad)[:100]}')
    return {digit: _decode_files(f"{name}.{digit}", files, MAX_DIGIT_TAKES, MAX_DIGIT_FILE_BYTES)
            for digit, files in sorted(value.items())}


def _encode_files(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [base64.b64encode(v).decode("ascii") if isinstance(v, (bytes, bytearray)) else v for v in value]
    if isinstance(value, dict):
        return {key: _encode_files(files) for key, files in value.items()}
    return value


def encode_request(request_id: int | str, op: str, **fields: Any) -> bytes:
    """One request line; ``bytes`` values in lists, or in lists inside an object (enrolment files,
    digit recordings), are base64-encoded; fields set to None are left out."""
    message: dict[str, Any] = {"v": VERSION, "id": request_id, "op": op}
    for key, value in fields.items():
        if value is not None:
            message[key] = _encode_files(value)
    return encode(message)


# --- replies -----------------------------------------------------------------------------------
def encode(message: dict) -> bytes:
    """A message as one line of ASCII JSON with its newline."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii") + b"\n"


def ok_reply(request_id: int | str | None, result: Any) -> bytes:
    """The success reply to a request."""
    return encode({"v": VERSION, "id": request_id, "ok": True, "result": result})


def error_reply(request_id: int | str | None, code: str, message: str) -> bytes:
    """An error reply; ``request_id`` is None when the request had no valid id."""
    assert code in ERROR_CODES, code
    return encode({"v": VERSION, "id": request_id, "ok": False,
                   "error": {"code": code, "message": message}})


def progress_event(request_id: int | str, progress: dict) -> bytes:
    """A progress line of a live enrolment (``prompt``, ``step``, ``of`` and the like)."""
    return encode({**progress, "v": VERSION, "id": request_id, "event": "progress"})


def parse_reply(line: bytes) -> dict:
    """Decode one line from the daemon; raise :class:`ProtocolError` if it is not a message."""
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"the daemon sent a line that is not JSON ({exc})") from None
    if not isinstance(message, dict) or message.get("v") != VERSION:
        raise ProtocolError("the daemon sent a message of another protocol version")
    return message
