"""The ``replay`` camera backend: video files or folders of images replayed as a camera."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import cv2
import numpy as np

from daemon.capture.base import ThreadedSource
from daemon.capture.media_clock import ReplayPacing
from daemon.errors import SourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp"}


class ReplayFrames(ThreadedSource):
    """Frames from video files or folders of images, paced at ``fps``, as fast as possible, or on a
    :class:`~daemon.capture.media_clock.MediaClock` (``clock``) in step with the audio.

    Videos are resampled to ``fps`` on their own time base (a 25 fps recording replays at its real
    speed). A folder of images is read in name order, one frame period per image. Between items,
    and before the first and after the last, ``gap_seconds`` of empty frames with sensor-like noise
    are played, matching :class:`~daemon.capture.replay_audio.ReplayAudio`'s gaps so that audio and video
    stay in step. Replay is lossless: nothing is dropped.
    """

    name = "camera-replay"

    def __init__(self, path, fps: float = 15.0, realtime: bool = True, loop: bool = False,
                 gap_seconds: float = 0.0, durations: list[float] | None = None,
                 clock=time.monotonic, sleep=time.sleep):
        super().__init__(clock=clock, queue_size=4, lossless=True)
        self.paths = [Path(p) for p in (path if isinstance(path, (list, tuple)) else [path])]
        missing = [str(p) for p in self.paths if not p.exists()]
        if missing:
            raise SourceError(f"replay path does not exist: {', '.join(missing)}")
        if durations is not None and len(durations) != len(self.paths):
            raise SourceError(f"{len(durations)} durations for {len(self.paths)} replay items")
        self._fps, self._loop = fps, loop
        self._gap_seconds = gap_seconds
        # Each item's length on the replay's timeline, e.g. that of the audio it goes with: a
        # recording's video and audio rarely last exactly as long (GRID: 3.00 s vs 2.98 s), and
        # over many items the difference would slide them out of step.
        self._durations = durations
        self._pacing = ReplayPacing("frames", 1.0 / fps, realtime, clock, sleep)
        self._rng = np.random.default_rng(0)
        self._frames = None

    @classmethod
    def from_config(cls, camera, clock=time.monotonic, gap_seconds: float = 0.0,
                    durations: list[float] | None = None) -> "ReplayFrames":
        """Build from a :class:`~daemon.config.ReplayCameraConfig`; ``gap_seconds`` and
        ``durations`` keep it in step with an audio replay (its gaps and the lengths of its files)."""
        return cls(camera.path, fps=camera.fps, realtime=camera.realtime, loop=camera.loop,
                   gap_seconds=gap_seconds, durations=durations, clock=clock)

    def _open(self) -> None:
        self._frames = self._iterate()
        self._pacing.open()

    def _release(self) -> None:
        self._pacing.close()

    def _delivered(self, item) -> None:
        self._pacing.delivered(item)

    def _held_back(self) -> bool:
        return self._pacing.held_back()

    def _iterate(self):
        # Frames are counted on one timeline (frame n shows time n / fps), so that rounding each
        # gap or item to whole frames never accumulates.
        shape, emitted, timeline = None, 0, 0.0

        def frames_until(end_seconds: float) -> int:
            return max(0, int(round(end_seconds * self._fps)) - emitted)

        while True:
            produced = False
            for index, path in enumerate(self.paths):
                frames = self._images(path) if path.is_dir() else self._video(path)
                first = next(frames, None)
                if first is None:
                    continue
                if shape is None:
                    shape = first.shape
                    for _ in range(frames_until(timeline + self._gap_seconds)):
                        emitted += 1
                        yield self._noise(shape)
                    timeline += self._gap_seconds
                produced = True
                if self._durations is None:
                    for frame in itertools.chain([first], frames):
                        emitted += 1
                        yield frame
                    timeline = emitted / self._fps
                else:
                    timeline += self._durations[index]
                    frame = first
                    for _ in range(frames_until(timeline)):
                        emitted += 1
                        yield frame
                        frame = next(frames, frame)  # hold the last frame if the video is short
                for _ in range(frames_until(timeline + self._gap_seconds)):
                    emitted += 1
                    yield self._noise(shape)
                timeline += self._gap_seconds
            if not (self._loop and produced):
                return

    def _noise(self, shape):
        return self._rng.integers(60, 68, size=shape, dtype=np.uint8)

    def _images(self, folder: Path):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for file in files:
            frame = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if frame is None:
                raise SourceError(f"cannot decode image {file}")
            yield frame

    def _video(self, path: Path):
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise SourceError(f"cannot open video {path}")
        source_fps = capture.get(cv2.CAP_PROP_FPS) or self._fps
        try:
            index, emitted = 0, 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                # Emit output frame k when the source reaches time k / fps.
                while emitted / self._fps <= index / source_fps:
                    yield frame
                    emitted += 1
                index += 1
        finally:
            capture.release()

    def _grab(self):
        frame = next(self._frames, None)
        if frame is None:
            self._pacing.end()
            return None
        return self._pacing.release(frame, self._stop)
