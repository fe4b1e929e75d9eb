"""The capture backends by name: ``camera.backend`` and ``microphone.backend`` pick one here.

Adding a backend is one module with a :class:`~daemon.capture.base.Source` class that builds itself
from its own config model (``from_config``), that model in :mod:`daemon.config`, and one line below.
"""

from __future__ import annotations

import time

from daemon.capture.base import Source
from daemon.capture.opencv_camera import OpenCVCamera
from daemon.capture.replay_audio import ReplayAudio
from daemon.capture.replay_frames import ReplayFrames
from daemon.capture.sounddevice_microphone import SoundDeviceMicrophone
from daemon.errors import ConfigError

#: Frame sources by ``camera.backend``.
FRAME_SOURCES = {"opencv": OpenCVCamera, "replay": ReplayFrames}
#: Audio sources by ``microphone.backend``.
AUDIO_SOURCES = {"sounddevice": SoundDeviceMicrophone, "replay": ReplayAudio}


def open_frame_source(camera, clock=time.monotonic, **timing) -> Source:
    """The frame source named by a camera config (:data:`daemon.config.CameraConfig`), not started.

    :param clock: stamps the frames; a :class:`~daemon.capture.media_clock.MediaClock` replays in
        media time (replay backends only).
    :param timing: ``gap_seconds`` and ``durations`` keep a replay in step with an audio replay (its
        gaps and the lengths of its files); live cameras ignore them.
    """
    return _backend(FRAME_SOURCES, "camera", camera.backend).from_config(camera, clock=clock, **timing)


def open_audio_source(microphone, clock=time.monotonic) -> Source:
    """The audio source named by a microphone config (:data:`daemon.config.MicrophoneConfig`), not
    started; ``clock`` as for :func:`open_frame_source`."""
    return _backend(AUDIO_SOURCES, "microphone", microphone.backend).from_config(microphone, clock=clock)


def _backend(registry: dict, section: str, name: str):
    try:
        return registry[name]
    except KeyError:
        raise ConfigError(f"{section}.backend {name!r}: no such backend "
                          f"(known: {', '.join(sorted(registry))})") from None
