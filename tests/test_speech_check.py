"""speech_problems: real speech passes, noise, tones and music-like sounds are refused with a reason.

The full measurement over every development clip is ``python -m tools.speech_check_eval``; here a
spread of real clips from each source and every generated non-speech sound.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from daemon.capture.audio import read_wav
from daemon.detect.speech_check import speech_features, speech_problems
from door_harness import DEMO, clip_frames
from shared_data import DATA
from tools.speech_check_eval import negatives


def _real_clips(per_source: int = 3):
    clips = sorted(DEMO.rglob("*.wav"))
    for source in sorted((DATA / "voices").iterdir()):
        clips += sorted(source.rglob("*.wav"))[:per_source]
    clips += sorted((DATA / "av").rglob("*.wav"))[:per_source]
    return clips


REAL = _real_clips()
NOT_SPEECH = negatives(speech=read_wav(REAL[0]))


@pytest.mark.parametrize("path", REAL, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_real_speech_with_a_second_of_voice_passes(path):
    samples = read_wav(path)
    if speech_features(samples).voiced_seconds < 1.0:
        # Single digits and one-word clips: enrolment refuses them as too short anyway; the check
        # may only say so, never call them noise or tones.
        assert all(p.startswith("not enough speech") for p in speech_problems(samples)), path
    else:
        assert speech_problems(samples) == [], path


@pytest.mark.parametrize("name", sorted(NOT_SPEECH))
def test_noise_tones_and_music_are_refused(name):
    problems = speech_problems(NOT_SPEECH[name])
    assert problems, name
    assert all(problem.strip() for problem in problems)


@pytest.mark.parametrize("name, reason", [
    ("white noise @0.5", "noise-like spectrum"),
    ("tone 440 Hz, 4 Hz AM @0.5", "pure tones"),
    ("tone 440 Hz @0.5", "not enough speech"),  # webrtcvad itself rejects a steady pure tone
    ("sweep 100-4000 Hz @0.5", "pure tones"),
    ("chord C-E-G @0.5", "held notes"),
    ("pink noise gated 4 Hz @0.5", "no voice in it"),
])
def test_the_reason_names_what_the_sound_is(name, reason):
    assert any(reason in problem for problem in speech_problems(NOT_SPEECH[name])), \
        speech_problems(NOT_SPEECH[name])


def test_silence_and_empty_input_say_not_enough_speech():
    for samples in (np.zeros(0, np.float32), np.zeros(48000, np.float32)):
        [problem] = speech_problems(samples)
        assert problem.startswith("not enough speech")


def test_other_sample_rates_are_resampled():
    samples = read_wav(DEMO / "s1_bbaf2n" / "audio_16k.wav")
    upsampled = np.repeat(samples, 3)  # crude 48 kHz copy: still speech
    assert speech_problems(upsampled, 48000) == []


def test_enrolment_refuses_white_noise_saying_why(pipeline, tmp_path):
    from daemon.service.enrolment import enrol_from_files
    from daemon.errors import EnrolmentError
    import wave

    noise = np.random.default_rng(5).standard_normal(3 * 16000) * 0.3
    with wave.open(str(tmp_path / "noise.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes((np.clip(noise, -1, 1) * 32767).astype("<i2").tobytes())
    face = tmp_path / "face.jpg"
    cv2.imwrite(str(face), clip_frames("s1_bbaf2n")[8])
    with pytest.raises(EnrolmentError, match="noise.wav: not a voice sample: .*noise-like spectrum"):
        enrol_from_files(pipeline, [face], [tmp_path / "noise.wav"])
