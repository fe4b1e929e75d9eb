"""BlazeFace short-range face detection (MediaPipe's ``face_detection_short_range.tflite``).

The frame is letterboxed to a square (aspect kept, black borders, as MediaPipe's
``ImageToTensorCalculator`` with ``keep_aspect_ratio: true`` and ``BORDER_ZERO``), resized to
128x128, scaled to [-1, 1] and run through the model. Its 896 SSD outputs are decoded as MediaPipe's
``TensorsToDetectionsCalculator`` does for the short-range graph (anchors from
``SsdAnchorsCalculator``: 4 layers, strides 8/16/16/16, offset 0.5, fixed anchor size; scales 128;
sigmoid scores clipped at +-100; minimum score 0.5), merged with MediaPipe's weighted non-maximum
suppression (IoU > 0.3) and mapped back to frame pixels.

Keypoints come in the model's order: the subject's right eye, left eye, nose tip, mouth centre,
right ear tragion, left ear tragion. In an unmirrored photo the subject's right eye is the one on
the image's left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from daemon.inference.tflite import DEFAULT_MODELS_DIR, TFLiteModel

log = logging.getLogger(__name__)

MODEL_NAME = "face_detector"
INPUT_SIZE = 128
NUM_KEYPOINTS = 6
RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH_CENTER, RIGHT_EAR_TRAGION, LEFT_EAR_TRAGION = range(6)
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion",
                  "left_ear_tragion")

#: MediaPipe face_detection_short_range.pbtxt / face_detection.pbtxt decoding options.
ANCHOR_STRIDES = (8, 16, 16, 16)
ANCHOR_OFFSET = 0.5
COORD_SCALE = 128.0
SCORE_CLIPPING = 100.0
NMS_IOU_THRESHOLD = 0.3


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in frame pixel coordinates (MediaPipe's normalised coordinates times the
    frame size; a face cut by the frame's edge may have a box reaching outside it).

    ``box`` is ``(x0, y0, x1, y1)``; ``keypoints`` is a (6, 2) float32 array of (x, y) in the order
    right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion (the subject's
    right and left).
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        """Box centre ``(x, y)`` in pixels."""
        return (self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0

    def keypoint(self, name: str) -> np.ndarray:
        """Return one keypoint ``(x, y)`` by name (see :data:`KEYPOINT_NAMES`)."""
        return self.keypoints[KEYPOINT_NAMES.index(name)]


def ssd_anchors(input_size: int = INPUT_SIZE, strides=ANCHOR_STRIDES,
                offset: float = ANCHOR_OFFSET) -> np.ndarray:
    """Return the (N, 2) normalised anchor centres of MediaPipe's ``SsdAnchorsCalculator``.

    With ``interpolated_scale_aspect_ratio: 1.0`` each layer gives two anchors per cell, and
    consecutive layers with the same stride are merged into one feature map; with a fixed anchor
    size every anchor is 1x1, so only the centres matter.
    """
    centres = []
    layer = 0
    while layer < len(strides):
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        anchors_per_cell = 2 * (same - layer)
        cells = input_size // strides[layer]
        grid = (np.arange(cells, dtype=np.float32) + offset) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cell_centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell_centres, anchors_per_cell, axis=0))
        layer = same
    return np.concatenate(centres).astype(np.float32)


_ANCHORS = ssd_anchors()


def decode(regressors: np.ndarray, classificators: np.ndarray, min_score: float = 0.5,
           anchors: np.ndarray = _ANCHORS) -> tuple[np.ndarray, np.ndarray]:
    """Decode raw model outputs into candidate detections above ``min_score``.

    Returns ``(points, scores)``: points (K, 8, 2) normalised to the 128x128 input, rows being box
    min corner, box max corner and the six keypoints; scores (K,) after the clipped sigmoid.
    """
    raw = np.asarray(regressors, dtype=np.float32).reshape(-1, 8, 2) / COORD_SCALE
    logits = np.clip(np.asarray(classificators, dtype=np.float64).reshape(-1),
                     -SCORE_CLIPPING, SCORE_CLIPPING)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = scores >= min_score
    raw, scores, anchors = raw[keep], scores[keep], anchors[keep]
    centre = raw[:, 0] + anchors
    half = raw[:, 1] / 2.0
    points = np.empty_like(raw)
    points[:, 0] = centre - half
    points[:, 1] = centre + half
    points[:, 2:] = raw[:, 2:] + anchors[:, None, :]
    valid = np.all(points[:, 1] > points[:, 0], axis=1)
    return points[valid], scores[valid].astype(np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo = np.maximum(box[0], boxes[:, 0])
    hi = np.minimum(box[1], boxes[:, 1])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=1)
    area = np.prod(box[1] - box[0])
    areas = np.prod(boxes[:, 1] - boxes[:, 0], axis=1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def weighted_nms(points: np.ndarray, scores: np.ndarray,
                 iou_threshold: float = NMS_IOU_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's ``WEIGHTED`` non-maximum suppression.

    Taking the best remaining detection, every remaining one overlapping it by IoU above the
    threshold (itself included) is merged into a score-weighted mean of boxes and keypoints; the
    merged detection keeps the best one's score. Returns merged points and scores, best first.
    """
    order = np.argsort(-scores, kind="stable")
    points, scores = points[order], scores[order]
    merged_points, merged_scores = [], []
    remaining = np.arange(len(scores))
    while remaining.size:
        best = remaining[0]
        overlaps = _iou(points[best], points[remaining]) > iou_threshold
        group = remaining[overlaps]
        weights = scores[group].astype(np.float64)
        merged = np.tensordot(weights, points[group].astype(np.float64), axes=1) / weights.sum()
        merged_points.append(merged.astype(np.float32))
        merged_scores.append(scores[best])
        remaining = remaining[~overlaps]
    if not merged_points:
        return np.zeros((0, 8, 2), np.float32), np.zeros((0,), np.float32)
    return np.stack(merged_points), np.asarray(merged_scores, np.float32)


