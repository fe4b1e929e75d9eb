"""Speaker-dependent recognition of a spoken digit: MFCC features and dynamic time warping against
the person's own enrolment recordings of the digits 0-9 (numpy only).

Why this and not a speaker-independent recogniser: see :data:`daemon.challenge.CHOICE`. The
templates are biometric data (they are the person's voice): they live in the encrypted template
store with the embeddings and are never logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from daemon.embed.mel import mel_filterbank

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
N_FFT, HOP = 400, 160            # 25 ms windows every 10 ms
N_MELS, N_CEPS = 26, 13
DIGITS = tuple(str(d) for d in range(10))
#: Frames whose energy is this far under the loudest frame are trimmed from both ends.
TRIM_DB = 30.0


@lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    n = np.arange(N_MELS)
    k = np.arange(N_CEPS)[:, None]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * N_MELS)) * np.sqrt(2.0 / N_MELS)
    basis[0] /= np.sqrt(2.0)
    return basis


def _frames(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float64).reshape(-1)
    if samples.size < N_FFT:
        samples = np.pad(samples, (0, N_FFT - samples.size))
    # Pre-emphasis flattens the spectral tilt so the formants, not the voicing, dominate.
    samples = np.append(samples[0], samples[1:] - 0.97 * samples[:-1])
    return np.lib.stride_tricks.sliding_window_view(samples, N_FFT)[::HOP]


def trim(samples: np.ndarray, trim_db: float = TRIM_DB) -> np.ndarray:
    """The samples from the first to the last 10 ms frame within ``trim_db`` of the loudest."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    n = samples.size // HOP
    if n < 3:
        return samples
    energy = (samples[:n * HOP].reshape(n, HOP).astype(np.float64) ** 2).mean(axis=1)
    level = 10 * np.log10(energy + 1e-12)
    loud = np.flatnonzero(level >= level.max() - trim_db)
    return samples[loud[0] * HOP:(loud[-1] + 1) * HOP]


def mfcc(samples: np.ndarray) -> np.ndarray:
    """``(frames, 13)`` MFCCs of 16 kHz samples (c0 dropped, log energy first, mean removed per
    utterance so that the microphone's and the loudspeaker's colouring cancel)."""
    frames = _frames(samples)
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(N_FFT), axis=1)) ** 2
    mel = spectrum @ mel_filterbank(SAMPLE_RATE_HZ, N_FFT, N_MELS).T.astype(np.float64)
    ceps = np.log(mel + 1e-10) @ _dct_matrix().T
    log_energy = np.log(spectrum.sum(axis=1) + 1e-10)
    features = np.column_stack([log_energy, ceps[:, 1:]])
    return (features - features.mean(axis=0)).astype(np.float32)


def dtw_distance(query: np.ndarray, template: np.ndarray) -> float:
    """Mean frame distance along the best warping path of ``query`` onto ``template``.

    Each query frame is matched to one template frame; the template index may stay, advance by one
    or skip one (so the answer may be up to twice as fast or arbitrarily slow), which keeps each row
    dependent on the previous one only, so rows are vectorised.
    """
    q = np.asarray(query, np.float64)
    t = np.asarray(template, np.float64)
    if len(q) == 0 or len(t) == 0:
        return float("inf")
    local = np.sqrt(((q[:, None, :] - t[None, :, :]) ** 2).sum(axis=2))
    cost = np.full(len(t), np.inf)
    cost[0] = local[0, 0]
    for i in range(1, len(q)):
        stay = cost
        step = np.concatenate([[np.inf], cost[:-1]])
        skip = np.concatenate([[np.inf, np.inf], cost[:-2]])
        cost = local[i] + np.minimum(np.minimum(stay, step), skip)
    return float(cost[-1] / len(q))


@dataclass
class DigitTemplates:
    """One person's enrolment recordings of the digits, as MFCC sequences: ``{digit: [array]}``."""

    by_digit: dict = field(default_factory=dict)

    @classmethod
    def from_recordings(cls, recordings) -> "DigitTemplates":
        """Build from ``(digit, samples)`` pairs (16 kHz float samples of one spoken digit)."""
        templates = cls()
        for digit, samples in recordings:
            digit = str(digit)
            if digit not in DIGITS:
                raise ValueError(f"not a digit: {digit!r}")
            templates.by_digit.setdefault(digit, []).append(mfcc(trim(samples)))
        return templates

    def complete(self) -> bool:
        """Whether every digit has at least one template."""
        return all(self.by_digit.get(d) for d in DIGITS)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for storage: ``{"<digit>.<take>": (frames, 13)}``."""
        return {f"{d}.{i}": a for d, arrays in self.by_digit.items() for i, a in enumerate(arrays)}

    @classmethod
    def from_arrays(cls, arrays: dict) -> "DigitTemplates":
        """Inverse of :meth:`to_arrays`."""
        templates = cls()
        for key in sorted(arrays):
            digit = key.split(".", 1)[0]
            templates.by_digit.setdefault(digit, []).append(np.asarray(arrays[key], np.float32))
        return templates


@dataclass(frozen=True)
class Recognition:
    """Which digit an answer sounds like: ``digit`` the nearest, ``distance`` its DTW distance,
    ``margin`` how much nearer it is than the nearest other digit, and ``distances`` every digit's."""

    digit: str | None
    distance: float
    margin: float
    distances: dict = field(default_factory=dict, compare=False, repr=False)

    def matches(self, digit: str, max_distance: float, max_ratio: float = 1.0) -> bool:
        """Whether the answer passes as ``digit``: within ``max_distance`` of the person's own
        recordings of it, and at most ``max_ratio`` times as far as the nearest digit (two digits
        the person says alike are a near tie; see :data:`daemon.challenge.CHOICE`)."""
        distance = self.distances.get(digit, self.distance if digit == self.digit else float("inf"))
        return bool(distance <= max_distance and distance <= max_ratio * self.distance)


def recognise(samples: np.ndarray, templates: DigitTemplates) -> Recognition:
    """The nearest digit of ``templates`` to the spoken ``samples`` (one digit, silence trimmed)."""
    features = mfcc(trim(samples))
    best = {d: min(dtw_distance(features, t) for t in arrays)
            for d, arrays in templates.by_digit.items() if arrays}
    if not best:
        return Recognition(None, float("inf"), 0.0)
    ranked = sorted(best.items(), key=lambda item: item[1])
    runner_up = ranked[1][1] if len(ranked) > 1 else float("inf")
    return Recognition(ranked[0][0], float(ranked[0][1]), float(runner_up - ranked[0][1]),
                       {d: float(v) for d, v in best.items()})
