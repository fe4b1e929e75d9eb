"""Replay sources (real GRID video and audio) and the bounded wait every source read goes through."""

from __future__ import annotations

import math
import threading
import time
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.capture.audio import StreamResampler, read_wav, resample, room_tone
from daemon.capture.base import Pacer, ThreadedSource
from daemon.capture.replay_audio import ReplayAudio
from daemon.capture.replay_frames import ReplayFrames
from daemon.errors import SourceError, SourceTimeout

DEMO = Path(__file__).resolve().parents[1] / "daemon" / "demo_data"
VIDEO = DEMO / "s1_bbaf2n" / "video.mpg"          # GRID: 25 fps, 75 frames (3 s)
WAVS = [DEMO / "s1_bbaf2n" / "audio_16k.wav", DEMO / "s1_bbaf3s" / "audio_16k.wav"]
READ_S = 5.0


class FakeTime:
    """A clock and a sleep that advances it, so that pacing is exact and instant."""

    def __init__(self, start: float = 50.0):
        self.now = start
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _drain(source: ThreadedSource, limit: int = 10_000) -> list:
    items = []
    with source:
        for _ in range(limit):
            item = source.read(READ_S)
            if item is None:
                break
            items.append(item)
    return items


def _decoded_video() -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(VIDEO))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


# --- frames -------------------------------------------------------------------------------------
def test_video_is_resampled_to_fps_with_gap_frames():
    source_frames = _decoded_video()
    assert len(source_frames) == 75
    items = _drain(ReplayFrames(VIDEO, fps=15, realtime=False, gap_seconds=0.2))
    gap = 3  # 0.2 s at 15 fps, before and after the video
    assert len(items) == 45 + 2 * gap
    video = [item.data for item in items[gap:gap + 45]]
    for k, frame in enumerate(video):
        # Output frame k is the first source frame at or after time k / 15 s.
        assert np.array_equal(frame, source_frames[math.ceil(k * 25 / 15)]), k
    for item in items[:gap] + items[-gap:]:
        assert item.data.shape == source_frames[0].shape and item.data.dtype == np.uint8
        assert 60 <= item.data.min() and item.data.max() < 68  # the dim noise frames, not video
    times = [item.t for item in items]
    assert times == sorted(times)


def test_folder_of_images_in_name_order(tmp_path):
    source_frames = _decoded_video()
    chosen = [source_frames[i] for i in (40, 0, 20)]
    for name, frame in zip(["b.png", "a.png", "c.PNG"], chosen):
        assert cv2.imwrite(str(tmp_path / name.lower()), frame)
    (tmp_path / "notes.txt").write_text("not an image")
    items = _drain(ReplayFrames(tmp_path, fps=15, realtime=False))
    assert len(items) == 3
    expected = [chosen[1], chosen[0], chosen[2]]  # a, b, c
    for item, frame in zip(items, expected):
        assert np.array_equal(item.data, frame)


def test_undecodable_image_is_a_source_error(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with ReplayFrames(tmp_path, realtime=False) as source:
        with pytest.raises(SourceError, match="cannot decode"):
            source.read(READ_S)


def test_missing_path_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        ReplayFrames(tmp_path / "absent.mpg")
    with pytest.raises(SourceError, match="not found"):
        ReplayAudio([tmp_path / "absent.wav"])


def test_end_of_stream_returns_none_every_time(tmp_path):
    cv2.imwrite(str(tmp_path / "only.png"), np.full((48, 64, 3), 128, np.uint8))
    with ReplayFrames(tmp_path, realtime=False) as source:
        assert source.read(READ_S) is not None
        for _ in range(3):
            assert source.read(READ_S) is None


def test_loop_starts_again(tmp_path):
    cv2.imwrite(str(tmp_path / "one.png"), np.full((48, 64, 3), 10, np.uint8))
    cv2.imwrite(str(tmp_path / "two.png"), np.full((48, 64, 3), 20, np.uint8))
    with ReplayFrames(tmp_path, realtime=False, loop=True) as source:
        values = [int(source.read(READ_S).data[0, 0, 0]) for _ in range(5)]
    assert values == [10, 20, 10, 20, 10]


def test_realtime_pacing_on_an_injected_clock(tmp_path):
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((48, 64, 3), i, np.uint8))
    fake = FakeTime()
    items = _drain(ReplayFrames(tmp_path, fps=10, realtime=True, clock=fake.clock, sleep=fake.sleep))
    assert [round(item.t - 50.0, 6) for item in items] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert len(fake.slept) == 4


