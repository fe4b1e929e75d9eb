"""Speaker embedding while the person is still speaking.

The speaker encoder reads 1.6 s windows (160 mel frames) that start every 77 frames, as
Resemblyzer's ``compute_partial_slices`` lays them out; the utterance embedding is the normalised
mean of the window embeddings. :class:`VoiceWindows` hands out each window as soon as its audio is
complete, so only the last, partial window is left to embed when the utterance ends. Each window
is volume-normalised on its own (Resemblyzer normalises the whole utterance, which is unknown
until it ends); enrolment, verification and evaluation go through this same class, so templates and
probes are always made the same way.

Before it is cut into windows, the speech is *frequency-warped* by :data:`FREQUENCY_WARP`: read at
that rate by linear interpolation, which lowers every frequency (pitch and formants) by that
factor and stretches time by its inverse, so a window holds 1.6 s x ``FREQUENCY_WARP`` of speech.
Resemblyzer was trained on adults' read and interview speech; children's and some non-native
speakers' higher formants sit at the edge of what it learnt, and moved down into its range they
are told apart much better (docs/results.md, "The voice target: frequency-warped speech":
one-shot voice EER 3.07 -> 2.30 % on the development data, speechocean762 4.44 -> 2.76 %, the
adult read-speech corpora still at or near 0 %). Window positions and lengths below count warped
samples; :attr:`VoiceWindows.length` and ``seconds`` count the speech as heard.
"""

from __future__ import annotations

import numpy as np

from daemon.capture.audio import SAMPLE_RATE_HZ
from daemon.embed.mel import HOP_LENGTH, mel_spectrogram, normalize_volume
from daemon.embed.speaker_encoder import (  # noqa: F401 - mean_embedding re-exported
    MIN_COVERAGE, PARTIALS_PER_SECOND, WINDOW_FRAMES, mean_embedding)

WINDOW_SAMPLES = WINDOW_FRAMES * HOP_LENGTH
STEP_SAMPLES = int(np.round((SAMPLE_RATE_HZ / PARTIALS_PER_SECOND) / HOP_LENGTH)) * HOP_LENGTH
#: Frequencies of the speech are multiplied by this before the speaker encoder (see the module doc;
#: measured over 0.84-1.12, best and flat over 0.88-0.92).
FREQUENCY_WARP = 0.90


def warped_length(samples: int, warp: float = FREQUENCY_WARP) -> int:
    """How many warped samples ``samples`` of speech give: those whose source position lies in it."""
    return int((samples - 1) / warp) + 1 if samples > 0 else 0


def warped(audio: np.ndarray, start: int = 0, count: int | None = None,
           warp: float = FREQUENCY_WARP) -> np.ndarray:
    """Warped samples ``start .. start + count`` of ``audio`` (all of them by default); positions
    past the warped length are zero."""
    total = warped_length(audio.size, warp)
    count = total - start if count is None else count
    out = np.zeros(max(count, 0), np.float32)
    inside = max(0, min(count, total - start))
    if inside:
        # np.interp's arithmetic on the unit grid, without building and searching that grid.
        positions = (start + np.arange(inside)) * warp
        left = np.minimum(positions.astype(np.int64), max(audio.size - 2, 0))
        source = audio[left[0]:left[-1] + 2].astype(np.float64)
        here, after = source[left - left[0]], source[np.minimum(left - left[0] + 1, source.size - 1)]
        out[:inside] = (after - here) * (positions - left) + here
    return out


def window_mel(window: np.ndarray) -> np.ndarray:
    """The speaker encoder's input for one window of voiced audio: the window volume-normalised on
    its own, as (160, 40) mel frames."""
    return mel_spectrogram(normalize_volume(window))[:WINDOW_FRAMES]


class VoiceWindows:
    """Collects voiced audio and yields the windows to embed, in order."""

    def __init__(self, max_seconds: float = 6.0, warp: float = FREQUENCY_WARP):
        self.warp = warp  # another factor only for studies (tools/voice_warp_study.py)
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
        while self._next * STEP_SAMPLES + WINDOW_SAMPLES <= warped_length(self._length, self.warp):
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

    def covered_by(self, windows: int) -> int:
        """Voiced samples that the first ``windows`` windows span (at most all of them)."""
        if windows <= 0:
            return 0
        warped_end = (windows - 1) * STEP_SAMPLES + WINDOW_SAMPLES
        return min(self._length, int(np.ceil(warped_end * self.warp)))

    def _remaining_indices(self) -> list[int]:
        total = warped_length(self._length, self.warp)
        indices, index = [], self._next
        while index * STEP_SAMPLES < total:
            start = index * STEP_SAMPLES
            if (total - start) / WINDOW_SAMPLES < MIN_COVERAGE and index > 0:
                break
            indices.append(index)
            index += 1
            if start + WINDOW_SAMPLES >= total:
                break
        return indices

    def _window(self, index: int) -> np.ndarray:
        """Warped window ``index``, zero-padded past the end of the speech."""
        return warped(self.audio(), index * STEP_SAMPLES, WINDOW_SAMPLES, self.warp)
