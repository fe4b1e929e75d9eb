"""The attempt state machine (fake observations, a collecting dispatcher) and the voice windows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from daemon.config import AttemptConfig
from daemon.decide.attempt import AttemptTracker
from daemon.detect.vad import SpeechEvent
from daemon.embed.voice_windows import (FREQUENCY_WARP, MIN_COVERAGE, STEP_SAMPLES, WINDOW_SAMPLES, VoiceWindows,
                                        warped, warped_length)

FRAME = 480


class Door:
    """A tracker wired to a collecting dispatcher and a list of finished attempts."""

    def __init__(self, accept_jobs: bool = True, **config):
        settings = dict(timeout_seconds=8.0, best_faces=3, cooldown_seconds=2.0,
                        max_speech_seconds=6.0) | config
        self.config = AttemptConfig(**settings)
        self.jobs, self.finished = [], []
        self.accept_jobs = accept_jobs
        self.tracker = AttemptTracker(self.config, self._dispatch, self.finished.append)

    def _dispatch(self, job) -> bool:
        self.jobs.append(job)
        return self.accept_jobs

    def face(self, t: float, quality: float = 0.8, problems=()):
        chip = np.full((150, 150, 3), quality, np.float32)
        observation = SimpleNamespace(face=("box", t), quality=quality, problems=tuple(problems), chip=chip)
        self.tracker.on_frame(t, observation)
        return observation

    def no_face(self, t: float):
        self.tracker.on_frame(t, None)

    def speech(self, kind: str, t: float, samples: int = FRAME, value: float = 0.1):
        audio = np.zeros(0, np.float32) if kind == "end" else np.full(samples, value, np.float32)
        self.tracker.on_speech(SpeechEvent(kind, t, audio))

    def speak(self, t0: float, seconds: float) -> float:
        """A whole utterance: start (4 frames), audio frames, end; returns the end time."""
        self.speech("start", t0, 4 * FRAME)
        t = t0
        for _ in range(int(seconds / 0.03) - 4):
            t += 0.03
            self.speech("audio", t)
        self.speech("end", t + 0.6)
        return t + 0.6


# --- the state machine --------------------------------------------------------------------------
def test_speech_without_a_face_ends_at_speech_end():
    door = Door()
    door.speech("start", 1.0, 4 * FRAME)
    door.speech("audio", 1.03)
    assert door.tracker.current is not None and door.finished == []
    door.speech("end", 1.7)
    [attempt] = door.finished
    assert attempt.end_reason == "speech_end"
    assert attempt.started_at == 1.0 and attempt.speech_started_at == 1.0
    assert attempt.speech_ended_at == attempt.ended_at == 1.7
    assert attempt.faces == {} and attempt.face_frames == 0
    assert attempt.voice.seconds == pytest.approx(5 * FRAME / 16000)
    assert door.tracker.current is None


def test_face_without_speech_ends_at_the_timeout():
    door = Door(timeout_seconds=8.0)
    door.face(10.0)
    door.tracker.poll(17.99)
    assert door.finished == []
    door.no_face(18.0)  # the person walked away: the attempt still runs to its timeout
    door.tracker.poll(18.0)
    [attempt] = door.finished
    assert attempt.end_reason == "timeout" and attempt.ended_at == 18.0
    assert attempt.speech_started_at is None and attempt.speech_ended_at is None
    assert attempt.face_frames == 1 and len(attempt.faces) == 1


def test_face_then_speech_then_end_finishes_once():
    door = Door()
    door.face(0.0)
    door.face(0.1)
    end = door.speak(0.5, 2.0)
    door.face(end + 0.01)  # inside the cooldown: ignored
    door.tracker.poll(end + 10)
    [attempt] = door.finished
    assert attempt.end_reason == "speech_end"
    assert attempt.started_at == 0.0 and attempt.speech_started_at == 0.5
    assert attempt.speech_ended_at == pytest.approx(end)
    assert attempt.face_frames == 2


def test_a_face_started_attempt_takes_an_utterance_already_under_way():
    door = Door()
    door.face(0.0)
    door.speech("audio", 0.1)  # the VAD's utterance began before the face: no 'start' will come
    attempt = door.tracker.current
    assert attempt.speech_started_at == 0.1 and attempt.voice.seconds == pytest.approx(FRAME / 16000)
    door.speech("audio", 0.2)
    door.speech("end", 0.8)
    assert door.finished == [attempt] and attempt.end_reason == "speech_end"
    assert attempt.voice.seconds == pytest.approx(2 * FRAME / 16000)


def test_an_attempt_is_never_started_by_audio_or_end():
    door = Door()
    door.speech("audio", 0.1)
    door.speech("end", 0.2)
    assert door.tracker.current is None and door.finished == []


def test_cooldown_suppresses_a_new_attempt():
    door = Door(cooldown_seconds=2.0)
    end = door.speak(0.0, 1.5)
    door.face(end + 1.0)
    door.speech("start", end + 1.9, 4 * FRAME)
    assert door.tracker.current is None
    door.face(end + 2.0)
    assert door.tracker.current is not None
    assert door.tracker.current.started_at == end + 2.0
    assert len(door.finished) == 1


def test_best_faces_keeps_the_highest_quality_and_dispatches_them():
    door = Door(best_faces=3)
    for i, quality in enumerate([0.5, 0.9, 0.1, 0.7, 0.95, 0.3]):
        door.face(i * 0.1, quality)
    attempt = door.tracker.current
    assert sorted(s.quality for s in attempt.faces.values()) == [0.7, 0.9, 0.95]
    face_jobs = [job for job in door.jobs if job.kind == "face"]
    # 0.3 came when the worst kept was 0.7: never embedded; 0.5 and 0.1 were, then displaced.
    assert [float(job.data[0, 0, 0]) for job in face_jobs] == pytest.approx([0.5, 0.9, 0.1, 0.7, 0.95])
    assert not attempt.wait_settled(0.01)
    for job in face_jobs:
        attempt.deliver(job, np.full(128, job.data[0, 0, 0], np.float32))
    assert attempt.wait_settled(0.01)
    embeddings = attempt.face_embeddings()
    assert [float(e[0]) for e in embeddings] == pytest.approx([0.95, 0.9, 0.7])  # best first
    assert attempt.face_quality() == pytest.approx(np.mean([0.7, 0.9, 0.95]))


def test_faces_too_small_to_align_are_counted_not_kept():
    door = Door()
    door.face(0.0, 0.9, problems=["face_too_small"])
    door.face(0.1, 0.9, problems=["face_too_small", "blurry"])
    attempt = door.tracker.current
    assert attempt.face_frames == 2
    assert attempt.face_problems == {"face_too_small": 2, "blurry": 1}
    assert attempt.faces == {} and door.jobs == []
    assert attempt.face_embeddings() == [] and attempt.face_quality() == 0.0


def test_faces_with_other_problems_are_counted_and_scored():
    door = Door()
    door.face(0.0, 0.6, problems=["blurry"])
    door.face(0.1, 0.5, problems=["too_dark", "not_frontal"])
    attempt = door.tracker.current
    assert attempt.face_problems == {"blurry": 1, "too_dark": 1, "not_frontal": 1}
    assert len(attempt.faces) == 2 and [job.kind for job in door.jobs] == ["face", "face"]
    assert attempt.face_quality() == pytest.approx(0.55)


def test_abort_ends_the_attempt_with_an_error():
    door = Door()
    door.face(0.0)
    door.tracker.abort(0.5, "camera_failed")
    [attempt] = door.finished
    assert attempt.end_reason == "error" and attempt.errors == ["camera_failed"]
    assert attempt.ended_at == 0.5 and door.tracker.current is None
    door.tracker.abort(0.6, "camera_failed")  # nothing in progress: nothing to end
    assert len(door.finished) == 1


def test_embedding_errors_and_dropped_jobs():
    door = Door(accept_jobs=False)
    door.face(0.0)
    door.speak(0.1, 2.0)
    [attempt] = door.finished
    assert attempt.wait_settled(0.01)  # dropped jobs never leave anything pending
    assert attempt.face_embeddings() == []
    assert attempt.errors == ["embedding queue full"]  # a lost face frame is no error; voice is


def test_delivered_error_is_recorded():
    door = Door()
    door.face(0.0)
    [job] = door.jobs
    job.attempt.deliver(job, None, "face encoder failed")
    assert job.attempt.errors == ["face encoder failed"] and job.attempt.wait_settled(0.01)


def test_a_frame_reports_the_attempt_it_belongs_to():
    door = Door()
    assert door.tracker.on_frame(0.0, None) is None  # nobody there: no attempt
    observation = SimpleNamespace(face="box", quality=0.8, problems=("blurry",), chip=None)
    attempt = door.tracker.on_frame(0.1, observation)
    assert attempt is door.tracker.current and attempt is not None
    assert door.tracker.on_frame(0.2, None) is attempt  # the face left; the attempt goes on


def test_evidence_reports_the_face_problem_and_the_voice_problem():
    door = Door()
    door.face(0.0, problems=("face_too_small",))
    door.face(0.1, problems=("face_too_small",))
    door.tracker.poll(100.0)
    [attempt] = door.finished
    evidence = attempt.evidence(lambda window: np.ones(256, np.float32), min_speech_seconds=1.0)
    assert evidence.face_probes == () and evidence.voice is None
    assert evidence.problems == ["face_too_small", "no_speech"]


def test_evidence_of_a_short_utterance_says_speech_too_short():
    door = Door()
    door.face(0.0)
    end = door.speak(0.1, 0.5)
    door.tracker.poll(end)
    [attempt] = door.finished
    for job in door.jobs:  # the embedding worker's results
        attempt.deliver(job, np.ones(128 if job.kind == "face" else 256, np.float32))
    evidence = attempt.evidence(lambda window: np.ones(256, np.float32), min_speech_seconds=1.0)
    assert len(evidence.face_probes) == 1 and evidence.voice is None
    assert evidence.problems == ["speech_too_short"] and 0 < evidence.speech_seconds < 1.0



def test_voice_windows_are_dispatched_while_speaking():
    door = Door()
    rng = np.random.default_rng(0)
    frames = [rng.standard_normal(FRAME).astype(np.float32) for _ in range(80)]  # 2.4 s
    door.tracker.on_speech(SpeechEvent("start", 0.0, np.concatenate(frames[:4])))
    sent_at = {}
    for i, frame in enumerate(frames[4:], start=4):
        door.tracker.on_speech(SpeechEvent("audio", i * 0.03, frame))
        for job in door.jobs:
            sent_at.setdefault(job.key, (i + 1) * FRAME)
    speech = warped(np.concatenate(frames))
    voice_jobs = [job for job in door.jobs if job.kind == "voice"]
    assert [job.key for job in voice_jobs] == [0, 1]
    # Each window went out with the frame that completed it, before the utterance ended.
    for index, job in enumerate(voice_jobs):
        end = index * STEP_SAMPLES + WINDOW_SAMPLES
        assert warped_length(sent_at[index]) >= end > warped_length(sent_at[index] - FRAME)
        assert np.array_equal(job.data, speech[end - WINDOW_SAMPLES:end])
    assert door.finished == []


def test_voice_is_capped_at_max_speech_seconds():
    door = Door(max_speech_seconds=1.0)
    door.speak(0.0, 3.0)
    [attempt] = door.finished
    assert attempt.voice.seconds == pytest.approx(1.0)
    assert attempt.voice.audio().size == 16000


# --- voice windows ------------------------------------------------------------------------------
def test_window_geometry_is_resemblyzers():
    assert WINDOW_SAMPLES == 25600 and STEP_SAMPLES == 12320 and MIN_COVERAGE == 0.75


def _ramp(n: int) -> np.ndarray:
    return np.arange(1, n + 1, dtype=np.float32)


def test_the_warp_lowers_every_frequency_by_its_factor():
    assert 0.8 < FREQUENCY_WARP < 1.0
    t = np.arange(32000) / 16000
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    out = warped(tone)
    assert out.size == warped_length(tone.size) == int((tone.size - 1) / FREQUENCY_WARP) + 1
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    peak_hz = np.argmax(spectrum) * 16000 / out.size
    assert abs(peak_hz - 1000 * FREQUENCY_WARP) < 2
    ramp = _ramp(1000)  # linear interpolation is exact on a ramp: sample i reads position i x warp
    assert np.allclose(warped(ramp), 1 + np.arange(warped_length(1000)) * FREQUENCY_WARP)
    assert np.array_equal(warped(ramp, 100, 50), warped(ramp)[100:150])
    tail = warped(ramp, warped_length(1000) - 10, 30)
    assert tail[:10].all() and not tail[10:].any()  # past the speech: zeros
    noise = np.random.default_rng(1).standard_normal(30001).astype(np.float32)
    for warp in (0.84, FREQUENCY_WARP, 1.0, 1.12):  # linear interpolation, exactly as numpy does it
        reference = np.interp(np.arange(warped_length(noise.size, warp)) * warp, np.arange(noise.size), noise)
        assert np.array_equal(warped(noise, warp=warp), reference.astype(np.float32))


def test_a_warp_of_one_is_resemblyzers_plain_window_grid():
    """What tools/voice_warp_study.py's 1.0 row means: the door's windows without the warp."""
    audio = _ramp(2 * STEP_SAMPLES + WINDOW_SAMPLES + 5000)
    windows = VoiceWindows(max_seconds=10.0, warp=1.0)
    ready = windows.add(audio) + windows.finish()
    assert len(ready) == 3  # the 4th would cover 5000 / 25600 < 75 %
    for index, window in enumerate(ready):
        assert np.array_equal(window, audio[index * STEP_SAMPLES:index * STEP_SAMPLES + WINDOW_SAMPLES])
    assert windows.covered_by(3) == 2 * STEP_SAMPLES + WINDOW_SAMPLES


def test_windows_are_handed_out_as_audio_arrives():
    windows = VoiceWindows(max_seconds=10.0)
    audio = _ramp(int((3 * STEP_SAMPLES + WINDOW_SAMPLES) * FREQUENCY_WARP) + 1)
    speech = warped(audio)
    ready, fed = [], 0
    for chunk in np.array_split(audio, 97):
        fed += chunk.size
        for window in windows.add(chunk):
            ready.append((fed, window))
    assert len(ready) == 4
    for index, (fed_when_ready, window) in enumerate(ready):
        start = index * STEP_SAMPLES
        assert warped_length(fed_when_ready) >= start + WINDOW_SAMPLES
        assert fed_when_ready - (start + WINDOW_SAMPLES) * FREQUENCY_WARP < audio.size / 97 + 1
        assert np.array_equal(window, speech[start:start + WINDOW_SAMPLES])
    assert windows.covered_by(4) == min(audio.size, int(np.ceil((3 * STEP_SAMPLES + WINDOW_SAMPLES) * FREQUENCY_WARP)))
    assert windows.finish() == []  # the next window would cover 12320 / 25600 < 75%


@settings(max_examples=60, deadline=None)
@given(length=st.integers(1, 90000), cuts=st.lists(st.integers(1, 90000), max_size=12),
       peek_at=st.integers(0, 12))
def test_streamed_windows_are_the_windows_of_the_whole_utterance(length, cuts, peek_at):
    """The door embeds windows as audio arrives (and the tail speculatively at a pause); enrolment
    and the evaluation hand over the whole utterance: both must give the same windows."""
    audio = np.random.default_rng(length).standard_normal(length).astype(np.float32)
    whole = VoiceWindows(max_seconds=6.0)
    expected = whole.add(audio) + whole.finish()
    streamed, ready = VoiceWindows(max_seconds=6.0), []
    for i, piece in enumerate(np.split(audio, sorted({c for c in cuts if c < length}))):
        ready += streamed.add(piece)
        if i == peek_at:  # a speculative look at the tail changes nothing
            streamed.peek_finish()
    ready += streamed.finish()
    assert len(ready) == len(expected) >= 1
    assert all(np.array_equal(a, b) for a, b in zip(ready, expected))
    assert streamed.covered_by(len(ready)) == whole.covered_by(len(expected)) <= min(length, 96000)


def _speech_for(warped_samples: int) -> np.ndarray:
    """A ramp of speech that warps to ``warped_samples``."""
    n = int(np.ceil((warped_samples - 1) * FREQUENCY_WARP)) + 1
    while warped_length(n) > warped_samples:
        n -= 1
    return _ramp(n)


def test_finish_pads_the_last_window_when_it_is_covered_enough():
    windows = VoiceWindows(max_seconds=10.0)
    audio = _speech_for(STEP_SAMPLES + int(0.8 * WINDOW_SAMPLES))
    assert len(windows.add(audio)) == 1
    [last] = windows.finish()
    assert last.shape == (WINDOW_SAMPLES,)
    covered = warped_length(audio.size) - STEP_SAMPLES
    assert np.array_equal(last[:covered], warped(audio)[STEP_SAMPLES:])
    assert last[:covered].all() and not last[covered:].any()
    assert windows.finish() == []


def test_finish_drops_a_trailing_window_below_75_percent():
    windows = VoiceWindows(max_seconds=10.0)
    windows.add(_speech_for(STEP_SAMPLES + int(0.74 * WINDOW_SAMPLES)))
    assert windows.finish() == []


def test_a_short_utterance_still_gives_its_only_window():
    windows = VoiceWindows()
    assert windows.add(_ramp(8000)) == []
    [only] = windows.finish()
    n = warped_length(8000)
    assert np.array_equal(only[:n], warped(_ramp(8000))) and not only[n:].any()
    assert windows.covered_by(1) == 8000 and windows.covered_by(0) == 0


def test_no_audio_gives_no_window():
    assert VoiceWindows().finish() == []


def test_max_seconds_caps_the_audio():
    windows = VoiceWindows(max_seconds=2.0)
    windows.add(_ramp(20000))
    windows.add(_ramp(20000))
    assert windows.seconds == 2.0 and windows.audio().size == 32000


# --- the last window, embedded at the pause that turns out to be the end -----------------------
def _say(door: Door, t0: float, seconds: float) -> float:
    door.speech("start", t0, 4 * FRAME)
    t = t0
    for _ in range(int(seconds / 0.03) - 4):
        t += 0.03
        door.speech("audio", t)
    return t


def test_a_pause_embeds_the_tail_and_the_decision_reuses_it():
    door = Door()
    t = _say(door, 1.0, 2.0)
    door.speech("pause", t + 0.15, 0)
    tails = [job for job in door.jobs if job.kind == "tail"]
    assert tails, "the pause must dispatch the tail window(s)"
    attempt = door.tracker.current
    for job in tails:
        attempt.deliver(job, np.full(256, 0.5, np.float32))
    door.speech("end", t + 0.6)
    [finished] = door.finished
    computed = []
    windows = finished.last_windows(lambda window: computed.append(window) or np.zeros(256, np.float32))
    assert computed == [], "nothing may be left to embed after the end"
    assert len(windows) == len(tails) and all(w[0] == 0.5 for w in windows)


def test_speech_resuming_after_a_pause_makes_the_speculation_stale():
    door = Door()
    t = _say(door, 1.0, 2.0)
    door.speech("pause", t + 0.15, 0)
    attempt = door.tracker.current
    for job in [j for j in door.jobs if j.kind == "tail"]:
        attempt.deliver(job, np.full(256, 0.5, np.float32))
    spoken = 0
    while spoken < 10 or not attempt.voice.peek_finish():  # more speech, ending in a partial window:
        t += 0.03                                          # the old tail no longer describes the end
        door.speech("audio", t)
        spoken += 1
        assert spoken < 200
    door.speech("end", t + 0.6)
    computed = []
    door.finished[0].last_windows(lambda window: computed.append(window) or np.zeros(256, np.float32))
    assert computed, "a stale speculative window must not be used"


def test_after_an_early_accept_the_rest_of_the_utterance_starts_no_new_attempt():
    door = Door(cooldown_seconds=0.5)
    door.face(0.0)
    door.speech("start", 0.1, 4 * FRAME)
    attempt = door.tracker.current
    assert door.tracker.end_early(attempt, 1.0)
    assert door.finished == [attempt] and attempt.end_reason == "early"
    # The person goes on speaking in front of the camera, past the cooldown: no new attempt.
    for i in range(30):
        door.face(1.6 + 0.1 * i)
        door.speech("audio", 1.6 + 0.1 * i)
    assert door.tracker.current is None
    door.speech("end", 5.0)  # that utterance is over: after the cooldown the next face starts one
    door.face(5.1)
    assert door.tracker.current is None
    door.face(5.6)
    assert door.tracker.current is not None and door.tracker.current is not attempt


def test_after_an_early_accept_a_face_after_the_person_left_starts_a_new_attempt():
    """The VAD may hold the accepted person's utterance open (noise it calls voiced); once their
    face has been gone for PERSON_LEFT_SECONDS, the next face is a new person."""
    from daemon.decide.attempt import PERSON_LEFT_SECONDS

    door = Door(cooldown_seconds=0.5)
    door.face(0.0)
    door.speech("start", 0.1, 4 * FRAME)
    attempt = door.tracker.current
    assert door.tracker.end_early(attempt, 1.0)
    door.face(1.2)  # still there, still in the utterance: no new attempt
    assert door.tracker.current is None
    door.no_face(1.3)
    door.face(1.3 + PERSON_LEFT_SECONDS * 0.9)  # back too soon: the same person
    assert door.tracker.current is None
    t = 2.5
    door.no_face(t)
    door.no_face(t + PERSON_LEFT_SECONDS / 2)
    t += PERSON_LEFT_SECONDS + 0.1
    door.face(t)
    new = door.tracker.current
    assert new is not None and new is not attempt
    door.speech("audio", t + 0.03)  # the utterance the VAD never closed
    assert new.speech_started_at == t + 0.03


def test_without_a_scorable_face_the_reason_is_why_none_could_be_scored():
    from daemon.decide.evidence import Evidence

    too_small = Evidence(face_problems=("blurry", "blurry", "face_too_small"), voice_problems=("no_speech",))
    assert too_small.problems == ["face_too_small", "no_speech"]
    assert Evidence().problems == ["no_face"]
    scored = Evidence(face_probes=(np.ones(128, np.float32),), face_problems=("not_frontal",))
    assert scored.problems == []
