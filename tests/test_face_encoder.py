"""dlib face encoder (int8 TFLite): manifest, agreement with dlib on real LFW faces, same vs
different people."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.embed.align import face_chip
from daemon.embed.face_encoder import CHIP_SIZE, EMBEDDING_SIZE, FaceEncoder, mirror_average
from daemon.inference.tflite import DEFAULT_MODELS_DIR, read_manifest, sha256_of
from daemon.errors import ModelError

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
REFERENCE = REPO / "tests" / "data" / "face_encoder_reference.npz"


@pytest.fixture(scope="module")
def encoder() -> FaceEncoder:
    return FaceEncoder()


@pytest.fixture(scope="module")
def reference() -> dict:
    with np.load(REFERENCE) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.fixture(scope="module")
def chips(reference) -> np.ndarray:
    """Our chips of the reference photos, cut from the shared data at test time."""
    result = []
    for path, keypoints in zip(reference["paths"], reference["keypoints"]):
        frame = cv2.imread(str(DATA / str(path)), cv2.IMREAD_COLOR)
        assert frame is not None, path
        result.append(face_chip(frame, keypoints))
    return np.stack(result)


@pytest.fixture(scope="module")
def embeddings(encoder, chips) -> np.ndarray:
    return np.stack([encoder.embed(chip) for chip in chips])


def test_model_matches_manifest(encoder):
    entry = read_manifest()["models"]["face_encoder"]
    assert entry["file"] == "face_encoder.tflite"
    assert sha256_of(DEFAULT_MODELS_DIR / entry["file"]) == entry["sha256"]
    assert entry["licence"] == "CC0-1.0"
    assert entry["quantization"].startswith("int8 (full)")
    assert encoder.model.input_specs[0].shape == (1, CHIP_SIZE, CHIP_SIZE, 3)
    assert encoder.model.input_specs[0].dtype == "float32"
    assert encoder.model.output_specs[0].shape == (1, EMBEDDING_SIZE)
    assert entry["fidelity"]["n"] >= 100
    assert entry["fidelity"]["cosine_min"] >= 0.998


def test_embedding_is_unit_length_float32(encoder, chips):
    vector = encoder.embed(chips[0])
    assert vector.shape == (EMBEDDING_SIZE,)
    assert vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_matches_dlib_on_real_faces(embeddings, reference):
    dlib = reference["dlib_embeddings"]
    dlib = dlib / np.linalg.norm(dlib, axis=1, keepdims=True)
    cosines = np.sum(embeddings * dlib, axis=1)
    assert len(cosines) == 8
    assert cosines.min() >= 0.99, cosines


def test_same_person_scores_higher_than_different_people(embeddings, reference):
    identities = reference["identities"]
    scores = embeddings @ embeddings.T
    same = identities[:, None] == identities[None, :]
    not_self = ~np.eye(len(identities), dtype=bool)
    assert scores[same & not_self].min() > scores[~same].max()


def test_mirrored_face_stays_closest_to_itself(encoder, chips, embeddings, reference):
    mirrored = encoder.embed(chips[0][:, ::-1].copy())
    others = reference["identities"] != reference["identities"][0]
    assert mirrored @ embeddings[0] > (embeddings[others] @ mirrored).max()


def test_rejects_wrong_chip_shape(encoder):
    with pytest.raises(ValueError):
        encoder.embed(np.zeros((112, 112, 3), np.uint8))


def test_corrupt_model_is_refused(tmp_path):
    for name in ("manifest.json", "face_encoder.tflite"):
        shutil.copyfile(DEFAULT_MODELS_DIR / name, tmp_path / name)
    data = bytearray((tmp_path / "face_encoder.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "face_encoder.tflite").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        FaceEncoder(models_dir=tmp_path)


def test_mirror_average_is_the_mean_of_a_chip_and_its_mirror_image(encoder, chips):
    plain, mirrored = encoder.embed(chips[1]), encoder.embed(chips[1][:, ::-1].copy())
    averaged = mirror_average(plain, mirrored)
    expected = (plain + mirrored) / np.linalg.norm(plain + mirrored)
    assert np.allclose(averaged, expected, atol=1e-6)
    assert averaged.dtype == np.float32 and abs(float(np.linalg.norm(averaged)) - 1.0) < 1e-5
    # A chip and its mirror image get one embedding: the order of the two passes does not matter.
    assert np.allclose(mirror_average(mirrored, plain), averaged, atol=1e-6)


def test_mirror_averaged_faces_still_tell_people_apart(encoder, chips, reference):
    averaged = np.stack([mirror_average(encoder.embed(c), encoder.embed(c[:, ::-1].copy())) for c in chips])
    identities = reference["identities"]
    scores = averaged @ averaged.T
    same = identities[:, None] == identities[None, :]
    not_self = ~np.eye(len(identities), dtype=bool)
    assert scores[same & not_self].min() > scores[~same].max()


def test_opposite_views_are_refused():
    vector = np.zeros(EMBEDDING_SIZE, np.float32)
    vector[0] = 1.0
    with pytest.raises(ModelError):
        mirror_average(vector, -vector)
