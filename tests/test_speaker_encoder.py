"""The TFLite speaker encoder against the original PyTorch Resemblyzer model.

``tests/data/speaker_reference.npz`` holds Resemblyzer 0.1.4's own outputs (PyTorch, librosa; no
audio): whole-utterance embeddings of fixed real utterances, read from ../shared/data at test
time, and a few mel windows with their embeddings. ``tools/modelbuild/speaker_encoder.py`` writes it.
"""

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

from daemon.embed.mel import preprocess_wav
from daemon.inference.tflite import TFLiteModel, read_manifest, sha256_of
from daemon.embed.speaker_encoder import SpeakerEncoder, mean_embedding, partial_windows
from daemon.errors import EnrolmentError, ModelError

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
REFERENCE = np.load(REPO_ROOT / "tests" / "data" / "speaker_reference.npz")


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as handle:
        assert (handle.getframerate(), handle.getnchannels(), handle.getsampwidth()) == (16000, 1, 2)
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder(num_threads=1)


@pytest.fixture(scope="module")
def utterance_embeddings(encoder) -> np.ndarray:
    embeddings = []
    for path, digest in zip(REFERENCE["paths"], REFERENCE["file_sha256"]):
        assert sha256_of(DATA_DIR / path) == digest, f"{path} is not the reference audio"
        embeddings.append(encoder.embed_utterance(read_wav(DATA_DIR / path)))
    return np.stack(embeddings)


def test_manifest_entry_describes_the_model():
    entry = read_manifest()["models"]["speaker_encoder"]
    assert entry["inputs"][0]["shape"] == [1, 160, 40]
    assert entry["inputs"][0]["dtype"] == "float32"
    assert entry["outputs"][0]["shape"] == [1, 256]
    assert entry["reset_variables"] is False
    assert entry["source"]["package"] == "Resemblyzer"
    assert entry["fidelity"]["windows_quantized_vs_pytorch"]["cosine_min"] >= 0.995
    assert entry["sha256"] == sha256_of(REPO_ROOT / "models" / entry["file"])


def test_window_embeddings_match_pytorch(encoder):
    for window, expected in zip(REFERENCE["window_mels"], REFERENCE["window_embeddings"]):
        embedding = encoder.embed_window(window)
        assert embedding.shape == (256,)
        assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-4)
        assert cosine(embedding, expected) >= 0.995


def test_xnnpack_agrees_with_the_builtin_kernels(encoder):
    # the daemon runs the encoder's loop under XNNPACK; TFLite's own kernels are the reference
    builtin = TFLiteModel("speaker_encoder", num_threads=1, xnnpack=False)
    for window in REFERENCE["window_mels"]:
        expected = builtin.run(window[None])[0].reshape(256)
        assert cosine(encoder.embed_window(window), expected) >= 0.9995


def test_model_keeps_no_state_between_windows(encoder):
    first, second = REFERENCE["window_mels"][:2]
    before = encoder.embed_window(first)
    encoder.embed_window(second)
    np.testing.assert_array_equal(encoder.embed_window(first), before)


def test_utterance_embeddings_match_pytorch(utterance_embeddings):
    cosines = [cosine(ours, theirs)
               for ours, theirs in zip(utterance_embeddings, REFERENCE["utterance_embeddings"])]
    assert min(cosines) >= 0.99, dict(zip(REFERENCE["paths"], cosines))


def test_preprocessing_keeps_what_resemblyzer_keeps():
    for path, length in zip(REFERENCE["paths"][::4], REFERENCE["preprocessed_lengths"][::4]):
        assert len(preprocess_wav(read_wav(DATA_DIR / path))) == length, path


def test_same_speaker_scores_higher_than_different_speakers(utterance_embeddings):
    speakers = REFERENCE["speakers"]
    libri = np.array([s.startswith("librispeech_test-other/") for s in speakers])
    embeddings, labels = utterance_embeddings[libri], speakers[libri]
    assert len(set(labels)) == 5 and len(labels) == 20
    scores = embeddings @ embeddings.T
    same = labels[:, None] == labels[None, :]
    genuine = scores[same & ~np.eye(len(labels), dtype=bool)]
    impostor = scores[~same]
    assert genuine.min() > impostor.max()
    assert genuine.mean() - impostor.mean() > 0.2


