"""The door with a prompt device, end to end: the real models and capture loop, replayed camera and
microphone. A replayed video of an enrolled person cannot answer the random challenge; a person who
answers each prompt in time, with a moving mouth, in their own voice, is let in."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest

from daemon.capture.audio import read_wav, room_tone
from daemon.challenge import ChallengeParams, DigitTemplates
from daemon.state.templates import Person
from door_harness import (initialised, ScriptedAudio, ScriptedFrames, clip_audio, clip_frames, door_config,
                          enrol_alice, scene)
from tests.shared_data import DATA
from tools.scenes import answering_scene, spoken  # noqa: F401 (test_commission takes the scene from here)

CLIP = "s1_bbaf4p"  # alice, not used for enrolment


def run_challenged_door(pipeline, config, frames, audio, factory, duration_s, seed=None):
    """The real loop with the configured prompt device; ``seed`` fixes the challenge's draw."""
    from daemon.actuate.lock import open_lock
    from daemon.service.door import build_door
    from daemon.service.loop import CaptureLoop

    lock = open_lock(config.lock, pin_factory=factory)
    try:
        door = build_door(config, pipeline=pipeline)
        if seed is not None:
            door.challenge._rng = random.Random(seed)
        loop = CaptureLoop(door, lock, lambda: ScriptedFrames(frames), lambda: ScriptedAudio(audio))
        events = loop.run(duration_s=duration_s)
    finally:
        lock.close()
    return events, factory.pin(config.lock.relay_pin)


@pytest.fixture
def challenged(tmp_path, monkeypatch):
    monkeypatch.delenv("AVID_STATE_DIR", raising=False)
    return door_config(tmp_path / "state", prompt={"backend": "log"},
                       attempt={"cooldown_seconds": 0.5, "timeout_seconds": 6.0})


def test_replayed_video_of_an_enrolled_person_cannot_answer(challenged, pipeline, mock_factory, caplog):
    enrol_alice(pipeline, challenged)
    video, audio = scene(CLIP, tail_seconds=9.0)
    with caplog.at_level(logging.INFO):
        events, pin = run_challenged_door(pipeline, challenged, video, audio, mock_factory, 14.0)
    assert [e.decision.reason for e in events] == ["challenge_failed"], events
    assert not any(s.state for s in pin.states)
    assert caplog.text.count("challenge prompt") == ChallengeParams().digits
    assert "challenge on" in caplog.text and "without digit recordings" in caplog.text


def test_door_without_prompt_device_warns_that_replay_is_not_stopped(tmp_path, pipeline, caplog,
                                                                     monkeypatch):
    from daemon.service.door import build_door
    monkeypatch.delenv("AVID_STATE_DIR", raising=False)
    with caplog.at_level(logging.WARNING):
        door = build_door(initialised(door_config(tmp_path / "state")), pipeline=pipeline)
    assert door.challenge is None and not door.policy.challenge_required
    assert "replayed" in caplog.text or "NOT stopped" in caplog.text


def enrol_theo(pipeline, config) -> None:
    """Chimeric (say so): GRID s1's face with the voice of a free-spoken-digit speaker, enrolled from
    a photo, their digit recordings as the voice sample, and the digits twice for the challenge,
    recorded in the door's room (its background added)."""
    import cv2
    import wave

    from daemon.service import door as door_parts
    from daemon.service.enrolment import enrol_from_files
    fsdd = DATA / "voices" / "fsdd" / "theo"
    config.state_dir.mkdir(parents=True, exist_ok=True)
    photo = config.state_dir / "face.jpg"
    cv2.imwrite(str(photo), clip_frames("s1_bbaf2n")[8])
    voice_file = config.state_dir / "voice.wav"
    sentence = np.concatenate([read_wav(fsdd / f"{d}_{n}.wav") for n in (0, 1) for d in "0123456789"])
    with wave.open(str(voice_file), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes((np.clip(sentence / np.abs(sentence).max() * 0.3, -1, 1) * 32767).astype("<i2").tobytes())
    face, voice = enrol_from_files(pipeline, [photo], [voice_file])
    photo.unlink()
    voice_file.unlink()
    tone = room_tone(clip_audio(CLIP), 16000)
    digits = DigitTemplates.from_recordings(
        (d, spoken("theo", d, n) + tone[:spoken("theo", d, n).size]) for d in "0123456789" for n in (0, 1))
    store = door_parts.open_store(config, pipeline.models_fingerprint, create_key=True)
    store.save(Person("theo", face, voice, digits=digits.to_arrays()))


def test_a_person_who_answers_is_let_in(challenged, pipeline, mock_factory):
    enrol_theo(pipeline, challenged)
    video, audio = answering_scene(seed=11)
    events, pin = run_challenged_door(pipeline, challenged, video, audio, mock_factory, 16.0, seed=11)
    assert len(events) == 1, events
    decision = events[0].decision
    # The challenge is decided before the scores (decision.py): any later reason means it passed.
    assert decision.reason != "challenge_failed", decision
    assert decision.reason == "match" and decision.person == "theo", decision
    assert any(s.state for s in pin.states)
