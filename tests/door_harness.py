"""A door for tests: the real models and capture loop, enrolled from the bundled GRID clips, with
camera and microphone seams that replay real recordings and can be told to fail.

Only hardware is replaced: the frame and audio sources (subclasses of the real
:class:`~daemon.capture.base.ThreadedSource`) and the GPIO pins (gpiozero's own MockFactory).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np

from daemon.capture.audio import room_tone
from daemon.capture.base import Pacer, ThreadedSource
from daemon.config import Config
from tools.scenes import DEMO, FPS, clip_audio, clip_frames  # noqa: F401 (the tests take them from here)

BLOCK = 480  # 30 ms


def scene(clip: str, lead_seconds: float = 1.0, tail_seconds: float = 2.0):
    """Frames and audio of one attempt: background, the clip, background (in step)."""
    frames = clip_frames(clip)
    audio = clip_audio(clip)
    rng = np.random.default_rng(3)
    blank = lambda: rng.integers(60, 68, size=frames[0].shape, dtype=np.uint8)  # noqa: E731
    lead, tail = int(lead_seconds * FPS), int(tail_seconds * FPS)
    video = [blank() for _ in range(lead)] + list(frames) + [blank() for _ in range(tail)]
    sound = np.concatenate([room_tone(audio, int(lead_seconds * 16000)), audio,
                            room_tone(audio, int(tail_seconds * 16000))])
    return video, sound


class ScriptedFrames(ThreadedSource):
    """Replays frames in real time; ``fault(i)`` may raise, block or return a replacement frame."""

    name = "test-camera"

    def __init__(self, frames, fault=None, clock=time.monotonic):
        super().__init__(clock=clock, queue_size=4)
        self._frames, self._fault = list(frames), fault
        self._i = 0
        self._pacer = Pacer(FPS, clock, time.sleep)

    def _grab(self):
        if self._i >= len(self._frames):
            return None
        self._pacer.wait()
        frame = self._frames[self._i]
        if self._fault is not None:
            frame = self._fault(self._i, frame)
        self._i += 1
        return frame


class ScriptedAudio(ThreadedSource):
    """Replays audio in real time in blocks of ``block_sizes`` (cycled); ``fault(i, block)`` may
    raise, block or return a replacement block."""

    name = "test-microphone"

    def __init__(self, samples, fault=None, block_sizes=(BLOCK,), clock=time.monotonic):
        super().__init__(clock=clock, queue_size=64)
        self._samples, self._fault, self._sizes = samples, fault, block_sizes
        self._pos, self._i = 0, 0
        self._start = None
        self._clock = clock

    def _grab(self):
        if self._pos >= self._samples.size:
            return None
        size = self._sizes[self._i % len(self._sizes)]
        block = self._samples[self._pos:self._pos + size]
        if self._start is None:
            self._start = self._clock()
        due = self._start + (self._pos + block.size) / 16000
        delay = due - self._clock()
        if delay > 0:
            time.sleep(delay)
        if self._fault is not None:
            block = self._fault(self._i, block)
        self._pos += size
        self._i += 1
        return block


def block_forever(*_):
    threading.Event().wait()


def initialised(config: Config) -> Config:
    """The config of an initialised door (its device key exists, nobody enrolled): ``avid run``
    and build_door never create a key themselves."""
    from daemon.state.keys import create_device_key

    key = config.state_dir / "device.key"
    if not key.exists():
        create_device_key(key)
    return config


def door_config(state_dir: Path, **overrides) -> Config:
    """A replay-free config for the loop (sources are given directly), mock GPIO."""
    data = {"state": {"directory": str(state_dir)},
            "camera": {"read_timeout_seconds": 1.0},
            "microphone": {"read_timeout_seconds": 1.0},
            "attempt": {"cooldown_seconds": 0.5, "timeout_seconds": 6.0},
            "lock": {"pin_factory": "mock", "unlock_seconds": 1.0}}
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return Config.model_validate(data)


def enrol_alice(pipeline, config: Config) -> None:
    """Enrol GRID speaker s1 ("alice") from two clips, as the demo does."""
    from daemon.service.enrolment import enrol_from_files
    from daemon.service import door
    from daemon.state.templates import Person

    faces = []
    for clip in ("s1_bbaf2n", "s1_bbaf3s"):
        path = config.state_dir / f"{clip}.jpg"
        config.state_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), clip_frames(clip)[8])
        faces.append(path)
    voices = [DEMO / c / "audio_16k.wav" for c in ("s1_bbaf2n", "s1_bbaf3s")]
    face, voice = enrol_from_files(pipeline, faces, voices)
    store = door.open_store(config, pipeline.models_fingerprint, create_key=True)
    store.save(Person("alice", face, voice))
    for path in faces:
        path.unlink()


def run_door(pipeline, config: Config, frames_factory, audio_factory, factory, duration_s: float):
    """Run the real capture loop with the given sources; return (events, relay pin)."""
    from daemon.actuate.lock import open_lock
    from daemon.service.door import build_door
    from daemon.service.loop import CaptureLoop

    lock = open_lock(config.lock, pin_factory=factory)
    try:
        loop = CaptureLoop(build_door(config, pipeline=pipeline), lock, frames_factory, audio_factory)
        events = loop.run(duration_s=duration_s)
    finally:
        lock.close()
    return events, factory.pin(config.lock.relay_pin)
