"""Fault injection through the real capture loop: a camera or microphone that raises, blocks
forever, freezes or returns garbage. Each fault is logged once when it starts and once when the
device is back, attempts are denied meanwhile, the relay is never energised by a faulty attempt,
and no wait is unbounded."""

import logging
import time

import numpy as np
import pytest

from door_harness import (ScriptedAudio, ScriptedFrames, block_forever, door_config, enrol_alice,
                          run_door, scene)

CLIP = "s1_bbaf4p"  # alice, not used for enrolment


@pytest.fixture
def door(tmp_path, pipeline, monkeypatch):
    monkeypatch.delenv("AVID_STATE_DIR", raising=False)
    config = door_config(tmp_path / "state")
    enrol_alice(pipeline, config)
    return config


def _energised(pin) -> bool:
    return any(state.state for state in pin.states)


def _lines(caplog, text):
    return [r for r in caplog.records if text in r.getMessage()]


def test_clean_attempt_is_accepted(door, pipeline, mock_factory):
    # The control for every test below: the same scene without a fault opens the door.
    video, audio = scene(CLIP)
    events, pin = run_door(pipeline, door, lambda: ScriptedFrames(video), lambda: ScriptedAudio(audio),
                           mock_factory, duration_s=8)
    assert [e.decision.decision for e in events] == ["accept"]
    assert events[0].decision.person == "alice"
    assert _energised(pin) and not pin.state


def test_camera_that_raises_mid_attempt(door, pipeline, mock_factory, caplog):
    video, audio = scene(CLIP)
    opened = []

    def frames():
        opened.append(1)
        if len(opened) == 1:
            def fault(i, frame):
                if i == 25:  # during the speech
                    raise OSError("USB camera disconnected")
                return frame
            return ScriptedFrames(video, fault)
        return ScriptedFrames(video[40:])

    with caplog.at_level(logging.INFO):
        events, pin = run_door(pipeline, door, frames, lambda: ScriptedAudio(audio), mock_factory,
                               duration_s=8)
    assert events and all(e.decision.decision == "deny" for e in events)
    assert events[0].decision.reason == "error"
    assert not _energised(pin)
    assert len(_lines(caplog, "camera unavailable")) == 1
    assert len(_lines(caplog, "camera is back")) == 1
    assert len(opened) >= 2  # the camera was reopened


def test_camera_that_blocks_forever_is_a_bounded_wait(door, pipeline, mock_factory, caplog):
    video, audio = scene(CLIP)

    def fault(i, frame):
        if i >= 10:
            block_forever()
        return frame

    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        events, pin = run_door(pipeline, door, lambda: ScriptedFrames(video, fault),
                               lambda: ScriptedAudio(audio), mock_factory, duration_s=7)
    assert time.monotonic() - started < 15
    assert all(e.decision.decision == "deny" for e in events)
    assert not _energised(pin)
    # Several timeouts in a row, one warning.
    assert len(_lines(caplog, "camera unavailable")) == 1


def test_frozen_camera_counts_as_a_fault(door, pipeline, mock_factory, caplog):
    video, audio = scene(CLIP)
    frozen = video[20]
    with caplog.at_level(logging.INFO):
        events, pin = run_door(pipeline, door,
                               lambda: ScriptedFrames(video, lambda i, f: frozen if i >= 20 else f),
                               lambda: ScriptedAudio(audio), mock_factory, duration_s=9)
    assert all(e.decision.decision == "deny" for e in events)
    assert not _energised(pin)
    assert len(_lines(caplog, "camera unavailable")) == 1
    assert "frozen" in _lines(caplog, "camera unavailable")[0].getMessage()


def test_audio_with_nans_denies_and_recovers(door, pipeline, mock_factory, caplog):
    video, audio = scene(CLIP)

    def fault(i, block):
        return np.full_like(block, np.nan) if 50 <= i < 53 else block

    with caplog.at_level(logging.INFO):
        events, pin = run_door(pipeline, door, lambda: ScriptedFrames(video),
                               lambda: ScriptedAudio(audio, fault), mock_factory, duration_s=8)
    assert events and all(e.decision.decision == "deny" for e in events)
    assert not _energised(pin)
    assert len(_lines(caplog, "microphone unavailable")) == 1
    assert len(_lines(caplog, "microphone is back")) == 1


def test_microphone_exception_denies(door, pipeline, mock_factory, caplog):
    video, audio = scene(CLIP)

    opened = []

    def microphone():
        opened.append(1)
        if len(opened) > 1:  # back, but the person has gone: only the room's background
            return ScriptedAudio(audio[-32000:])

        def fault(i, block):
            if i == 50:
                raise OSError("ALSA: input overrun, device gone")
            return block
        return ScriptedAudio(audio, fault)

    with caplog.at_level(logging.INFO):
        events, pin = run_door(pipeline, door, lambda: ScriptedFrames(video), microphone,
                               mock_factory, duration_s=8)
    assert all(e.decision.decision == "deny" for e in events)
    assert not _energised(pin)
    assert len(_lines(caplog, "microphone unavailable")) == 1
    assert len(_lines(caplog, "microphone is back")) == 1


def test_short_reads_are_recut_into_vad_frames(door, pipeline, mock_factory):
    # Blocks of odd sizes (a driver returning what it has) must still make a normal attempt.
    video, audio = scene(CLIP)
    events, pin = run_door(pipeline, door, lambda: ScriptedFrames(video),
                           lambda: ScriptedAudio(audio, block_sizes=(160, 700, 333, 480, 97)),
                           mock_factory, duration_s=8)
    assert [e.decision.decision for e in events] == ["accept"]
    assert _energised(pin)


def test_silence_with_a_face_is_abandoned_not_accepted(door, pipeline, mock_factory):
    video, audio = scene(CLIP)
    silent = np.concatenate([audio[:16000]] * (audio.size // 16000 + 1))[:audio.size] * 0 + audio[:4000].mean()
    config = door.model_copy(update={"attempt": door.attempt.model_copy(update={"timeout_seconds": 3.0})})
    events, pin = run_door(pipeline, config, lambda: ScriptedFrames(video),
                           lambda: ScriptedAudio(silent.astype(np.float32)), mock_factory, duration_s=7)
    assert events and all(e.decision.decision == "deny" and e.decision.reason == "no_speech" for e in events)
    assert not _energised(pin)


def test_lockout_survives_a_daemon_restart(tmp_path, pipeline, mock_factory, monkeypatch):
    # A stranger fails once (max_consecutive_failures=1): locked out. The daemon is then built
    # again from scratch, as after a restart, and alice herself is refused until the delay ends.
    monkeypatch.delenv("AVID_STATE_DIR", raising=False)
    config = door_config(tmp_path / "state", lockout={"max_consecutive_failures": 1,
                                                      "initial_delay_seconds": 600})
    enrol_alice(pipeline, config)
    video, audio = scene("gridX_lwbsza_lwbsza")
    events, _ = run_door(pipeline, config, lambda: ScriptedFrames(video), lambda: ScriptedAudio(audio),
                         mock_factory, duration_s=8)
    assert [e.decision.reason for e in events] == ["no_match"]

    video, audio = scene(CLIP)
    events, pin = run_door(pipeline, config, lambda: ScriptedFrames(video), lambda: ScriptedAudio(audio),
                           mock_factory, duration_s=8)
    assert [e.decision.reason for e in events] == ["locked_out"]
    assert not _energised(pin)
