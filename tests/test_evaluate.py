"""tools/evaluate.py end to end on a tiny real data folder (real models, real files)."""

import json

import cv2
import numpy as np
import pytest

from tiny_data import build
from tools.evaluate import main


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    root = build(tmp_path_factory.mktemp("data"))
    # A photo without a face: it must count as a failure to acquire, not vanish from the trials.
    blank = np.full((250, 250, 3), 128, np.uint8)
    cv2.imwrite(str(root / "faces/lfw/Adam_Sandler/0003.jpg"), blank)
    out = tmp_path_factory.mktemp("out")
    assert main([str(root), "--out", str(out), "--bootstrap", "20", "--rounds", "40", "--splits", "3",
                 "--skip-liveness"]) == 0
    return root, out, json.loads((out / "metrics.json").read_text())


def test_metrics_have_the_documented_keys(evaluation):
    _, out, m = evaluation
    for section in ("face", "voice", "fused"):
        assert {"eer", "n_genuine", "n_impostor", "fnmr_at_fmr"} <= set(m[section])
        assert set(m[section]["fnmr_at_fmr"]) == {"1e-2", "1e-3", "1e-4"}
        for entry in m[section]["fnmr_at_fmr"].values():
            assert {"fnmr", "n_impostor", "supported"} <= set(entry)
            assert entry["supported"] is False  # far fewer than 30000 impostor trials here
    assert set(m["voice"]["eer_by_duration"]) == {"1s", "2s", "3s", "full"}
    assert m["voice"]["eer"] == m["voice"]["eer_by_duration"]["full"]
    assert "lfw_accuracy" in m["face"]
    assert "open_set_far" in m["fused"]
    assert "short" in m["voice"]
    assert (out / "report.md").read_text().startswith("# avid evaluation")
    try:
        import matplotlib  # noqa: F401
        assert (out / "det.png").stat().st_size > 0
    except ImportError:
        assert "matplotlib" in m["plots"][0]


def test_values_are_sane(evaluation):
    _, _, m = evaluation
    face, voice, fused = m["face"], m["voice"], m["fused"]
    assert face["lfw_accuracy"] >= 0.75  # 4 LFW pairs; the encoder gets such pairs right
    assert face["lfw"]["pairs_used"] == 4
    # The two genuine pairs with the faceless photo are non-matches; the other six are found.
    assert face["eer"] <= 2 / 8 + 1e-9
    assert face["by_source"]["lfw"]["fnmr_at_fmr"]["1e-2"]["fnmr"] >= 2 / 8
    assert voice["eer"] < 0.35
    for section in (face, voice, fused):
        assert 0.0 <= section["eer"] <= 1.0
        assert section["n_genuine"] > 0 and section["n_impostor"] > 0
    assert voice["n_speakers"] == 6  # 4 speechocean762 speakers and 2 segmented singletons
    assert 0.0 <= fused["open_set_far"] <= 1.0
    first = fused["calibration"]["first_split"]
    assert first["face"]["a"] > 0 and first["voice"]["a"] > 0
    assert voice["short"]["sources"] == ["fsdd"]
    assert voice["short"]["n_genuine"] > 0


def test_a_missed_face_counts_as_a_non_match(evaluation):
    _, _, m = evaluation
    face = m["face"]
    assert face["failures_to_acquire"] == 1
    assert face["images"] == 13
    # Adam_Sandler has 3 images now: 3 genuine pairs; the other five identities 1 each.
    assert face["n_genuine"] == 3 + 5
    assert face["n_impostor"] == (13 * 12) // 2 - 8


