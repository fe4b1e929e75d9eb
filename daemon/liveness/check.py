"""The liveness check as one object: it observes the frames and audio of each attempt and judges
the attempt when it ends.

The capture loop hands every frame (with its face observation) and every audio block of an active
attempt to :meth:`LivenessCheck.observe_frame` / :meth:`LivenessCheck.observe_audio`, and asks
:meth:`LivenessCheck.judge` for the result; what is recorded (mouth landmarks, the speech envelope)
and how it is judged (:func:`daemon.liveness.sync.check_liveness`) stays inside this package.
"""

from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np

from daemon.detect.face_landmarks import FaceLandmarker
from daemon.inference.tflite import DEFAULT_MODELS_DIR
from daemon.liveness.result import LivenessResult
from daemon.liveness.sync import LivenessParams, check_liveness
from daemon.liveness.tracks import FaceTrackBuilder, SpeechTrackBuilder

#: How much of an attempt the tracks keep (attempts end long before this).
HISTORY_SECONDS = 60.0


class _Record:
    """What the check keeps of one attempt: (t, face, landmarks) per frame, (t, samples) per block."""

    def __init__(self):
        self.frames: list = []
        self.audio: list = []
        self.lock = threading.Lock()


class LivenessCheck:
    """Audio-visual liveness: the voice must come from the moving face in front of the camera.

    ``landmarker`` finds the mouth in each face; ``frame_s`` is the VAD frame length and
    ``start_frames`` / ``end_frames`` the VAD's hysteresis (to move its events back to when speech
    really started and stopped).
    """

    def __init__(self, landmarker: FaceLandmarker, params: LivenessParams, frame_s: float,
                 start_frames: int, end_frames: int):
        self.landmarker = landmarker
        self.params = params
        self._frame_s = frame_s
        self._start_frames, self._end_frames = start_frames, end_frames

    @staticmethod
    def _record(attempt) -> _Record:
        if attempt.liveness_record is None:
            attempt.liveness_record = _Record()
        return attempt.liveness_record

    def observe_frame(self, attempt, t: float, frame, observation) -> None:
        """A frame of an active attempt; ``observation`` is its face (None when there is none)."""
        landmarks = None
        if observation is not None:
            landmarks = self.landmarker.landmarks(frame, observation.face)
        record = self._record(attempt)
        with record.lock:
            record.frames.append((t, observation.face if observation is not None else None, landmarks))

    def observe_audio(self, attempt, t: float, samples) -> None:
        """An audio block heard during an active attempt."""
        record = self._record(attempt)
        with record.lock:
            record.audio.append((t, samples))

    def mouth_track(self, attempt) -> tuple[np.ndarray, np.ndarray]:
        """Frame times and mouth openings (NaN without a face) of an attempt so far, from the
        landmarks already computed: the challenge's check of the mouth per answer reads these."""
        record = self._record(attempt)
        faces = FaceTrackBuilder(history_s=HISTORY_SECONDS)
        with record.lock:
            for t, face, landmarks in record.frames:
                faces.add(t, face, landmarks)
        track = faces.build()
        return track.t, track.mouth

    def audio(self, attempt) -> tuple[float, np.ndarray] | None:
        """The attempt's audio as one array and the time of its first sample (None when none was
        heard); blocks that do not follow on are joined anyway (a gap shifts later answers, which
        can only fail them)."""
        record = self._record(attempt)
        with record.lock:
            blocks = list(record.audio)
        if not blocks:
            return None
        return blocks[0][0], np.concatenate([np.asarray(b, np.float32).reshape(-1) for _, b in blocks])

    def judge(self, attempt, until: float | None = None) -> LivenessResult:
        """The liveness result of an :class:`~daemon.decide.attempt.Attempt`: a finished one, or
        one still running, judged on what it has shown ``until`` then."""
        if attempt.speech_started_at is None:
            return LivenessResult(False, None, "no_speech")
        record = self._record(attempt)
        faces = FaceTrackBuilder(history_s=HISTORY_SECONDS)
        speech = SpeechTrackBuilder(history_s=HISTORY_SECONDS)
        with record.lock:
            for t, face, landmarks in record.frames:
                faces.add(t, face, landmarks)
            for t, samples in record.audio:
                speech.add(t, samples)
        start = attempt.speech_started_at - self._start_frames * self._frame_s
        if until is not None:
            end = until
        elif attempt.speech_ended_at is not None:
            end = attempt.speech_ended_at - self._end_frames * self._frame_s
        else:
            end = attempt.ended_at
        return check_liveness(faces.build(), speech.build(start, end), self.params)


def make_liveness_check(config, calibrated_threshold: float | None) -> LivenessCheck | None:
    """The configured check, or None when ``liveness.required`` is off and there is no challenge
    (the challenge reads the audio and mouth track the check records)."""
    challenge = config.prompt.challenge_on
    if not config.liveness.required and not challenge:
        return None
    params = LivenessParams(max_lag_ms=float(config.liveness.max_lag_ms))
    if calibrated_threshold is not None:
        params = dataclasses.replace(params, min_sync_correlation=float(calibrated_threshold))
    if challenge:
        # With the challenge the mouth is checked per answer and the still-face rule over the
        # answers (daemon/challenge/verify.py): over a whole attempt, mostly waiting for prompts
        # with the mouth at rest, both would refuse live people; the sync correlation is replaced
        # by the answers' timing (see SECURITY.md for the data).
        params = dataclasses.replace(params, min_sync_correlation=-1.0, min_sync_contrast=-math.inf,
                                     max_far_advantage=math.inf, min_mouth_range=0.0,
                                     min_mouth_closure=0.0)
    landmarker = FaceLandmarker(models_dir=config.models.directory or DEFAULT_MODELS_DIR,
                                num_threads=config.models.num_threads)
    return LivenessCheck(landmarker, params, config.microphone.block_ms / 1000,
                         config.vad.start_frames, config.vad.end_frames)
