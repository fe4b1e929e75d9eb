"""The voice back-end: verified like a model, estimated from labelled embeddings, applied alike."""

import json
import shutil

import numpy as np
import pytest

from daemon.embed.voice_backend import (BACKEND_NAME, VoiceBackend, fit_voice_backend, load_voice_backend,
                                        to_bytes)
from daemon.errors import ModelError
from daemon.inference.tflite import DEFAULT_MODELS_DIR, EMBEDDING_RECIPE, models_fingerprint, read_manifest, sha256_of


@pytest.fixture
def models_copy(tmp_path):
    """The shipped back-end and manifest in a folder of their own."""
    entry = read_manifest()["backends"][BACKEND_NAME]
    shutil.copy(DEFAULT_MODELS_DIR / entry["file"], tmp_path / entry["file"])
    shutil.copy(DEFAULT_MODELS_DIR / "manifest.json", tmp_path / "manifest.json")
    return tmp_path, entry


def test_the_shipped_backend_loads_and_maps_to_unit_vectors():
    backend = load_voice_backend()
    x = np.random.default_rng(0).normal(size=(5, 256)).astype(np.float32)
    y = backend.apply_many(x)
    assert np.allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    assert np.allclose(backend.apply(x[2]), y[2], atol=1e-5)
    assert backend.sha256 == read_manifest()["backends"][BACKEND_NAME]["sha256"]


def test_the_manifest_records_where_the_backend_came_from():
    source = read_manifest()["backends"][BACKEND_NAME]["source"]
    assert source["tool"] == "tools/fit_voice_backend.py"
    assert source["data_half"] == "development only" and source["speakers"] > 100


def test_a_corrupted_backend_file_is_refused(models_copy):
    folder, entry = models_copy
    path = folder / entry["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_voice_backend(folder)


def test_a_truncated_backend_file_is_refused(models_copy):
    folder, entry = models_copy
    path = folder / entry["file"]
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelError, match="corrupt"):
        load_voice_backend(folder)


def test_a_backend_of_the_wrong_shape_is_refused_even_with_a_matching_hash(models_copy):
    folder, entry = models_copy
    path = folder / entry["file"]
    path.write_bytes(to_bytes(np.zeros(128), np.eye(128)))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["backends"][BACKEND_NAME]["sha256"] = sha256_of(path)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="256"):
        load_voice_backend(folder)


def test_a_backend_fitted_for_another_speaker_model_is_refused(models_copy):
    folder, _ = models_copy
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["backends"][BACKEND_NAME]["source"]["speaker_encoder_sha256"] == \
        manifest["models"]["speaker_encoder"]["sha256"]
    load_voice_backend(folder)
    manifest["backends"][BACKEND_NAME]["source"]["speaker_encoder_sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="fitted for the speaker encoder"):
        load_voice_backend(folder)


@pytest.mark.parametrize("recipe", [None, EMBEDDING_RECIPE - 1])
def test_a_backend_fitted_for_another_embedding_recipe_is_refused(models_copy, recipe):
    folder, _ = models_copy
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["backends"][BACKEND_NAME]["source"]["embedding_recipe"] == EMBEDDING_RECIPE
    if recipe is None:
        del manifest["backends"][BACKEND_NAME]["source"]["embedding_recipe"]
    else:
        manifest["backends"][BACKEND_NAME]["source"]["embedding_recipe"] = recipe
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="embedding recipe"):
        load_voice_backend(folder)


def test_a_missing_backend_entry_is_refused(models_copy):
    folder, _ = models_copy
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["backends"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="fit_voice_backend"):
        load_voice_backend(folder)


def test_the_templates_fingerprint_changes_with_the_backend():
    manifest = read_manifest()
    other = json.loads(json.dumps(manifest))
    other["backends"][BACKEND_NAME]["sha256"] = "0" * 64
    assert models_fingerprint(manifest) != models_fingerprint(other)


def test_wccn_whitens_the_within_speaker_scatter():
    rng = np.random.default_rng(1)
    # Speakers differ along every axis; their utterances vary most along the first ten axes.
    centres = rng.normal(size=(40, 256))
    spread = np.ones(256)
    spread[:10] = 8.0
    rows = np.concatenate([c + 0.05 * spread * rng.normal(size=(30, 256)) for c in centres])
    speakers = [str(i) for i in range(40) for _ in range(30)]
    backend = fit_voice_backend(rows, speakers, shrinkage=0.0)
    mapped = (rows - backend.mean) @ backend.projection.T
    within = np.concatenate([mapped[i * 30:(i + 1) * 30] - mapped[i * 30:(i + 1) * 30].mean(0)
                             for i in range(40)])
    variances = within.var(axis=0)
    # The noisy axes no longer dominate (they did by a factor of 64).
    assert variances[:10].mean() / variances[10:].mean() < 1.5
    centred_only = fit_voice_backend(rows, speakers, wccn=False)
    assert np.array_equal(centred_only.projection, np.eye(256))


def test_fitting_needs_a_speaker_with_two_embeddings():
    with pytest.raises(ValueError, match="two embeddings"):
        fit_voice_backend(np.eye(256)[:3], ["a", "b", "c"])
    assert isinstance(fit_voice_backend(np.eye(256)[:3], ["a", "a", "b"]), VoiceBackend)
