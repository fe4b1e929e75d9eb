"""Audio-visual liveness: synthetic tracks with known answers, the track builders, and a real GRID
clip run through the real detector and landmark model (with its own audio, a still frame, and its
audio shifted by 0.8 s)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from daemon.capture.audio import read_wav
from daemon.liveness.result import LivenessResult
from daemon.detect.face_detector import Face, FaceDetector
from daemon.detect.face_landmarks import FaceLandmarker
from daemon.liveness.sync import (
    FaceTrack, LivenessParams, SpeechTrack, check_liveness, measure, mouth_to_eyes)
from daemon.liveness.tracks import FaceTrackBuilder, SpeechTrackBuilder, band_rms
from tools.liveness_eval import (
    accepted, attempts, choose_thresholds, envelope_of, evaluate_liveness, read_frames, track_of,
    utterances)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
MODELS_DIR = REPO_ROOT / "models"
#: A GRID sentence (CC BY 4.0) whose speaker opens the mouth clearly.
GRID_CLIP = DATA_DIR / "av" / "grid" / "gridX_lwbsza" / "lwbsza"
FPS = 15.0


# ---------------------------------------------------------------- synthetic tracks

def syllable_envelope(t: np.ndarray, start: float, end: float, seed: int) -> np.ndarray:
    """A speech-like RMS envelope: bursts of random length and loudness between start and end,
    faint noise elsewhere."""
    rng = np.random.default_rng(seed)
    energy = np.full(t.shape, 1e-4)
    onset = start
    while onset < end - 0.1:
        length = rng.uniform(0.12, 0.25)
        inside = (t >= onset) & (t < onset + length)
        energy[inside] += rng.uniform(0.05, 0.3) * np.sin(np.pi * (t[inside] - onset) / length) ** 2
        onset += length + rng.uniform(0.05, 0.15)
    return energy


def synthetic_attempt(seed: int = 0, mouth_lag_s: float = 0.1, shift_s: float = 0.0,
                      start: float = 1.0, end: float = 4.0):
    """A face whose mouth opening follows the speech envelope ``mouth_lag_s`` late, and the speech
    track (shifted by ``shift_s``)."""
    rng = np.random.default_rng(seed + 100)
    frame_t = np.arange(0.0, 5.0, 1.0 / FPS)
    env_t = np.arange(0.0, 5.0, 0.01) + 0.005
    energy = syllable_envelope(env_t, start, end, seed)
    mouth = 0.05 + 0.5 * np.interp(frame_t - mouth_lag_s, env_t, energy) + rng.normal(0, 0.003, frame_t.size)
    keypoints = np.tile(np.array([[-0.2, -0.2], [0.2, -0.2], [0.0, 0.0], [0.0, 0.25],
                                  [-0.45, -0.1], [0.45, -0.1]]), (frame_t.size, 1, 1))
    keypoints[:, 3, 1] += 0.3 * (mouth - mouth.mean())
    track = FaceTrack(frame_t, mouth, keypoints)
    speech = SpeechTrack(env_t + shift_s, energy, start + shift_s, end + shift_s)
    return track, speech


@pytest.mark.parametrize("seed", range(5))
def test_mouth_following_the_envelope_100ms_late_passes(seed):
    track, speech = synthetic_attempt(seed, mouth_lag_s=0.1)
    result = check_liveness(track, speech, LivenessParams())
    assert isinstance(result, LivenessResult)
    assert result.passed, result
    assert result.reason == ""
    assert result.score > 0.6
    sync = measure(track, speech).sync
    # Positive lag means the mouth leads; here it trails the audio by 100 ms.
    assert sync.lag_s == pytest.approx(-0.1, abs=0.03)


@pytest.mark.parametrize("shift_s", [0.8, -0.8])
def test_envelope_shifted_by_800ms_fails_not_in_sync(shift_s):
    # One random speech-like envelope can line up with a shifted copy of itself by chance (the
    # syllable rhythm repeats), so this checks the rate over many of them as well as the reason.
    outcomes = [check_liveness(*synthetic_attempt(seed, mouth_lag_s=0.0, shift_s=shift_s))
                for seed in range(30)]
    assert all(r.reason == "not_in_sync" for r in outcomes if not r.passed)
    assert all(r.score is not None for r in outcomes)
    assert sum(not r.passed for r in outcomes) >= 24
    assert not check_liveness(*synthetic_attempt(0, mouth_lag_s=0.0, shift_s=shift_s)).passed


def test_far_lag_much_better_than_any_near_lag_fails():
    track, speech = synthetic_attempt(1, mouth_lag_s=0.0, shift_s=0.8)
    sync = measure(track, speech).sync
    assert sync.far_lag_s == pytest.approx(0.8, abs=0.03)
    assert sync.far_correlation - sync.correlation > 0.35
    lenient = LivenessParams(min_sync_correlation=-1.0, min_sync_contrast=-10.0,
                             max_far_advantage=float("inf"))
    assert check_liveness(track, speech, lenient).passed
    assert check_liveness(track, speech, replace(lenient, max_far_advantage=0.35)) == \
        LivenessResult(False, sync.correlation, "not_in_sync")


def test_lag_beyond_max_lag_is_not_searched():
    track, speech = synthetic_attempt(1, mouth_lag_s=0.36)
    wide = measure(track, speech, LivenessParams(max_lag_ms=400)).sync
    narrow = measure(track, speech, LivenessParams(max_lag_ms=200)).sync
    assert wide.lag_s == pytest.approx(-0.36, abs=0.03)
    assert abs(narrow.lag_s) <= 0.2 + 1e-9
    assert narrow.correlation < wide.correlation - 0.1


def test_still_track_fails_as_still_face():
    track, speech = synthetic_attempt(2)
    rng = np.random.default_rng(3)
    still = FaceTrack(track.t, 0.08 + rng.normal(0, 0.002, track.t.size),
                      np.repeat(track.keypoints[:1], track.t.size, axis=0))
    result = check_liveness(still, speech, LivenessParams())
    assert result == LivenessResult(False, None, "still_face")


def test_open_mouth_photo_jittering_fails_as_still_face():
    track, speech = synthetic_attempt(2)
    rng = np.random.default_rng(4)
    jitter = FaceTrack(track.t, 0.3 + rng.normal(0, 0.03, track.t.size), track.keypoints)
    measured = measure(jitter, speech)
    assert measured.mouth_range > LivenessParams().min_mouth_range
    assert measured.mouth_closure < LivenessParams().min_mouth_closure
    assert check_liveness(jitter, speech) == LivenessResult(False, None, "still_face")


def test_rigidly_moved_keypoints_have_no_mouth_to_eye_motion():
    track, _ = synthetic_attempt(4)
    angle = np.linspace(0, 0.3, track.t.size)
    rotation = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1),
                         np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    base = np.repeat(track.keypoints[:1], track.t.size, axis=0)
    moved = np.einsum("nij,nkj->nki", rotation, base) * np.linspace(1, 1.3, track.t.size)[:, None, None]
    assert np.ptp(mouth_to_eyes(moved)) < 1e-9
    assert np.ptp(mouth_to_eyes(track.keypoints)) > 0.01


def test_nan_heavy_track_fails_too_few_frames():
    track, speech = synthetic_attempt(5)
    mouth = track.mouth.copy()
    mouth[np.arange(mouth.size) % 3 != 0] = np.nan
    result = check_liveness(replace(track, mouth=mouth), speech, LivenessParams())
    assert result == LivenessResult(False, None, "too_few_frames")


def test_empty_track_and_missing_speech_fail():
    track, speech = synthetic_attempt(6)
    empty = FaceTrack(np.zeros(0), np.zeros(0), np.zeros((0, 6, 2)))
    assert check_liveness(empty, speech).reason == "too_few_frames"
    assert check_liveness(track, None).reason == "no_speech"
    assert check_liveness(track, replace(speech, end=speech.start + 0.1)).reason == "no_speech"


def test_check_is_cheap():
    rng = np.random.default_rng(7)
    track = FaceTrack(np.arange(150) / FPS, rng.random(150), rng.random((150, 6, 2)))
    speech = SpeechTrack(np.arange(1000) * 0.01 + 0.005, rng.random(1000), 2.0, 8.0)
    check_liveness(track, speech)
    durations = []
    for _ in range(20):
        began = time.perf_counter()
        check_liveness(track, speech)
        durations.append(time.perf_counter() - began)
    # The daemon's budget after speech ends is 30 ms on a Pi; a desktop runs this in about 1 ms.
    assert np.median(durations) < 0.010


# ---------------------------------------------------------------- builders

def make_face(x0: float, width: float) -> Face:
    fractions = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.5, 0.75], [0.0, 0.45],
                          [1.0, 0.45]], np.float32)
    keypoints = np.array([x0, 20.0], np.float32) + fractions * np.float32(width)
    return Face((x0, 20.0, x0 + width, 20.0 + width), 0.9, keypoints)


def test_face_track_builder_normalises_and_bounds_history():
    builder = FaceTrackBuilder(history_s=1.0)
    landmarks = np.zeros((468, 3), np.float32)
    landmarks[78, :2], landmarks[308, :2] = (0, 0), (10, 0)
    landmarks[13, :2], landmarks[14, :2] = (5, 0), (5, 3)
    for i in range(40):
        face = None if i % 10 == 0 else make_face(100.0 + i, 100.0 + i)
        builder.add(i / FPS, face, landmarks if face is not None else None)
    track = builder.build()
    assert track.t[-1] - track.t[0] <= 1.0 + 1e-9
    assert len(track) == 16
    assert not track.t.flags.writeable
    missing = np.isnan(track.mouth)
    assert missing.sum() == 1 and np.isnan(track.keypoints[missing]).all()
    assert np.allclose(track.mouth[~missing], 0.3)
    # Normalised by the box: the same face at any position and size gives the same keypoints.
    assert np.allclose(track.keypoints[~missing], track.keypoints[~missing][0], atol=1e-5)
    assert track.keypoints[~missing][0][1, 0] == pytest.approx(0.2, abs=1e-5)


def test_face_track_builder_without_landmarks_keeps_keypoints():
    builder = FaceTrackBuilder()
    builder.add(0.0, make_face(0, 100), None)
    track = builder.build()
    assert np.isnan(track.mouth[0]) and np.isfinite(track.keypoints[0]).all()


def test_speech_track_builder_rms_and_block_independence():
    rate = 16000
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1500 * t)).astype(np.float32)
    whole = SpeechTrackBuilder(rate)
    whole.add(10.0, tone)
    pieces = SpeechTrackBuilder(rate)
    offset = 0
    for size in [7, 480, 333, 160, 1000] * 100:
        if offset >= tone.size:
            break
        pieces.add(10.0 + offset / rate, tone[offset:offset + size])
        offset += size
    a, b = whole.build(10.2, 10.8), pieces.build(10.2, 10.8)
    assert a.t.size == 100 and np.allclose(a.t, b.t) and np.allclose(a.energy, b.energy)
    assert a.t[0] == pytest.approx(10.005)
    assert np.allclose(a.energy, 0.5 / np.sqrt(2), rtol=0.05)
    assert (a.start, a.end) == (10.2, 10.8)
    low = SpeechTrackBuilder(rate)
    low.add(0.0, (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32))
    assert low.build(0, 1).energy.max() < 0.05
    flat = SpeechTrackBuilder(rate, band_hz=None)
    flat.add(0.0, (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32))
    assert np.allclose(flat.build(0, 1).energy, 0.5 / np.sqrt(2), rtol=0.02)


def test_speech_track_builder_bounds_history_and_drops_partial_window_on_gap():
    builder = SpeechTrackBuilder(16000, history_s=2.0)
    for i in range(100):
        builder.add(i * 0.03, np.ones(480, np.float32))
    track = builder.build(0, 1)
    assert track.t[-1] - track.t[0] <= 2.0 + 1e-9
    gapped = SpeechTrackBuilder(16000)
    gapped.add(0.0, np.ones(100, np.float32))
    gapped.add(5.0, np.ones(160, np.float32))
    assert len(gapped) == 1 and gapped.build(0, 1).t[0] == pytest.approx(5.005)


def test_band_rms_full_band_matches_plain_rms():
    noise = np.random.default_rng(8).normal(size=(200, 160))
    assert band_rms(noise, 16000, (0, 8001)).mean() == pytest.approx(
        band_rms(noise, 16000, None).mean(), rel=0.03)


# ---------------------------------------------------------------- evaluation helpers

def test_attempts_cut_long_utterances_and_drop_short_pieces():
    assert attempts([(0.0, 7.5), (8.0, 8.5)], attempt_s=3.0, min_s=1.0) == [
        (0.0, 3.0), (3.0, 6.0), (6.0, 7.5)]


def test_choose_thresholds_keeps_bona_fide_and_rejects_attacks():
    bona_fide = [{"problem": None, "correlation": c, "contrast": z, "far_correlation": 0.0}
                 for c, z in [(0.5, 3.0), (0.6, 2.5), (0.4, 2.0)]]
    attacks = {"desync": [{"problem": None, "correlation": 0.45, "contrast": 1.0,
                           "far_correlation": 0.0},
                          {"problem": None, "correlation": 0.2, "contrast": 2.5,
                           "far_correlation": 0.0},
                          {"problem": None, "correlation": 0.45, "contrast": 2.5,
                           "far_correlation": 0.9}],
               "photo": [{"problem": "still_face"}]}
    min_correlation, min_contrast = choose_thresholds(bona_fide, attacks, max_bpcer=0.0,
                                                      max_far_advantage=0.35)
    assert accepted(bona_fide, min_correlation, min_contrast, 0.35).all()
    assert not accepted(attacks["desync"], min_correlation, min_contrast, 0.35).any()
    assert accepted(attacks["desync"], min_correlation, min_contrast).tolist() == [False, False, True]


# ---------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def grid_attempt():
    """The GRID clip's 15 fps track (real detector + landmarks), its frames and its audio."""
    detector, landmarker = FaceDetector(MODELS_DIR), FaceLandmarker(MODELS_DIR)
    video = sorted(GRID_CLIP.glob("video.*"))[0]
    frames = list(read_frames(video))
    samples = read_wav(GRID_CLIP / "audio_16k.wav")
    return track_of(frames, detector, landmarker), frames, samples, detector, landmarker


