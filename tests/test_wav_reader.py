"""read_wav: common formats decode, malformed or unsupported ones are refused with the format named,
and long files are refused from the header or decoded as a stream in bounded memory."""

from __future__ import annotations

import os
import struct
import tracemalloc
import warnings
import wave

import numpy as np
import pytest

from daemon.capture.audio import MAX_WAV_SECONDS, WavError, read_wav, wav_seconds
from daemon.errors import SourceError

RATE = 16000


def _sine(rate: int = RATE, seconds: float = 1.0, freq: float = 440.0, amplitude: float = 0.5):
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def _fmt(tag: int, channels: int, rate: int, bits: int, extensible_sub: int | None = None) -> bytes:
    block = channels * bits // 8
    body = struct.pack("<HHIIHH", tag if extensible_sub is None else 0xFFFE, channels, rate,
                       (rate * block) & 0xFFFFFFFF, block, bits)
    if extensible_sub is not None:
        guid = struct.pack("<H", extensible_sub) + bytes.fromhex("000000001000800000aa00389b71")
        body += struct.pack("<HHI", 22, bits, 0) + guid
    return body


def _riff(fmt_body: bytes, data: bytes, data_size: int | None = None, extra: bytes = b"") -> bytes:
    size = len(data) if data_size is None else data_size
    chunks = (b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body + extra
              + b"data" + struct.pack("<I", size) + data)
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def _write(tmp_path, data: bytes, name: str = "x.wav"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _pcm24(values: np.ndarray) -> bytes:
    ints = np.round(np.clip(values, -1, 1 - 2 ** -23) * 2 ** 23).astype(np.int32)
    raw = ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
    return raw.tobytes()


# --- formats that decode --------------------------------------------------------------------
def test_24_bit_pcm(tmp_path):
    signal = _sine()
    samples = read_wav(_write(tmp_path, _riff(_fmt(1, 1, RATE, 24), _pcm24(signal))))
    np.testing.assert_allclose(samples, signal, atol=1e-6)


@pytest.mark.parametrize("bits, dtype", [(32, "<f4"), (64, "<f8")])
def test_float_samples(tmp_path, bits, dtype):
    signal = _sine()
    samples = read_wav(_write(tmp_path, _riff(_fmt(3, 1, RATE, bits), signal.astype(dtype).tobytes())))
    np.testing.assert_allclose(samples, signal, atol=1e-6)


def test_huge_doubles_are_clipped_without_overflow(tmp_path):
    signal = np.array([1e300, -1e300, np.nan, 0.5] * 1000, "<f8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        samples = read_wav(_write(tmp_path, _riff(_fmt(3, 1, RATE, 64), signal.tobytes())))
    np.testing.assert_array_equal(samples[:4], [1.0, -1.0, 0.0, 0.5])


def test_float_nan_and_overrange_are_clipped(tmp_path):
    signal = np.array([np.nan, np.inf, -np.inf, 3.0, -3.0, 0.25] * 1000, "<f4")
    samples = read_wav(_write(tmp_path, _riff(_fmt(3, 1, RATE, 32), signal.tobytes())))
    assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.0


def test_extensible_multichannel_24_bit_at_48k(tmp_path):
    signal = _sine(48000, freq=1000)
    six = np.stack([signal] * 2 + [np.zeros_like(signal)] * 4, axis=1)  # 5.1: speech on front L/R
    data = _pcm24(six.ravel())
    samples = read_wav(_write(tmp_path, _riff(_fmt(1, 6, 48000, 24, extensible_sub=1), data)))
    assert samples.shape == (16000,)
    np.testing.assert_allclose(samples[200:-200], _sine(RATE, freq=1000)[200:-200] / 3, atol=2e-3)


def test_extensible_float_stereo(tmp_path):
    stereo = np.stack([_sine(), _sine()], axis=1).astype("<f4")
    samples = read_wav(_write(tmp_path, _riff(_fmt(3, 2, RATE, 32, extensible_sub=3), stereo.tobytes())))
    np.testing.assert_allclose(samples, _sine(), atol=1e-6)


def test_44100_hz_resamples_like_the_whole_recording(tmp_path):
    signal = _sine(44100, seconds=2.0, freq=440) + _sine(44100, seconds=2.0, freq=3000, amplitude=0.2)
    pcm = (signal * 32767).astype("<i2")
    samples = read_wav(_write(tmp_path, _riff(_fmt(1, 1, 44100, 16), pcm.tobytes())))
    assert samples.shape == (32000,)
    t = np.arange(32000) / RATE
    expected = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t)
    assert np.abs(samples[500:-500] - expected[500:-500]).max() < 2e-3


def test_odd_byte_count_reads_the_whole_frames(tmp_path):
    pcm = (_sine() * 32767).astype("<i2").tobytes() + b"\x01"  # a stray byte: not a whole sample
    samples = read_wav(_write(tmp_path, _riff(_fmt(1, 1, RATE, 16), pcm)))
    assert samples.shape == (16000,)


def test_a_truncated_file_is_read_to_its_end(tmp_path):
    pcm = (_sine() * 32767).astype("<i2").tobytes()
    samples = read_wav(_write(tmp_path, _riff(_fmt(1, 1, RATE, 16), pcm[:10001], data_size=len(pcm))))
    assert samples.shape == (5000,)


def test_chunks_before_the_audio_are_skipped(tmp_path):
    listing = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\x00"  # odd size: padded
    pcm = (_sine() * 32767).astype("<i2").tobytes()
    samples = read_wav(_write(tmp_path, _riff(_fmt(1, 1, RATE, 16), pcm, extra=listing)))
    assert samples.shape == (16000,)


# --- refused, saying why --------------------------------------------------------------------
@pytest.mark.parametrize("fmt, message", [
    (_fmt(1, 1, 0, 16), "sample rate 0 Hz"),
    (_fmt(1, 1, 4_000_000_000, 16), "sample rate 4000000000 Hz"),
    (_fmt(1, 0, RATE, 16), "0 channels"),
    (_fmt(1, 1, 191999, 16), "sample rate 191999 Hz has no simple ratio"),
    (_fmt(1, 1, RATE, 12), "12-bit pcm samples are not supported"),
    (_fmt(3, 1, RATE, 16), "16-bit float samples are not supported"),
    (_fmt(6, 1, 8000, 8), "A-law .format tag 0x0006. is not supported"),
    (_fmt(7, 1, 8000, 8), "mu-law"),
    (_fmt(2, 1, RATE, 4), "Microsoft ADPCM"),
    (_fmt(0x55, 2, 44100, 16), "MP3"),
    (_fmt(0x1234, 1, RATE, 16), "format tag 0x1234 is not supported"),
    (_fmt(1, 1, RATE, 16, extensible_sub=6), "A-law"),
])
def test_unsupported_headers_name_the_problem(tmp_path, fmt, message):
    with pytest.raises(WavError, match=message):
        read_wav(_write(tmp_path, _riff(fmt, b"\x00" * 64)))


@pytest.mark.parametrize("data, message", [
    (b"RIFF\x00\x00\x00\x00WAVE", "no fmt chunk"),
    (b"RIFF....WAVEjunk", "no fmt chunk"),
    (b"OggS" + b"\x00" * 40, "not a RIFF/WAVE file"),
    (b"", "not a RIFF/WAVE file"),
    (b"RIFF\x00\x00\x00\x00WAVEdata\x04\x00\x00\x00\x00\x00\x00\x00", "data chunk before the fmt chunk"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", "truncated fmt chunk"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt \x02\x00\x00\x00\x01\x00", "fmt chunk of 2 bytes"),
    (b"RIFF\x00\x00\x00\x00WAVE" + (b"junk\x00\x00\x00\x00" * 70), "no data chunk in the first 64"),
])
def test_malformed_files_are_wav_errors(tmp_path, data, message):
    with pytest.raises(WavError, match=message):
        read_wav(_write(tmp_path, data))


def test_wav_errors_are_also_source_errors(tmp_path):
    with pytest.raises(SourceError):
        read_wav(_write(tmp_path, b"nope"))


def test_a_one_hour_file_is_refused_from_its_header(tmp_path):
    hour = 3600 * 44100 * 2 * 2
    path = _write(tmp_path, _riff(_fmt(1, 2, 44100, 16), b"\x00" * 4096, data_size=hour))
    assert wav_seconds(path) == pytest.approx(3600)
    with pytest.raises(WavError, match=f"3600.0 s of audio; the limit is {MAX_WAV_SECONDS:g} s"):
        read_wav(path)
    with pytest.raises(WavError, match="the limit is 10 s"):
        read_wav(path, max_seconds=10)


def test_a_long_file_is_decoded_in_bounded_memory(tmp_path):
    seconds = 100
    signal = (_sine(44100, seconds=seconds) * 32767).astype("<i2")
    stereo = np.repeat(signal, 2)
    path = _write(tmp_path, _riff(_fmt(1, 2, 44100, 16), stereo.tobytes()))
    del signal, stereo
    tracemalloc.start()
    try:
        samples = read_wav(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result_bytes = samples.nbytes  # 6.4 MB of float32 at 16 kHz
    assert samples.shape == (seconds * RATE,)
    # The file is 17.6 MB; whole-file decoding and FFT resampling peaked at over 150 MB.
    assert peak < 2 * result_bytes + 16e6, f"peak {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_special_files_are_refused(tmp_path, special):
    path = special
    if special == "fifo":
        path = tmp_path / "voice.wav"
        os.mkfifo(path)
    with pytest.raises(WavError, match="not a regular file"):
        read_wav(path)


def test_stdlib_written_files_still_read(tmp_path):
    with wave.open(str(tmp_path / "w.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes((_sine(8000) * 32767).astype("<i2").tobytes())
    assert read_wav(tmp_path / "w.wav").shape == (16000,)
