"""The web page's live enrolment request (daemon/web/doorlink.py): what it sends the door and how
it reads the answer, against a listening socket that plays the daemon's side of the protocol."""

from __future__ import annotations

import socket
import threading

import pytest

from control_harness import SocketFolder
from daemon.control.protocol import ok_reply, parse_request, progress_event
from daemon.web.doorlink import LiveEnrolment


@pytest.mark.parametrize("live_digits", [False, True])
def test_live_enrolment_asks_for_the_digits_only_when_told(live_digits):
    received = []
    with SocketFolder() as folder, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        path = folder / "control.sock"
        server.bind(str(path))
        server.listen(1)

        def daemon_side():
            conn, _ = server.accept()
            with conn:
                request = parse_request(conn.makefile("rb").readline().rstrip(b"\n"))
                received.append(request)
                conn.sendall(progress_event(request.id, {"prompt": "[1/20] say \"seven\" (7) once, now"}))
                conn.sendall(ok_reply(request.id, {"name": request.args["name"], "face_samples": 1,
                                                   "voice_samples": 1, "digit_recordings": 20 if live_digits else 0}))

        thread = threading.Thread(target=daemon_side, daemon=True)
        thread.start()
        events = []
        result = LiveEnrolment(path, timeout=10).run("gina", 1, events.append, live_digits=live_digits)
        thread.join(timeout=10)
    [request] = received
    assert (request.op, request.args["name"], request.args["live_digits"]) == ("enrol_live", "gina", live_digits)
    assert events == [{"prompt": "[1/20] say \"seven\" (7) once, now"}]
    assert result["digit_recordings"] == (20 if live_digits else 0)
