"""Audio as every stage sees it, and the WAV reading and resampling the audio backends share.

Blocks are mono ``float32`` arrays in [-1, 1] at :data:`SAMPLE_RATE_HZ`, ``block_ms`` long, which is
also the VAD frame. The backends: :mod:`daemon.capture.sounddevice_microphone` and
:mod:`daemon.capture.replay_audio`, chosen by ``microphone.backend``
(:func:`daemon.capture.sources.open_audio_source`).
"""

from __future__ import annotations

import io
import logging
import math
import wave
from pathlib import Path

import numpy as np

from daemon.errors import SourceError

log = logging.getLogger(__name__)

#: The rate every downstream stage (VAD, mel features, encoders) works at.
SAMPLE_RATE_HZ = 16000


def read_wav(path: str | Path | bytes) -> np.ndarray:
    """Read a PCM WAV file as mono float32 at 16 kHz (averaging channels, resampling if needed).

    ``path`` may also be the file's contents (bytes), e.g. sent over the control socket.
    """
    if isinstance(path, (bytes, bytearray)):
        source, path = io.BytesIO(path), "<WAV bytes>"
    else:
        path = Path(path)
        source = str(path)
    try:
        with wave.open(source, "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise SourceError(f"cannot read WAV file {path}: {exc}") from exc
    if width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
    elif width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    else:
        raise SourceError(f"{path}: unsupported sample width {width} bytes")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return resample(samples, rate, SAMPLE_RATE_HZ)


def wav_seconds(path: str | Path) -> float:
    """The length of a WAV file in seconds, from its header."""
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() / wav.getframerate()
    except (OSError, EOFError, wave.Error) as exc:
        raise SourceError(f"cannot read WAV file {path}: {exc}") from exc


def resample(samples: np.ndarray, rate_hz: int, target_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Resample by band-limited FFT interpolation (exact for the integer ratios microphones use)."""
    if rate_hz == target_hz or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    n_out = int(round(samples.size * target_hz / rate_hz))
    spectrum = np.fft.rfft(samples)
    keep = min(spectrum.size, n_out // 2 + 1)
    resized = np.zeros(n_out // 2 + 1, dtype=spectrum.dtype)
    resized[:keep] = spectrum[:keep]
    return (np.fft.irfft(resized, n_out) * (n_out / samples.size)).astype(np.float32)


def to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as little-endian 16-bit PCM bytes (what webrtcvad reads)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def room_tone(recording: np.ndarray, n_samples: int, head_seconds: float = 0.25) -> np.ndarray:
    """``n_samples`` of a recording's background: its first ``head_seconds``, mirrored and repeated
    (mirroring avoids clicks at the joins)."""
    head = recording[:int(head_seconds * SAMPLE_RATE_HZ)]
    if n_samples <= 0 or head.size == 0:
        return np.zeros(max(0, n_samples), np.float32)
    pair = np.concatenate([head, head[::-1]])
    return np.tile(pair, n_samples // pair.size + 1)[:n_samples].astype(np.float32)


class StreamResampler:
    """Resamples a stream block by block with a windowed-sinc FIR that carries its state across
    blocks.

    :func:`resample` treats its input as one period of a periodic signal, which is exact for a whole
    recording but puts a discontinuity at both ends of every 30 ms microphone block (at 48 kHz the
    error reaches 40% of a sine's amplitude). Here the filter sees the previous block's tail, so a
    stream resampled in blocks equals the stream resampled at once, delayed by :attr:`delay_seconds`.
    """

    def __init__(self, rate_hz: int, target_hz: int = SAMPLE_RATE_HZ, taps_per_side: int = 32):
        common = math.gcd(rate_hz, target_hz)
        self.up, self.down = target_hz // common, rate_hz // common
        factor = max(self.up, self.down)
        n_taps = 2 * taps_per_side * factor + 1
        offsets = np.arange(n_taps) - (n_taps - 1) / 2
        # Low-pass at the lower of the two Nyquist rates; the gain of `up` restores zero-stuffed level.
        self._taps = np.sinc(offsets / factor) / factor * np.kaiser(n_taps, 8.0) * self.up
        self._history = np.zeros(n_taps - 1)
        self._phase = 0  # where in the next upsampled block the next output sample falls
        self.delay_seconds = (n_taps - 1) / 2 / (rate_hz * self.up) if self.up != self.down else 0.0

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """The resampled continuation of the stream for the next input ``block``."""
        if self.up == self.down:
            return block.astype(np.float32, copy=False)
        upsampled = np.zeros(block.size * self.up)
        upsampled[::self.up] = block
        stream = np.concatenate([self._history, upsampled])
        self._history = stream[stream.size - self._history.size:]
        filtered = np.convolve(stream, self._taps, mode="valid")
        out = filtered[self._phase::self.down]
        self._phase = (self._phase - upsampled.size) % self.down
        return out.astype(np.float32)


# The backends moved to modules of their own; these names stay importable from here.
_MOVED = {"ReplayAudio": "daemon.capture.replay_audio",
          "SoundDeviceMicrophone": "daemon.capture.sounddevice_microphone",
          "open_audio_source": "daemon.capture.sources"}


def __getattr__(name: str):
    # Imported on first use: the backends import this module's helpers.
    if name in _MOVED:
        import importlib
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
