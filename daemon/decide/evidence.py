"""One attempt's evidence, and the one path from evidence to a :class:`Decision`.

The capture loop, ``avid verify``, ``avid calibrate`` and ``tools/evaluate.py`` all describe an
attempt as :class:`Evidence` and decide it with :func:`decide_attempt` (or, when a tool sweeps
thresholds over the same scores, :func:`score_evidence` once and :func:`decide_scored` per policy),
so that every rule — which input problem is reported, how much a short utterance counts, fusion and
the decision itself — is written once, here and in :func:`~daemon.decide.decision.decide`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from daemon.challenge.result import ChallengeResult
from daemon.decide.decision import Decision, Policy, decide
from daemon.detect.face_quality import UNSCORABLE
from daemon.liveness.result import LivenessResult
from daemon.fuse.fusion import Candidate, FusionParams, score_candidates

#: Seconds of speech at which the voice counts in full in fusion; a shorter utterance counts less.
FULL_VOICE_SECONDS = 3.0


@dataclass(frozen=True)
class Evidence:
    """What one attempt offers for a decision (never logged: it holds embeddings).

    ``face_probes`` are the embeddings of every face that could be aligned (best first), whatever
    its quality problems, and ``face_quality`` their mean quality (reported, not weighted: see
    :mod:`daemon.fuse.fusion`); ``face_problems`` name the quality problems seen, the most frequent
    first, and say why there is no face when there is none (``no_face``, ``face_too_small``). ``voice`` is the
    utterance embedding (None when there is no usable speech, with ``voice_problems`` saying why).
    ``error`` is any fault during the attempt; it denies whatever else was gathered. ``challenge`` is
    the judged answers to the attempt's random challenge (None when none was presented).
    """

    face_probes: tuple[np.ndarray, ...] = field(default=(), repr=False)
    face_quality: float = 0.0
    face_problems: tuple[str, ...] = ()
    voice: np.ndarray | None = field(default=None, repr=False)
    speech_seconds: float = 0.0
    voice_problems: tuple[str, ...] = ()
    liveness: LivenessResult | None = None
    error: str | None = None
    challenge: ChallengeResult | None = None

    @property
    def problems(self) -> list[str]:
        """Input problems in the order :func:`decide` reports them: the face's first, then the voice's."""
        if self.face_probes:
            return list(self.voice_problems)
        # Without a face to score, say why none could be scored (a blur does not stop scoring).
        unscorable = [p for p in self.face_problems if p in UNSCORABLE]
        face = unscorable[0] if unscorable else self.face_problems[0] if self.face_problems else "no_face"
        return [face] + list(self.voice_problems)

    @property
    def voice_quality(self) -> float:
        """How much the voice counts in fusion, in [0, 1]."""
        return min(1.0, self.speech_seconds / FULL_VOICE_SECONDS)


def score_evidence(evidence: Evidence, people: Iterable, fusion: FusionParams) -> list[Candidate]:
    """Every enrolled person's scores for the attempt, best first (empty after an error)."""
    if evidence.error:
        return []
    return score_candidates(people, list(evidence.face_probes), evidence.voice, fusion,
                            evidence.voice_quality)


def decide_scored(evidence: Evidence, candidates: Sequence[Candidate], policy: Policy, *,
                  locked_out: bool = False) -> Decision:
    """Decide an attempt whose candidates :func:`score_evidence` has computed."""
    if locked_out or evidence.error:
        candidates = []
    return decide(candidates, policy, problems=evidence.problems, liveness=evidence.liveness,
                  locked_out=locked_out, error=evidence.error, challenge=evidence.challenge)


def decide_attempt(evidence: Evidence, people: Iterable, fusion: FusionParams, policy: Policy, *,
                   locked_out: bool = False) -> Decision:
    """The decision on one attempt: evidence + enrolled people + fusion parameters + policy."""
    if locked_out:
        return decide_scored(evidence, [], policy, locked_out=True)
    return decide_scored(evidence, score_evidence(evidence, people, fusion), policy)


def decide_early(evidence: Evidence, people: Iterable, fusion: FusionParams, policy: Policy, *,
                 margin: float, min_speech_seconds: float, locked_out: bool = False) -> Decision | None:
    """An accept before the utterance has ended, or None (then the attempt waits for its end).

    The same rules as :func:`decide_attempt` with the threshold raised by ``margin`` (the evidence
    is partial), and only with at least ``min_speech_seconds`` of speech. Never denies: a person
    who is still speaking may yet be recognised, so a denial waits for the whole utterance.
    """
    if locked_out or evidence.error or evidence.speech_seconds < min_speech_seconds:
        return None
    stricter = dataclasses.replace(policy, threshold=policy.threshold + max(0.0, margin))
    decision = decide_attempt(evidence, people, fusion, stricter)
    return decision if decision.accepted else None
