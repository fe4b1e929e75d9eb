"""A model file that is missing, truncated, random, of the wrong shape or not the one in the
manifest is refused at load time with a clear ModelError; ``avid run`` then exits non-zero and the
relay is never energised."""

import json
import shutil

import numpy as np
import pytest

from daemon.inference.tflite import DEFAULT_MODELS_DIR, TFLiteModel, read_manifest, sha256_of
from daemon.errors import AvidError, ModelError


@pytest.fixture
def models_copy(tmp_path):
    target = tmp_path / "models"
    shutil.copytree(DEFAULT_MODELS_DIR, target, ignore=shutil.ignore_patterns("*.md"))
    return target


def _rewrite(models_dir, name, data: bytes, update_hash: bool):
    manifest = read_manifest(models_dir)
    path = models_dir / manifest["models"][name]["file"]
    path.write_bytes(data)
    if update_hash:
        manifest["models"][name]["sha256"] = sha256_of(path)
        (models_dir / "manifest.json").write_text(json.dumps(manifest))


def test_bundled_models_load_and_match_manifest():
    manifest = read_manifest()
    for name in manifest["models"]:
        model = TFLiteModel(name)
        assert model.sha256 == manifest["models"][name]["sha256"]
        assert [list(s.shape) for s in model.input_specs] == \
            [t["shape"] for t in manifest["models"][name]["inputs"]]


def test_truncated_model_is_refused_by_hash(models_copy):
    path = models_copy / "face_detector.tflite"
    _rewrite(models_copy, "face_detector", path.read_bytes()[:1000], update_hash=False)
    with pytest.raises(ModelError, match="sha256"):
        TFLiteModel("face_detector", models_copy)


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, np.random.default_rng(1).bytes(5000)],
                         ids=["empty", "zeros", "random"])
def test_garbage_with_matching_hash_is_refused_by_the_runtime(models_copy, content):
    # Even if someone also "fixes" the manifest hash, the file must still be a loadable model.
    _rewrite(models_copy, "face_detector", content, update_hash=True)
    with pytest.raises(ModelError, match="cannot be loaded"):
        TFLiteModel("face_detector", models_copy)


def test_valid_model_of_the_wrong_shape_is_refused(models_copy):
    # A real TFLite file in the wrong place: the landmark model where the detector should be.
    landmark = (models_copy / "face_landmark.tflite").read_bytes()
    _rewrite(models_copy, "face_detector", landmark, update_hash=True)
    with pytest.raises(ModelError, match="manifest says"):
        TFLiteModel("face_detector", models_copy)


def test_missing_model_and_manifest(models_copy):
    (models_copy / "face_detector.tflite").unlink()
    with pytest.raises(ModelError, match="not found"):
        TFLiteModel("face_detector", models_copy)
    (models_copy / "manifest.json").unlink()
    with pytest.raises(ModelError, match="manifest not found"):
        read_manifest(models_copy)


def test_model_error_is_an_avid_error():
    assert issubclass(ModelError, AvidError)
