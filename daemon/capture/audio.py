"""Audio helpers shared by the audio backends, enrolment and the tools: a bounded, streaming WAV
reader (:func:`read_wav`), resampling to :data:`SAMPLE_RATE_HZ`, PCM conversion and room tone.

The backends themselves are in :mod:`daemon.capture.sounddevice_microphone` and
:mod:`daemon.capture.replay_audio` (chosen by :mod:`daemon.capture.sources`).
"""

from __future__ import annotations

import io
import logging
import math
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.errors import SourceError
from daemon.files import InputFileError, MediaError, open_regular_file

log = logging.getLogger(__name__)

#: The rate every downstream stage (VAD, mel features, encoders) works at.
SAMPLE_RATE_HZ = 16000


class WavError(MediaError, SourceError):
    """A WAV file that cannot be read: malformed, unsupported (the format is named) or too long."""


#: The longest recording :func:`read_wav` decodes by default. An enrolment or verify sample is a
#: sentence or a few; replay files and calibration clips are under a minute.
MAX_WAV_SECONDS = 120.0
#: The longest enrolment or verify sample: a few sentences, with room to spare.
MAX_SAMPLE_SECONDS = 60.0
#: Sample rates accepted in a WAV header (telephone speech to studio recordings).
MIN_WAV_RATE_HZ, MAX_WAV_RATE_HZ = 4000, 192000
MAX_WAV_CHANNELS = 32
#: Largest term of the reduced ratio rate : 16000 accepted (441 for 44.1 kHz, 5507 for 44056 Hz).
_MAX_RATIO_TERM = 1000
#: Bytes a WAV file may hold in chunks before its audio (metadata, cover art).
_MAX_SKIPPED_BYTES = 16 * 1024 * 1024
_MAX_CHUNKS = 64
#: Input frames decoded per step: a few MB of memory whatever the file's length.
_FRAMES_PER_STEP = 1 << 16

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_FORMAT_NAMES = {0x0002: "Microsoft ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM",
                 0x0031: "GSM 6.10", 0x0050: "MPEG", 0x0055: "MP3", 0x00FF: "AAC", 0x1610: "AAC",
                 0x2000: "AC-3", 0xF1AC: "FLAC", 0x674F: "Ogg Vorbis"}
# The GUID tail (bytes 2..16) shared by the KSDATAFORMAT_SUBTYPE_PCM/IEEE_FLOAT sub-formats.
_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")


@dataclass(frozen=True)
class WavFormat:
    """What a WAV header says about its audio."""

    encoding: str  # "pcm" (integers) or "float"
    channels: int
    sample_rate_hz: int
    bits: int  # container bits per sample: 8, 16, 24, 32 or 64
    frames: int  # sample frames in the data chunk
    data_offset: int

    @property
    def seconds(self) -> float:
        """Length of the audio in seconds."""
        return self.frames / self.sample_rate_hz


def _format_name(tag: int) -> str:
    name = _FORMAT_NAMES.get(tag)
    return f"{name} (format tag 0x{tag:04X})" if name else f"format tag 0x{tag:04X}"


def read_wav_header(file, path: str | Path = "<wav>") -> WavFormat:
    """Parse a RIFF/WAVE header from a binary file positioned at its start; stops at the data chunk.

    :raises WavError: not a WAV file, or a format that :func:`read_wav` cannot decode (the message
        names the format).
    """
    def fail(message):
        return WavError(f"cannot read WAV file {path}: {message}")

    head = file.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        raise fail("not a RIFF/WAVE file")
    if head[:4] == b"RF64":
        raise fail("RF64 (WAV over 4 GB) is not supported")
    fmt, skipped = None, 0
    for _ in range(_MAX_CHUNKS):
        chunk = file.read(8)
        if len(chunk) < 8:
            raise fail("no data chunk" if fmt else "no fmt chunk")
        kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if kind == b"fmt ":
            if not 16 <= size <= 1024:
                raise fail(f"fmt chunk of {size} bytes")
            body = file.read(size + (size & 1))
            if len(body) < size:
                raise fail("truncated fmt chunk")
            fmt = _parse_fmt(body[:size], fail)
        elif kind == b"data":
            if fmt is None:
                raise fail("data chunk before the fmt chunk")
            encoding, channels, rate, bits = fmt
            frames = size // (channels * bits // 8)
            return WavFormat(encoding, channels, rate, bits, frames, file.tell())
        else:
            skipped += size + (size & 1)
            if skipped > _MAX_SKIPPED_BYTES:
                raise fail(f"over {_MAX_SKIPPED_BYTES} bytes of other chunks before the audio")
            file.seek(size + (size & 1), io.SEEK_CUR)
    raise fail(f"no data chunk in the first {_MAX_CHUNKS} chunks")