def speech_of(samples: np.ndarray) -> SpeechTrack:
    spans = utterances(samples)
    assert spans, "webrtcvad found no speech"
    return replace(envelope_of(samples), start=spans[0][0], end=spans[-1][1])


def test_real_grid_clip_with_its_own_audio_passes(grid_attempt):
    track, frames, samples, _, _ = grid_attempt
    assert len(frames) == pytest.approx(3.0 * FPS, abs=2)
    assert np.isfinite(track.mouth).all()
    result = check_liveness(track, speech_of(samples))
    assert result.passed, result
    assert result.score > 0.5


def test_real_grid_clip_as_a_still_frame_fails(grid_attempt):
    _, frames, samples, detector, landmarker = grid_attempt
    middle = frames[len(frames) // 2][1]
    still = track_of(((t, middle) for t, _ in frames), detector, landmarker)
    assert check_liveness(still, speech_of(samples)) == LivenessResult(False, None, "still_face")


@pytest.mark.parametrize("shift_s", [0.8, -0.8])
def test_real_grid_clip_with_audio_shifted_by_800ms_fails(grid_attempt, shift_s):
    track, _, samples, _, _ = grid_attempt
    n = int(abs(shift_s) * 16000)
    silence = np.zeros(n, np.float32)
    shifted = (np.concatenate([silence, samples[:-n]]) if shift_s > 0
               else np.concatenate([samples[n:], silence]))
    result = check_liveness(track, speech_of(shifted))
    assert not result.passed
    assert result.reason == "not_in_sync"


def test_evaluation_tool_on_two_grid_clips(tmp_path):
    av = tmp_path / "av"
    for clip in ("grid/gridX_lwbsza/lwbsza", "grid/gridX_sbwe5n/sbwe5n"):
        target = av / clip
        target.mkdir(parents=True)
        for source in (DATA_DIR / "av" / clip).iterdir():
            (target / source.name).symlink_to(source)
    result = evaluate_liveness(av, None, MODELS_DIR, fsdd_dir=DATA_DIR / "voices" / "fsdd",
                               challenge_draws=2, digit_trials=3)["liveness"]
    without = result["without_challenge"]
    assert without["n_bona_fide"] == 2
    assert without["n_attacks"]["photo"] == 2 and without["n_attacks"]["deepfake"] == 0
    assert without["apcer"]["deepfake"] is None and without["apcer"]["vc_dub"] is None
    assert without["bpcer"] <= 0.05
    assert without["apcer"]["photo"] == 0.0
    # The whole clip on a phone with its own audio: the check without a challenge lets it through.
    assert without["n_attacks"]["full_replay"] == 2 and without["apcer"]["full_replay"] >= 0.5
    species = {"photo", "replay_dub", "desync", "deepfake", "full_replay", "vc_dub"}
    assert set(without["apcer"]) == species
    # With the challenge: every species, the digit replays too, each with its interval and count.
    assert set(result["apcer"]) == species | {"digit_replay"}
    assert result["n_attacks"]["full_replay"] == 4 and result["apcer"]["full_replay"] == 0.0
    assert result["apcer_ci95"]["full_replay"][1] < 1.0 and result["n_bona_fide"] == 4
    assert result["n_attacks"]["digit_replay"] == 9 and result["n_bona_fide_audio_only"] == 9
