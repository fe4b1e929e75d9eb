"""The control server and client in one process, around the real door admin (real models, real
encrypted template store, real lockout file, gpiozero's MockFactory for the relay): authorisation
from the peer's credentials, the effect of each request, live enrolment from replayed devices,
cancellation, and requests that are malformed, oversized, slow or too many."""

from __future__ import annotations

import grp
import json
import os
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from control_harness import SocketFolder, enrolment_files, status_as
from daemon.actuate.lock import open_lock
from daemon.capture.audio import read_wav
from daemon.capture.base import Item
from daemon.challenge.digits import DigitTemplates, recognise
from daemon.control import protocol
from daemon.control.client import ControlClient, connect_if_running
from daemon.service.admin import LoopDoorAdmin
from daemon.control.protocol import Busy, ControlError, ERROR_CODES
from daemon.control.server import Authoriser, ControlServer, Peer
from daemon.service import door
from door_harness import FPS, door_config, scene
from shared_data import DATA

FSDD = DATA / "voices" / "fsdd"

EXAMPLES = int(os.environ.get("AVID_FUZZ_EXAMPLES", "300"))
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="plays other users with setuid (CI runs as root)")


@pytest.fixture
def admin(tmp_path, pipeline, mock_factory):
    config = door_config(tmp_path / "state")
    door.open_store(config, pipeline.models_fingerprint, create_key=True)  # an initialised door
    lock = open_lock(config.lock, pin_factory=mock_factory)
    yield LoopDoorAdmin(door.build_door(config, pipeline=pipeline), lock, make_pipeline=lambda: pipeline)
    lock.close()


@pytest.fixture
def folder():
    with SocketFolder() as path:
        yield path


def serve(admin, folder: Path, **options) -> ControlServer:
    return ControlServer(admin, folder / "control.sock", **options).start()