def _parse_fmt(body: bytes, fail) -> tuple[str, int, int, int]:
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise fail("WAVE_FORMAT_EXTENSIBLE header too short")
        sub_tag, tail = struct.unpack("<H", body[24:26])[0], body[26:40]
        if tail != _GUID_TAIL:
            raise fail("WAVE_FORMAT_EXTENSIBLE with an unknown sub-format")
        tag = sub_tag
    if tag not in (_PCM, _FLOAT):
        raise fail(f"{_format_name(tag)} is not supported; use PCM (8/16/24/32-bit) or float WAV")
    encoding = "pcm" if tag == _PCM else "float"
    allowed = (8, 16, 24, 32) if encoding == "pcm" else (32, 64)
    if bits not in allowed:
        raise fail(f"{bits}-bit {encoding} samples are not supported "
                   f"(supported: {', '.join(map(str, allowed))})")
    if not 1 <= channels <= MAX_WAV_CHANNELS:
        raise fail(f"{channels} channels (supported: 1 to {MAX_WAV_CHANNELS})")
    if not MIN_WAV_RATE_HZ <= rate <= MAX_WAV_RATE_HZ:
        raise fail(f"sample rate {rate} Hz (supported: {MIN_WAV_RATE_HZ} to {MAX_WAV_RATE_HZ} Hz)")
    common = math.gcd(rate, SAMPLE_RATE_HZ)
    if max(rate, SAMPLE_RATE_HZ) // common > _MAX_RATIO_TERM:
        # An odd rate needs a resampling filter of 64 x (rate / gcd) taps: 12 million for 191999 Hz.
        raise fail(f"sample rate {rate} Hz has no simple ratio to {SAMPLE_RATE_HZ} Hz; convert the "
                   "file to a common rate (8000, 16000, 22050, 44100 or 48000 Hz)")
    if block_align != channels * bits // 8:
        raise fail(f"block align {block_align} does not match {channels} x {bits}-bit samples")
    return encoding, channels, rate, bits