@pytest.mark.parametrize("n_samples, starts", [
    (0, [0]), (16000, [0]), (30000, [0]), (35000, [0, 77]), (44000, [0, 77, 154]),
    (160000, [77 * i for i in range(12)]),
])
def test_partial_windows_follow_resemblyzer(n_samples, starts):
    windows = partial_windows(n_samples)
    assert [w.start for w in windows] == starts
    assert all(w.stop - w.start == 160 for w in windows)


@given(st.integers(min_value=0, max_value=60 * 16000))
def test_partial_windows_cover_the_utterance(n_samples):
    windows = partial_windows(n_samples)
    assert [w.start for w in windows] == [77 * i for i in range(len(windows))]
    if len(windows) > 1:
        # a kept last window is at least 75 % audio...
        assert n_samples - windows[-1].start * 160 >= 0.75 * 160 * 160
    # ...and what a dropped window would have held is less than 75 % of one past the kept ones
    assert n_samples - windows[-1].stop * 160 < 0.75 * 160 * 160 - 83 * 160


def test_utterance_windows_cover_padded_audio(encoder):
    windows = encoder.utterance_windows(np.zeros(35000, dtype=np.float32))
    assert windows.shape == (2, 160, 40)


def test_mean_embedding_is_unit_norm_and_rejects_empty():
    embeddings = np.abs(np.random.default_rng(0).normal(size=(3, 256))).astype(np.float32)
    mean = mean_embedding(embeddings)
    assert np.linalg.norm(mean) == pytest.approx(1.0, abs=1e-6)
    assert cosine(mean, embeddings.mean(axis=0)) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        mean_embedding(np.zeros((0, 256), dtype=np.float32))


def test_wrong_window_shape_is_refused(encoder):
    with pytest.raises(ValueError):
        encoder.embed_window(np.zeros((100, 40), dtype=np.float32))


def test_silence_has_no_speaker(encoder):
    with pytest.raises(EnrolmentError):
        encoder.embed_utterance(np.zeros(3 * 16000, dtype=np.float32))


def test_corrupt_model_is_refused(tmp_path):
    manifest = read_manifest()
    entry = manifest["models"]["speaker_encoder"]
    corrupt = bytearray((REPO_ROOT / "models" / entry["file"]).read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF
    (tmp_path / entry["file"]).write_bytes(bytes(corrupt))
    shutil.copy(REPO_ROOT / "models" / "manifest.json", tmp_path / "manifest.json")
    with pytest.raises(ModelError):
        SpeakerEncoder(tmp_path)


def test_fine_tuned_speakers_come_from_the_manifest_entry(encoder):
    from daemon.embed.speaker_encoder import fine_tuned_speakers

    assert fine_tuned_speakers({}) == frozenset()
    assert fine_tuned_speakers({"fine_tuned": {"speakers": ["a/1", "b/2"]}}) == {"a/1", "b/2"}
    entry = read_manifest()["models"]["speaker_encoder"]
    assert encoder.trained_on == fine_tuned_speakers(entry)


def test_layer0_recurrent_head_is_on_the_int8_grid_and_the_residual_corrects_it():
    from tools.modelbuild.speaker_encoder import int8_grid, two_term_int8

    matrix = np.random.default_rng(3).normal(scale=0.1, size=(256, 1024)).astype(np.float32)
    matrix[:, 7] = 0.0  # a dead channel must not divide by zero
    scale = np.abs(matrix).max(axis=0) / 127.0
    head, residual = two_term_int8(matrix)
    steps = head[:, scale > 0] / scale[scale > 0]
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)  # on the quantizer's own grid
    assert np.abs(np.round(steps)).max() == 127
    np.testing.assert_array_equal(head, int8_grid(matrix))
    np.testing.assert_allclose(head + residual, matrix, atol=1e-7)
    assert np.all(np.abs(residual) <= scale / 2 + 1e-7)
    # quantized in turn, the residual leaves an error ~254x smaller than one int8 term's
    two_terms = head + int8_grid(residual)
    one_term_error = np.abs(head - matrix).max()
    assert np.abs(two_terms - matrix).max() < one_term_error / 100
    assert not np.any(head[:, 7]) and not np.any(residual[:, 7])


def test_shipped_loop_runs_only_int8_products():
    entry = read_manifest()["models"]["speaker_encoder"]
    # layers 1-2 (input and recurrent) and layer 0's recurrent product in two terms
    assert entry["ops"]["while_body"]["FULLY_CONNECTED"] == 6
    assert "two int8 terms" in entry["quantization"]
    # two 256 KB int8 terms replace layer 0's 1 MB float32 matrix
    assert entry["size_bytes"] < entry["fidelity"]["float_size_bytes"] * 0.3
