"""tools/bench.py --quick end to end: it runs, and bench.json has every documented key.

Timings are not asserted (they depend on the machine); only that each number exists and is
positive, so the benchmark cannot silently lose a measurement.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
STAGES = ("face_detection", "face_quality", "alignment", "face_encoder", "face_landmarks", "mel",
          "speaker_encoder", "vad", "fusion_decision")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    run = subprocess.run([sys.executable, str(REPO / "tools" / "bench.py"), "--out", str(out), "--quick"],
                         capture_output=True, text=True, timeout=240, cwd=REPO)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads((out / "bench.json").read_text()), run.stdout


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def test_decision_latency_and_hangover_are_reported_apart(bench):
    result, _ = bench
    assert positive(result["decision_latency_ms"]["p50"])
    assert positive(result["decision_latency_ms"]["p90"])
    assert result["decision_latency_ms"]["p90"] >= result["decision_latency_ms"]["p50"]
    assert result["vad_hangover_ms"] == 600


def test_time_to_unlock_is_measured_from_the_end_of_speech(bench):
    result, _ = bench
    unlock = result["time_to_unlock_ms"]
    assert unlock["genuine_attempts"] == 1 and 0 <= unlock["accepted"] <= 1
    assert unlock["n"] == unlock["accepted"] == len(unlock["samples"])
    if unlock["n"]:  # signed: negative when the door opened before the person finished
        assert isinstance(unlock["p50"], float) and abs(unlock["p50"]) < 5000


def test_the_true_end_of_speech_is_found_on_a_clean_recording():
    from tools.bench import true_speech_end_samples

    rng = np.random.default_rng(1)
    speech = np.concatenate([rng.normal(0, 1e-3, 8000), 0.3 * np.sin(np.arange(16000) * 0.2),
                             rng.normal(0, 1e-3, 8000)]).astype(np.float32)
    end = true_speech_end_samples(speech)
    assert 23000 <= end <= 24500  # 1.5 s, to within a VAD frame


@pytest.mark.parametrize("section", ["stages", "stages_all_cores"])
def test_every_stage_has_median_and_p90(bench, section):
    result, _ = bench
    assert set(STAGES) <= set(result[section])
    for name in STAGES:
        stage = result[section][name]
        assert positive(stage["p50_ms"]) and positive(stage["p90_ms"]), (section, name, stage)
        assert stage["p90_ms"] >= stage["p50_ms"]


def test_idle_load_memory_and_machine(bench):
    result, _ = bench
    assert positive(result["idle_cpu_percent"])
    assert result["idle_cpu_percent"] == result["idle_cpu_percent_by_scene"]["face_no_speech"]
    assert positive(result["idle_cpu_percent_by_scene"]["nobody"])
    for scene in result["idle"].values():
        assert scene["frames_per_second"] > 5
    assert positive(result["peak_rss_mb"])
    assert positive(result["machine"]["cores"])
    assert result["machine"]["python"]
    assert positive(result["per_decision"]["total"]["p50_ms"])
    assert result["per_decision"]["faces_found"] == result["per_decision"]["frames"]


def test_quick_run_skips_the_baseline_and_prints_the_table(bench):
    result, stdout = bench
    assert "baseline" not in result and "baseline_ratio" not in result
    assert "decision latency" in stdout and "peak RSS" in stdout
    assert set(result["targets"]) >= {"decision_latency_p50_ms", "idle_cpu_percent", "peak_rss_mb"}


def test_model_macs_count_every_iteration_of_the_speaker_encoders_loop():
    from daemon.embed.mel import N_MELS
    from daemon.embed.speaker_encoder import WINDOW_FRAMES
    from tools.bench import model_macs

    macs = model_macs()
    layers, hidden, gates = 3, 256, 4 * 256
    # layer 0's input product over the window, then one wavefront step per diagonal with layer 0's
    # recurrent product (two int8 terms: the weights and their rounding error) and layers 1-2's
    # input and recurrent products, then the output layer
    expected = (WINDOW_FRAMES * N_MELS * gates
                + (WINDOW_FRAMES + layers - 1) * 2 * layers * hidden * gates
                + hidden * hidden)
    assert macs["speaker_encoder"]["macs"] == expected
    # the convolutional models' counts are those of their single graph
    assert 250e6 < macs["face_encoder"]["macs"] < 300e6
    assert 20e6 < macs["face_detector"]["macs"] < 40e6
