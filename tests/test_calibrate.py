"""daemon/offline/calibrate.py: the fitted threshold holds on held-apart scores, the margin rule,
the calibration file, and a calibration on a tiny real data folder."""

import json
import math

import numpy as np
import pytest

from daemon.decide.decision import Policy, decide
from daemon.errors import ConfigError
from daemon.fuse.fusion import Candidate
from daemon.pipeline import Pipeline
from daemon.offline.calibrate import (
    MIN_MARGIN, MODALITY_ATTACKS, FusedTrials, OpenSetAttempt, calibrate, chimeras_for, fit_margin,
    fit_system, fusion_params, hardest_impostors, load_calibration, modality_attack_trials, open_set_rates,
    open_set_threshold, operating_point_lines, save_calibration,
)
from daemon.offline.dataset import Chimera, scan
from daemon.offline.embeddings import extract
from daemon.offline.fitting import fit_calibration, fit_operating_point
from tiny_data import build


def synthetic_cosines(rng, n_genuine, n_impostor):
    genuine = np.clip(rng.normal(0.62, 0.12, n_genuine), -1, 1)
    impostor = np.clip(rng.normal(0.08, 0.11, n_impostor), -1, 1)
    return genuine, impostor


@pytest.mark.parametrize("target", [1e-2, 1e-3])
def test_threshold_fitted_on_one_half_holds_its_fmr_on_the_other(target):
    rng = np.random.default_rng(7)
    fit_g, fit_i = synthetic_cosines(rng, 3000, 100_000)
    held_g, held_i = synthetic_cosines(rng, 3000, 100_000)
    calibration = fit_calibration(fit_g, fit_i)
    point = fit_operating_point(calibration.llr(fit_g), calibration.llr(fit_i), target)
    assert point.supported
    held_fmr = np.mean(calibration.llr(held_i) >= point.threshold)
    expected = target * held_i.size
    # Binomial sampling error of two independent sets of 1e5 impostors: within 5 sigma.
    assert abs(held_fmr * held_i.size - expected) <= 5 * math.sqrt(2 * expected)
    held_fnmr = np.mean(calibration.llr(held_g) < point.threshold)
    assert abs(held_fnmr - point.fnmr) < 0.03


def candidates(*scores):
    ordered = sorted(scores, reverse=True)
    return [Candidate(f"p{i}", 0.5, 0.5, s / 2, s / 2, s) for i, s in enumerate(ordered)]


def test_open_set_rates_count_strangers_and_wrong_people():
    attempts = [
        OpenSetAttempt(candidates(9.0, -5.0), [], None),          # stranger over threshold: accepted
        OpenSetAttempt(candidates(9.0, 8.0), [], None),           # stranger, ambiguous: denied
        OpenSetAttempt(candidates(1.0, -5.0), [], None),          # stranger under threshold
        OpenSetAttempt(candidates(12.0, -3.0), [], "p0"),         # enrolled, right person
        OpenSetAttempt(candidates(12.0, -3.0), [], "p1"),         # enrolled, taken for p0
        OpenSetAttempt(candidates(12.0, -3.0), ["no_face"], "p0"),  # no face: denied
    ]
    rates = open_set_rates(attempts, threshold=5.0, margin=MIN_MARGIN)
    assert rates["stranger_attempts"] == 3 and rates["strangers_accepted"] == 1
    assert rates["far"] == pytest.approx(1 / 3)
    assert rates["correct_accepts"] == 1 and rates["wrong_person_accepts"] == 1
    assert rates["false_accept_rate"] == pytest.approx(2 / 6)
    policy = Policy(threshold=5.0, margin=MIN_MARGIN, liveness_required=False)
    assert decide(attempts[0].candidates, policy).accepted


