"""Per-person scores: cosine per modality → calibrated log-likelihood ratio → weighted fusion.

A cosine score is mapped to a log-likelihood ratio (natural log) with the linear
:class:`~daemon.fuse.calibration.Calibration` fitted by ``avid calibrate``; LLRs of independent modalities add, so the
fused score is a weighted sum. The voice's weight is scaled by the length of the utterance in [0, 1]
(never below ``min_quality_weight``), so a short utterance counts for less. A face's quality does
not weight or gate its LLR: every face that could be aligned is scored, and how much a poor face
says is what the calibration fitted on such faces says (a face with a quality problem scores lower
with its own person, never higher with another; halving its LLR cost genuine accepts and bought
no security on the development data).

Voice embeddings pass through the voice back-end (:mod:`daemon.embed.voice_backend`), when the
parameters carry one, before their cosine is taken: the probe and each template's centroid alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from daemon.fuse.calibration import Calibration

if TYPE_CHECKING:
    from daemon.embed.voice_backend import VoiceBackend


@dataclass(frozen=True)
class FusionParams:
    """Calibrations and weights of the two modalities, and the voice back-end (None: raw cosines)."""

    face: Calibration
    voice: Calibration
    face_weight: float = 1.0
    voice_weight: float = 1.0
    min_quality_weight: float = 0.5
    voice_backend: "VoiceBackend | None" = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Candidate:
    """One enrolled person's scores for an attempt (None where the modality is missing)."""

    name: str
    face_cosine: float | None
    voice_cosine: float | None
    face_llr: float | None
    voice_llr: float | None
    fused: float


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def face_cosine(probes: list[np.ndarray], centroid: np.ndarray) -> float:
    """Score of several probe face embeddings against a template: cosine of their mean."""
    return cosine(np.mean(probes, axis=0), centroid)


def score_candidates(people, face_probes: list[np.ndarray], voice_probe: np.ndarray | None,
                     params: FusionParams, voice_quality: float = 1.0) -> list[Candidate]:
    """Score every enrolled person, best first.

    ``people`` are :class:`~daemon.state.templates.Person` objects. A modality is used only when
    both the probe and the person's template have it. ``voice_quality`` in [0, 1] scales the
    voice's weight (see the module docstring).
    """
    face_w = params.face_weight
    voice_w = params.voice_weight * max(params.min_quality_weight, min(1.0, voice_quality))
    backend = params.voice_backend
    if backend is not None and voice_probe is not None:
        voice_probe = backend.apply(voice_probe)
    candidates = []
    for person in people:
        face_centroid, voice_centroid = person.centroid("face"), person.centroid("voice")
        if backend is not None and voice_centroid is not None:
            voice_centroid = backend.apply(voice_centroid)
        f_cos = face_cosine(face_probes, face_centroid) if face_probes and face_centroid is not None else None
        v_cos = cosine(voice_probe, voice_centroid) if voice_probe is not None and voice_centroid is not None else None
        f_llr = params.face.llr(f_cos) if f_cos is not None else None
        v_llr = params.voice.llr(v_cos) if v_cos is not None else None
        fused = (face_w * f_llr if f_llr is not None else 0.0) + (voice_w * v_llr if v_llr is not None else 0.0)
        candidates.append(Candidate(person.name, f_cos, v_cos, f_llr, v_llr, fused))
    candidates.sort(key=lambda c: c.fused, reverse=True)
    return candidates
