"""The ``opencv`` camera backend: a V4L2 camera (index or device path) read with OpenCV."""

from __future__ import annotations

import time

import cv2
import numpy as np

from daemon.capture.base import Pacer, ThreadedSource
from daemon.capture.media_clock import MediaClock
from daemon.errors import ConfigError, SourceError


class OpenCVCamera(ThreadedSource):
    """A camera read with ``cv2.VideoCapture`` (V4L2 index or device path); BGR ``uint8`` frames."""

    name = "camera"

    def __init__(self, device: int | str = 0, width_px: int = 640, height_px: int = 480,
                 fps: float = 15.0, clock=time.monotonic):
        super().__init__(clock=clock, queue_size=2)
        self._device, self._size, self._fps = device, (width_px, height_px), fps
        self._capture = None
        self._pacer = Pacer(fps, clock, time.sleep)

    @classmethod
    def from_config(cls, camera, clock=time.monotonic, **timing) -> "OpenCVCamera":
        """Build from an :class:`~daemon.config.OpenCVCameraConfig`; replay ``timing`` is ignored."""
        if isinstance(clock, MediaClock):
            raise ConfigError("the 'opencv' camera runs in real time; only replays run on a media clock")
        return cls(camera.device, camera.width_px, camera.height_px, camera.fps, clock=clock)

    def _open(self) -> None:
        capture = cv2.VideoCapture(self._device)
        if not capture.isOpened():
            raise SourceError(f"camera {self._device!r} cannot be opened")
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self._size[0])
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self._size[1])
        capture.set(cv2.CAP_PROP_FPS, self._fps)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._capture = capture

    def _grab(self) -> np.ndarray:
        self._pacer.wait()
        ok, frame = self._capture.read()
        if not ok or frame is None:
            raise SourceError(f"camera {self._device!r} returned no frame")
        return frame

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