def letterbox_transform(width: int, height: int,
                        size: int = INPUT_SIZE) -> tuple[float, float, float]:
    """Return ``(scale, pad_x, pad_y)`` mapping frame pixels onto the square model input.

    ``input = scale * frame + pad``; the frame is centred, as MediaPipe centres its
    keep-aspect-ratio region of interest.
    """
    scale = size / max(width, height)
    return scale, (size - scale * width) / 2.0, (size - scale * height) / 2.0


def to_rgb(frame_bgr: np.ndarray) -> np.ndarray:
    """Return an RGB copy of a BGR, BGRA or greyscale frame; ValueError on other shapes."""
    frame = np.asarray(frame_bgr)
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2RGB)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    raise ValueError(f"expected a BGR or greyscale frame, got an array of shape {frame.shape}")


def model_input(frame_bgr: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Letterbox a frame into the [1,128,128,3] float input; return it and the transform used."""
    frame = np.asarray(frame_bgr)
    if frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 frame, got {frame.dtype}")
    if frame.size == 0:
        raise ValueError(f"empty frame of shape {frame.shape}")
    rgb = to_rgb(frame)
    height, width = rgb.shape[:2]
    scale, pad_x, pad_y = letterbox_transform(width, height)
    # The same matrix on pixel indices as MediaPipe's OpenCV converter (no half-pixel shift), so
    # the detections match MediaPipe's to a fraction of a pixel.
    matrix = np.array([[scale, 0.0, pad_x], [0.0, scale, pad_y]], dtype=np.float64)
    square = cv2.warpAffine(rgb, matrix, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    tensor = square.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
    return tensor[np.newaxis], (scale, pad_x, pad_y)


class FaceDetector:
    """Detect faces in BGR frames with the verified ``face_detector`` model.

    ``min_score`` is the sigmoid score a candidate needs (MediaPipe's default 0.5); ``manifest``
    replaces ``models_dir/manifest.json`` (the model builder checks a file before listing it).
    """

    def __init__(self, models_dir: Path = DEFAULT_MODELS_DIR, num_threads: int = 1,
                 min_score: float = 0.5, manifest: dict | None = None):
        self.model = TFLiteModel(MODEL_NAME, models_dir, num_threads=num_threads, manifest=manifest)
        self.min_score = float(min_score)

    def raw_outputs(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
        """Run the model on a frame; return regressors, classificators and letterbox transform."""
        tensor, transform = model_input(frame_bgr)
        regressors, classificators = self.model.run(tensor)
        return regressors, classificators, transform

    def detect(self, frame_bgr: np.ndarray) -> list[Face]:
        """Return the faces in a BGR (or greyscale) uint8 frame, best score first."""
        regressors, classificators, (scale, pad_x, pad_y) = self.raw_outputs(frame_bgr)
        points, scores = decode(regressors, classificators, self.min_score)
        if not len(scores):
            return []
        points, scores = weighted_nms(points, scores)
        pixels = (points * INPUT_SIZE - np.array([pad_x, pad_y], np.float32)) / np.float32(scale)
        faces = [Face(box=tuple(float(v) for v in p[:2].ravel()), score=float(s),
                      keypoints=np.ascontiguousarray(p[2:], dtype=np.float32))
                 for p, s in zip(pixels, scores, strict=True)]
        log.debug("detected %d face(s), best score %.3f", len(faces), faces[0].score)
        return faces
