"""Where the development data lies for tests (``../shared/data``; CI has it), and how to read it."""

from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def load(key: str) -> np.ndarray:
    """Load a data image, or frame n of a video for ``path#n`` (paths relative to the data folder)."""
    path, _, frame = key.partition("#")
    if not frame:
        image = cv2.imread(str(DATA / path), cv2.IMREAD_COLOR)
        assert image is not None, path
        return image
    capture = cv2.VideoCapture(str(DATA / path))
    for _ in range(int(frame) + 1):
        ok, image = capture.read()
        assert ok, key
    capture.release()
    return image
