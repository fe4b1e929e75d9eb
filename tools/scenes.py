"""Scenes made of real recordings for the benchmarks and the tests: the bundled GRID clips at the
door's frame rate, and a person answering the spoken challenge.

The challenge scene is chimeric (and says so): GRID s1's face, at rest between answers and
speaking during them, with a free-spoken-digit speaker's own recordings of the prompted digits.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import cv2
import numpy as np

from daemon.capture.audio import read_wav, room_tone
from daemon.challenge import ChallengeParams, new_challenge

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "daemon" / "demo_data"
FSDD = REPO.parent / "shared" / "data" / "voices" / "fsdd"
FPS = 15.0
#: The clip whose face answers the challenge (alice, GRID s1; not used for enrolment).
ANSWERING_CLIP = "s1_bbaf4p"


@functools.lru_cache(maxsize=None)
def clip_frames(clip: str) -> tuple[np.ndarray, ...]:
    """A bundled clip's frames resampled to 15 fps."""
    capture = cv2.VideoCapture(str(DEMO / clip / "video.mpg"))
    source_fps = capture.get(cv2.CAP_PROP_FPS)
    frames, index, emitted = [], 0, 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        while emitted / FPS <= index / source_fps:
            frames.append(frame)
            emitted += 1
        index += 1
    capture.release()
    return tuple(frames)


@functools.lru_cache(maxsize=None)
def clip_audio(clip: str) -> np.ndarray:
    """A bundled clip's 16 kHz audio."""
    return read_wav(DEMO / clip / "audio_16k.wav")


def spoken(speaker: str, digit: str, take: int) -> np.ndarray:
    """A free-spoken-digit take at a door microphone's level."""
    samples = read_wav(FSDD / speaker / f"{digit}_{take}.wav")
    return samples * np.float32(0.3 / np.abs(samples).max())


def answering_scene(seed: int, speaker: str = "theo", latency_s: float = 0.45):
    """Frames and audio of a person answering the challenge drawn with ``seed``: each prompted
    digit spoken ``latency_s`` after its prompt (take 4, 5, ... of ``speaker``), the mouth moving
    only while answering, the room's background throughout."""
    params = ChallengeParams()
    challenge = new_challenge(params, rng=random.Random(seed))
    frames = clip_frames(ANSWERING_CLIP)
    # In this clip s1's mouth rests in frames 0-3 (opening about 0.03) and opens and closes in
    # frames 17-26 (0.003-0.13), measured with the door's own landmarks.
    rest, speaking = frames[:4], frames[17:27]
    length = challenge.ends_at(params) + 2.0
    audio = room_tone(clip_audio(ANSWERING_CLIP), int(length * 16000))
    answers = []
    for i, prompt in enumerate(challenge.prompts):
        take = spoken(speaker, prompt.digit, 4 + i % 6)
        start = prompt.at + latency_s
        at = int(start * 16000)
        audio[at:at + take.size] += take
        answers.append((start - 0.1, start + take.size / 16000 + 0.1))
    video = []
    for k in range(int(length * FPS)):
        t = k / FPS
        inside = [a for a, b in answers if a <= t <= b]
        video.append(speaking[int((t - inside[0]) * FPS) % len(speaking)] if inside
                     else rest[k % len(rest)])
    return video, audio