def test_margin_is_raised_until_enrolled_people_are_not_taken_for_each_other():
    # Enrolled people taken for someone else, leading the true person by these margins.
    confused = [OpenSetAttempt(candidates(9.0, 9.0 - lead), [], "p1") for lead in (5.0, 6.0, 7.2)]
    clear = [OpenSetAttempt(candidates(12.0, -9.0), [], "p0") for _ in range(997)]
    margin, met = fit_margin(confused + clear, threshold=5.0, target=5e-4)
    assert met
    assert margin == pytest.approx(MIN_MARGIN + 3.0)  # the first 0.5-nat step above every lead
    rates = open_set_rates(confused + clear, 5.0, margin)
    assert rates["wrong_person_accepts"] == 0 and rates["correct_accepts"] == 997
    # One wrong accept in 1000 attempts is allowed at 1e-3: the 7.2-nat lead may stay.
    margin, met = fit_margin(confused + clear, threshold=5.0, target=1e-3)
    assert margin == pytest.approx(MIN_MARGIN + 1.5)
    assert fit_margin(clear, threshold=5.0, target=1e-3) == (MIN_MARGIN, True)


def test_open_set_threshold_turns_away_all_but_the_target_share_of_strangers():
    rng = np.random.default_rng(3)
    # Positive scores, so that decide()'s per-modality check (each LLR >= 0) never interferes.
    strangers = [OpenSetAttempt(candidates(s, s - 10.0), [], None) for s in rng.normal(20.0, 3.0, 2000)]
    faceless = [OpenSetAttempt(candidates(50.0, 0.0), ["no_face"], None)] * 10
    enrolled = [OpenSetAttempt(candidates(30.0, -5.0), [], "p0")] * 50  # never counts
    attempts = strangers + faceless + enrolled
    threshold = open_set_threshold(attempts, target=1e-2)
    best = np.array([a.candidates[0].fused for a in strangers])
    assert np.count_nonzero(best >= threshold) == 20  # floor(1e-2 * 2010)
    assert np.count_nonzero(best >= np.nextafter(threshold, -np.inf)) == 21
    rates = open_set_rates(attempts, threshold, MIN_MARGIN)
    assert rates["far"] <= 1e-2
    assert rates["strangers_accepted"] == 20


def test_hardest_impostors_names_the_worst_pairs_once_each_and_skips_genuine_and_missing():
    people = [Chimera(f"c{i}", f"lfw/face{i}", f"vctk/voice{i}", "", "", ()) for i in range(4)]
    # attempts: (probe, enrolled, fused, face, voice, missing); c0 -> c1 appears twice
    rows = [("c0", "c0", 30.0, 12.0, 18.0, False),   # genuine: never listed
            ("c0", "c1", 9.0, 0.5, 8.5, False),
            ("c0", "c1", 7.0, 0.4, 6.6, False),      # the same pair again: listed once
            ("c2", "c3", 99.0, 0.0, 0.0, True),      # a missing modality: scored at the floor
            ("c3", "c2", 4.0, 3.5, 0.5, False),
            ("c1", "c0", -3.0, -1.0, -2.0, False)]
    fused = FusedTrials(np.array([r[2] for r in rows]), np.array([r[0] == r[1] for r in rows]),
                        [r[1] for r in rows], 1, np.array([r[5] for r in rows]),
                        np.array([r[3] for r in rows]), np.array([r[4] for r in rows]),
                        probes=[r[0] for r in rows])
    worst = hardest_impostors(fused, people, count=2)
    assert [(w["fused"], w["voice_llr"]) for w in worst] == [(9.0, 8.5), (4.0, 0.5)]
    assert worst[0]["probe"] == {"face": "lfw/face0", "voice": "vctk/voice0"}
    assert worst[0]["enrolled"] == {"face": "lfw/face1", "voice": "vctk/voice1"}
    assert len(hardest_impostors(fused, people, count=10)) == 3


def example_result():
    return {"schema": 1, "models": "0123456789abcdef", "face": {"a": 20.0, "b": -9.0},
            "voice": {"a": 30.0, "b": -21.0}, "threshold": 6.5, "margin": MIN_MARGIN,
            "target_fmr": 1e-4, "expected_fnmr": 0.02, "fnmr_ci": [0.01, 0.04], "n_genuine": 500,
            "n_impostor": 40000, "data": "/data", "created": "2026-11-22T00:00:00+00:00"}


def test_calibration_file_round_trips(tmp_path):
    path = tmp_path / "state" / "calibration.json"
    save_calibration(path, example_result())
    assert load_calibration(path) == example_result()
    params = fusion_params(load_calibration(path))
    assert params.face.llr(0.5) == pytest.approx(1.0)
    assert params.voice.llr(0.7) == pytest.approx(0.0)


