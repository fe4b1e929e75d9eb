"""The audio front end of the speaker encoder: Resemblyzer's features, in numpy only.

Resemblyzer (``resemblyzer/audio.py``, version 0.1.4) feeds its GE2E encoder with 40-band mel
spectrograms of *linear power* (not log) computed by ``librosa.feature.melspectrogram`` at 16 kHz
with a 25 ms window and 10 ms hop, after normalising the volume to -30 dBFS (increase only) and
shortening long silences with webrtcvad. This module reproduces those steps without
librosa or scipy so that the daemon runs on a bare Raspberry Pi OS; ``tools/modelbuild/
speaker_encoder.py`` checks it against librosa and stores a reference for ``tests/test_mel.py``.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms
N_MELS = 40

AUDIO_NORM_TARGET_DBFS = -30.0
VAD_WINDOW_MS = 30
VAD_MOVING_AVERAGE_WIDTH = 8
VAD_MAX_SILENCE_LENGTH = 6
INT16_MAX = 2 ** 15 - 1


def _hz_to_mel(frequencies: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, ``htk=False``): linear below 1 kHz, log above."""
    frequencies = np.asarray(frequencies, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = frequencies / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    above = frequencies >= min_log_hz
    mels[above] = min_log_mel + np.log(frequencies[above] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    above = mels >= min_log_mel
    freqs[above] = min_log_hz * np.exp(logstep * (mels[above] - min_log_mel))
    return freqs


@lru_cache(maxsize=4)
def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT,
                   n_mels: int = N_MELS) -> np.ndarray:
    """Return the ``(n_mels, n_fft // 2 + 1)`` Slaney-normalised triangular mel filterbank.

    Same construction as ``librosa.filters.mel(sr, n_fft, n_mels)`` with its defaults (fmin 0,
    fmax sr/2, Slaney scale, Slaney area normalisation).
    """
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    mel_points = np.linspace(_hz_to_mel(np.array([0.0]))[0],
                             _hz_to_mel(np.array([sample_rate / 2.0]))[0], n_mels + 2)
    mel_freqs = _mel_to_hz(mel_points)
    spacing = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, len(fft_freqs)), dtype=np.float64)
    for band in range(n_mels):
        lower = -ramps[band] / spacing[band]
        upper = ramps[band + 2] / spacing[band + 1]
        weights[band] = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_freqs[2:n_mels + 2] - mel_freqs[:n_mels]))[:, None]
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=4)
def _hann_window(length: int) -> np.ndarray:
    # periodic ("fftbins") Hann, as scipy.signal.get_window('hann', n) used by librosa
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)
    window.setflags(write=False)
    return window


def n_mel_frames(n_samples: int) -> int:
    """Number of mel frames :func:`mel_spectrogram` yields for ``n_samples`` samples."""
    return 1 + n_samples // HOP_LENGTH


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """Return the ``(n_frames, 40)`` float32 linear-power mel spectrogram of a 16 kHz waveform.

    Matches Resemblyzer's ``wav_to_mel_spectrogram`` (librosa >= 0.10 ``melspectrogram``:
    centred frames padded with zeros, periodic Hann window, power 2). ``n_frames`` is
    ``1 + len(wav) // 160``.
    """
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    padded = np.pad(wav, (N_FFT // 2, N_FFT // 2), mode="constant")
    n_frames = n_mel_frames(len(wav))
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH][:n_frames]
    spectrum = np.fft.rfft(frames * _hann_window(N_FFT), axis=1)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    return (power @ mel_filterbank().T.astype(np.float64)).astype(np.float32)


def normalize_volume(wav: np.ndarray, target_dbfs: float = AUDIO_NORM_TARGET_DBFS,
                     increase_only: bool = True) -> np.ndarray:
    """Scale ``wav`` (floats in [-1, 1]) so that its RMS level is ``target_dbfs``.

    With ``increase_only`` (Resemblyzer's setting) loud recordings are left as they are. Silence
    (zero RMS) is returned unchanged instead of being scaled by infinity.
    """
    wav = np.asarray(wav, dtype=np.float32)
    if wav.size == 0:
        return wav
    # float32 arithmetic, as Resemblyzer does, so that both give the very same samples
    rms = np.sqrt(np.mean((wav * INT16_MAX) ** 2))
    if rms == 0:
        return wav
    wave_dbfs = 20 * np.log10(rms / INT16_MAX)
    change_db = target_dbfs - wave_dbfs
    if change_db < 0 and increase_only:
        return wav
    return (wav * (10 ** (change_db / 20))).astype(np.float32)


def _moving_average(values: np.ndarray, width: int) -> np.ndarray:
    padded = np.concatenate((np.zeros((width - 1) // 2), values, np.zeros(width // 2)))
    sums = np.cumsum(padded, dtype=float)
    sums[width:] = sums[width:] - sums[:-width]
    return sums[width - 1:] / width


def voiced_window_mask(wav: np.ndarray, vad_mode: int = 3) -> np.ndarray:
    """Return one boolean per 30 ms window of ``wav``: True where speech is kept.

    Resemblyzer's rule: webrtcvad (mode 3) flags, smoothed by an 8-window moving average, rounded,
    then dilated by 3 windows on each side (a 7-window structuring element).
    """
    import webrtcvad  # here, so that the mel features alone need nothing but numpy

    samples_per_window = VAD_WINDOW_MS * SAMPLE_RATE // 1000
    n_windows = len(wav) // samples_per_window
    if n_windows == 0:
        return np.zeros(0, dtype=bool)
    # clipping (Resemblyzer lets int16 wrap around) only matters for samples beyond full scale
    pcm = np.clip(np.round(np.asarray(wav[:n_windows * samples_per_window], dtype=np.float64)
                           * INT16_MAX), -INT16_MAX - 1, INT16_MAX).astype("<i2").tobytes()
    vad = webrtcvad.Vad(vad_mode)
    window_bytes = samples_per_window * 2
    flags = np.array([vad.is_speech(pcm[i * window_bytes:(i + 1) * window_bytes], SAMPLE_RATE)
                      for i in range(n_windows)], dtype=float)
    mask = np.round(_moving_average(flags, VAD_MOVING_AVERAGE_WIDTH)).astype(bool)
    # scipy's binary_dilation with a centred structuring element of 7 ones
    reach = (VAD_MAX_SILENCE_LENGTH + 1) // 2
    padded = np.pad(mask, reach)
    return np.lib.stride_tricks.sliding_window_view(padded, 2 * reach + 1).any(axis=1)


def trim_long_silences(wav: np.ndarray) -> np.ndarray:
    """Drop the silences of ``wav`` longer than Resemblyzer allows (see :func:`voiced_window_mask`).

    The tail that does not fill a whole 30 ms window is dropped, as Resemblyzer does.
    """
    wav = np.asarray(wav, dtype=np.float32)
    samples_per_window = VAD_WINDOW_MS * SAMPLE_RATE // 1000
    mask = voiced_window_mask(wav)
    keep = np.repeat(mask, samples_per_window)
    return wav[:len(keep)][keep]


def preprocess_wav(wav: np.ndarray) -> np.ndarray:
    """Resemblyzer's ``preprocess_wav`` for a 16 kHz float waveform: volume, then silences."""
    wav = normalize_volume(wav, AUDIO_NORM_TARGET_DBFS, increase_only=True)
    trimmed = trim_long_silences(wav)
    log.debug("preprocess: %d samples -> %d after silence trimming", len(wav), len(trimmed))
    return trimmed
