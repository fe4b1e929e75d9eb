"""How usable a detected face is for recognition: size, sharpness, exposure and pose.

Every measure is pure numpy/OpenCV on the frame and the detector's box and keypoints:

- size: inter-ocular distance and box width in frame pixels;
- sharpness: variance of the Laplacian of the face region resampled to a fixed
  :data:`SHARPNESS_SIZE` square, divided by the region's own grey-level variance, so it does not
  depend on the face's size in the frame nor on its contrast or exposure;
- exposure: mean and 5th/95th percentiles of luminance (0..255) in the central part of the box;
- pose: ``yaw_deg`` from where the nose tip falls between the two ear tragions (0 frontal, its
  sign the side the head is turned to) and ``roll_deg`` from the eye line.

Each measure becomes a sub-score in [0, 1] that is exactly 0.5 at its threshold and grows towards 1
away from it on the good side; :attr:`FaceQuality.score` is the smallest sub-score, so a face has
``problems`` exactly when its score is below 0.5.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from daemon.detect.face_detector import (LEFT_EAR_TRAGION, LEFT_EYE, NOSE_TIP, RIGHT_EAR_TRAGION,
                                         RIGHT_EYE, Face)

log = logging.getLogger(__name__)

#: Side of the square the face region is resampled to before measuring sharpness.
SHARPNESS_SIZE = 96
#: Fraction of the box (centred) whose luminance is measured, leaving out background and hair.
EXPOSURE_BOX_FRACTION = 0.6

FACE_TOO_SMALL = "face_too_small"
TOO_DARK = "too_dark"
TOO_BRIGHT = "too_bright"
BLURRY = "blurry"
NOT_FRONTAL = "not_frontal"
#: Problems that leave no face to score: the chip of a face this small is mostly interpolation.
#: Every other problem informs (the calibration is fitted on such faces too); it does not gate.
UNSCORABLE = frozenset({FACE_TOO_SMALL})


def scorable(problems) -> bool:
    """Whether a detected face with these quality problems is scored (the door's one rule)."""
    return not UNSCORABLE.intersection(problems)


@dataclass(frozen=True)
class FaceQuality:
    """Quality measures of one face; ``problems`` names every threshold it fails."""

    score: float
    problems: tuple[str, ...]
    inter_ocular_px: float
    box_width_px: float
    sharpness: float
    luminance_mean: float
    luminance_p5: float
    luminance_p95: float
    yaw_deg: float
    roll_deg: float
    sub_scores: dict = field(default_factory=dict, compare=False)

    @property
    def ok(self) -> bool:
        """True when no threshold is failed."""
        return not self.problems


def _region(frame: np.ndarray, box, fraction: float = 1.0) -> np.ndarray:
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    half_w, half_h = (x1 - x0) * fraction / 2.0, (y1 - y0) * fraction / 2.0
    left, right = max(0, int(round(cx - half_w))), min(width, int(round(cx + half_w)))
    top, bottom = max(0, int(round(cy - half_h))), min(height, int(round(cy + half_h)))
    return frame[top:bottom, left:right]


def luminance(frame_bgr: np.ndarray) -> np.ndarray:
    """Return the frame's luminance (uint8, BT.601) whatever its channel count."""
    frame = np.asarray(frame_bgr)
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 1:
        return frame[:, :, 0]
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def sharpness(grey: np.ndarray, box) -> float:
    """Contrast- and size-normalised variance of the Laplacian of the face region (0 if empty)."""
    region = _region(grey, box)
    if region.size == 0 or min(region.shape) < 2:
        return 0.0
    patch = cv2.resize(region.astype(np.float32), (SHARPNESS_SIZE, SHARPNESS_SIZE),
                       interpolation=cv2.INTER_AREA if region.shape[0] > SHARPNESS_SIZE
                       else cv2.INTER_LINEAR)
    contrast = float(patch.var())
    if contrast < 1e-6:
        return 0.0
    return float(cv2.Laplacian(patch, cv2.CV_32F, ksize=3).var() / contrast)


def exposure(grey: np.ndarray, box) -> tuple[float, float, float]:
    """Return mean, 5th and 95th percentile luminance of the central face region."""
    region = _region(grey, box, EXPOSURE_BOX_FRACTION)
    if region.size == 0:
        return 0.0, 0.0, 0.0
    p5, p95 = np.percentile(region, (5, 95))
    return float(region.mean()), float(p5), float(p95)


def pose(keypoints: np.ndarray) -> tuple[float, float]:
    """Return ``(yaw_deg, roll_deg)`` estimated from the six detector keypoints.

    Along the eye line, ``d_right`` and ``d_left`` are the nose tip's distances to the right and
    left ear tragions. A rigid head with the tragions 0.9 inter-ocular distances either side of the
    face's middle and 0.9 behind the eyes, and the nose tip 0.6 in front, gives
    ``(d_right - d_left) / (d_right + d_left) = (5/3) tan(yaw)``, which is inverted here: a rough
    angle (the hidden ear's position is the model's guess), 0 when frontal, signed by the side the
    head is turned to. ``roll_deg`` is the eye line's angle to the horizontal.
    """
    points = np.asarray(keypoints, dtype=np.float64)
    eye_line = points[LEFT_EYE] - points[RIGHT_EYE]
    length = float(np.hypot(*eye_line))
    if length <= 0:
        return 0.0, 0.0
    roll = math.degrees(math.atan2(eye_line[1], eye_line[0]))
    axis = eye_line / length
    d_right = float(np.dot(points[NOSE_TIP] - points[RIGHT_EAR_TRAGION], axis))
    d_left = float(np.dot(points[LEFT_EAR_TRAGION] - points[NOSE_TIP], axis))
    yaw = math.degrees(math.atan2(0.6 * (d_right - d_left), d_right + d_left))
    return yaw, roll


def _at_least(value: float, threshold: float) -> float:
    """Sub-score of a measure that must reach ``threshold``: 0.5 there, 1 at twice it."""
    return float(np.clip(value / (2.0 * threshold), 0.0, 1.0)) if threshold > 0 else 1.0


def _at_most(value: float, threshold: float) -> float:
    """Sub-score of a measure that must stay under ``threshold``: 1 at 0, 0.5 at the threshold."""
    return float(np.clip(1.0 - value / (2.0 * threshold), 0.0, 1.0)) if threshold > 0 else 1.0


def assess_face(frame_bgr: np.ndarray, face: Face, *,
                min_inter_ocular_px: float = 24.0,
                min_box_width_px: float = 56.0,
                min_luminance_mean: float = 50.0,
                max_luminance_mean: float = 210.0,
                min_sharpness: float = 0.2,
                max_abs_yaw_deg: float = 25.0,
                max_abs_roll_deg: float = 30.0) -> FaceQuality:
    """Measure one detected face on its frame and combine the measures into a :class:`FaceQuality`.

    Thresholds (each failing one adds its reason to ``problems``):

    - ``min_inter_ocular_px`` / ``min_box_width_px``: below either, ``face_too_small`` (the
      encoder's 150 px chip would be upsampled about 2x or more);
    - ``min_luminance_mean`` / ``max_luminance_mean``: mean luminance (0..255) of the central face
      region, ``too_dark`` / ``too_bright``;
    - ``min_sharpness``: normalised Laplacian variance (see :func:`sharpness`), ``blurry``;
    - ``max_abs_yaw_deg`` (see :func:`pose`) and ``max_abs_roll_deg``: ``not_frontal``.

    With the defaults all 600 GRID frames, 199 of the 200 AT&T faces and 91% of the 6165 LFW photos
    pass (the LFW failures are mostly heads turned by more than 25 degrees), while darkened,
    shrunken and blurred copies fail (see tests/test_face_quality.py).
    """
    grey = luminance(frame_bgr)
    keypoints = np.asarray(face.keypoints, dtype=np.float64)
    inter_ocular = float(np.hypot(*(keypoints[LEFT_EYE] - keypoints[RIGHT_EYE])))
    box_width = float(face.box[2] - face.box[0])
    sharp = sharpness(grey, face.box)
    mean, p5, p95 = exposure(grey, face.box)
    yaw, roll = pose(keypoints)
    sub_scores = {
        FACE_TOO_SMALL: min(_at_least(inter_ocular, min_inter_ocular_px),
                            _at_least(box_width, min_box_width_px)),
        TOO_DARK: _at_least(mean, min_luminance_mean),
        TOO_BRIGHT: _at_least(255.0 - mean, 255.0 - max_luminance_mean),
        BLURRY: _at_least(sharp, min_sharpness),
        NOT_FRONTAL: min(_at_most(abs(yaw), max_abs_yaw_deg),
                         _at_most(abs(roll), max_abs_roll_deg)),
    }
    failed = {
        FACE_TOO_SMALL: inter_ocular < min_inter_ocular_px or box_width < min_box_width_px,
        TOO_DARK: mean < min_luminance_mean,
        TOO_BRIGHT: mean > max_luminance_mean,
        BLURRY: sharp < min_sharpness,
        NOT_FRONTAL: abs(yaw) > max_abs_yaw_deg or abs(roll) > max_abs_roll_deg,
    }
    problems = tuple(name for name, bad in failed.items() if bad)
    score = min(sub_scores.values())
    if problems:
        log.debug("face quality %.2f: %s", score, ", ".join(problems))
    return FaceQuality(score=score, problems=problems, inter_ocular_px=inter_ocular,
                       box_width_px=box_width, sharpness=sharp, luminance_mean=mean,
                       luminance_p5=p5, luminance_p95=p95, yaw_deg=yaw, roll_deg=roll,
                       sub_scores=sub_scores)