@pytest.mark.parametrize("damage", [
    lambda r: r.pop("threshold"),
    lambda r: r.update(schema=2),
    lambda r: r.update(face={"a": "x", "b": 0}),
    lambda r: r.update(margin=float("nan")),
])
def test_a_malformed_calibration_file_is_refused(tmp_path, damage):
    result = example_result()
    damage(result)
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(result))
    with pytest.raises(ConfigError):
        load_calibration(path)


def test_an_unreadable_calibration_file_is_refused(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError):
        load_calibration(path)
    with pytest.raises(ConfigError):
        load_calibration(tmp_path / "missing.json")


def test_calibrate_on_real_files_gives_a_usable_file(tmp_path):
    root = build(tmp_path / "data")
    pipeline = Pipeline()
    result = calibrate(pipeline, root, target_fmr=0.05, seed=3, cache_dir=tmp_path / "cache")
    assert result["models"] == pipeline.models_fingerprint
    assert result["face"]["a"] > 0 and result["voice"]["a"] > 0
    assert math.isfinite(result["threshold"]) and result["margin"] >= MIN_MARGIN
    assert result["n_genuine"] > 0 and result["n_impostor"] > 0
    assert result["supported"] == (result["n_impostor"] >= 60)  # rule of three at 5 %
    assert 0.0 <= result["fnmr_ci"][0] <= result["expected_fnmr"] <= result["fnmr_ci"][1] <= 1.0
    worst = result["hardest_impostors"]
    assert worst and [w["fused"] for w in worst] == sorted((w["fused"] for w in worst), reverse=True)
    assert all(w["probe"]["face"] != w["enrolled"]["face"] for w in worst)
    door = result["door_one_to_one"]
    assert sum(door["false_reject_reasons"].values()) == round(door["fnmr"] * door["n_genuine"])
    two = result["door_one_to_one_by_enrol_utterances"]["2"]
    assert two["enrolled_from_2"]["threshold"] == result["threshold"]
    assert two["enrolled_from_2"]["n_genuine"] == two["enrolled_from_1"]["n_genuine"] > 0
    assert two["enrolled_from_2"]["people"] == two["enrolled_from_1"]["people"] == \
        sum(two["enrolled_from_2"]["people_by_voice_source"].values())
    assert two["enrolled_from_2"]["fnmr_ci"][0] <= two["enrolled_from_2"]["fnmr"] <= two["enrolled_from_2"]["fnmr_ci"][1]
    save_calibration(tmp_path / "calibration.json", result)
    assert load_calibration(tmp_path / "calibration.json") == result
    again = calibrate(pipeline, root, target_fmr=0.05, seed=3, cache_dir=tmp_path / "cache")
    assert {k: v for k, v in again.items() if k != "created"} == \
           {k: v for k, v in result.items() if k != "created"}


def test_door_rates_apply_the_per_modality_rule_and_count_missing_faces_as_rejections():
    nan = float("nan")
    trials = FusedTrials(
        scores=np.array([9.0, 9.0, -20.0, 7.0, 9.0]),
        genuine=np.array([True, True, True, False, False]),
        subjects=["a", "a", "a", "b", "b"], n_missing=1,
        missing=np.array([False, False, True, False, False]),
        face_llr=np.array([12.0, 15.0, nan, 10.0, 11.0]),
        voice_llr=np.array([-3.0, 2.0, nan, -3.0, 1.0]))
    rates = trials.door_rates(threshold=5.0, min_modality_llr=0.0)
    assert rates["fnmr"] == pytest.approx(2 / 3)  # a voice pointing elsewhere, and a missing face
    assert rates["fmr"] == pytest.approx(1 / 2)
    assert trials.door_rates(threshold=5.0, min_modality_llr=-5.0)["fnmr"] == pytest.approx(1 / 3)


