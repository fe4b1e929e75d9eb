"""The commissioning tool: guided genuine attempts at the door, rates with intervals, nothing kept."""

import random

from door_harness import ScriptedAudio, ScriptedFrames
from test_challenge_door import answering_scene, challenged, enrol_theo  # noqa: F401
from daemon.challenge.commission import format_report, summarise


def test_summary_counts_rejects_and_challenge_failures_with_intervals():
    rows = {"ann": [{"accepted_as": "ann", "reason": "match", "challenge": None, "latency_ms": 120.0}] * 9
            + [{"accepted_as": None, "reason": "challenge_failed", "challenge": "wrong_answer",
                "latency_ms": 130.0}],
            "bob": [{"accepted_as": "ann", "reason": "match", "challenge": None, "latency_ms": 100.0}]}
    report = summarise(rows)
    ann, overall = report["people"]["ann"], report["overall"]
    assert ann["false_reject"]["errors"] == 1 and ann["false_reject"]["trials"] == 10
    assert ann["challenge_failure"]["rate"] == 0.1 and ann["challenge_reasons"] == {"wrong_answer": 1}
    low, high = ann["false_reject"]["ci95"]
    assert 0.0 < low < 0.1 < high < 0.5
    # Bob let in as Ann is a false reject for Bob (and worse: the report shows it as a match).
    assert report["people"]["bob"]["false_reject"]["errors"] == 1
    assert overall["false_reject"]["errors"] == 2 and overall["false_reject"]["trials"] == 11
    assert "ALL RESIDENTS: false rejects 2/11" in format_report(report)


def test_commissioning_a_resident_who_answers_keeps_nothing(challenged, pipeline):  # noqa: F811
    from daemon.challenge.commission import commission
    enrol_theo(pipeline, challenged)
    before = sorted(p.relative_to(challenged.state_dir) for p in challenged.state_dir.rglob("*"))
    video, audio = answering_scene(seed=11)
    asked, said = [], []
    report = commission(challenged, None, 1, ask=asked.append, say=said.append,
                        sources=(lambda: ScriptedFrames(video), lambda: ScriptedAudio(audio)),
                        pipeline=pipeline, rng=random.Random(11), wait_s=25.0)
    assert len(asked) == 1 and "theo: attempt 1/1" in asked[0]
    rejected = report["people"]["theo"]["false_reject"]
    assert (rejected["errors"], rejected["trials"]) == (0, 1)
    assert rejected["ci95"][0] == 0.0 and abs(rejected["ci95"][1] - 0.975) < 1e-9
    assert said == ["  let in"]
    after = sorted(p.relative_to(challenged.state_dir) for p in challenged.state_dir.rglob("*"))
    assert after == before  # no lockout counter, no recordings, nothing new
