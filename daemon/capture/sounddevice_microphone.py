"""The ``sounddevice`` microphone backend: a PortAudio input read in blocks.

sounddevice is imported only when the microphone is opened, so a machine without PortAudio
(``libportaudio2``) still runs the replay demo and the tests.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from daemon.capture.audio import SAMPLE_RATE_HZ, StreamResampler
from daemon.capture.base import ThreadedSource
from daemon.capture.media_clock import MediaClock
from daemon.errors import ConfigError, SourceError

log = logging.getLogger(__name__)


class SoundDeviceMicrophone(ThreadedSource):
    """A PortAudio input read in blocks with sounddevice's blocking API, resampled to 16 kHz."""

    name = "microphone"

    def __init__(self, device=None, sample_rate_hz: int = SAMPLE_RATE_HZ, block_ms: int = 30,
                 clock=time.monotonic):
        super().__init__(clock=clock, queue_size=32)
        self._device, self._rate = device, sample_rate_hz
        self._block = sample_rate_hz * block_ms // 1000
        self._resampler = StreamResampler(sample_rate_hz)
        self._stream = None

    @classmethod
    def from_config(cls, microphone, clock=time.monotonic) -> "SoundDeviceMicrophone":
        """Build from a :class:`~daemon.config.SoundDeviceMicrophoneConfig`."""
        if isinstance(clock, MediaClock):
            raise ConfigError("the 'sounddevice' microphone runs in real time; only replays run on "
                              "a media clock")
        return cls(microphone.device, microphone.sample_rate_hz, microphone.block_ms, clock=clock)

    def _open(self) -> None:
        try:
            import sounddevice
        except OSError as exc:  # raised when the PortAudio library itself is missing
            raise SourceError(f"sounddevice cannot load PortAudio (install libportaudio2): {exc}") from exc
        self._stream = sounddevice.InputStream(device=self._device, channels=1, dtype="float32",
                                               samplerate=self._rate, blocksize=self._block)
        self._stream.start()

    def _grab(self) -> np.ndarray:
        block, overflowed = self._stream.read(self._block)
        if overflowed:
            log.debug("microphone overflow: audio was lost")
        return self._resampler(block[:, 0].copy())

    def _release(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