def test_reject_reasons_name_the_first_rule_that_refuses_each_genuine_attempt():
    nan = float("nan")
    trials = FusedTrials(
        scores=np.array([9.0, 2.0, 9.0, 9.0, -20.0, 9.0, 9.0]),
        genuine=np.array([True, True, True, True, True, True, False]),
        subjects=["a"] * 7, n_missing=1,
        missing=np.array([False, False, False, False, True, False, False]),
        face_llr=np.array([12.0, -1.0, -0.5, 11.0, nan, 10.0, 10.0]),
        voice_llr=np.array([-3.0, -2.0, -1.0, 2.0, nan, -0.5, -3.0]))
    reasons = trials.door_reject_reasons(threshold=5.0, min_modality_llr=0.0)
    # under the threshold comes first even when a modality is negative too; then the face; the
    # impostor attempt (last) is not a reject at all
    assert reasons == {"voice_mismatch": 2, "no_match": 1, "face_mismatch": 1, "input": 1}
    assert sum(reasons.values()) == round(trials.door_rates(5.0, 0.0)["fnmr"] * 6)
    lowered = trials.door_reject_reasons(threshold=5.0, min_modality_llr=-1.0)
    assert lowered == {"voice_mismatch": 1, "no_match": 1, "input": 1}
    assert list(trials.door_accepts(5.0, -np.inf)) == [True, False, True, True, False, True, True]


def test_modality_attacks_carry_one_modality_of_the_person_attacked(tmp_path):
    data = scan(build(tmp_path / "data"))
    emb = extract(Pipeline(), data, tmp_path / "cache")
    chimeras = chimeras_for(data, emb, 1)
    cohort = data.cohort_sources()
    fit = fit_system(data, emb, 1e-2, 1, rounds=20)
    attacks = modality_attack_trials(chimeras, emb, fit.params, cohort, seed=1, others_per_person=3)
    assert set(attacks) == set(MODALITY_ATTACKS)
    own_face, own_voice = attacks["own_face_other_voice"], attacks["other_face_own_voice"]
    assert own_face.scores.size == own_voice.scores.size > 0 and not own_face.genuine.any()
    by_name = {c.name: c for c in chimeras}
    for subject, probe in zip(own_face.subjects, own_face.probes):
        assert subject != probe and by_name[subject].compatible(by_name[probe], cohort)
    scored = ~own_face.missing & ~own_voice.missing
    # the attacked person's own face scores like a genuine face, the other's voice like an impostor's
    assert np.median(own_face.face_llr[scored]) > 0 > np.median(own_face.voice_llr[scored])
    assert np.median(own_voice.voice_llr[scored]) > 0 > np.median(own_voice.face_llr[scored])
    # without the per-modality rule more of them get through, never fewer
    threshold = fit.operating_point.threshold
    for trials in attacks.values():
        assert trials.door_accepts(threshold, -np.inf).sum() >= trials.door_accepts(threshold, 0.0).sum()


def test_the_installer_reads_why_the_door_refuses_people():
    result = {"threshold": 9.2, "target_fmr": 1e-4, "n_impostor": 45196, "supported": True,
              "expected_fnmr": 0.07, "fnmr_ci": [0.05, 0.1],
              "door_one_to_one": {"fnmr": 27 / 366, "n_genuine": 366,
                                  "false_reject_reasons": {"no_match": 5, "voice_mismatch": 20, "input": 2}}}
    lines = operating_point_lines(result)
    why = [line for line in lines if line.startswith("the door's rule refuses 7.4 % of them: ")]
    assert len(why) == 1
    # the commonest reason first, each named for the installer
    assert why[0].index("20 with a voice that alone points elsewhere (decision.min_modality_llr)") \
        < why[0].index("5 under the threshold") < why[0].index("2 without a usable face or speech")
    del result["door_one_to_one"]["false_reject_reasons"]  # a file written before the reasons existed
    assert not any(line.startswith("the door's rule refuses") for line in operating_point_lines(result))


def test_avid_calibrate_writes_the_file_and_says_what_to_expect(tmp_path, monkeypatch, capsys):
    from daemon.cli import main

    root = build(tmp_path / "data")
    monkeypatch.setenv("AVID_STATE_DIR", str(tmp_path / "state"))
    assert main(["calibrate", str(root), "--target-fmr", "0.05", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    written = load_calibration(tmp_path / "state" / "calibration.json")
    assert f"threshold {written['threshold']:.2f} nats" in out
    assert f"expected false rejects {100 * written['expected_fnmr']:.1f} %" in out
    two = written["door_one_to_one_by_enrol_utterances"]["2"]
    assert (f"people enrolled from 2 utterances: {100 * two['enrolled_from_2']['fnmr']:.1f} % false rejects"
            in out)
