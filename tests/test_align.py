"""Face alignment follows dlib's get_face_chip_details(size=150, padding=0.25) geometry."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.embed.align import (ALIGN_KEYPOINTS, CHIP_PADDING, CHIP_SIZE, chip_template,
                                chip_transform, face_chip, similarity_transform)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
REFERENCE = REPO / "tests" / "data" / "face_encoder_reference.npz"

#: dlib's 5-point chip targets (get_face_chip_details, 5 landmarks): outer and inner corners of
#: the eye on the image's right, then of the eye on the image's left, then the base of the nose.
DLIB_FIVE_POINTS = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                             [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                             [0.4901123135679, 0.6277975316475]])


def to_chip(unit: np.ndarray) -> np.ndarray:
    return (CHIP_PADDING + unit) / (2 * CHIP_PADDING + 1) * CHIP_SIZE


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points) @ matrix[:, :2].T + matrix[:, 2]


def frame_keypoints(angle_deg: float, scale: float, offset: tuple[float, float]) -> np.ndarray:
    """BlazeFace-style keypoints (6, 2) of a face placed in a frame by a known similarity."""
    template = chip_template()
    angle = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (template - CHIP_SIZE / 2) @ (scale * rotation).T + np.asarray(offset)
    ears = points[:2] + np.array([[-30.0, 10.0], [30.0, 10.0]]) * scale
    return np.vstack([points, ears])


def test_template_eyes_agree_with_dlib_five_point_geometry():
    template = chip_template()
    right_eye_on_image_left = to_chip(DLIB_FIVE_POINTS[2:4].mean(axis=0))
    left_eye_on_image_right = to_chip(DLIB_FIVE_POINTS[0:2].mean(axis=0))
    assert np.linalg.norm(template[0] - right_eye_on_image_left) < 1.0
    assert np.linalg.norm(template[1] - left_eye_on_image_right) < 1.0
    assert template[0, 0] < template[1, 0]
    assert template[0, 1] == pytest.approx(template[1, 1])
    assert template[2, 1] < template[3, 1] < CHIP_SIZE


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(3)
    source = rng.uniform(0, 200, size=(5, 2))
    angle, scale, shift = 0.4, 1.7, np.array([12.0, -30.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = source @ (scale * rotation).T + shift
    matrix = similarity_transform(source, target)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-7)


@pytest.mark.parametrize("angle, scale, offset", [(0.0, 1.0, (75.0, 75.0)),
                                                   (-25.0, 2.4, (320.0, 240.0)),
                                                   (40.0, 0.6, (500.0, 100.0))])
def test_keypoints_land_on_the_template(angle, scale, offset):
    keypoints = frame_keypoints(angle, scale, offset)
    matrix = chip_transform(keypoints)
    used = list(ALIGN_KEYPOINTS)
    np.testing.assert_allclose(apply(matrix, keypoints[used]), chip_template()[used], atol=1e-6)


@pytest.mark.parametrize("scale, frame_size", [(1.3, (480, 640)), (5.0, (1600, 2000))])
def test_chip_pixels_put_the_eyes_where_dlib_does(scale, frame_size):
    """Blue dots drawn at the eyes of a frame come out at the template's eyes, in RGB order."""
    height, width = frame_size
    keypoints = frame_keypoints(15.0, scale, (width / 2, height / 2))
    frame = np.zeros((height, width, 3), np.uint8)
    for eye in keypoints[:2]:
        cv2.circle(frame, (int(round(eye[0])), int(round(eye[1]))), int(3 * scale), (255, 0, 0), -1)
    chip = face_chip(frame, keypoints)
    assert chip.shape == (CHIP_SIZE, CHIP_SIZE, 3) and chip.dtype == np.uint8
    assert chip[..., 0].max() == 0 and chip[..., 2].max() > 200
    blue = chip[..., 2].astype(np.float64)
    for eye in chip_template()[:2]:
        ys, xs = np.mgrid[:CHIP_SIZE, :CHIP_SIZE]
        near = (np.hypot(xs - eye[0], ys - eye[1]) < 12) * blue
        centroid = np.array([(near * xs).sum(), (near * ys).sum()]) / near.sum()
        assert np.linalg.norm(centroid - eye) < 1.0


def test_real_faces_are_aligned_like_dlib():
    """On LFW photos, our transform puts dlib's own eye landmarks near where dlib's chip does."""
    with np.load(REFERENCE) as reference:
        errors = []
        for path, keypoints, dlib_to_chip, eyes in zip(reference["paths"], reference["keypoints"],
                                                       reference["dlib_to_chip"],
                                                       reference["dlib_eye_centres"]):
            assert (DATA / str(path)).is_file(), path
            ours = apply(chip_transform(keypoints), eyes)
            dlib = apply(dlib_to_chip, eyes)
            errors.append(np.linalg.norm(ours - dlib, axis=1))
    errors = np.array(errors)
    assert np.median(errors) < 4.0, errors
    assert errors.max() < 10.0, errors


def test_rejects_bad_keypoints():
    frame = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(ValueError):
        face_chip(frame, np.zeros((3, 2)))
    with pytest.raises(ValueError):
        face_chip(frame, np.full((6, 2), np.nan))
    with pytest.raises(ValueError):
        face_chip(frame, np.zeros((6, 2)))
    with pytest.raises(ValueError):
        face_chip(frame[..., 0], frame_keypoints(0.0, 1.0, (50.0, 50.0)))