def test_pacer_does_not_sleep_when_late():
    fake = FakeTime(0.0)
    pacer = Pacer(10.0, fake.clock, fake.sleep)
    pacer.wait()
    fake.now += 0.35  # processing took longer than three periods
    pacer.wait()
    pacer.wait()
    pacer.wait()
    assert fake.slept == []
    pacer.wait()  # item 4 is due at 0.4
    assert fake.slept == [pytest.approx(0.05)]


# --- audio --------------------------------------------------------------------------------------
def test_replay_audio_blocks_gaps_and_nothing_lost():
    gap = 8000  # 0.5 s
    clips = [read_wav(path) for path in WAVS]
    # Room tone (each clip's own background) before each clip and after the last.
    expected = np.concatenate([room_tone(clips[0], gap), clips[0], room_tone(clips[1], gap), clips[1],
                               room_tone(clips[1], gap)])
    items = _drain(ReplayAudio(WAVS, block_ms=30, realtime=False, gap_seconds=0.5))
    assert all(item.data.shape == (480,) and item.data.dtype == np.float32 for item in items)
    assert len(items) == expected.size // 480
    played = np.concatenate([item.data for item in items])
    assert np.array_equal(played, expected[:played.size])
    assert expected.size - played.size < 480
    # The gaps are quiet background, never digital silence; the clips are speech.
    for start in (0, gap + clips[0].size):
        background = played[start:start + gap]
        assert background.any()
        assert _rms(background) < 0.2 * _rms(played[start + gap:start + gap + clips[0].size])


def test_room_tone_is_the_mirrored_head_of_the_recording():
    recording = np.arange(10_000, dtype=np.float32)
    tone = room_tone(recording, 9000, head_seconds=0.25)
    head = recording[:4000]
    assert np.array_equal(tone, np.concatenate([head, head[::-1], head[:1000]]))
    assert room_tone(np.zeros(0, np.float32), 100).shape == (100,)
    assert room_tone(recording, 0).size == 0


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def test_replay_audio_realtime_pacing():
    fake = FakeTime(0.0)
    items = _drain(ReplayAudio(WAVS[:1], block_ms=30, realtime=True, clock=fake.clock, sleep=fake.sleep))
    assert len(items) == 47648 // 480
    assert items[-1].t == pytest.approx((len(items) - 1) * 0.03)


