"""Builders the capture loop feeds per frame and per audio block; they hand out immutable tracks
for :func:`daemon.liveness.sync.check_liveness`.

Both keep a bounded history (``history_s``, 10 s by default), so an idle door costs constant memory
and an attempt always has some seconds of context before its speech.
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np

from daemon.detect.face_landmarks import mouth_opening
from daemon.liveness.sync import FaceTrack, SpeechTrack

log = logging.getLogger(__name__)

ENERGY_WINDOW_S = 0.010
DEFAULT_HISTORY_S = 10.0
#: The band whose energy follows the mouth opening best on the development clips (1-3 kHz is where
#: the second formant and the bursts of opening consonants lie; the low band is dominated by voicing
#: that continues while the lips close).
DEFAULT_BAND_HZ = (800.0, 2500.0)


class FaceTrackBuilder:
    """Collects one row per processed frame: time, mouth opening, normalised keypoints."""

    def __init__(self, history_s: float = DEFAULT_HISTORY_S):
        self.history_s = float(history_s)
        self._rows: deque[tuple[float, float, np.ndarray]] = deque()

    def add(self, t: float, face, landmarks: np.ndarray | None) -> None:
        """Add a frame taken at monotonic time ``t``: ``face`` is a
        :class:`daemon.detect.face_detector.Face` or None; ``landmarks`` its (468, 3) landmarks or
        None. Frames without a face (or landmarks) still count: they show up as missing values."""
        if self._rows and t < self._rows[-1][0]:
            log.warning("face track: time went backwards (%.3f after %.3f); history cleared", t,
                        self._rows[-1][0])
            self._rows.clear()
        keypoints = np.full((6, 2), np.nan, np.float32)
        if face is not None and face.width > 0:
            centre = np.asarray(face.center, np.float32)
            keypoints = ((np.asarray(face.keypoints, np.float32) - centre) / np.float32(face.width))
        mouth = float(mouth_opening(landmarks)) if face is not None and landmarks is not None else np.nan
        self._rows.append((float(t), mouth, keypoints))
        while self._rows and self._rows[0][0] < t - self.history_s:
            self._rows.popleft()

    def reset(self) -> None:
        """Forget every frame."""
        self._rows.clear()

    def __len__(self) -> int:
        return len(self._rows)

    def build(self) -> FaceTrack:
        """Return the frames held now as an immutable :class:`FaceTrack`."""
        if not self._rows:
            return FaceTrack(np.zeros(0), np.zeros(0), np.zeros((0, 6, 2), np.float32))
        t = np.fromiter((row[0] for row in self._rows), np.float64, len(self._rows))
        mouth = np.fromiter((row[1] for row in self._rows), np.float64, len(self._rows))
        keypoints = np.stack([row[2] for row in self._rows])
        for array in (t, mouth, keypoints):
            array.flags.writeable = False
        return FaceTrack(t, mouth, keypoints)


def band_rms(windows: np.ndarray, sample_rate_hz: int, band_hz: tuple[float, float] | None) -> np.ndarray:
    """RMS of each row of ``windows`` (k, n), restricted to ``band_hz`` (Hann-windowed spectrum,
    scaled so that a full band gives the plain RMS); None means the whole band."""
    if band_hz is None:
        return np.sqrt((windows ** 2).mean(axis=1))
    n = windows.shape[1]
    taper = np.hanning(n)
    power = np.abs(np.fft.rfft(windows * taper, axis=1)) ** 2
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate_hz)
    in_band = (freqs >= band_hz[0]) & (freqs < band_hz[1])
    return np.sqrt(2.0 * power[:, in_band].sum(axis=1) / (n * (taper ** 2).sum()))


class SpeechTrackBuilder:
    """Turns audio blocks into a 10 ms RMS envelope (of the ``band_hz`` band) with a bounded
    history.

    ``add(t, samples)`` takes a block of float samples whose first sample was taken at monotonic
    time ``t``; samples that do not fill a 10 ms window wait for the next block (unless the next
    block does not follow on in time, when they are dropped).
    """

    def __init__(self, sample_rate_hz: int = 16000, history_s: float = DEFAULT_HISTORY_S,
                 band_hz: tuple[float, float] | None = DEFAULT_BAND_HZ):
        self.sample_rate_hz = int(sample_rate_hz)
        self.band_hz = band_hz
        self.window = int(round(self.sample_rate_hz * ENERGY_WINDOW_S))
        self.history_s = float(history_s)
        self._times: deque[float] = deque()
        self._energies: deque[float] = deque()
        self._pending = np.zeros(0, np.float32)
        self._pending_t = 0.0

    def add(self, t: float, samples: np.ndarray) -> None:
        """Add one block of mono float samples starting at time ``t``."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        expected = self._pending_t + self._pending.size / self.sample_rate_hz
        # A gap or overlap of more than half a window means the stream was interrupted.
        if self._pending.size and abs(t - expected) > 0.5 * ENERGY_WINDOW_S:
            self._pending = np.zeros(0, np.float32)
        if not self._pending.size:
            self._pending_t = float(t)
        data = np.concatenate([self._pending, samples])
        n_windows = data.size // self.window
        if n_windows:
            blocks = data[:n_windows * self.window].reshape(n_windows, self.window).astype(np.float64)
            rms = band_rms(blocks, self.sample_rate_hz, self.band_hz)
            centres = self._pending_t + (np.arange(n_windows) + 0.5) * ENERGY_WINDOW_S
            self._times.extend(centres.tolist())
            self._energies.extend(rms.tolist())
            self._pending_t += n_windows * self.window / self.sample_rate_hz
        self._pending = data[n_windows * self.window:]
        while self._times and self._times[0] < self._times[-1] - self.history_s:
            self._times.popleft()
            self._energies.popleft()

    def reset(self) -> None:
        """Forget all audio."""
        self._times.clear()
        self._energies.clear()
        self._pending = np.zeros(0, np.float32)

    def __len__(self) -> int:
        return len(self._times)

    def build(self, start: float, end: float) -> SpeechTrack:
        """Return the envelope held now with the utterance bounds ``start``..``end`` (seconds)."""
        t = np.fromiter(self._times, np.float64, len(self._times))
        energy = np.fromiter(self._energies, np.float64, len(self._energies))
        for array in (t, energy):
            array.flags.writeable = False
        return SpeechTrack(t, energy, float(start), float(end))
