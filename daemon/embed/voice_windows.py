"""Speaker embedding while the person is still speaking.

The speaker encoder reads 1.6 s windows (160 mel frames) that start every 77 frames, as
Resemblyzer's ``compute_partial_slices`` lays them out; the utterance embedding is the normalised
mean of the window embeddings. :class:`VoiceWindows` hands out each window as soon as its audio is
complete, so only the last, partial window is left to embed when the utterance ends. Each window
is volume-normalised on its own (Resemblyzer normalises the whole utterance, which is unknown
until it ends); enrolment, verification and evaluation go through this same class, so templates and
probes are always made the same way.
"""

from __future__ import annotations

import numpy as np

from daemon.capture.audio import SAMPLE_RATE_HZ
from daemon.embed.mel import HOP_LENGTH, mel_spectrogram, normalize_volume
from daemon.embed.speaker_encoder import (  # noqa: F401 - mean_embedding re-exported
    MIN_COVERAGE, PARTIALS_PER_SECOND, WINDOW_FRAMES, mean_embedding)

WINDOW_SAMPLES = WINDOW_FRAMES * HOP_LENGTH
STEP_SAMPLES = int(np.round((SAMPLE_RATE_HZ / PARTIALS_PER_SECOND) / HOP_LENGTH)) * HOP_LENGTH


def window_mel(window: np.ndarray) -> np.ndarray:
    """The speaker encoder's input for one window of voiced audio: the window volume-normalised on
    its own, as (160, 40) mel frames."""
    return mel_spectrogram(normalize_volume(window))[:WINDOW_FRAMES]


class VoiceWindows:
    """Collects voiced audio and yields the windows to embed, in order."""

    def __init__(self, max_seconds: float = 6.0):
        self._max_samples = int(max_seconds * SAMPLE_RATE_HZ)
        self._chunks: list[np.ndarray] = []
        self._length = 0
        self._next = 0  # index of the next window to hand out

    @property
    def seconds(self) -> float:
        """Voiced audio collected so far, in seconds."""
        return self._length / SAMPLE_RATE_HZ

    def audio(self) -> np.ndarray:
        """All voiced audio collected so far (up to the maximum length)."""
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, np.float32)

    def add(self, samples: np.ndarray) -> list[np.ndarray]:
        """Append voiced samples; return the windows that became complete."""
        room = self._max_samples - self._length
        if room > 0 and samples.size:
            piece = samples[:room].astype(np.float32, copy=False)
            self._chunks.append(piece)
            self._length += piece.size
        ready = []
        while self._next * STEP_SAMPLES + WINDOW_SAMPLES <= self._length:
            ready.append(self._window(self._next))
            self._next += 1
        return ready

    def finish(self) -> list[np.ndarray]:
        """The remaining windows once the utterance has ended (the last one zero-padded).

        A trailing window covering less than 75% of its length is dropped unless it is the only
        window, as Resemblyzer does.
        """
        indices = self._remaining_indices()
        self._next += len(indices)
        return [self._window(i) for i in indices]

    def peek_finish(self) -> list[tuple[int, np.ndarray]]:
        """What :meth:`finish` would return now, with the window indices, without consuming them
        (for embedding the tail speculatively while the end of the utterance is not yet sure)."""
        return [(i, self._window(i)) for i in self._remaining_indices()]

    @property
    def length(self) -> int:
        """Voiced samples collected so far."""
        return self._length

    def _remaining_indices(self) -> list[int]:
        indices, index = [], self._next
        while index * STEP_SAMPLES < self._length:
            start = index * STEP_SAMPLES
            if (self._length - start) / WINDOW_SAMPLES < MIN_COVERAGE and index > 0:
                break
            indices.append(index)
            index += 1
            if start + WINDOW_SAMPLES >= self._length:
                break
        return indices

    def _window(self, index: int) -> np.ndarray:
        audio = self.audio()
        start = index * STEP_SAMPLES
        window = audio[start:start + WINDOW_SAMPLES]
        if window.size < WINDOW_SAMPLES:
            window = np.pad(window, (0, WINDOW_SAMPLES - window.size))
        return window