def _write_wav(path: Path, samples: np.ndarray, rate: int, width: int, channels: int) -> None:
    """Write float samples in [-1, 1], shape (n,) or (n, channels), as PCM."""
    if width == 1:
        raw = np.round(samples * 127 + 128).astype(np.uint8).tobytes()
    else:
        raw = np.round(samples * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(raw)


def _sine(freq_hz: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq_hz * t)


def _peak_hz(samples: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate / samples.size)


def test_read_wav_averages_stereo(tmp_path):
    left, right = _sine(440, 16000), np.zeros(16000)
    _write_wav(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000, 2, 2)
    mono = read_wav(tmp_path / "s.wav")
    assert mono.dtype == np.float32 and mono.shape == (16000,)
    np.testing.assert_allclose(mono, left / 2, atol=1e-4)


def test_read_wav_8_bit(tmp_path):
    signal = _sine(300, 16000, amplitude=0.8)
    _write_wav(tmp_path / "u8.wav", signal, 16000, 1, 1)
    samples = read_wav(tmp_path / "u8.wav")
    np.testing.assert_allclose(samples, signal, atol=1.5 / 128)


@pytest.mark.parametrize("rate", [48000, 8000, 32000])
def test_resampling_keeps_a_sines_frequency(tmp_path, rate):
    _write_wav(tmp_path / "r.wav", _sine(1000, rate, seconds=1.0), rate, 2, 1)
    samples = read_wav(tmp_path / "r.wav")
    assert samples.shape == (16000,)
    assert _peak_hz(samples) == pytest.approx(1000, abs=2)
    assert np.sqrt(np.mean(samples[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_resampling_drops_what_16k_cannot_hold():
    tone = _sine(12000, 48000) + _sine(1000, 48000)
    out = resample(tone.astype(np.float32), 48000)
    assert _peak_hz(out) == pytest.approx(1000, abs=2)
    assert np.sqrt(np.mean(out[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


@pytest.mark.parametrize("rate", [48000, 32000, 8000, 16000])
def test_microphone_blocks_resample_like_one_stream(rate):
    """Block-wise resampling of a live stream has no seams at the 30 ms block edges."""
    block = rate * 30 // 1000
    signal = _sine(440, rate, seconds=2.0) + _sine(3000, rate, seconds=2.0, amplitude=0.2)
    resampler = StreamResampler(rate)
    outputs = [resampler(signal[i:i + block].astype(np.float32))
               for i in range(0, signal.size - block + 1, block)]
    assert {out.size for out in outputs} == {480} and outputs[0].dtype == np.float32
    out = np.concatenate(outputs)
    t = np.arange(out.size) / 16000 - resampler.delay_seconds
    expected = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t)
    settled = slice(int(0.01 * 16000), None)  # after the filter has filled
    assert np.abs(out[settled] - expected[settled]).max() < 1e-3
    assert resampler.delay_seconds < 0.005


def test_whole_recording_resampling_is_not_for_blocks():
    """Why the microphone needs StreamResampler: FFT resampling per block leaves seams."""
    signal = _sine(440, 48000)
    blocks = np.concatenate([resample(signal[i:i + 1440], 48000) for i in range(0, 48000, 1440)])
    assert np.abs(blocks - 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).max() > 0.05


def test_unreadable_wav_is_a_source_error(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(SourceError, match="cannot read WAV"):
        read_wav(tmp_path / "bad.wav")


# --- the bounded wait -------------------------------------------------------------------------
class FailingSource(ThreadedSource):
    name = "failing"

    def _grab(self):
        raise RuntimeError("cable unplugged")


class StuckSource(ThreadedSource):
    """A driver call that never returns (until the test releases it)."""

    name = "stuck"

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def _grab(self):
        self.release.wait()
        return None


class CountingSource(ThreadedSource):
    name = "counting"

    def __init__(self, lossless: bool):
        super().__init__(queue_size=2, lossless=lossless)
        self.count = 0

    def _grab(self):
        self.count += 1
        return self.count if self.count <= 50 else None


def test_grab_error_reaches_the_reader_as_source_error():
    with FailingSource() as source:
        with pytest.raises(SourceError, match="cable unplugged") as caught:
            source.read(READ_S)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_stuck_device_times_out_and_close_does_not_hang():
    source = StuckSource().start()
    try:
        started = time.monotonic()
        with pytest.raises(SourceTimeout, match="nothing within 0.2 s"):
            source.read(0.2)
        assert 0.15 <= time.monotonic() - started < 1.0
        started = time.monotonic()
        source.close()
        assert time.monotonic() - started < 1.5
        source.close()
    finally:
        source.release.set()


def test_live_source_drops_oldest_when_the_reader_is_slow():
    source = CountingSource(lossless=False).start()
    try:
        assert _wait_for(lambda: source.count > 50)
        first = source.read(READ_S)
        assert first.data >= 49 and source.dropped >= 40  # stale frames went, fresh ones stayed
    finally:
        source.close()


def test_lossless_source_keeps_everything():
    items = _drain(CountingSource(lossless=True))
    assert [item.data for item in items] == list(range(1, 51))


def _wait_for(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def _is_noise(frame: np.ndarray) -> bool:
    return frame.min() >= 60 and frame.max() <= 67


def test_durations_keep_many_items_in_step_with_their_audio():
    # GRID videos last 3.00 s and their audio 2.98 s; gaps of 2.5 s are 37.5 frames. Placed on
    # the audio's timeline, item k starts at frame round(t_k * 15) however many items came before.
    durations = [2.98] * 4
    source = ReplayFrames([VIDEO] * 4, fps=15, realtime=False, gap_seconds=2.5, durations=durations)
    frames = []
    while (item := source.read(5.0)) is not None:
        frames.append(item.data)
    source.close()
    assert len(frames) == round((2.5 * 5 + 2.98 * 4) * 15)
    for k in range(4):
        start = round((2.5 * (k + 1) + 2.98 * k) * 15)
        end = round((2.5 * (k + 1) + 2.98 * (k + 1)) * 15)
        assert _is_noise(frames[start - 1]) and not _is_noise(frames[start]), k
        assert not _is_noise(frames[end - 1]) and _is_noise(frames[end]), k


def test_durations_must_match_the_items():
    with pytest.raises(SourceError):
        ReplayFrames([VIDEO, VIDEO], durations=[3.0])
