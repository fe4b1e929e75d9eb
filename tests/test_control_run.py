"""The control socket of a real `avid run` (replayed camera and microphone, gpiozero's MockFactory):
people enrolled or deleted through it count from the next attempt without a restart, live
enrolment uses the door's own devices, a client killed mid-enrolment leaves the door running and
locked with nothing written, and a user who is not an administrator is refused.

One daemon replays one timeline (about 45 s) while the test acts in its gaps:

    8 s empty | alice A (accepted) | 6 s | alice B (denied: deleted) | 12 s | alice C (captured by
    the live enrolment of "carol"; the door is suspended) | 6 s | alice D (accepted as carol) | 4 s
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest


from control_harness import ROOT, SocketFolder, avid, build_replay, enrolment_files, replay_door_config, status_as
from daemon.control.client import ControlClient

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="plays other users with setuid (CI runs as root)")


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _decisions(client, n):
    return lambda: (lambda d: d if len(d) >= n else None)(client.status()["last_decisions"])


def test_people_change_without_restart_live_enrolment_and_refusals(tmp_path):
    faces, voices = enrolment_files(tmp_path)
    video, wav = build_replay(tmp_path, [8.0, "s1_bbaf4p", 6.0, "s1_bbaf5a", 12.0, "s1_bbaf2n", 6.0,
                                         "s1_bbaf3s", 4.0])
    with SocketFolder() as folder:
        socket_path = folder / "control.sock"
        config = replay_door_config(tmp_path, socket_path, video, wav)
        env = {k: v for k, v in os.environ.items() if k != "AVID_STATE_DIR"}
        daemon = subprocess.Popen([sys.executable, "-m", "daemon", "run", "--config", str(config)],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
        stderr = []
        reader = threading.Thread(target=lambda: stderr.extend(daemon.stderr), daemon=True)
        reader.start()
        try:
            client = ControlClient(socket_path, timeout=30)
            _wait_for(lambda: socket_path.exists(), 60, "the control socket")
            assert client.status()["enrolled"] == 0

            # A user outside the admin group is refused by the daemon, which logs who it was.
            refused = status_as(socket_path, uid=12345, gid=12345)
            assert refused["ok"] is False and refused["code"] == "unauthorised", refused

            # Enrol from files through the CLI while two other clients ask at the same time.
            answers, errors = [], []

            def ask():
                try:
                    answers.append(ControlClient(socket_path, timeout=30).status()["lock"])
                except Exception as exc:  # noqa: BLE001 -- the assertion below shows it
                    errors.append(exc)

            askers = [threading.Thread(target=ask) for _ in range(2)]
            for thread in askers:
                thread.start()
            enrolled = avid("enroll", "alice", "--face", *map(str, faces), "--voice", *map(str, voices),
                            config=config)
            for thread in askers:
                thread.join(timeout=30)
            assert enrolled.returncode == 0, enrolled.stderr
            assert "enrolled alice: 2 face sample(s), 2 voice sample(s)" in enrolled.stdout
            assert errors == [] and answers == ["locked", "locked"]
            listed = avid("list", config=config)
            assert listed.returncode == 0 and listed.stdout.startswith("alice\t"), listed.stdout

            first = _wait_for(_decisions(client, 1), 30, "the first attempt")[0]
            assert (first["decision"], first["person"]) == ("accept", "alice"), first

            deleted = avid("delete", "alice", config=config)
            assert deleted.returncode == 0, deleted.stderr
            second = _wait_for(_decisions(client, 2), 30, "the second attempt")[1]
            assert second["decision"] == "deny" and second["person"] is None, second

            # A client killed in the middle of a live enrolment: the door resumes, nothing is written.
            doomed = subprocess.Popen([sys.executable, "-m", "daemon", "enroll", "mallory", "--live",
                                       "--config", str(config)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True)
            assert "Look at the camera" in doomed.stdout.readline()
            assert client.status()["suspended"] is True
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
            _wait_for(lambda: client.status()["suspended"] is False, 5, "the door to resume")
            status = client.status()
            assert status["lock"] == "locked" and status["enrolled"] == 0
            assert list((tmp_path / "state" / "templates").glob("*")) == []

            # Live enrolment with the door's own (replayed) camera and microphone.
            live = avid("enroll", "carol", "--live", "--samples", "1", config=config, timeout=60)
            assert live.returncode == 0, live.stdout + live.stderr
            assert "[1/1] Look at the camera" in live.stdout and "sample taken" in live.stdout
            assert "enrolled carol: 1 face sample(s), 1 voice sample(s)" in live.stdout
            third, fourth = _wait_for(_decisions(client, 4), 40, "the fourth attempt")[2:4]
            # The attempt made while enrolling was never compared with anyone: the door was suspended.
            assert (third["decision"], third["reason"], third["fused"]) == ("deny", "error", None), third
            assert (fourth["decision"], fourth["person"]) == ("accept", "carol"), fourth

            status_json = avid("status", "--json", config=config)
            assert status_json.returncode == 0, status_json.stderr
            state = json.loads(status_json.stdout)
            assert state["enrolled"] == 1 and state["lock"] in ("locked", "unlocked")
            assert state["lockout"]["locked_out"] is False and state["devices"]["camera"] == "ok"
            daemon.wait(timeout=60)
        finally:
            if daemon.poll() is None:
                daemon.terminate()
                daemon.wait(timeout=20)
            reader.join(timeout=5)
        log = "".join(stderr)
        assert daemon.returncode == 0, log
        assert "user=12345 uid=12345" in log and "refused" in log
        assert "user=root uid=0 op=enrol_files name=alice outcome=ok" in log
        assert "op=delete name=alice outcome=ok" in log
        assert "op=enrol_live name=mallory outcome=cancelled" in log
        assert "op=enrol_live name=carol outcome=ok" in log
        assert not socket_path.exists()  # removed on a clean stop
