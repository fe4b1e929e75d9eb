"""The open-set decision: nothing but a clean, confident, unambiguous, live match ever accepts."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.decide.decision import (FACE_PROBLEMS, INPUT_PROBLEMS, VOICE_PROBLEMS, LivenessResult,
                                    Policy, decide)
from daemon.challenge.result import ChallengeResult
from daemon.fuse.fusion import Candidate

# AVID_FUZZ_EXAMPLES=10000 for a long run, as in test_config_fuzz.py.
EXAMPLES = int(os.environ.get("AVID_FUZZ_EXAMPLES", "1000"))

scores = st.one_of(st.floats(-30, 30), st.sampled_from([math.nan, math.inf, -math.inf, 0.0]))
optional_scores = st.one_of(st.none(), scores)


@st.composite
def candidates(draw):
    names = draw(st.lists(st.sampled_from(["ann", "bob", "cy", "dee", "eve"]), max_size=4, unique=True))
    return [Candidate(name, draw(optional_scores), draw(optional_scores), draw(optional_scores),
                      draw(optional_scores), draw(scores)) for name in names]


policies = st.builds(
    Policy,
    threshold=st.floats(-10, 20),
    margin=st.one_of(st.just(0.0), st.floats(0, 10)),
    missing_modality=st.sampled_from(["deny", "face_only", "voice_only"]),
    single_modality_threshold=st.floats(-10, 20),
    liveness_required=st.booleans(),
    min_modality_llr=st.one_of(st.just(0.0), st.floats(-20, 20)),
    challenge_required=st.booleans(),
)
problem_lists = st.lists(st.sampled_from(list(INPUT_PROBLEMS) + ["camera_failed", "garbage"]), max_size=3)
liveness_results = st.one_of(st.none(), st.builds(LivenessResult, st.booleans(),
                                                  st.one_of(st.none(), st.floats(-1, 1)), st.just("")))
# A challenge that passed for nobody in particular, for some of the candidates, or failed.
challenge_results = st.one_of(st.none(), st.builds(
    ChallengeResult, st.booleans(), st.sampled_from(["", "not_answered", "wrong_answer"]),
    people=st.one_of(st.none(), st.frozensets(st.sampled_from(["ann", "bob", "cy", "dee", "eve"])))))
errors = st.one_of(st.none(), st.sampled_from(["embedding_timeout", "lock_failed", "x"]))


def _ranked(people: list[Candidate]) -> list[Candidate]:
    """Best first; a NaN score counts as the best, so that it can only deny."""
    return sorted(people, key=lambda c: (math.isnan(c.fused), c.fused), reverse=True)


def _violations(people, policy, problems, liveness, locked_out, error, challenge=None) -> list[str]:
    """Every reason an attempt must be denied, worked out independently of decide()."""
    found = []
    if locked_out:
        found.append("locked out")
    if error:
        found.append("error")
    face_problem = any(p in FACE_PROBLEMS for p in problems)
    voice_problem = any(p in VOICE_PROBLEMS for p in problems)
    if any(p not in FACE_PROBLEMS and p not in VOICE_PROBLEMS for p in problems):
        found.append("unknown problem")
    if face_problem and policy.missing_modality != "voice_only":
        found.append("face problem not allowed")
    if voice_problem and policy.missing_modality != "face_only":
        found.append("voice problem not allowed")
    if face_problem and voice_problem:
        found.append("both modalities missing")
    if policy.liveness_required and not (liveness is not None and liveness.passed):
        found.append("liveness")
    if not people:
        found.append("no candidates")
        return found
    best, *others = _ranked(people)
    if policy.challenge_required and not (
            challenge is not None and challenge.passed
            and (challenge.people is None or best.name in challenge.people)):
        found.append("challenge not answered by the best candidate")
    single = "voice" if face_problem else "face" if voice_problem else None
    needed = {"face": [best.face_llr], "voice": [best.voice_llr], None: [best.face_llr, best.voice_llr]}
    if any(llr is None for llr in needed[single]):
        found.append("modality without a score")
    elif single is None and not all(llr >= policy.min_modality_llr for llr in needed[None]):
        found.append("a modality points elsewhere")
    threshold = policy.threshold if single is None else policy.single_modality_threshold
    if math.isnan(best.fused) or best.fused < threshold:
        found.append("below threshold")
    if others and not best.fused - others[0].fused >= policy.margin:
        found.append("margin")
    return found


@settings(max_examples=EXAMPLES, deadline=None)
@given(candidates(), policies, problem_lists, liveness_results, st.booleans(), errors, st.randoms(),
       challenge_results)
def test_accept_if_and_only_if_every_condition_holds(people, policy, problems, liveness, locked_out,
                                                      error, random, challenge):
    random.shuffle(people)  # the order candidates arrive in must not matter
    decision = decide(people, policy, problems=problems, liveness=liveness, locked_out=locked_out,
                      error=error, challenge=challenge)
    violations = _violations(people, policy, problems, liveness, locked_out, error, challenge)
    assert decision.decision in ("accept", "deny")
    if violations:
        assert decision.decision == "deny", violations
        assert decision.person is None and decision.reason
        return
    assert decision.decision == "accept", decision
    best = _ranked(people)[0]
    assert decision.person == best.name
    # The accepted person beats every other candidate by the margin, not only the runner-up.
    for other in people:
        if other is not best:
            assert best.fused - other.fused >= policy.margin
    assert decision.fused == best.fused and decision.reason.startswith("match")


# --- every reason, by example -------------------------------------------------------------------
POLICY = Policy(threshold=5.0, margin=2.0, missing_modality="deny", single_modality_threshold=8.0,
                liveness_required=True)
LIVE = LivenessResult(True, 0.6)


def _c(name, face=4.0, voice=4.0, fused=None):
    return Candidate(name, 0.5, 0.5, face, voice, face + voice if fused is None else fused)


def _policy(**changes):
    return Policy(**(POLICY.__dict__ | changes))


@pytest.mark.parametrize("kwargs, reason", [
    (dict(candidates=[_c("ann")], locked_out=True, liveness=LIVE), "locked_out"),
    (dict(candidates=[_c("ann")], error="embedding_timeout", liveness=LIVE), "error"),
    (dict(candidates=[_c("ann")], problems=["camera_failed"], liveness=LIVE), "camera_failed"),
    (dict(candidates=[_c("ann")], problems=["blurry"], liveness=LIVE), "blurry"),
    (dict(candidates=[_c("ann")], problems=["speech_too_short"], liveness=LIVE), "speech_too_short"),
    (dict(candidates=[_c("ann")], problems=["no_speech", "too_dark"], liveness=LIVE), "too_dark"),
    (dict(candidates=[], liveness=LIVE), "no_enrolled"),
    (dict(candidates=[_c("ann")]), "liveness_failed"),
    (dict(candidates=[_c("ann")], liveness=LivenessResult(False, 0.1, "no_sync")), "liveness_failed"),
    (dict(candidates=[_c("ann", face=None, fused=4.0)], liveness=LIVE), "no_face"),
    (dict(candidates=[_c("ann", voice=None, fused=4.0)], liveness=LIVE), "no_speech"),
    (dict(candidates=[_c("ann", 2.0, 2.0)], liveness=LIVE), "no_match"),
    (dict(candidates=[_c("ann", fused=math.nan)], liveness=LIVE), "no_match"),
    (dict(candidates=[_c("ann", 12.0, -1.0)], liveness=LIVE), "voice_mismatch"),
    (dict(candidates=[_c("ann", -0.5, 12.0)], liveness=LIVE), "face_mismatch"),
    (dict(candidates=[_c("ann", 6.0, math.nan, fused=9.0)], liveness=LIVE), "voice_mismatch"),
    (dict(candidates=[_c("ann"), _c("bob", 3.5, 3.5)], liveness=LIVE), "ambiguous"),
    (dict(candidates=[_c("bob", 3.5, 3.5), _c("ann")], liveness=LIVE), "ambiguous"),
])
def test_deny_reasons(kwargs, reason):
    people = kwargs.pop("candidates")
    decision = decide(people, POLICY, **kwargs)
    assert (decision.decision, decision.reason) == ("deny", reason)
    assert decision.person is None


def test_failed_challenge_denies_with_its_own_reason():
    policy = _policy(challenge_required=True)
    failed = ChallengeResult(False, "not_answered", 1, 0, 4)
    decision = decide([_c("ann")], policy, liveness=LIVE, challenge=failed)
    assert (decision.decision, decision.reason) == ("deny", "challenge_failed")
    assert decision.details == {"challenge": "not_answered"}
    assert decide([_c("ann")], policy, liveness=LIVE).details == {"challenge": "not run"}
    # Answered with someone else's recordings of the digits: not this person's answers.
    bob_only = ChallengeResult(True, "", 4, 4, 4, frozenset({"bob"}))
    assert decide([_c("ann")], policy, liveness=LIVE, challenge=bob_only).reason == "challenge_failed"
    ann = ChallengeResult(True, "", 4, 4, 4, frozenset({"ann"}))
    assert decide([_c("ann")], policy, liveness=LIVE, challenge=ann).reason == "match"
    # Without a prompt device the challenge is not asked for (the door as before).
    assert decide([_c("ann")], POLICY, liveness=LIVE, challenge=failed).reason == "match"


def test_deny_reports_the_scores_but_no_person():
    decision = decide([_c("ann", 2.0, 2.0), _c("bob", 1.0, 1.0)], POLICY, liveness=LIVE)
    assert decision.scores() == {"face": 2.0, "voice": 2.0, "fused": 4.0}
    assert decision.runner_up == 2.0 and decision.liveness == 0.6 and decision.person is None


def test_liveness_failure_names_its_cause():
    decision = decide([_c("ann")], POLICY, liveness=LivenessResult(False, 0.1, "no_sync"))
    assert decision.details == {"liveness": "no_sync"}
    assert decide([_c("ann")], POLICY).details == {"liveness": "not run"}


def test_match():
    decision = decide([_c("bob", 1.0, 1.0), _c("ann")], POLICY, liveness=LIVE)
    assert (decision.decision, decision.reason, decision.person) == ("accept", "match", "ann")
    assert decision.fused == 8.0 and decision.runner_up == 2.0 and decision.accepted


def test_nan_anywhere_denies_even_behind_a_clear_winner():
    # Sorted by a plain sort, NaN can hide a better score behind it; decide() must not accept.
    people = [_c("ann", fused=9.0), _c("cy", fused=math.nan), _c("bob", fused=9.5)]
    assert decide(people, POLICY, liveness=LIVE).decision == "deny"


def test_liveness_not_required():
    decision = decide([_c("ann")], _policy(liveness_required=False))
    assert decision.decision == "accept" and decision.liveness is None


def test_single_modality_matches():
    face_only = _policy(missing_modality="face_only")
    decision = decide([_c("ann", face=9.0, voice=None, fused=9.0)], face_only, problems=["no_speech"],
                      liveness=LIVE)
    assert (decision.decision, decision.reason, decision.person) == ("accept", "match_face_only", "ann")
    # Below the stricter single-modality threshold (8) even though above the fused one (5).
    assert decide([_c("ann", face=7.0, voice=None, fused=7.0)], face_only, problems=["no_speech"],
                  liveness=LIVE).reason == "no_match"
    # face_only never excuses a missing face.
    assert decide([_c("ann")], face_only, problems=["no_face"], liveness=LIVE).reason == "no_face"
    voice_only = _policy(missing_modality="voice_only")
    decision = decide([_c("ann", face=None, voice=9.0, fused=9.0)], voice_only, problems=["blurry"],
                      liveness=LIVE)
    assert (decision.decision, decision.reason) == ("accept", "match_voice_only")


# --- the early path ------------------------------------------------------------------------------
@st.composite
def early_cases(draw):
    import numpy as np

    from daemon.decide.evidence import Evidence
    from daemon.fuse.calibration import Calibration
    from daemon.fuse.fusion import FusionParams
    from daemon.state.templates import Person

    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def unit(n):
        v = rng.normal(size=n).astype(np.float32)
        return v / np.linalg.norm(v)

    people = [Person(name, unit(128)[None], unit(256)[None])
              for name in draw(st.lists(st.sampled_from(["ann", "bob", "cy"]), max_size=3, unique=True))]
    # Probes near an enrolled person (or anyone) so that accepts actually happen.
    target = draw(st.sampled_from(people)) if people and draw(st.booleans()) else None
    noise = draw(st.floats(0, 2))
    face = (target.face[0] if target else unit(128)) + noise * unit(128) * 0.3
    voice = (target.voice[0] if target else unit(256)) + noise * unit(256) * 0.3
    evidence = Evidence((face,), draw(st.floats(0, 1)), (), voice, draw(st.floats(0, 6)), (),
                        draw(liveness_results), draw(errors))
    fusion = FusionParams(Calibration(draw(st.floats(1, 200)), draw(st.floats(-150, 0))),
                          Calibration(draw(st.floats(1, 200)), draw(st.floats(-150, 0))))
    return people, evidence, fusion


@settings(max_examples=EXAMPLES, deadline=None)
@given(early_cases(), policies, st.floats(0, 10), st.floats(0.1, 5), st.booleans())
def test_an_early_accept_is_an_accept_of_the_same_evidence_with_margin_to_spare(case, policy, margin,
                                                                              min_speech, locked_out):
    from daemon.decide.evidence import decide_attempt, decide_early

    people, evidence, fusion = case
    early = decide_early(evidence, people, fusion, policy, margin=margin, min_speech_seconds=min_speech,
                         locked_out=locked_out)
    if early is None:
        return
    normal = decide_attempt(evidence, people, fusion, policy, locked_out=locked_out)
    assert early.accepted and normal.accepted and early.person == normal.person
    assert not locked_out and evidence.error is None and evidence.speech_seconds >= min_speech
    assert early.fused >= policy.threshold + margin


def test_the_early_path_accepts_a_clear_match_and_never_denies():
    import numpy as np

    from daemon.decide.evidence import Evidence, decide_early
    from daemon.fuse.calibration import Calibration
    from daemon.fuse.fusion import FusionParams
    from daemon.state.templates import Person

    face, voice = np.eye(128, dtype=np.float32)[0], np.eye(256, dtype=np.float32)[0]
    ann = Person("ann", face[None], voice[None])
    fusion = FusionParams(Calibration(20.0, -10.0), Calibration(20.0, -10.0))
    policy = Policy(threshold=5.0, margin=2.0, liveness_required=True)
    live = Evidence((face,), 0.9, (), voice, 2.0, (), LIVE)
    assert decide_early(live, [ann], fusion, policy, margin=2.0, min_speech_seconds=1.5).person == "ann"
    # Too little speech, a failed liveness check or a score short of the margin: no early decision.
    short = Evidence((face,), 0.9, (), voice, 1.0, (), LIVE)
    assert decide_early(short, [ann], fusion, policy, margin=2.0, min_speech_seconds=1.5) is None
    dead = Evidence((face,), 0.9, (), voice, 2.0, (), LivenessResult(False, 0.1, "not_in_sync"))
    assert decide_early(dead, [ann], fusion, policy, margin=2.0, min_speech_seconds=1.5) is None
    assert decide_early(live, [ann], fusion, policy, margin=30.0, min_speech_seconds=1.5) is None
