"""Capture: frame and audio sources behind one interface, :class:`Source`.

Backends (one module each) are chosen by ``camera.backend`` and ``microphone.backend`` through the
registry in :mod:`daemon.capture.sources`; :mod:`daemon.capture.media_clock` runs replays in media
time, as fast as the machine computes.
"""

from daemon.capture.base import Item, Source, ThreadedSource

__all__ = ["Item", "Source", "ThreadedSource"]