def test_a_rerun_reads_every_embedding_from_the_cache(evaluation, tmp_path):
    root, out, first = evaluation
    assert main([str(root), "--out", str(out), "--bootstrap", "0", "--rounds", "40", "--splits", "1",
                 "--skip-liveness"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["timing"]["files_from_cache"] == again["timing"]["files"]
    assert again["face"]["eer"] == first["face"]["eer"]
    assert again["voice"]["eer_by_duration"] == first["voice"]["eer_by_duration"]


def test_fused_figures_come_from_repeated_disjoint_splits(evaluation):
    _, out, m = evaluation
    fused = m["fused"]
    assert fused["splits"] == 3 and len(fused["per_split"]) == 3
    assert [p["seed"] for p in fused["per_split"]] == [1, 2, 3]
    # Pooled over the splits: the pooled counts are the sums of the splits' counts.
    assert fused["n_genuine"] == sum(p["n_genuine"] for p in fused["per_split"])
    assert fused["n_impostor"] == sum(p["n_impostor"] for p in fused["per_split"])
    # Far fewer than 30000 impostor trials: no FNMR at FMR 1e-4 is claimed.
    at_1e4 = fused["fnmr_at_fmr"]["1e-4"]
    assert at_1e4["supported"] is False and at_1e4["fnmr"] is None and "unsupported" in at_1e4["note"]
    frr = fused["door"]["false_reject"]
    assert frr["trials"] == fused["n_genuine"] and frr["ci95"][0] <= frr["rate"] <= frr["ci95"][1]
    assert fused["door_frr"] == frr["rate"]
    assert "FNMR at FMR 1e-4 is reported only" in (out / "report.md").read_text()


def test_false_rejects_have_reasons_and_one_modality_attacks_are_measured(evaluation):
    _, out, m = evaluation
    fused = m["fused"]
    reasons = fused["door"]["false_reject_reasons"]
    assert sum(reasons[k] for k in ("input", "no_match", "face_mismatch", "voice_mismatch")) == \
        fused["door"]["false_reject"]["errors"]
    attacks = fused["modality_attacks"]
    by_level = attacks["by_min_modality_llr"]
    assert set(by_level) == {"none", "0", "-1", "-2", "-4"} and attacks["shipped_min_modality_llr"] == 0.0
    # the shipped level is the door's own rule: the same counts as fused.door
    assert by_level["0"]["false_reject"]["errors"] == fused["door"]["false_reject"]["errors"]
    assert by_level["0"]["false_accept"]["errors"] == fused["door"]["false_accept"]["errors"]
    order = ["0", "-1", "-2", "-4", "none"]  # each level lets through at least what a stricter one does
    for kind in ("false_accept", "own_face_other_voice", "other_face_own_voice"):
        counts = [by_level[level][kind]["errors"] for level in order]
        assert counts == sorted(counts) and by_level["0"][kind]["trials"] > 0
    rejects = [by_level[level]["false_reject"]["errors"] for level in order]
    assert rejects == sorted(rejects, reverse=True)
    assert "One-modality attacks" in (out / "report.md").read_text()


def test_open_set_early_accepts_and_failures_have_their_own_keys(evaluation):
    _, _, m = evaluation
    fused = m["fused"]
    assert set(fused["open_set_far_by_gallery"]) == {"10", "50", "100"}
    for entry in fused["open_set_far_by_gallery"].values():
        assert entry["far"]["trials"] > 0 and 0.0 <= entry["far"]["rate"] <= 1.0
    assert fused["open_set_far"] == fused["open_set_far_by_gallery"]["10"]["far"]["rate"]
    early = fused["early"]["fmr_by_probe_seconds"]
    assert set(early) == {"1", "2"}
    assert all(e["trials"] == fused["n_impostor"] for e in early.values())
    assert set(fused["failures"]) >= {"by_kind", "genuine_by_kind"}


def test_voice_by_enrolment_utterances_and_mirror_figures(evaluation):
    _, _, m = evaluation
    by_n = m["voice"]["by_enrol_utterances"]
    assert set(by_n) == {"1", "2", "3"}
    assert by_n["1"]["eer"] == m["voice"]["eer"]  # voice.eer stays the one-shot figure
    assert by_n["2"]["n_speakers"] > 0  # speechocean762 speakers have three utterances
    assert "speechocean762" in m["voice"]["by_source"]
    lfw = m["face"]["lfw"]
    assert 0.0 <= lfw["single_pass_accuracy"] <= 1.0
    assert lfw["accuracy_ci95"][0] <= lfw["accuracy"] <= lfw["accuracy_ci95"][1]


def test_the_door_is_also_tested_with_people_enrolled_from_several_utterances(evaluation):
    _, out, m = evaluation
    by_enrolment = m["fused"]["door_by_enrol_utterances"]
    assert set(by_enrolment) == {"2", "3"}
    two = by_enrolment["2"]
    several, alone = two["enrolled_from_2"], two["enrolled_from_1"]
    # the same people on the same attempts, enrolled from two utterances or from the first alone
    assert several["false_reject"]["trials"] == alone["false_reject"]["trials"] > 0
    assert several["false_accept"]["trials"] == alone["false_accept"]["trials"]
    assert several["people_per_split"] == alone["people_per_split"] > 0
    # only the segmented singletons have a fourth unit to attempt with after enrolling three
    three = by_enrolment["3"]
    assert three["enrolled_from_3"]["false_reject"]["trials"] == three["enrolled_from_1"]["false_reject"]["trials"]
    assert three["enrolled_from_3"]["people_per_split"] < several["people_per_split"]
    assert "enrolled from 2 utterances" in (out / "report.md").read_text()


def test_voices_of_the_speakers_a_model_was_tuned_on_are_left_out(evaluation, tmp_path):
    from daemon.inference.tflite import DEFAULT_MODELS_DIR
    from tools.evaluate import speakers_trained_in

    root, _, metrics = evaluation
    assert speakers_trained_in(None) == frozenset()
    manifest = json.loads((DEFAULT_MODELS_DIR / "manifest.json").read_text())
    speakers = sorted(f"speechocean762/{p.name}" for p in (root / "voices/speechocean762").iterdir())[:2]
    manifest["models"]["speaker_encoder"]["fine_tuned"] = {"speakers": speakers}
    tuned = tmp_path / "tuned"
    tuned.mkdir()
    (tuned / "manifest.json").write_text(json.dumps(manifest))
    assert speakers_trained_in(tuned) == set(speakers)
    out = tmp_path / "out"
    assert main([str(root), "--out", str(out), "--bootstrap", "0", "--rounds", "20", "--splits", "2",
                 "--skip-liveness", "--leave-out-speakers-of", str(tuned)]) == 0
    left = json.loads((out / "metrics.json").read_text())
    assert left["voice"]["sentence_units"] < metrics["voice"]["sentence_units"]
    assert left["face"]["lfw_accuracy"] == metrics["face"]["lfw_accuracy"]
