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
    assert main([str(root), "--out", str(out), "--bootstrap", "20", "--rounds", "40"]) == 0
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
    assert fused["calibration"]["face"]["a"] > 0 and fused["calibration"]["voice"]["a"] > 0
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
    assert main([str(root), "--out", str(out), "--bootstrap", "0", "--rounds", "40"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["timing"]["files_from_cache"] == again["timing"]["files"]
    assert again["face"]["eer"] == first["face"]["eer"]
    assert again["voice"]["eer_by_duration"] == first["voice"]["eer_by_duration"]
