"""The liveness check as the capture loop runs it on a finished attempt.

Builds the face track (mouth opening and keypoints per frame) and the speech envelope from what the
attempt recorded, then runs :func:`daemon.liveness.sync.check_liveness`.
"""

from __future__ import annotations

import dataclasses

from daemon.decide.decision import LivenessResult
from daemon.detect.face_landmarks import FaceLandmarker
from daemon.embed.runtime import DEFAULT_MODELS_DIR
from daemon.liveness.sync import LivenessParams, check_liveness
from daemon.liveness.tracks import FaceTrackBuilder, SpeechTrackBuilder


def attempt_liveness(attempt, params: LivenessParams, frame_s: float, start_frames: int,
                     end_frames: int) -> LivenessResult:
    """Run the check on an :class:`~daemon.decide.attempt.Attempt`."""
    if attempt.speech_started_at is None:
        return LivenessResult(False, None, "no_speech")
    faces = FaceTrackBuilder(history_s=60.0)
    for t, face, landmarks in attempt.liveness_frames:
        faces.add(t, face, landmarks)
    speech = SpeechTrackBuilder(history_s=60.0)
    for t, samples in attempt.audio_blocks:
        speech.add(t, samples)
    # The VAD reports a start after `start_frames` voiced frames and an end after `end_frames`
    # unvoiced ones: move both back to when the speech really started and stopped.
    start = attempt.speech_started_at - start_frames * frame_s
    end = (attempt.speech_ended_at if attempt.speech_ended_at is not None else attempt.ended_at)
    if attempt.speech_ended_at is not None:
        end -= end_frames * frame_s
    return check_liveness(faces.build(), speech.build(start, end), params)


def make_liveness_check(config, calibrated_threshold: float | None):
    """Return ``(check, landmarker)`` for the loop, or ``(None, None)`` when liveness is off."""
    if not config.liveness.required:
        return None, None
    params = LivenessParams(max_lag_ms=float(config.liveness.max_lag_ms))
    if calibrated_threshold is not None:
        params = dataclasses.replace(params, min_sync_correlation=float(calibrated_threshold))
    landmarker = FaceLandmarker(models_dir=config.models.directory or DEFAULT_MODELS_DIR,
                                num_threads=config.models.num_threads)
    frame_s = config.microphone.block_ms / 1000

    def check(attempt) -> LivenessResult:
        return attempt_liveness(attempt, params, frame_s, config.vad.start_frames, config.vad.end_frames)

    return check, landmarker
