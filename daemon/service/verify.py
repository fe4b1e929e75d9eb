"""``avid verify``: the door's decision on face images and a voice clip from files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from daemon.capture.audio import MAX_SAMPLE_SECONDS, read_wav
from daemon.decide.decision import Decision
from daemon.decide.evidence import Evidence, decide_attempt
from daemon.detect.face_quality import scorable
from daemon.files import check_admin_controlled
from daemon.fuse.calibration import load_operating_point
from daemon.service import door as door_parts


def evidence_from_files(pipeline, faces: list[Path], voices: list[Path], min_speech_seconds: float) -> Evidence:
    """Evidence from face images and the first voice clip, embedded as the door embeds its probes.

    The files must be in places only the admin can write, and within the size limits."""
    for path in [*faces, *voices[:1]]:
        check_admin_controlled(path)
    face_embeddings, qualities, face_problems = [], [], []
    for path in faces:
        embedding, observation, reasons = pipeline.face_from_image(path)
        face_problems.extend(r for r in reasons if r)
        if embedding is not None and scorable(reasons):
            face_embeddings.append(embedding)
            qualities.append(observation.quality)
    voice, seconds, voice_problems = None, 0.0, ("no_speech",)
    for path in voices[:1]:
        result = pipeline.voice_from_samples(read_wav(path, MAX_SAMPLE_SECONDS), min_speech_seconds)
        voice, seconds, voice_problems = result.embedding, result.speech_seconds, tuple(result.problems)
    return Evidence(tuple(face_embeddings), float(np.mean(qualities)) if qualities else 0.0,
                    tuple(face_problems), voice, seconds, voice_problems)


def verify_files(config, faces: list[Path], voices: list[Path]) -> tuple[Decision, Evidence]:
    """Decide on files as the door would, except liveness: files are not a live capture."""
    pipeline = door_parts.make_pipeline(config)
    store = door_parts.open_store(config, pipeline.models_fingerprint)
    point = load_operating_point(config, pipeline.models_fingerprint, door_parts.DEFAULT_CALIBRATION)
    # Files are not a live capture: neither liveness nor a challenge can be asked of them.
    policy = dataclasses.replace(door_parts.make_policy(config, point), liveness_required=False,
                                 challenge_required=False)
    evidence = evidence_from_files(pipeline, faces, voices, config.attempt.min_speech_seconds)
    fusion = door_parts.make_fusion(config, point, pipeline.voice_backend)
    decision = decide_attempt(evidence, store.load().values(), fusion, policy)
    return decision, evidence
