"""The ``replay`` microphone backend: WAV files played as a microphone, in 16 kHz blocks."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from daemon.capture.audio import SAMPLE_RATE_HZ, read_wav, room_tone
from daemon.capture.base import ThreadedSource
from daemon.capture.media_clock import ReplayPacing
from daemon.errors import SourceError


class ReplayAudio(ThreadedSource):
    """WAV files played in blocks, in real time, as fast as possible, or on a
    :class:`~daemon.capture.media_clock.MediaClock` (``clock``) in step with the frames (lossless).

    ``gap_seconds`` of room tone is played before the first file, between files and after the last,
    so that voice activity detection sees each file as one utterance. A live microphone never
    delivers digital silence, and webrtcvad adapts to the background it hears: after true zeros it
    takes a recording's own background noise for speech. So gaps are filled with the neighbouring
    recording's background (its first 250 ms, mirrored and repeated).
    """

    name = "microphone-replay"

    def __init__(self, paths, block_ms: int = 30, realtime: bool = True, gap_seconds: float = 0.0,
                 clock=time.monotonic, sleep=time.sleep):
        super().__init__(clock=clock, queue_size=64, lossless=True)
        self.paths = [Path(p) for p in paths]
        missing = [str(p) for p in self.paths if not p.is_file()]
        if missing:
            raise SourceError(f"replay WAV files not found: {', '.join(missing)}")
        self._block = SAMPLE_RATE_HZ * block_ms // 1000
        self._gap_samples = int(gap_seconds * SAMPLE_RATE_HZ)
        self._pacing = ReplayPacing("audio", block_ms / 1000, realtime, clock, sleep)
        self._blocks = None

    @classmethod
    def from_config(cls, microphone, clock=time.monotonic) -> "ReplayAudio":
        """Build from a :class:`~daemon.config.ReplayMicrophoneConfig`."""
        return cls(microphone.paths, microphone.block_ms, microphone.realtime, microphone.gap_seconds,
                   clock=clock)

    def _open(self) -> None:
        self._blocks = self._iterate()
        self._pacing.open()

    def _release(self) -> None:
        self._pacing.close()

    def _delivered(self, item) -> None:
        self._pacing.delivered(item)

    def _held_back(self) -> bool:
        return self._pacing.held_back()

    def _iterate(self):
        recordings = [read_wav(path) for path in self.paths]
        pieces = []
        for recording in recordings:
            pieces += [room_tone(recording, self._gap_samples), recording]
        if recordings:
            pieces.append(room_tone(recordings[-1], self._gap_samples))
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        for start in range(0, audio.size - self._block + 1, self._block):
            yield audio[start:start + self._block]

    def _grab(self):
        block = next(self._blocks, None)
        if block is None:
            self._pacing.end()
            return None
        return self._pacing.release(block, self._stop)
