"""The control protocol's schema: every operation parses, and every kind of malformed request is
refused with its own error code (no sockets here; tests/test_control_server.py sends them)."""

from __future__ import annotations

import base64
import json

import pytest

from daemon.control import protocol
from daemon.control.protocol import ProtocolError, encode_request, parse_request


def line(**message) -> bytes:
    return json.dumps({"v": 1, "id": 1, **message}).encode()


def test_every_operation_parses_with_defaults():
    assert parse_request(line(op="status")).op == "status"
    assert parse_request(line(op="delete", name="alice")).args == {"name": "alice"}
    live = parse_request(line(op="enrol_live", name="bob"))
    assert live.args == {"name": "bob", "samples": 1, "replace": False, "live_digits": False}
    request = parse_request(encode_request("a-1", "enrol_files", name="carol", faces=[b"\x89PNG"],
                                           voices=[b"RIFF", b"RIFF2"], replace=True).rstrip(b"\n"))
    assert request.id == "a-1"
    assert request.args == {"name": "carol", "faces": [b"\x89PNG"], "voices": [b"RIFF", b"RIFF2"],
                            "replace": True, "digits": None}


def test_digit_recordings_travel_by_digit_and_come_back_as_bytes():
    digits = {"0": [b"RIFF0a", b"RIFF0b"], "7": [b"RIFF7"]}
    request = parse_request(encode_request(2, "enrol_files", name="dave", faces=[b"img"], voices=[b"wav"],
                                           digits=digits).rstrip(b"\n"))
    assert request.args["digits"] == digits
    live = parse_request(encode_request(3, "enrol_live", name="dave", live_digits=True).rstrip(b"\n"))
    assert live.args["live_digits"] is True


@pytest.mark.parametrize("raw, code, words", [
    (b"not json", "bad_request", "JSON"),
    (b"\xff\xfe", "bad_request", "JSON"),
    (b"[1, 2]", "bad_request", "object"),
    (line(op="status", v=2), "unsupported_version", "version 2"),
    (json.dumps({"id": 1, "op": "status"}).encode(), "bad_request", '"v"'),
    (line(op="status", v=True), "bad_request", '"v"'),
    (line(op="status", id=True), "bad_request", '"id"'),
    (line(op="status", id="x" * 65), "bad_request", '"id"'),
    (line(op="open_door"), "bad_request", '"op"'),
    (line(op="status", extra=1), "bad_request", "unknown field(s) for status: extra"),
    (line(op="delete"), "bad_request", 'needs "name"'),
    (line(op="delete", name="../etc/passwd"), "bad_request", '"name"'),
    (line(op="delete", name=7), "bad_request", '"name"'),
    (line(op="enrol_live", name="a", samples=0), "bad_request", '"samples"'),
    (line(op="enrol_live", name="a", samples=True), "bad_request", '"samples"'),
    (line(op="enrol_live", name="a", replace="yes"), "bad_request", '"replace"'),
    (line(op="enrol_files", name="a", faces="abc", voices=[]), "bad_request", "list of base64"),
    (line(op="enrol_files", name="a", faces=["!!!"], voices=[]), "bad_request", "not valid base64"),
    (line(op="enrol_files", name="a", faces=[""], voices=[]), "bad_request", "empty"),
    (line(op="enrol_files", name="a", faces=["AAAA"] * 6, voices=[]), "too_large", "at most 5"),
    (line(op="enrol_files", name="a", faces=[], voices=[], digits=["AAAA"]), "bad_request", '"0"-"9"'),
    (line(op="enrol_files", name="a", faces=[], voices=[], digits={}), "bad_request", '"0"-"9"'),
    (line(op="enrol_files", name="a", faces=[], voices=[], digits={"10": ["AAAA"]}), "bad_request", "not 10"),
    (line(op="enrol_files", name="a", faces=[], voices=[], digits={"\u0663": ["AAAA"]}), "bad_request", "keys"),
    (line(op="enrol_files", name="a", faces=[], voices=[], digits={"3": "AAAA"}), "bad_request",
     '"digits.3" must be a list'),
    (line(op="enrol_files", name="a", faces=[], voices=[], digits={"3": ["AAAA"] * 4}), "too_large",
     '"digits.3": at most 3'),
    (line(op="enrol_files", name="a", faces=[], voices=[], digits={"3": ["!!"]}), "bad_request",
     "not valid base64"),
    (line(op="enrol_live", name="a", live_digits=1), "bad_request", '"live_digits"'),
    (line(op="enrol_live", name="a", digits={"1": ["AAAA"]}), "bad_request", "unknown field"),
])
def test_malformed_requests_are_refused_with_a_reason(raw, code, words):
    with pytest.raises(ProtocolError) as caught:
        parse_request(raw)
    assert caught.value.code == code
    assert words in str(caught.value)


def test_error_keeps_the_request_id_when_it_had_one():
    with pytest.raises(ProtocolError) as caught:
        parse_request(line(op="delete", id="req-9"))
    assert caught.value.request_id == "req-9"


def test_size_limits_on_files_payload_and_line(monkeypatch):
    big = base64.b64encode(b"x" * (protocol.MAX_FILE_BYTES + 1)).decode()
    with pytest.raises(ProtocolError) as caught:
        parse_request(line(op="enrol_files", name="a", faces=[big], voices=[]))
    assert caught.value.code == "too_large"
    huge = base64.b64encode(b"x" * (protocol.MAX_DIGIT_FILE_BYTES + 1)).decode()
    with pytest.raises(ProtocolError) as caught:
        parse_request(line(op="enrol_files", name="a", faces=[], voices=[], digits={"4": [huge]}))
    assert caught.value.code == "too_large" and "digits.4" in str(caught.value)
    monkeypatch.setattr(protocol, "MAX_PAYLOAD_BYTES", 10)
    with pytest.raises(ProtocolError) as caught:  # digit recordings count towards the payload too
        parse_request(line(op="enrol_files", name="a", faces=[], voices=[base64.b64encode(b"y" * 6).decode()],
                           digits={"1": [base64.b64encode(b"z" * 6).decode()]}))
    assert caught.value.code == "too_large"
    small = base64.b64encode(b"y" * 6).decode()
    with pytest.raises(ProtocolError) as caught:
        parse_request(line(op="enrol_files", name="a", faces=[small], voices=[small]))
    assert caught.value.code == "too_large"
    monkeypatch.setattr(protocol, "MAX_LINE_BYTES", 20)
    with pytest.raises(ProtocolError) as caught:
        parse_request(line(op="status"))
    assert caught.value.code == "too_large"


def test_replies_are_one_ascii_line():
    reply = protocol.ok_reply(3, {"name": "zoë"})
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1
    assert json.loads(reply) == {"v": 1, "id": 3, "ok": True, "result": {"name": "zoë"}}
    error = json.loads(protocol.error_reply(None, "busy", "too many"))
    assert error["error"] == {"code": "busy", "message": "too many"}
    event = json.loads(protocol.progress_event(4, {"prompt": "speak", "step": 1, "of": 2}))
    assert event == {"v": 1, "id": 4, "event": "progress", "prompt": "speak", "step": 1, "of": 2}


def test_client_exceptions_match_error_codes():
    assert isinstance(protocol.error_from_reply("unauthorised", "no"), PermissionError)
    assert isinstance(protocol.error_from_reply("timeout", "slow"), TimeoutError)
    assert isinstance(protocol.error_from_reply("bad_request", "bad"), ValueError)
    refused = protocol.error_from_reply("refused", "no face")
    assert refused.code == "refused" and str(refused) == "no face"
