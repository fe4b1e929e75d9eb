"""Face quality measures on real faces and on degraded copies of them."""

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.detect.face_detector import Face, FaceDetector
from daemon.detect.face_quality import (BLURRY, FACE_TOO_SMALL, NOT_FRONTAL, TOO_BRIGHT, TOO_DARK,
                                        assess_face, pose, sharpness)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def grid_frames(step: int = 25):
    for video in sorted((DATA / "av" / "grid").glob("*/*/video.*")):
        capture = cv2.VideoCapture(str(video))
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % step == 0:
                yield frame
            index += 1
        capture.release()


def att_faces(count: int):
    people = sorted((DATA / "faces" / "att_orl").iterdir())
    return [cv2.imread(str(person / "1.jpg")) for person in people[:count]]


def lfw_faces(count: int):
    people = sorted((DATA / "faces" / "lfw").iterdir())
    return [cv2.imread(str(sorted(person.glob("*.jpg"))[0])) for person in people[:count]]


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.fixture(scope="module")
def good_faces(detector):
    """(frame, best face) of GRID frames and AT&T faces: frontal, lit, sharp, studio faces."""
    pairs = []
    for frame in list(grid_frames()) + att_faces(20):
        faces = detector.detect(frame)
        assert faces
        pairs.append((frame, faces[0]))
    return pairs


def test_studio_faces_pass(good_faces):
    results = [assess_face(frame, face) for frame, face in good_faces]
    passed = [q for q in results if q.ok]
    assert len(passed) >= 0.9 * len(results)
    for q in results:
        assert 0.0 <= q.score <= 1.0
        # the score is the weakest sub-score, 0.5 exactly at a threshold
        assert (q.score < 0.5) == bool(q.problems)


def test_darkened_copy_is_too_dark(good_faces):
    for frame, face in good_faces:
        dark = (frame.astype(np.float32) * 0.2).astype(np.uint8)
        quality = assess_face(dark, face)
        assert TOO_DARK in quality.problems
        assert quality.score < 0.5
        assert quality.luminance_mean < assess_face(frame, face).luminance_mean


def test_brightened_copy_is_too_bright(good_faces):
    for frame, face in good_faces:
        bright = np.clip(frame.astype(np.int16) + 150, 0, 255).astype(np.uint8)
        assert TOO_BRIGHT in assess_face(bright, face).problems


def test_tiny_copy_is_too_small(detector):
    flagged = found = 0
    for image in lfw_faces(30):
        tiny = cv2.resize(image, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
        faces = detector.detect(tiny)
        if not faces:
            continue
        found += 1
        quality = assess_face(tiny, faces[0])
        flagged += FACE_TOO_SMALL in quality.problems
        full = assess_face(image, detector.detect(image)[0])
        assert quality.inter_ocular_px < 0.4 * full.inter_ocular_px
    assert found >= 20 and flagged == found


def test_blurred_copy_is_blurry_and_sharpness_falls_with_blur(good_faces):
    for frame, face in good_faces:
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        values = [sharpness(cv2.GaussianBlur(grey, (0, 0), sigma * face.width / 100.0), face.box)
                  for sigma in (0.5, 1.5, 3.0, 6.0)]
        assert values == sorted(values, reverse=True)
        blurred = cv2.GaussianBlur(frame, (0, 0), face.width / 20.0)
        assert BLURRY in assess_face(blurred, face).problems


def test_sharpness_does_not_depend_on_face_size_or_contrast(good_faces):
    frame, face = good_faces[0]
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    base = sharpness(grey, face.box)
    half_contrast = (grey.astype(np.float32) * 0.5 + 64).astype(np.uint8)
    assert sharpness(half_contrast, face.box) == pytest.approx(base, rel=0.1)
    doubled = cv2.resize(grey, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    box2 = tuple(2 * v for v in face.box)
    assert sharpness(doubled, box2) == pytest.approx(base, rel=0.35)


def head_keypoints(yaw_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """Keypoints of the rigid head model documented in :func:`pose`, in pixels (IOD 60)."""
    # x to the image's right, z towards the camera; right eye/ear on the image's left
    points = np.array([[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.6, 0.6], [0.0, 1.1, 0.2],
                       [-0.9, 0.3, -0.9], [0.9, 0.3, -0.9]])
    yaw, roll = math.radians(yaw_deg), math.radians(roll_deg)
    turned_x = points[:, 0] * math.cos(yaw) + points[:, 2] * math.sin(yaw)
    xy = np.stack([turned_x, points[:, 1]], axis=1)
    rotation = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    return (xy @ rotation.T * 60 + 200).astype(np.float32)


@pytest.mark.parametrize("yaw_deg", [-40, -20, 0, 10, 35])
@pytest.mark.parametrize("roll_deg", [-20, 0, 15])
def test_pose_recovers_the_head_model_angles(yaw_deg, roll_deg):
    yaw, roll = pose(head_keypoints(yaw_deg, roll_deg))
    assert yaw == pytest.approx(yaw_deg, abs=0.5)
    assert roll == pytest.approx(roll_deg, abs=0.5)


def test_turned_or_tilted_face_is_not_frontal(good_faces):
    frame, face = good_faces[0]
    for yaw_deg, roll_deg in ((40, 0), (-35, 0), (0, 45)):
        turned = Face(face.box, face.score, head_keypoints(yaw_deg, roll_deg))
        assert NOT_FRONTAL in assess_face(frame, turned).problems
    assert NOT_FRONTAL not in assess_face(frame, Face(face.box, face.score,
                                                      head_keypoints(5, 3))).problems


def test_real_rotated_face_is_not_frontal(detector, good_faces):
    frame, face = good_faces[-1]
    height, width = frame.shape[:2]
    side = int(max(height, width) * 1.5)
    canvas = cv2.copyMakeBorder(frame, (side - height) // 2, (side - height) // 2,
                                (side - width) // 2, (side - width) // 2, cv2.BORDER_REPLICATE)
    rotated = cv2.warpAffine(canvas, cv2.getRotationMatrix2D((side / 2, side / 2), 50, 1.0),
                             (side, side), borderMode=cv2.BORDER_REPLICATE)
    faces = detector.detect(rotated)
    assert faces
    quality = assess_face(rotated, faces[0])
    assert abs(quality.roll_deg) > 30
    assert NOT_FRONTAL in quality.problems


def test_thresholds_are_keyword_arguments(good_faces):
    frame, face = good_faces[0]
    quality = assess_face(frame, face)
    stricter = assess_face(frame, face, min_inter_ocular_px=quality.inter_ocular_px + 1)
    assert FACE_TOO_SMALL in stricter.problems and FACE_TOO_SMALL not in quality.problems
