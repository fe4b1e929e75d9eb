"""Audio-visual liveness: is the voice coming from the moving face in front of the camera?

Two checks on one attempt, pure numpy on a few hundred samples (run once, when speech ends; about
1 ms on a desktop for 150 frames and 10 s of envelope):

1. **Not a still image.** A printed photo or a frozen frame moved by hand moves *rigidly*, so raw
   motion says nothing. What a talking face has and a photo lacks is motion of the mouth relative
   to the eyes: the mouth opening (inner-lip gap over mouth width, free of scale and rotation) must
   vary by ``min_mouth_range`` over the attempt, and close between its openings
   (``min_mouth_closure``, see :func:`mouth_closure`): landmarks on a moving photo jitter, but
   around the photo's fixed opening. The distance from the detector's mouth keypoint
   to the eye line over the eye distance is measured too (``min_keypoint_range``; off by default,
   see :data:`CALIBRATION`). Failing either is ``still_face``.
2. **The mouth moves in step with the speech.** The 10 ms RMS envelope of the audio (of the
   800-2500 Hz band, see :mod:`daemon.liveness.tracks`) is put on a log scale floored ``floor_db``
   under its peak (so silence is flat), averaged over one frame interval, and sampled at the frame
   times shifted by a lag; the first differences of the mouth opening are correlated (Pearson) with
   the first differences of that envelope, for every lag in +-``max_lag_ms``. The frames compared
   are those of the utterance plus ``context_s`` either side (a still mouth in the silence around
   speech is information). The best correlation is the score and must reach
   ``min_sync_correlation``. Replayed video with other audio correlates by chance only, so the
   best in-window correlation must also stand out, by ``min_sync_contrast`` standard deviations,
   from the correlations at far lags (``far_lag_s``) of the same two signals (the idea of SyncNet's
   offset confidence); and when a far lag fits much better (``max_far_advantage``) the audio is
   the face's, but shifted: a desynchronised replay.

The reasons a check fails are :data:`REASONS`; the defaults and how they were chosen are in
:data:`CALIBRATION`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from daemon.liveness.result import LivenessResult

log = logging.getLogger(__name__)

#: Keypoint indices of the detector (daemon.detect.face_detector): right eye, left eye, mouth centre.
RIGHT_EYE, LEFT_EYE, MOUTH_CENTER = 0, 1, 3

#: Why a liveness check fails, in the order they are tested.
REASONS = ("no_speech", "too_few_frames", "still_face", "not_in_sync")

CALIBRATION = """\
Defaults from ``python -m tools.liveness_eval --attempt-s 6`` on /work/shared/data/av (8 GRID clips,
5 talking-head references, the Hamilton clip: 18 bona fide attempts of at most 6 s, as the daemon's
longest utterance; frames at 15 fps; the envelope of the 800-2500 Hz band).
- ``min_mouth_range`` 0.04: every bona fide attempt varies more (smallest 0.049, a GRID speaker at
  low resolution; talking heads 0.11-0.28), while most hand-held photo attacks vary less
  (landmark jitter on a moving still image reaches 0.02-0.07, so it cannot catch them all).
- ``min_mouth_closure`` 0.5: bona fide attempts close the mouth between openings (0.74 at the
  least at 6 s attempts; 0.56 at 3 s), photos with an open mouth jitter around a high floor
  (0.16-0.57); photos with a closed mouth score high here but have a tiny range. Together the two
  stop every hand-held photo at 6 s attempts but one (of 18).
- ``min_keypoint_range`` 0 (off): the detector's mouth keypoint relative to the eyes moved as much
  on the hand-held photos as on real speakers; it is measured and logged only.
- ``min_sync_correlation`` 0.16 and ``min_sync_contrast`` 1.2: of the threshold pairs keeping the
  bona fide rejection rate at or under 5 %, the one with the lowest worst APCER over photo,
  replay_dub and desync (chosen 0.177 / 1.223 at 6 s attempts, 0.169 / 1.223 at 3 s), rounded down.
