"""The start-up self-test passes the shipped models on this machine and refuses a model whose
outputs are wrong: perturbed weights (with every hash "fixed"), a changed reference output, a
corrupt or stale reference file. The models and the runtime are real throughout."""

import json
import platform
import shutil

import numpy as np
import pytest

from daemon.cli import main
from daemon.inference.tflite import DEFAULT_MODELS_DIR, read_manifest, sha256_of
from daemon.errors import ModelError, ModelSelfTestError
from daemon.inference.selftest import ModelCheck, compare, cpu_description, run_selftest
from tools.modelbuild.selftest_refs import TOLERANCES, write_npz


@pytest.fixture
def models_copy(tmp_path):
    target = tmp_path / "models"
    shutil.copytree(DEFAULT_MODELS_DIR, target, ignore=shutil.ignore_patterns("*.md"))
    return target


def _write_manifest(models_dir, manifest):
    (models_dir / "manifest.json").write_text(json.dumps(manifest))


def _perturb_weights(models_dir, name):
    """Scramble the largest int8 weight tensor of a model file in place; return the new sha256."""
    from ai_edge_litert.interpreter import Interpreter

    path = models_dir / read_manifest(models_dir)["models"][name]["file"]
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    weights = max((d for d in interpreter.get_tensor_details() if d["dtype"] == np.int8 and d["shape"].size > 1),
                  key=lambda d: int(np.prod(d["shape"])))
    data = interpreter.get_tensor(weights["index"]).tobytes()
    del interpreter
    content = path.read_bytes()
    offset = content.find(data)
    assert offset > 0 and content.count(data) == 1, "weight tensor not found once in the file"
    scrambled = np.frombuffer(data, np.int8)[::-1].tobytes()
    assert scrambled != data
    path.write_bytes(content[:offset] + scrambled + content[offset + len(data):])
    return sha256_of(path)


def test_shipped_models_pass_on_this_machine():
    report = run_selftest(DEFAULT_MODELS_DIR, num_threads=1)
    assert report.passed
    assert [c.name for c in report.checks] == list(read_manifest()["models"])
    for check in report.checks:
        assert check.worst_cosine >= TOLERANCES[check.name]["cosine_min"]
        assert check.worst_deviation <= TOLERANCES[check.name]["max_deviation"]
        assert check.samples >= 1
    assert platform.machine() in report.cpu and "ai-edge-litert" in report.runtime


def test_reuses_models_already_loaded(pipeline):
    models = {"face_detector": pipeline.detector.model, "face_encoder": pipeline.face_encoder.model}
    report = run_selftest(DEFAULT_MODELS_DIR, models=models)
    assert report.passed and len(report.checks) == len(read_manifest()["models"])


def test_perturbed_weights_with_updated_hashes_are_refused(models_copy):
    # Every hash agrees with the new file: only the outputs can tell that the model is wrong,
    # as with a CPU or runtime that computes garbage.
    new_sha = _perturb_weights(models_copy, "face_encoder")
    manifest = read_manifest(models_copy)
    manifest["models"]["face_encoder"]["sha256"] = new_sha
    manifest["selftest"]["models"]["face_encoder"]["model_sha256"] = new_sha
    _write_manifest(models_copy, manifest)
    with pytest.raises(ModelSelfTestError) as caught:
        run_selftest(models_copy, num_threads=1)
    message = str(caught.value)
    assert "'face_encoder' worst cosine" in message and "tolerance >= 0.99" in message
    assert platform.machine() in message and "ai-edge-litert" in message
    assert "door stays locked" in message
    assert [c.name for c in caught.value.report.failed] == ["face_encoder"]
    assert caught.value.report.failed[0].worst_cosine < 0.99
    assert isinstance(caught.value, ModelError)


def test_changed_reference_output_is_refused(models_copy):
    # The speaker references of alice and bob swapped: a different voice is far outside tolerance.
    manifest = read_manifest(models_copy)
    path = models_copy / manifest["selftest"]["file"]
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["speaker_encoder/out0"] = arrays["speaker_encoder/out0"][::-1].copy()
    write_npz(path, arrays)
    manifest["selftest"]["sha256"] = sha256_of(path)
    _write_manifest(models_copy, manifest)
    with pytest.raises(ModelSelfTestError, match="'speaker_encoder' worst cosine") as caught:
        run_selftest(models_copy)
    assert [c.name for c in caught.value.report.failed] == ["speaker_encoder"]


def test_corrupt_reference_file_is_refused(models_copy):
    path = models_copy / "selftest.npz"
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    with pytest.raises(ModelSelfTestError, match="selftest.npz has sha256"):
        run_selftest(models_copy)


def test_references_made_with_another_model_file_are_refused(models_copy):
    manifest = read_manifest(models_copy)
    manifest["selftest"]["models"]["face_detector"]["model_sha256"] = "0" * 64
    _write_manifest(models_copy, manifest)
    with pytest.raises(ModelSelfTestError, match="'face_detector': the self-test references were made"):
        run_selftest(models_copy)


@pytest.mark.parametrize("broken", ["no block", "no model entry"])
def test_missing_references_are_refused(models_copy, broken):
    manifest = read_manifest(models_copy)
    if broken == "no block":
        del manifest["selftest"]
    else:
        del manifest["selftest"]["models"]["face_landmark"]
    _write_manifest(models_copy, manifest)
    with pytest.raises(ModelSelfTestError, match="no .selftest. block|no self-test reference"):
        run_selftest(models_copy)


def test_nan_or_wrong_sized_outputs_never_pass():
    reference = [np.ones((1, 8), np.float32)]
    cosine, deviation = compare([np.full((1, 8), np.nan, np.float32)], reference)
    assert not ModelCheck("m", 1, cosine, deviation, 0.0, 1e9, 0.0).passed
    cosine, deviation = compare([np.ones((1, 4), np.float32)], reference)
    assert not ModelCheck("m", 1, cosine, deviation, 0.0, 1e9, 0.0).passed
    # The same direction at twice the size has a perfect cosine but a deviation of 1.
    cosine, deviation = compare([np.full((1, 8), 2.0, np.float32)], reference)
    assert cosine == pytest.approx(1.0) and deviation == pytest.approx(1.0)


def test_cpu_description_of_a_raspberry_pi(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n\n"
                       "processor\t: 1\nCPU part\t: 0xd0b\n\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n")
    description = cpu_description(cpuinfo)
    assert "Raspberry Pi 5 Model B Rev 1.0" in description
    assert "CPU part 0xd0b (Cortex-A76)" in description


def test_self_test_command_exit_status(models_copy, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(f"models:\n  directory: {models_copy}\n")
    assert main(["self-test", "--config", str(config)]) == 0
    assert "self-test passed" in capsys.readouterr().out
    new_sha = _perturb_weights(models_copy, "speaker_encoder")
    manifest = read_manifest(models_copy)
    manifest["models"]["speaker_encoder"]["sha256"] = new_sha
    manifest["selftest"]["models"]["speaker_encoder"]["model_sha256"] = new_sha
    _write_manifest(models_copy, manifest)
    assert main(["self-test", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "speaker_encoder: REFUSED" in out and "face_encoder: ok" in out
