"""Frame sources as one import: frames are BGR ``uint8`` arrays (OpenCV's order).

The backends live in :mod:`daemon.capture.opencv_camera` and :mod:`daemon.capture.replay_frames`;
``camera.backend`` picks one through :func:`daemon.capture.sources.open_frame_source`.
"""

from daemon.capture.base import Pacer
from daemon.capture.opencv_camera import OpenCVCamera
from daemon.capture.replay_frames import IMAGE_SUFFIXES, ReplayFrames
from daemon.capture.sources import open_frame_source

__all__ = ["IMAGE_SUFFIXES", "OpenCVCamera", "Pacer", "ReplayFrames", "open_frame_source"]