def raw_request(path: Path, data: bytes, timeout: float = 10) -> list[dict]:
    """Send raw bytes, return every line the server sends back until it closes or goes quiet."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return [json.loads(line) for line in received.splitlines()]


# --- what the requests do ------------------------------------------------------------------------
def test_enrol_list_delete_count_for_the_next_attempt_at_once(admin, folder, tmp_path):
    faces, voices = enrolment_files(tmp_path)
    with serve(admin, folder) as server:
        client = connect_if_running(server.path)
        result = client.enrol_files("alice", [p.read_bytes() for p in faces], [p.read_bytes() for p in voices])
        assert result == {"name": "alice", "face_samples": 2, "voice_samples": 2, "digit_recordings": 0}
        assert [p.name for p in admin.door.people()] == ["alice"]  # what the loop compares with next
        assert client.list_people() == [result]
        status = client.status()
        assert (status["enrolled"], status["lock"], status["suspended"]) == (1, "locked", False)
        with pytest.raises(ControlError) as taken:
            client.enrol_files("alice", [faces[0].read_bytes()], [voices[0].read_bytes()])
        assert taken.value.code == "refused" and "already enrolled" in str(taken.value)
        assert client.delete("alice") is True
        assert client.delete("alice") is False
        assert admin.door.people() == [] and client.list_people() == []
    assert list((tmp_path / "state" / "templates").glob("*")) == []
    assert not server.path.exists()


def test_unusable_samples_are_refused_naming_each(admin, folder, tmp_path):
    blank = cv2.imencode(".png", np.full((240, 320, 3), 90, np.uint8))[1].tobytes()
    silence = (tmp_path / "silence.wav")
    import wave
    with wave.open(str(silence), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(16000)
        wav.writeframes(b"\0\0" * 32000)
    with serve(admin, folder) as server:
        with pytest.raises(ControlError) as refused:
            ControlClient(server.path).enrol_files("bob", [b"not an image", blank],
                                                   [b"RIFF\x00\x00garbage", silence.read_bytes()])
    message = str(refused.value)
    assert refused.value.code == "refused"
    for words in ("face file 1: not an image", "face file 2: no_face", "voice file 1: not a readable WAV file",
                  "voice file 2: not a voice sample: not enough speech"):
        assert words in message
    assert admin.door.people() == [] and list((tmp_path / "state" / "templates").glob("*.tpl")) == []


def test_lockout_shown_and_cleared(admin, folder):
    for _ in range(admin.config.lockout.max_consecutive_failures):
        admin.door.lockout.record_failure()
    with serve(admin, folder) as server:
        client = ControlClient(server.path)
        assert client.lockout()["locked_out"] is True
        client.clear_lockout()
        assert client.lockout() == {"locked_out": False, "remaining_seconds": 0.0, "consecutive_failures": 0}
    assert json.loads((admin.config.state_dir / "lockout.json").read_text())["consecutive_failures"] == 0


# --- live enrolment ------------------------------------------------------------------------------
def _replay_into(admin, clip: str, stop: threading.Event) -> threading.Thread:
    """Feed the admin's taps as the loop's camera and microphone would, in real time."""
    frames, sound = scene(clip, lead_seconds=1.0, tail_seconds=2.0)

    def play():
        start = time.monotonic()
        block, next_frame = 480, 0
        for i in range(0, sound.size - block + 1, block):
            if stop.is_set():
                return
            t = start + (i + block) / 16000
            time.sleep(max(0.0, t - time.monotonic()))
            while next_frame < len(frames) and next_frame / FPS <= (i + block) / 16000:
                admin._frames_tap.publish(Item(frames[next_frame], t))
                next_frame += 1
            admin._audio_tap.publish(Item(sound[i:i + block], t))

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    return thread


def test_live_enrolment_streams_prompts_and_suspends_the_door(admin, folder):
    seen = []

    def on_progress(event):
        seen.append((event, admin.status()["suspended"], admin.door.people()))
        if len(seen) == 1:
            _replay_into(admin, "s1_bbaf2n", stop)

    stop = threading.Event()
    try:
        with serve(admin, folder) as server:
            result = ControlClient(server.path).enrol_live("carol", 1, on_progress=on_progress)
    finally:
        stop.set()
    assert result == {"name": "carol", "face_samples": 1, "voice_samples": 1, "digit_recordings": 0}
    assert seen[0][0] == {"prompt": "Look at the camera and say a sentence (about 3 seconds)", "step": 1, "of": 1}
    assert seen[-1][0]["outcome"] == "taken"
    assert all(suspended and people == [] for _, suspended, people in seen)
    assert admin.status()["suspended"] is False and [p.name for p in admin.door.people()] == ["carol"]


def test_status_says_what_the_door_decides_with(admin, folder):
    with serve(admin, folder) as server:
        point = ControlClient(server.path).status()["operating_point"]
    shipped = json.loads(Path(admin.door.point.source).read_text())
    assert point["calibration"] == admin.door.point.source
    assert (point["threshold"], point["margin"]) == (admin.door.policy.threshold, admin.door.policy.margin)
    assert {k: point[k] for k in ("target_fmr", "expected_fnmr", "fnmr_ci", "created")} == \
           {k: shipped[k] for k in ("target_fmr", "expected_fnmr", "fnmr_ci", "created")}


def _digit_takes(speaker: str = "george", takes: int = 2) -> dict[str, list[Path]]:
    return {d: [FSDD / speaker / f"{d}_{i}.wav" for i in range(takes)] for d in "0123456789"}


def test_digit_recordings_enrol_through_the_running_door(admin, folder, tmp_path):
    faces, voices = enrolment_files(tmp_path)
    digits = {d: [p.read_bytes() for p in paths] for d, paths in _digit_takes().items()}
    with serve(admin, folder) as server:
        result = ControlClient(server.path).enrol_files("dora", [faces[0].read_bytes()], [voices[0].read_bytes()],
                                                        digits=digits)
    assert result == {"name": "dora", "face_samples": 1, "voice_samples": 1, "digit_recordings": 20}
    [person] = admin.door.people()  # the loop's people: her challenge can be checked from the next attempt
    templates = DigitTemplates.from_arrays(person.digits)
    assert templates.complete() and all(len(templates.by_digit[d]) == 2 for d in "0123456789")
    assert recognise(read_wav(FSDD / "george" / "3_4.wav"), templates).digit == "3"


def test_unusable_digits_and_samples_are_refused_together_and_nothing_is_written(admin, folder, tmp_path):
    faces, voices = enrolment_files(tmp_path)
    digits = {d: [p.read_bytes() for p in paths] for d, paths in _digit_takes(takes=1).items() if d != "5"}
    digits["2"] = [np.zeros(16000, "<i2").tobytes()]  # not a WAV file
    with serve(admin, folder) as server, pytest.raises(ControlError) as refused:
        ControlClient(server.path).enrol_files("erin", [b"not an image"], [voices[0].read_bytes()], digits=digits)
    message = str(refused.value)
    assert refused.value.code == "refused"
    assert "face file 1: not an image" in message and "digit 2 file 1" in message
    assert "digit(s) 2, 5: fewer than 1 usable recording(s)" in message
    assert admin.door.people() == [] and admin.door.store.load() == {}


def test_live_enrolment_takes_the_digits_after_the_sentence(admin, folder):
    takes = {d: [read_wav(p) for p in paths] for d, paths in _digit_takes().items()}
    stop, prompts = threading.Event(), []

    def on_progress(event):
        prompts.append(event["prompt"])
        if len(prompts) == 1:
            _replay_into(admin, "s1_bbaf2n", stop)
        elif event["prompt"].startswith("["):  # '[3/20] say "seven" (7) once, now'
            stop.set()  # the sentence's replay is over: the door's microphone now hears one digit
            digit = event["prompt"].split("(")[1][0]
            spoken = np.concatenate([np.zeros(4800, np.float32), takes[digit].pop(), np.zeros(24000, np.float32)])
            deadline = time.monotonic() + 5
            while not admin._audio_tap._queues and time.monotonic() < deadline:
                time.sleep(0.01)  # the prompt can arrive before the door starts listening
            for i in range(0, spoken.size, 480):  # faster than real time: the recording counts samples
                admin._audio_tap.publish(Item(spoken[i:i + 480], time.monotonic()))

    try:
        with serve(admin, folder) as server:
            result = ControlClient(server.path).enrol_live("fred", 1, on_progress=on_progress, live_digits=True)
    finally:
        stop.set()
    assert result == {"name": "fred", "face_samples": 1, "voice_samples": 1, "digit_recordings": 20}
    asked = [p for p in prompts if p.startswith("[")]
    assert len(asked) == 20 and sorted(p.split("(")[1][0] for p in asked) == sorted("0123456789" * 2)
    assert DigitTemplates.from_arrays(admin.door.people()[0].digits).complete()
    assert admin.status()["suspended"] is False


def test_client_leaving_cancels_live_enrolment_and_writes_nothing(admin, folder, tmp_path):
    with serve(admin, folder) as server:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(10)
        conn.connect(str(server.path))
        conn.sendall(protocol.encode_request(1, "enrol_live", name="mallory"))
        assert json.loads(conn.makefile("rb").readline())["event"] == "progress"
        assert admin.status()["suspended"] is True
        with pytest.raises(Busy):  # one live enrolment at a time
            ControlClient(server.path).enrol_live("other")
        conn.close()
        deadline = time.monotonic() + 3
        while admin.status()["suspended"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert admin.status()["suspended"] is False
    assert admin.door.people() == [] and list((tmp_path / "state" / "templates").glob("*")) == []


# --- who may administer --------------------------------------------------------------------------
def _some_group() -> grp.struct_group:
    return next(g for g in grp.getgrall() if 0 < g.gr_gid < 65534)


@as_root
def test_only_root_and_admin_group_members_are_served(admin, folder, caplog):
    group = _some_group()
    with serve(admin, folder, admin_group=group.gr_name) as server:
        stranger = status_as(server.path, uid=12345, gid=12345)
        primary = status_as(server.path, uid=12346, gid=group.gr_gid)
        supplementary = status_as(server.path, uid=12347, gid=12347, groups=[group.gr_gid])
        assert status_as(server.path, uid=0, gid=0)["ok"] is True
    assert stranger["ok"] is False and stranger["code"] == "unauthorised"
    assert f"not a member of the group {group.gr_name!r}" in stranger["message"]
    assert primary["ok"] is True and supplementary["ok"] is True
    assert primary["result"]["lock"] == "locked"
    assert any("user=12345 uid=12345" in r.getMessage() and "refused" in r.getMessage() for r in caplog.records)


def test_an_unmapped_user_is_refused_whatever_its_groups():
    authoriser = Authoriser("avid-admin", own_uid=999)
    nobody = Peer(pid=1, uid=authoriser.overflow_uid, gid=0, groups=(0,), user="nobody")
    assert "PrivateUsers" in authoriser.refusal(nobody)
    assert authoriser.refusal(Peer(1, 0, 0, (), "root")) is None
    assert authoriser.refusal(Peer(1, 999, 999, (), "avid")) is None
    assert "does not exist" in Authoriser("no-such-group-here", own_uid=999).refusal(Peer(1, 1000, 1000, (), "x"))


# --- requests that must not stall or crash anything -----------------------------------------------
def wait_for_clients(server: ControlServer, count: int, within_s: float = 5.0) -> None:
    """Until the server holds ``count`` clients: a slot is freed only after the server sees the
    client's end of stream, which the client cannot observe."""
    deadline = time.monotonic() + within_s
    while server.client_count != count:
        assert time.monotonic() < deadline, f"{server.client_count} clients, expected {count}"
        time.sleep(0.01)


