"""FaceMesh landmarks: agreement with MediaPipe, plausible geometry, mouth opening on GRID video."""

import json
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.detect.face_detector import FaceDetector
from daemon.detect.face_landmarks import (LOWER_INNER_LIP, MOUTH_CORNER_LEFT, MOUTH_CORNER_RIGHT,
                                          NUM_LANDMARKS, UPPER_INNER_LIP, FaceLandmarker,
                                          mouth_opening)
from daemon.inference.tflite import read_manifest
from shared_data import load

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
REFERENCE = REPO / "tests" / "data" / "face_landmark_mediapipe_reference.json"
VIDEO_FPS = 25
AUDIO_RATE = 16000




@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.fixture(scope="module")
def landmarker():
    return FaceLandmarker()


def test_agrees_with_mediapipe_reference(detector, landmarker):
    reference = json.loads(REFERENCE.read_text())
    assert reference["model_sha256"] == read_manifest()["models"]["face_landmark"]["sha256"]
    assert len(reference["images"]) >= 4
    for key, expected in reference["images"].items():
        image = load(key)
        face = detector.detect(image)[0]
        ours = landmarker.landmarks(image, face)
        ref = np.array(expected["landmarks_xy"])
        inter_ocular = np.linalg.norm(face.keypoints[0] - face.keypoints[1])
        error = np.linalg.norm(ours[:, :2] - ref, axis=1) / inter_ocular
        assert error.mean() < 0.01 and error.max() < 0.05, key
        assert mouth_opening(ours) == pytest.approx(expected["mouth_opening"], abs=0.02), key


def test_landmarks_sit_on_the_face(detector, landmarker):
    people = sorted((DATA / "faces" / "att_orl").iterdir())[:10]
    for person in people:
        image = cv2.imread(str(person / "1.jpg"))
        face = detector.detect(image)[0]
        points, presence = landmarker.run(image, face)
        assert points.shape == (NUM_LANDMARKS, 3) and points.dtype == np.float32
        assert presence > 0.5
        x0, y0, x1, y1 = face.box
        margin = 0.25 * face.width
        assert np.all((points[:, 0] > x0 - margin) & (points[:, 0] < x1 + margin)), person
        assert np.all((points[:, 1] > y0 - margin) & (points[:, 1] < y1 + margin)), person
        # upper lip above lower lip, subject's right mouth corner on the image's left
        assert points[UPPER_INNER_LIP, 1] <= points[LOWER_INNER_LIP, 1] + 1.0
        assert points[MOUTH_CORNER_RIGHT, 0] < points[MOUTH_CORNER_LEFT, 0]
        mouth_y = points[[UPPER_INNER_LIP, LOWER_INNER_LIP], 1].mean()
        assert abs(mouth_y - face.keypoints[3, 1]) < 0.3 * face.height


def test_landmarks_follow_a_shifted_face(detector, landmarker):
    people = sorted((DATA / "faces" / "att_orl").iterdir())
    image = cv2.imread(str(people[0] / "1.jpg"))
    canvas = np.full((300, 400, 3), 100, np.uint8)
    canvas[150:150 + image.shape[0], 250:250 + image.shape[1]] = image
    original = landmarker.landmarks(image, detector.detect(image)[0])
    shifted = landmarker.landmarks(canvas, detector.detect(canvas)[0])
    face = detector.detect(image)[0]
    inter_ocular = np.linalg.norm(face.keypoints[0] - face.keypoints[1])
    assert np.median(np.linalg.norm(shifted[:, :2] - original[:, :2] - [250, 150], axis=1)) \
        < 0.1 * inter_ocular


def test_mouth_opening_of_synthetic_landmarks():
    points = np.zeros((NUM_LANDMARKS, 3))
    points[MOUTH_CORNER_RIGHT, :2] = [100, 200]
    points[MOUTH_CORNER_LEFT, :2] = [160, 200]
    points[UPPER_INNER_LIP, :2] = [130, 195]
    points[LOWER_INNER_LIP, :2] = [130, 210]
    assert mouth_opening(points) == pytest.approx(15 / 60)
    points[LOWER_INNER_LIP, :2] = [130, 195]
    assert mouth_opening(points) == 0.0


def frame_loudness(audio_path: Path, frames: int) -> np.ndarray:
    """RMS of the 16 kHz audio over each 40 ms video frame."""
    with wave.open(str(audio_path)) as wav:
        assert wav.getframerate() == AUDIO_RATE
        samples = np.frombuffer(wav.readframes(wav.getnframes()), np.int16).astype(np.float64)
    hop = AUDIO_RATE // VIDEO_FPS
    return np.array([np.sqrt(np.mean(samples[i * hop:(i + 1) * hop] ** 2)) if (i + 1) * hop
                     <= len(samples) else 0.0 for i in range(frames)])


def test_mouth_opens_more_while_speaking(detector, landmarker):
    """GRID speakers are silent with closed lips before and after their sentence: frames in the
    loudest quarter of the audio envelope must show wider mouths than those in the quietest."""
    quiet_all, loud_all = [], []
    clips = sorted((DATA / "av" / "grid").glob("*/*/video.*"))
    assert len(clips) >= 4
    for video in clips:
        capture = cv2.VideoCapture(str(video))
        openings = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            openings.append(mouth_opening(landmarker.landmarks(frame, detector.detect(frame)[0])))
        capture.release()
        openings = np.array(openings)
        loudness = frame_loudness(video.parent / "audio_16k.wav", len(openings))
        quiet = openings[loudness <= np.percentile(loudness, 25)]
        loud = openings[loudness >= np.percentile(loudness, 75)]
        assert np.median(loud) > np.median(quiet), video
        quiet_all.extend(quiet)
        loud_all.extend(loud)
    assert np.median(loud_all) > 2.0 * np.median(quiet_all)
