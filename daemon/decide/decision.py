"""The open-set decision: who (if anyone) is at the door.

People do not claim an identity, so the best-scoring enrolled person is accepted only if every
check passed, the fused score reaches the threshold, each modality on its own points to that
person, *and* it leads the runner-up by a margin.
Everything else denies, with the first failed check as the reason. This function is the single
place that can say "accept"; it is pure, so a property test can try every combination.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from daemon.challenge.result import ChallengeResult
from daemon.fuse.fusion import Candidate
from daemon.liveness.result import LivenessResult

ACCEPT, DENY = "accept", "deny"

#: Reasons the capture stage gives for unusable input, in the order they are reported.
INPUT_PROBLEMS = ("no_face", "face_too_small", "too_dark", "too_bright", "blurry", "not_frontal",
                  "no_speech", "speech_too_short")
FACE_PROBLEMS = frozenset({"no_face", "face_too_small", "too_dark", "too_bright", "blurry", "not_frontal"})
VOICE_PROBLEMS = frozenset({"no_speech", "speech_too_short"})


@dataclass(frozen=True)
class Policy:
    """Decision settings (from ``decision:``, ``liveness:`` and the calibration)."""

    threshold: float
    margin: float
    missing_modality: str = "deny"          # deny | face_only | voice_only
    single_modality_threshold: float = 12.0
    liveness_required: bool = True
    #: Each modality's own LLR must reach this when both are used, so that an overwhelming face
    #: match cannot carry a voice that points to someone else (nor the other way round).
    min_modality_llr: float = 0.0
    #: The attempt must answer its random challenge (daemon.challenge) with the accepted person's
    #: own recordings of the digits; on when a prompt device is configured.
    challenge_required: bool = False


@dataclass(frozen=True)
class Decision:
    """What was decided, and why. Never carries embeddings or images."""

    decision: str
    reason: str
    person: str | None = None
    face: float | None = None
    voice: float | None = None
    fused: float | None = None
    runner_up: float | None = None
    liveness: float | None = None
    details: dict = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.decision == ACCEPT

    def scores(self) -> dict:
        """The scores as the JSON and log lines show them."""
        return {"face": self.face, "voice": self.voice, "fused": self.fused}


def decide(candidates: Sequence[Candidate], policy: Policy, *, problems: Sequence[str] = (),
           liveness: LivenessResult | None = None, locked_out: bool = False,
           error: str | None = None, challenge: ChallengeResult | None = None) -> Decision:
    """Decide on one attempt.

    ``candidates`` are the enrolled people's scores in any order (empty when nobody is enrolled or
    nothing could be scored); ``problems`` are input rejections from capture (see
    :data:`INPUT_PROBLEMS`); ``error`` is any fault during the attempt; ``challenge`` the answers to
    the attempt's random challenge (required by ``policy.challenge_required``).
    """
    # Ranked here rather than trusted: a NaN score makes a plain sort leave larger scores behind
    # it, so NaN ranks first, where it can only deny.
    ranked = sorted(candidates, key=lambda c: (c.fused != c.fused, c.fused), reverse=True)
    best = ranked[0] if ranked else None
    runner_up = ranked[1] if len(ranked) > 1 else None

    def deny(reason: str, **details) -> Decision:
        return Decision(DENY, reason, None,
                        best.face_llr if best else None, best.voice_llr if best else None,
                        best.fused if best else None, runner_up.fused if runner_up else None,
                        liveness.score if liveness else None, details)

    if locked_out:
        return deny("locked_out")
    if error:
        return deny("error", error=error)
    face_missing = [p for p in problems if p in FACE_PROBLEMS]
    voice_missing = [p for p in problems if p in VOICE_PROBLEMS]
    unknown = [p for p in problems if p not in FACE_PROBLEMS | VOICE_PROBLEMS]
    if unknown:
        return deny(unknown[0])
    single = None
    if face_missing and voice_missing:
        return deny(face_missing[0])
    if face_missing:
        if policy.missing_modality != "voice_only":
            return deny(face_missing[0])
        single = "voice"
    elif voice_missing:
        if policy.missing_modality != "face_only":
            return deny(voice_missing[0])
        single = "face"
    if best is None:
        return deny("no_enrolled")
    if policy.liveness_required and (liveness is None or not liveness.passed):
        return deny("liveness_failed", liveness=liveness.reason if liveness else "not run")
    if policy.challenge_required and (challenge is None or not challenge.passed_for(best.name)):
        return deny("challenge_failed", challenge=(challenge.reason or "not this person's answers")
                    if challenge else "not run")
    if single is None:
        if best.face_llr is None or best.voice_llr is None:
            return deny("no_face" if best.face_llr is None else "no_speech")
        threshold = policy.threshold
    else:
        if (best.face_llr if single == "face" else best.voice_llr) is None:
            return deny("no_face" if single == "face" else "no_speech")
        threshold = policy.single_modality_threshold
    if not best.fused >= threshold:  # also false for NaN
        return deny("no_match")
    if single is None:
        if not best.face_llr >= policy.min_modality_llr:
            return deny("face_mismatch")
        if not best.voice_llr >= policy.min_modality_llr:
            return deny("voice_mismatch")
    if runner_up is not None and not best.fused - runner_up.fused >= policy.margin:
        return deny("ambiguous")
    return Decision(ACCEPT, "match" if single is None else f"match_{single}_only", best.name,
                    best.face_llr, best.voice_llr, best.fused,
                    runner_up.fused if runner_up else None, liveness.score if liveness else None)