def test_oversized_slow_and_surplus_clients_are_answered_and_others_still_served(admin, folder):
    with serve(admin, folder, max_line_bytes=4096, read_timeout_s=2.0, max_clients=2) as server:
        assert raw_request(server.path, b"x" * 10000)[0]["error"]["code"] == "too_large"
        wait_for_clients(server, 0)
        slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        slow.settimeout(10)
        slow.connect(str(server.path))
        slow.sendall(b'{"v": 1, "id": 1, "op": "sta')
        started = time.monotonic()
        wait_for_clients(server, 1)
        assert ControlClient(server.path).status()["lock"] == "locked"  # not held up by the slow one
        assert time.monotonic() - started < 2.0  # answered before the slow client timed out
        wait_for_clients(server, 1)
        idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        idle.connect(str(server.path))
        wait_for_clients(server, 2)
        with pytest.raises(Busy):  # both slots taken (slow, idle)
            ControlClient(server.path).status()
        reply = json.loads(slow.makefile("rb").readline())
        assert reply["error"]["code"] == "timeout" and time.monotonic() - started < 5
        slow.close()
        idle.close()
        wait_for_clients(server, 0, within_s=5.0)  # idle is dropped at its own read timeout
        assert ControlClient(server.path).status()["enrolled"] == 0