- ``max_far_advantage`` 0.35: on the bona fide attempts a far lag beat the best near lag by at
  most 0.31 (the signals are noisy), so only a far lag fitting clearly better fails; it catches
  clean desynchronised replays (the synthetic tests) more than the noisy development ones.
These separate attacks weakly (see the evaluation in the report); they are not a strong barrier."""


@dataclass(frozen=True)
class FaceTrack:
    """Per-frame face measurements of one attempt, oldest first.

    ``t`` (n,) seconds on the monotonic clock; ``mouth`` (n,) mouth opening per frame (NaN where no
    face or no landmarks); ``keypoints`` (n, 6, 2) detector keypoints relative to the face box
    centre and divided by the box width (NaN where no face).
    """

    t: np.ndarray
    mouth: np.ndarray
    keypoints: np.ndarray

    def __len__(self) -> int:
        return int(self.t.size)


@dataclass(frozen=True)
class SpeechTrack:
    """The audio energy envelope of one attempt and where its utterance lies.

    ``t`` (m,) centre time of each envelope sample, seconds on the same clock as the frames;
    ``energy`` (m,) RMS of the samples in that window (10 ms; :mod:`daemon.liveness.tracks`
    restricts it to one band); ``start``/``end`` the utterance's
    first and last voiced instants. The envelope should extend past the utterance (silence around it
    is information).
    """

    t: np.ndarray
    energy: np.ndarray
    start: float
    end: float


@dataclass(frozen=True)
class LivenessParams:
    """Settings of :func:`check_liveness` (defaults: see :data:`CALIBRATION`)."""

    max_lag_ms: float = 200.0
    lag_step_ms: float = 20.0
    #: Frames this long before the utterance start and after its end are part of the comparison.
    context_s: float = 1.0
    #: Lags at least ``far_lag_s[0]`` and at most ``far_lag_s[1]`` away form the "out of sync" set.
    far_lag_s: tuple[float, float] = (0.5, 1.5)
    floor_db: float = 40.0
    min_frames: int = 10
    #: Of the frames during the utterance, at least this share must have a mouth value.
    min_valid_fraction: float = 0.6
    min_speech_s: float = 0.3
    #: 90th minus 10th percentile of the mouth opening over the attempt.
    min_mouth_range: float = 0.04
    #: (p90 - p10) / p90 of the mouth opening over the attempt (see :func:`mouth_closure`).
    min_mouth_closure: float = 0.5
    #: 90th minus 10th percentile of (mouth-to-eye-line distance / eye distance) over the attempt.
    min_keypoint_range: float = 0.0
    min_sync_correlation: float = 0.16
    min_sync_contrast: float = 1.2
    #: Fail when some far lag correlates this much better than the best in-window lag: the audio
    #: then matches the mouth, but too late or too early (a desynchronised replay).
    max_far_advantage: float = 0.35


@dataclass(frozen=True)
class SyncScores:
    """The synchrony measurements: best in-window correlation, its lag (positive: the mouth leads
    the audio), its contrast with the far-lag correlations (standard deviations), and the best
    far-lag correlation with its lag."""

    correlation: float
    lag_s: float
    contrast: float
    far_correlation: float = float("nan")
    far_lag_s: float = float("nan")


def attempt_frames(track: FaceTrack, speech: SpeechTrack, params: LivenessParams) -> np.ndarray:
    """Return the boolean mask of the frames that belong to the attempt (utterance plus context)."""
    t = np.asarray(track.t, dtype=np.float64)
    return (t >= speech.start - params.context_s) & (t <= speech.end + params.context_s)


def robust_range(values: np.ndarray) -> float:
    """90th minus 10th percentile of the finite values (0.0 when there are fewer than two)."""
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return 0.0
    low, high = np.percentile(finite, [10.0, 90.0])
    return float(high - low)


def mouth_closure(values: np.ndarray) -> float:
    """How far the mouth closes between its wide openings: (p90 - p10) / p90 of the finite mouth
    openings (0 when there are fewer than two or the mouth never opens). A talking mouth closes
    between syllables (close to 1); a photo with the mouth open keeps a high floor of opening and
    only jitters around it."""
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return 0.0
    low, high = np.percentile(finite, [10.0, 90.0])
    return float((high - low) / high) if high > 0 else 0.0


def mouth_to_eyes(keypoints: np.ndarray) -> np.ndarray:
    """Per frame, the distance from the mouth-centre keypoint to the eye line over the eye distance
    (NaN where keypoints are missing). Rigid motion and scale leave it unchanged; the jaw does not."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 6, 2)
    right, left, mouth = kp[:, RIGHT_EYE], kp[:, LEFT_EYE], kp[:, MOUTH_CENTER]
    eye_line = left - right
    eye_distance = np.linalg.norm(eye_line, axis=1)
    cross = eye_line[:, 0] * (mouth - right)[:, 1] - eye_line[:, 1] * (mouth - right)[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(eye_distance > 0, np.abs(cross) / eye_distance ** 2, np.nan)


def envelope(speech: SpeechTrack, floor_db: float, frame_interval_s: float) -> np.ndarray:
    """The log envelope (dB, floored ``floor_db`` below its peak) averaged over one frame interval."""
    energy = np.asarray(speech.energy, dtype=np.float64)
    t = np.asarray(speech.t, dtype=np.float64)
    step = float(np.median(np.diff(t))) if t.size > 1 else 0.01
    width = max(1, int(round(frame_interval_s / step)))
    # Averaging over one frame interval stands in for the camera's exposure: a frame cannot see
    # energy changes faster than that.
    smoothed = np.convolve(energy, np.ones(width) / width, mode="same") if energy.size >= width else energy
    peak = float(smoothed.max()) if smoothed.size else 0.0
    floor = peak * 10.0 ** (-floor_db / 20.0)
    return 20.0 * np.log10(np.maximum(smoothed, max(floor, 1e-12)))


def sync_scores(t: np.ndarray, mouth: np.ndarray, speech: SpeechTrack,
                params: LivenessParams) -> SyncScores:
    """Correlate mouth-opening changes with envelope changes at every lag; see the module doc.

    ``t`` and ``mouth`` are the attempt's frames with a finite mouth value (at least 3).
    """
    frame_interval = float(np.median(np.diff(t)))
    env = envelope(speech, params.floor_db, frame_interval)
    env_t = np.asarray(speech.t, dtype=np.float64)
    step = params.lag_step_ms / 1000.0
    far = max(params.far_lag_s[1], params.max_lag_ms / 1000.0)
    lags = np.round(np.arange(-far, far + step / 2, step) / step) * step
    # (lags, frames) envelope samples; outside the recorded envelope the edge value (silence) holds.
    shifted = np.interp(t[np.newaxis, :] + lags[:, np.newaxis], env_t, env)
    mouth_change = np.diff(mouth)
    env_change = np.diff(shifted, axis=1)
    mouth_change = mouth_change - mouth_change.mean()
    env_change = env_change - env_change.mean(axis=1, keepdims=True)
    denominator = np.sqrt((mouth_change ** 2).sum() * (env_change ** 2).sum(axis=1))
    correlations = np.where(denominator > 0, env_change @ mouth_change / np.where(
        denominator > 0, denominator, 1.0), 0.0)
    in_window = np.abs(lags) <= params.max_lag_ms / 1000.0 + 1e-9
    out_of_sync = np.abs(lags) >= params.far_lag_s[0] - 1e-9
    best = int(np.argmax(np.where(in_window, correlations, -np.inf)))
    contrast, far_best, far_lag = 0.0, float("nan"), float("nan")
    if out_of_sync.sum() >= 2:
        far_values = correlations[out_of_sync]
        contrast = float((correlations[best] - far_values.mean()) / (far_values.std() + 1e-6))
        far_index = int(np.argmax(far_values))
        far_best, far_lag = float(far_values[far_index]), float(lags[out_of_sync][far_index])
    return SyncScores(float(correlations[best]), float(lags[best]), contrast, far_best, far_lag)


@dataclass(frozen=True)
class Measurement:
    """Everything :func:`check_liveness` measures before applying its thresholds; ``problem`` is a
    reason from :data:`REASONS` that stopped the measurement early (then ``sync`` is None)."""

    problem: str | None
    mouth_range: float = 0.0
    keypoint_range: float = 0.0
    mouth_closure: float = 0.0
    sync: SyncScores | None = None


def measure(track: FaceTrack, speech: SpeechTrack | None,
            params: LivenessParams = LivenessParams()) -> Measurement:
    """Measure an attempt: data sufficiency, non-rigid motion and synchrony (no sync thresholds)."""
    if speech is None or len(speech.t) < 2 or speech.end - speech.start < params.min_speech_s:
        return Measurement("no_speech")
    t = np.asarray(track.t, dtype=np.float64)
    mouth = np.asarray(track.mouth, dtype=np.float64)
    in_attempt = attempt_frames(track, speech, params)
    during_speech = (t >= speech.start) & (t <= speech.end)
    usable = in_attempt & np.isfinite(mouth)
    n_speech_frames = int(during_speech.sum())
    n_usable_speech = int((during_speech & usable).sum())
    if (usable.sum() < params.min_frames or n_speech_frames == 0
            or n_usable_speech < params.min_valid_fraction * n_speech_frames
            or n_usable_speech < 3):
        log.debug("liveness: %d usable frames, %d of %d during speech", usable.sum(),
                  n_usable_speech, n_speech_frames)
        return Measurement("too_few_frames")
    mouth_range = robust_range(mouth[usable])
    keypoint_range = robust_range(mouth_to_eyes(np.asarray(track.keypoints)[usable]))
    closure = mouth_closure(mouth[usable])
    if (mouth_range < params.min_mouth_range or closure < params.min_mouth_closure
            or keypoint_range < params.min_keypoint_range):
        log.debug("liveness: still face (mouth range %.3f, closure %.2f, keypoint range %.3f)",
                  mouth_range, closure, keypoint_range)
        return Measurement("still_face", mouth_range, keypoint_range, closure)
    return Measurement(None, mouth_range, keypoint_range, closure,
                       sync_scores(t[usable], mouth[usable], speech, params))


def sync_passes(scores: SyncScores, params: LivenessParams) -> bool:
    """Whether synchrony measurements pass the thresholds of ``params``."""
    far_advantage = scores.far_correlation - scores.correlation
    return bool(scores.correlation >= params.min_sync_correlation
                and scores.contrast >= params.min_sync_contrast
                and not far_advantage > params.max_far_advantage)


def check_liveness(track: FaceTrack, speech: SpeechTrack | None,
                   params: LivenessParams = LivenessParams()) -> LivenessResult:
    """Decide whether the speech of an attempt came from the live face in the track.

    Returns a :class:`LivenessResult` with ``score`` the best-lag correlation (None when it could
    not be computed) and ``reason`` one of :data:`REASONS` when it did not pass.
    """
    result = measure(track, speech, params)
    if result.problem is not None:
        return LivenessResult(False, None, result.problem)
    scores = result.sync
    passed = sync_passes(scores, params)
    log.debug("liveness: correlation %.3f at lag %+.0f ms, contrast %.2f, mouth range %.3f, "
              "keypoint range %.3f -> %s", scores.correlation, scores.lag_s * 1000.0,
              scores.contrast, result.mouth_range, result.keypoint_range,
              "pass" if passed else "fail")
    return LivenessResult(passed, scores.correlation, "" if passed else "not_in_sync")