def _decode(raw: bytes, wav: WavFormat) -> np.ndarray:
    """Interleaved sample bytes to mono float32 in [-1, 1]."""
    if wav.encoding == "float":
        samples = np.frombuffer(raw, "<f4" if wav.bits == 32 else "<f8")
        # NaN or huge floats would poison every later stage; clip as a DAC would (before the cast
        # to float32, which would overflow on huge doubles).
        samples = np.clip(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
        samples = samples.astype(np.float32)
    elif wav.bits == 8:
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif wav.bits == 16:
        samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif wav.bits == 24:
        triples = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        samples = (np.where(values >= 1 << 23, values - (1 << 24), values) / float(1 << 23)).astype(np.float32)
    else:
        samples = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
    if wav.channels > 1:
        samples = samples.reshape(-1, wav.channels).mean(axis=1, dtype=np.float32)
    return samples


def read_wav(path: str | Path | bytes, max_seconds: float = MAX_WAV_SECONDS) -> np.ndarray:
    """Read a WAV file as mono float32 at 16 kHz (averaging channels, resampling if needed).

    PCM (8, 16, 24, 32-bit) and float (32, 64-bit) samples, plain or WAVE_FORMAT_EXTENSIBLE, any
    number of channels up to :data:`MAX_WAV_CHANNELS`. The file is decoded in steps of
    :data:`_FRAMES_PER_STEP` frames and resampled as a stream, so memory stays proportional to the
    16 kHz result, which is bounded by ``max_seconds``. A file that ends early is read up to its end.

    :raises WavError: (a :class:`MediaError` and a :class:`SourceError`) not a regular file, not a WAV
        file, an unsupported format (named in the message), or longer than ``max_seconds`` (the
        message says the limit).
    """
    if isinstance(path, (bytes, bytearray)):
        source, path = io.BytesIO(bytes(path)), "<WAV bytes>"
    else:
        path = Path(path)
        source = _open_wav(path)
    with source as file:
        try:
            wav = read_wav_header(file, path)
        except struct.error:
            raise WavError(f"cannot read WAV file {path}: truncated header") from None
        if wav.seconds > max_seconds:
            raise WavError(f"{path}: {wav.seconds:.1f} s of audio; the limit is {max_seconds:g} s "
                             "(cut the recording to one or a few sentences)")
        resampler = StreamResampler(wav.sample_rate_hz, centred=True)
        frame_bytes = wav.channels * wav.bits // 8
        pieces, remaining, decoded = [], wav.frames, 0
        while remaining > 0:
            raw = file.read(min(remaining, _FRAMES_PER_STEP) * frame_bytes)
            usable = len(raw) - len(raw) % frame_bytes
            if usable <= 0:
                break  # truncated file: the header promised more than there is
            samples = _decode(raw[:usable], wav)
            pieces.append(resampler(samples))
            decoded += samples.size
            remaining -= samples.size
            if usable < len(raw):
                break
    pieces.append(resampler.flush())
    out = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return out[:int(round(decoded * SAMPLE_RATE_HZ / wav.sample_rate_hz))]


def _open_wav(path: str | Path):
    try:
        # The data chunk is at most 4 GiB (RIFF sizes are 32-bit); the header says how much is read.
        return open_regular_file(path, 1 << 33)
    except InputFileError as exc:
        raise WavError(f"cannot read WAV file: {exc}") from None


def wav_seconds(path: str | Path) -> float:
    """The length of a WAV file in seconds, from its header."""
    with _open_wav(path) as file:
        try:
            return read_wav_header(file, path).seconds
        except struct.error:
            raise WavError(f"cannot read WAV file {path}: truncated header") from None


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
    stream resampled in blocks equals the stream resampled at once, delayed by :attr:`delay_seconds`
    (none when ``centred``: outputs then wait for the filter's look-ahead, and :meth:`flush` gives
    the last of them at the end of the stream).

    The filter is applied in polyphase form (only the taps that meet a real input sample), so odd
    ratios such as 44.1 kHz to 16 kHz (up 160, down 441) cost about 180 multiplications per output.
    """

    _OUTPUTS_PER_STEP = 1024  # bounds the temporary (outputs x taps) arrays to about 1.5 MB each

    def __init__(self, rate_hz: int, target_hz: int = SAMPLE_RATE_HZ, taps_per_side: int = 32,
                 centred: bool = False):
        common = math.gcd(rate_hz, target_hz)
        self.up, self.down = target_hz // common, rate_hz // common
        factor = max(self.up, self.down)
        n_taps = 2 * taps_per_side * factor + 1
        offsets = np.arange(n_taps) - (n_taps - 1) / 2
        # Low-pass at the lower of the two Nyquist rates; the gain of `up` restores zero-stuffed level.
        taps = np.sinc(offsets / factor) / factor * np.kaiser(n_taps, 8.0) * self.up
        # bank[r, q] is the tap that meets input sample (m - q) when an output falls at phase r.
        self._per_phase = -(-n_taps // self.up)
        padded = np.zeros(self._per_phase * self.up)
        padded[:n_taps] = taps
        self._bank = padded.reshape(self._per_phase, self.up).T.astype(np.float32)
        # Output j sits at upsampled position offset + j*down; centred, that is the filter's middle.
        self._offset = (n_taps - 1) // 2 if centred else 0
        self._history = np.zeros(self._per_phase - 1, np.float32)  # the last inputs, zeros before the start
        self._seen = 0  # input samples received
        self._next = 0  # index of the next output sample
        self._flushed = False
        self.delay_seconds = ((n_taps - 1) / 2 / (rate_hz * self.up)
                              if self.up != self.down and not centred else 0.0)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """The resampled continuation of the stream for the next input ``block``."""
        if self.up == self.down:
            self._seen += block.size
            return block.astype(np.float32, copy=False)
        block = np.asarray(block, np.float32).ravel()
        buffer = np.concatenate([self._history, block])
        first = self._seen - self._history.size  # stream index of buffer[0]
        self._seen += block.size
        # Output j needs inputs up to (offset + j*down) // up, which must have arrived.
        last = ((self._seen * self.up - 1 - self._offset) // self.down
                if self._seen * self.up > self._offset else -1)
        out = self._outputs(buffer, first, self._next, last + 1)
        self._next = max(self._next, last + 1)
        self._history = buffer[buffer.size - self._history.size:] if self._history.size else buffer[:0]
        return out

    def flush(self) -> np.ndarray:
        """The outputs still held back by the filter's look-ahead (as if zeros followed); only once."""
        if self._flushed or self.up == self.down:
            return np.zeros(0, np.float32)
        self._flushed = True
        pad = self._offset // self.up + 1
        return self(np.zeros(pad))

    def _outputs(self, buffer: np.ndarray, first: int, start: int, stop: int) -> np.ndarray:
        pieces = []
        lags = np.arange(self._per_phase)
        for begin in range(start, stop, self._OUTPUTS_PER_STEP):
            j = np.arange(begin, min(stop, begin + self._OUTPUTS_PER_STEP), dtype=np.int64)
            position = self._offset + j * self.down
            newest, phase = position // self.up, position % self.up
            index = newest[:, None] - lags[None, :] - first
            taken = buffer[index]  # never negative: the history starts as zeros
            pieces.append(np.einsum("jq,jq->j", self._bank[phase], taken))
        return (np.concatenate(pieces) if pieces else np.zeros(0)).astype(np.float32)


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