def test_a_second_server_on_the_same_socket_is_refused_and_a_stale_one_replaced(admin, folder):
    with serve(admin, folder) as server:
        assert oct(os.stat(server.path).st_mode & 0o777) == "0o666"
        with pytest.raises(ControlError, match="another daemon is listening"):
            serve(admin, folder)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(folder / "control.sock"))  # a socket file nobody listens on (a crashed daemon)
    stale.close()
    assert connect_if_running(folder / "control.sock") is None
    with serve(admin, folder) as server:
        assert ControlClient(server.path).status()["enrolled"] == 0


def _valid_for(kind: str, value) -> bool:
    """An independent statement of the schema's types, to generate values that break it."""
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "samples":
        return type(value) is int and 1 <= value <= 10
    if kind == "name":
        import re
        return isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value) is not None
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=12)
VALID = {"status": {}, "list": {}, "lockout": {}, "clear_lockout": {}, "delete": {"name": "alice"},
         "enrol_live": {"name": "alice", "samples": 1, "replace": False},
         "enrol_files": {"name": "alice", "faces": ["AAAA"], "voices": ["AAAA"], "replace": False}}


@st.composite
def broken_requests(draw) -> bytes:
    how = draw(st.sampled_from(["bytes", "json", "drop", "retype", "unknown", "version"]))
    if how == "bytes":
        return draw(st.binary(max_size=300).filter(lambda b: b"\n" not in b))
    if how == "json":
        value = draw(json_values)
        if isinstance(value, dict) and isinstance(value.get("op"), str):
            value.pop("op")
        return json.dumps(value).encode()
    op = draw(st.sampled_from(sorted(VALID)))
    message = {"v": 1, "id": draw(st.integers(0, 10**6) | st.text(min_size=1, max_size=64)), "op": op, **VALID[op]}
    if how == "drop":
        required = ["v", "id", "op"] + [k for k in VALID[op] if k in ("name", "faces", "voices")]
        message.pop(draw(st.sampled_from(required)))
    elif how == "retype":
        key = draw(st.sampled_from(["v", "id", "op"] + list(VALID[op])))
        kind = {"name": "name", "replace": "bool", "samples": "samples", "faces": "files",
                "voices": "files"}.get(key)
        value = draw(json_values.filter(
            lambda v: not (_valid_for(kind, v) if kind else
                           (key == "v" and v == 1 and type(v) is int) or
                           (key == "op" and isinstance(v, str) and v in VALID) or
                           (key == "id" and ((type(v) is int and abs(v) <= 2**53) or
                                             (isinstance(v, str) and 0 < len(v) <= 64))))))
        message[key] = value
    elif how == "unknown":
        key = draw(st.text(min_size=1).filter(lambda k: k not in message and k not in VALID[op]))
        message[key] = draw(json_values)
    else:
        message["v"] = draw(st.integers().filter(lambda v: v != 1))
    return json.dumps(message).encode()


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, pipeline):
    from gpiozero.pins.mock import MockFactory

    state = tmp_path_factory.mktemp("fuzz") / "state"
    config = door_config(state)
    factory = MockFactory()
    lock = open_lock(config.lock, pin_factory=factory)
    door.open_store(config, pipeline.models_fingerprint, create_key=True)  # an initialised door
    admin = LoopDoorAdmin(door.build_door(config, pipeline=pipeline), lock, make_pipeline=lambda: pipeline)
    with SocketFolder() as path, ControlServer(admin, path / "control.sock").start() as server:
        yield server
    lock.close()
    factory.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=broken_requests())
