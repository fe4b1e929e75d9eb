"""Frame sources: an OpenCV camera, or a replay of a video file or a folder of images.

Frames are BGR ``uint8`` arrays (OpenCV's order). Which source runs is chosen in ``camera.backend``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from daemon.capture.base import ThreadedSource
from daemon.errors import SourceError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp"}


class Pacer:
    """Sleeps so that item ``i`` is released at ``start + i / rate`` on the given clock."""

    def __init__(self, rate_hz: float, clock: Callable[[], float], sleep: Callable[[float], None]):
        self._period = 1.0 / rate_hz
        self._clock, self._sleep = clock, sleep
        self._start: float | None = None
        self._count = 0

    def wait(self) -> None:
        now = self._clock()
        if self._start is None:
            self._start = now
        due = self._start + self._count * self._period
        if due > now:
            self._sleep(due - now)
        self._count += 1


class OpenCVCamera(ThreadedSource):
    """A camera read with ``cv2.VideoCapture`` (V4L2 index or device path)."""

    name = "camera"

    def __init__(self, device: int | str = 0, width_px: int = 640, height_px: int = 480,
                 fps: float = 15.0, clock=time.monotonic):
        super().__init__(clock=clock, queue_size=2)
        self._device, self._size, self._fps = device, (width_px, height_px), fps
        self._capture = None
        self._pacer = Pacer(fps, clock, time.sleep)

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


class ReplayFrames(ThreadedSource):
    """Frames from a video file or a folder of images, paced at ``fps`` or as fast as possible.

    A folder of images is read in name order, each image shown for one frame period (use
    ``repeat`` to hold each image longer). Replay is lossless: nothing is dropped.
    """

    name = "camera-replay"

    def __init__(self, path: str | Path, fps: float = 15.0, realtime: bool = True, loop: bool = False,
                 repeat: int = 1, clock=time.monotonic, sleep=time.sleep):
        super().__init__(clock=clock, queue_size=4, lossless=True)
        self.path = Path(path)
        if not self.path.exists():
            raise SourceError(f"replay path does not exist: {self.path}")
        self._loop, self._repeat = loop, max(1, repeat)
        self._pacer = Pacer(fps, clock, sleep) if realtime else None
        self._frames = None

    def _open(self) -> None:
        self._frames = self._iterate()

    def _iterate(self):
        while True:
            produced = False
            for frame in (self._images() if self.path.is_dir() else self._video()):
                produced = True
                for _ in range(self._repeat):
                    yield frame
            if not (self._loop and produced):
                return

    def _images(self):
        files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for file in files:
            frame = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if frame is None:
                raise SourceError(f"cannot decode image {file}")
            yield frame

    def _video(self):
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise SourceError(f"cannot open video {self.path}")
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield frame
        finally:
            capture.release()

    def _grab(self) -> np.ndarray | None:
        frame = next(self._frames, None)
        if frame is not None and self._pacer is not None:
            self._pacer.wait()
        return frame


def open_frame_source(camera, clock=time.monotonic) -> ThreadedSource:
    """Build the frame source named by a :class:`~daemon.config.CameraConfig`."""
    if camera.backend == "replay":
        return ReplayFrames(camera.path, fps=camera.fps, realtime=camera.realtime, loop=camera.loop,
                            clock=clock)
    return OpenCVCamera(camera.device, camera.width_px, camera.height_px, camera.fps, clock=clock)
