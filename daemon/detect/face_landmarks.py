"""MediaPipe FaceMesh: 468 face landmarks from a detected face (``face_landmark.tflite``).

The crop follows MediaPipe's face-landmark front graph: a square region around the detection box,
1.5 times its longer side, rotated so that the line from the subject's right eye to the left eye is
horizontal, resampled to 192x192 RGB in [0, 1] (replicated borders). The model's landmarks (in crop
pixels) are rotated and scaled back to frame pixels; ``z`` is on the same scale as ``x``.

Landmarks used by the liveness check: 13 and 14 are the middles of the upper and lower inner lip,
78 and 308 the mouth corners.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np

from daemon.detect.face_detector import LEFT_EYE, RIGHT_EYE, Face, to_rgb
from daemon.inference.tflite import DEFAULT_MODELS_DIR, TFLiteModel

log = logging.getLogger(__name__)

MODEL_NAME = "face_landmark"
INPUT_SIZE = 192
NUM_LANDMARKS = 468
ROI_SCALE = 1.5
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
MOUTH_CORNER_RIGHT, MOUTH_CORNER_LEFT = 78, 308


def face_roi(face: Face) -> tuple[float, float, float, float]:
    """Return MediaPipe's landmark region for a face: ``(centre_x, centre_y, side, rotation)``.

    Pixels and radians; ``rotation`` is the angle of the eye line (right eye to left eye) in image
    coordinates (y down), so the crop is turned to make the eyes level.
    """
    right_eye, left_eye = face.keypoints[RIGHT_EYE], face.keypoints[LEFT_EYE]
    rotation = math.atan2(float(left_eye[1] - right_eye[1]), float(left_eye[0] - right_eye[0]))
    centre_x, centre_y = face.center
    side = max(face.width, face.height) * ROI_SCALE
    return centre_x, centre_y, side, rotation


def crop_matrix(roi: tuple[float, float, float, float], size: int = INPUT_SIZE) -> np.ndarray:
    """Return the 2x3 affine matrix taking crop pixels to frame pixels for a region of interest."""
    centre_x, centre_y, side, rotation = roi
    cos, sin = math.cos(rotation), math.sin(rotation)
    step = side / size
    return np.array([[cos * step, -sin * step, centre_x - (cos - sin) * side / 2.0],
                     [sin * step, cos * step, centre_y - (sin + cos) * side / 2.0]])


class FaceLandmarker:
    """Run the verified ``face_landmark`` model on the region around a detected face."""

    def __init__(self, models_dir: Path = DEFAULT_MODELS_DIR, num_threads: int = 1,
                 manifest: dict | None = None):
        self.model = TFLiteModel(MODEL_NAME, models_dir, num_threads=num_threads, manifest=manifest)

    def run(self, frame_bgr: np.ndarray, face: Face) -> tuple[np.ndarray, float]:
        """Return ``(landmarks, presence)``: (468, 3) float32 frame pixels and the model's face
        presence probability (MediaPipe drops landmarks whose presence is below 0.5)."""
        to_frame = crop_matrix(face_roi(face))
        # Crop corners sit on pixel indices, as in MediaPipe's OpenCV image-to-tensor converter.
        # Crop first, then convert the colours of the small crop only (the two commute).
        crop = to_rgb(cv2.warpAffine(np.asarray(frame_bgr), to_frame, (INPUT_SIZE, INPUT_SIZE),
                                     flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_REPLICATE))
        tensor = crop.astype(np.float32)[np.newaxis] * np.float32(1.0 / 255.0)
        raw_landmarks, raw_presence = self.model.run(tensor)
        points = raw_landmarks.reshape(NUM_LANDMARKS, 3).astype(np.float64)
        landmarks = np.empty_like(points)
        landmarks[:, :2] = points[:, :2] @ to_frame[:, :2].T + to_frame[:, 2]
        landmarks[:, 2] = points[:, 2] * (to_frame[0, 0] ** 2 + to_frame[1, 0] ** 2) ** 0.5
        presence = float(1.0 / (1.0 + np.exp(-np.clip(float(raw_presence.ravel()[0]), -80, 80))))
        return landmarks.astype(np.float32), presence

    def landmarks(self, frame_bgr: np.ndarray, face: Face) -> np.ndarray:
        """Return the (468, 3) float32 landmarks of ``face`` in frame pixels."""
        landmarks, presence = self.run(frame_bgr, face)
        log.debug("face landmarks: presence %.3f", presence)
        return landmarks


def mouth_opening(landmarks: np.ndarray) -> float:
    """Return the inner-lip gap divided by the mouth width (0 for a closed mouth), from (468, 2+)
    landmarks; scale-free, so comparable across distances."""
    points = np.asarray(landmarks, dtype=np.float64)[:, :2]
    gap = np.linalg.norm(points[UPPER_INNER_LIP] - points[LOWER_INNER_LIP])
    width = np.linalg.norm(points[MOUTH_CORNER_RIGHT] - points[MOUTH_CORNER_LEFT])
    return float(gap / width) if width > 0 else 0.0