def test_generated_malformed_requests_always_get_an_error_reply(fuzz_server, request):
    replies = raw_request(fuzz_server.path, request + b"\n")
    assert len(replies) == 1, replies
    reply = replies[0]
    assert reply["v"] == 1 and reply["ok"] is False
    assert reply["error"]["code"] in ("bad_request", "unsupported_version", "too_large")
    assert reply["error"]["code"] in ERROR_CODES and reply["error"]["message"]


def test_the_fuzzed_server_still_serves(fuzz_server):
    assert ControlClient(fuzz_server.path).status()["lock"] == "locked"


# --- the CLI side --------------------------------------------------------------------------------
def test_cli_commands_go_through_the_running_daemon(admin, folder, tmp_path, capsys):
    from daemon.cli import main

    faces, voices = enrolment_files(tmp_path)
    config = tmp_path / "config.yaml"
    # The state directory of the CLI is empty and elsewhere: answers can only come from the daemon.
    config.write_text(f"state:\n  directory: {tmp_path / 'elsewhere'}\n"
                      f"control:\n  socket_path: {folder / 'control.sock'}\n")
    assert main(["status", "--json", "--config", str(config)]) == 3
    assert json.loads(capsys.readouterr().out) == {"running": False}
    with serve(admin, folder):
        assert main(["enroll", "alice", "--face", *map(str, faces), "--voice", str(voices[0]),
                     "--config", str(config)]) == 0
        assert "enrolled alice: 2 face sample(s), 1 voice sample(s), 0 digit recording(s)" in capsys.readouterr().out
        assert main(["list", "--config", str(config)]) == 0
        assert capsys.readouterr().out == "alice\tface samples: 2\tvoice samples: 1\tdigit recordings: 0\n"
        assert main(["status", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert "avid is running: door locked" in out and "enrolled: 1" in out and "not locked out" in out
        assert main(["lockout", "--clear", "--config", str(config)]) == 0
        assert main(["lockout", "--config", str(config)]) == 0
        assert capsys.readouterr().out.endswith("consecutive failures: 0; not locked out\n")
        assert main(["delete", "bob", "--config", str(config)]) == 1
        assert main(["delete", "alice", "--config", str(config)]) == 0
        assert main(["enroll", "bob", "--face", str(faces[0]), "--voice", str(voices[0]), "--live-digits",
                     "--config", str(config)]) == 1
        assert "--live-digits goes with --live" in capsys.readouterr().err
        folder_of_digits = tmp_path / "digits"
        folder_of_digits.mkdir()
        for d, paths in _digit_takes(takes=1).items():
            (folder_of_digits / f"{d}_first.wav").write_bytes(paths[0].read_bytes())
        assert main(["enroll", "bob", "--face", str(faces[0]), "--voice", str(voices[0]), "--digits",
                     str(folder_of_digits), "--config", str(config)]) == 0
        assert "enrolled bob: 1 face sample(s), 1 voice sample(s), 10 digit recording(s)" in capsys.readouterr().out
        assert main(["delete", "bob", "--config", str(config)]) == 0
        big = tmp_path / "big.wav"
        big.write_bytes(b"\0" * (protocol.MAX_FILE_BYTES + 1))
        assert main(["enroll", "bob", "--face", str(faces[0]), "--voice", str(big), "--config", str(config)]) == 1
    assert admin.door.people() == [] and not (tmp_path / "elsewhere").exists()


SERVER_IN_NAMESPACE = """
import sys, time
from daemon.control.server import ControlServer
server = ControlServer(None, sys.argv[1], admin_group=sys.argv[2]).start()
print("listening", flush=True)
time.sleep(30)
"""


def _user_namespaces_allowed() -> bool:
    import shutil
    import subprocess

    return bool(shutil.which("unshare")) and subprocess.run(
        ["unshare", "--user", "--map-root-user", "true"], capture_output=True).returncode == 0


@as_root
@pytest.mark.skipif(not _user_namespaces_allowed(), reason="this machine does not allow user namespaces")
def test_in_a_private_user_namespace_group_members_are_unknown_and_refused(folder):
    # What systemd's PrivateUsers=yes does to the daemon: only root (and itself) are mapped, so
    # the kernel reports every other caller as the overflow uid, whatever its groups.
    import subprocess
    import sys

    group = _some_group()
    server = subprocess.Popen(["unshare", "--user", "--map-root-user", sys.executable, "-c", SERVER_IN_NAMESPACE,
                               str(folder / "control.sock"), group.gr_name], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        member = status_as(folder / "control.sock", uid=12346, gid=group.gr_gid, groups=[group.gr_gid])
    finally:
        server.kill()
        _, stderr = server.communicate(timeout=10)
    assert member["ok"] is False and member["code"] == "unauthorised"
    assert "PrivateUsers" in member["message"]
    assert "uid=65534" in stderr
