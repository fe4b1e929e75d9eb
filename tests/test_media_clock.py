"""The media clock: real replays released in media-time order, as fast as they are read."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from daemon.capture.audio import read_wav
from daemon.capture.media_clock import MediaClock
from daemon.capture.replay_audio import ReplayAudio
from daemon.capture.replay_frames import ReplayFrames
from daemon.errors import SourceTimeout

DEMO = Path(__file__).resolve().parents[1] / "daemon" / "demo_data"
VIDEO = DEMO / "s1_bbaf2n" / "video.mpg"          # GRID: 3 s
WAV = DEMO / "s1_bbaf2n" / "audio_16k.wav"
FPS, BLOCK_S = 15.0, 0.03
READ_S = 5.0


def _consume(source, name, log, lock, pause_s=0.0):
    delivered = source._delivered

    def logged(item):
        # Logged as the reader takes the item, before the clock hears of it: no race with the
        # other stream's reader.
        with lock:
            log.append((name, item.t))
        delivered(item)

    source._delivered = logged
    with source:
        while source.read(READ_S) is not None:
            time.sleep(pause_s)  # a slow stage (face detection on an emulated CPU)


def _replay_both(clock, frame_pause_s=0.0, audio_pause_s=0.0):
    frames = ReplayFrames(VIDEO, fps=FPS, realtime=True, gap_seconds=0.5, clock=clock)
    audio = ReplayAudio([WAV], block_ms=30, realtime=True, gap_seconds=0.5, clock=clock)
    log, lock = [], threading.Lock()
    threads = [threading.Thread(target=_consume, args=(frames, "frames", log, lock, frame_pause_s)),
               threading.Thread(target=_consume, args=(audio, "audio", log, lock, audio_pause_s))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return log


def _lead(log):
    """The most either stream was read ahead of the other, in media seconds."""
    latest = {"frames": float("-inf"), "audio": float("-inf")}
    worst = 0.0
    for name, t in log:
        latest[name] = t
        other = latest["audio" if name == "frames" else "frames"]
        if other > float("-inf"):
            worst = max(worst, t - other)
    return worst


def test_items_are_stamped_with_media_time_not_wall_time():
    clock = MediaClock()
    log = _replay_both(clock)
    frames = [t for name, t in log if name == "frames"]
    audio = [t for name, t in log if name == "audio"]
    assert frames == [pytest.approx(n / FPS) for n in range(len(frames))]
    assert audio == [pytest.approx(i * BLOCK_S) for i in range(len(audio))]
    assert len(frames) == 60  # 0.5 s gap + 3 s video + 0.5 s gap at 15 fps
    assert len(audio) == (8000 + read_wav(WAV).size + 8000) // 480


@pytest.mark.parametrize("frame_pause_s, audio_pause_s", [(0.02, 0.0), (0.0, 0.005)])
def test_neither_stream_runs_ahead_of_the_other(frame_pause_s, audio_pause_s):
    # Without the clock the fast reader would finish its whole stream while the slow one is at
    # the start; with it, neither leads by more than one item of the other.
    log = _replay_both(MediaClock(), frame_pause_s, audio_pause_s)
    assert _lead(log) <= max(1 / FPS, BLOCK_S) + 1e-9, _lead(log)
    assert {name for name, _ in log} == {"frames", "audio"}


def test_the_clock_reads_the_latest_released_media_time_then_runs_on_after_the_end():
    wall = [100.0]
    clock = MediaClock(wall=lambda: wall[0])
    assert clock() == 0.0
    log = _replay_both(clock)
    end = max(t for _, t in log)
    assert clock() == pytest.approx(end)
    wall[0] += 2.5  # the lock's relock timer must still run out after the replay
    assert clock() == pytest.approx(end + 2.5)


def test_a_stream_that_has_not_joined_holds_the_other_at_the_start():
    clock = MediaClock()
    audio = ReplayAudio([WAV], block_ms=30, realtime=True, clock=clock)
    with audio:
        assert audio.read(READ_S).t == 0.0
        with pytest.raises(SourceTimeout):
            audio.read(0.3)  # block 1 (media time 0.03) waits for the camera, which is away
        assert clock() == 0.0
        frames = ReplayFrames(VIDEO, fps=FPS, realtime=True, clock=clock).start()
        try:
            assert frames.read(READ_S).t == 0.0
            assert audio.read(READ_S).t == pytest.approx(BLOCK_S)
        finally:
            frames.close()


def test_waiting_for_a_slow_reader_is_not_a_read_timeout():
    clock = MediaClock()
    audio = ReplayAudio([WAV], block_ms=30, realtime=True, clock=clock)
    frames = ReplayFrames(VIDEO, fps=FPS, realtime=True, clock=clock)
    with audio, frames:
        assert frames.read(READ_S).t == 0.0
        assert [audio.read(READ_S).t for _ in range(3)] == pytest.approx([0.0, 0.03, 0.06])
        # Block 3 (0.09) waits until frame 1 (0.067) is read: the frames reader is slow (on an
        # emulated CPU, face detection can take longer than a read timeout), not the microphone.
        got = []
        reader = threading.Thread(target=lambda: got.append(audio.read(0.1)))
        reader.start()
        reader.join(timeout=0.5)
        assert reader.is_alive() and not got
        assert frames.read(READ_S).t == pytest.approx(1 / FPS)
        reader.join(timeout=READ_S)
        assert got[0].t == pytest.approx(0.09)


def test_a_reopened_stream_starts_at_the_current_media_time():
    clock = MediaClock()
    audio = ReplayAudio([WAV], block_ms=30, realtime=True, clock=clock).start()
    done = threading.Event()

    def read_audio():  # the loop's audio worker
        while not done.is_set():
            try:
                if audio.read(0.2) is None:
                    return
            except SourceTimeout:
                pass

    reader = threading.Thread(target=read_audio)
    reader.start()
    frames = ReplayFrames(VIDEO, fps=FPS, realtime=True, clock=clock).start()
    try:
        for _ in range(15):
            frames.read(READ_S)
        frames.close()  # a fault: the loop closes the source and opens a new one
        now = clock()
        assert now >= 14 / FPS
        time.sleep(0.3)
        assert clock() == now  # the audio waits for the camera to come back
        frames = ReplayFrames(VIDEO, fps=FPS, realtime=True, clock=clock).start()
        assert frames.read(READ_S).t == pytest.approx(now)
        assert frames.read(READ_S).t == pytest.approx(now + 1 / FPS)
    finally:
        frames.close()
        done.set()
        audio.close()
        reader.join(timeout=5)


def test_close_does_not_hang_while_waiting_for_the_other_stream():
    clock = MediaClock()
    audio = ReplayAudio([WAV], block_ms=30, realtime=True, clock=clock).start()
    audio.read(READ_S)
    started = time.monotonic()
    audio.close()
    assert time.monotonic() - started < 1.5


def test_a_hold_keeps_the_replay_from_running_past_work_in_progress():
    clock = MediaClock(streams=("audio",))
    audio = ReplayAudio([WAV], block_ms=30, realtime=True, clock=clock)
    clock.hold()  # e.g. an embedding of what was read so far is queued
    with audio:
        assert audio.read(READ_S).t == 0.0
        got = []
        reader = threading.Thread(target=lambda: got.append(audio.read(0.1)))
        reader.start()
        reader.join(timeout=0.5)
        assert reader.is_alive() and not got and clock() == 0.0  # waiting, and not a timeout
        clock.unhold()
        reader.join(timeout=READ_S)
        assert got[0].t == pytest.approx(BLOCK_S)
