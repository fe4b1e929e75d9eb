"""Speech segmentation: webrtcvad per frame with start/end hysteresis.

An utterance starts after ``start_frames`` voiced frames in a row and ends after ``end_frames``
unvoiced frames in a row. The frames that started it are part of it; the unvoiced frames that ended
it are not. Short pauses inside an utterance are kept (they carry rhythm the encoder expects).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from daemon.capture.audio import SAMPLE_RATE_HZ, to_pcm16


#: Unvoiced frames (150 ms at 30 ms) after which a 'pause' event is raised inside an utterance.
PAUSE_FRAMES = 5


@dataclass(frozen=True)
class SpeechEvent:
    """``kind`` is 'start' (audio: the frames that started it), 'audio' (one more frame of the
    utterance), 'pause' (speech has stopped for a while, it may be the end; audio: empty) or 'end'
    (audio: empty); ``t`` is the time of the frame that caused it."""

    kind: str
    t: float
    audio: np.ndarray


@dataclass(frozen=True)
class VadSettings:
    """The VAD settings shared by the door, enrolment and the evaluation (``vad:`` in the config,
    with the microphone's block length as the frame length)."""

    aggressiveness: int = 3
    frame_ms: int = 30
    start_frames: int = 4
    end_frames: int = 20

    @classmethod
    def from_config(cls, config) -> "VadSettings":
        """The settings of a :class:`~daemon.config.Config`."""
        return cls(config.vad.aggressiveness, config.microphone.block_ms, config.vad.start_frames,
                   config.vad.end_frames)

    def segmenter(self) -> "SpeechSegmenter":
        """A fresh segmenter with these settings."""
        return SpeechSegmenter(self.aggressiveness, self.frame_ms, self.start_frames, self.end_frames)


class SpeechSegmenter:
    """Feeds fixed-size frames to webrtcvad and turns the verdicts into utterance events."""

    def __init__(self, aggressiveness: int = 2, frame_ms: int = 30, start_frames: int = 4,
                 end_frames: int = 20, sample_rate_hz: int = SAMPLE_RATE_HZ):
        self._aggressiveness = aggressiveness
        self._vad = webrtcvad.Vad(aggressiveness)
        self._rate = sample_rate_hz
        self.frame_samples = sample_rate_hz * frame_ms // 1000
        self._start_frames, self._end_frames = start_frames, end_frames
        # Longer than the gaps between words, well short of the end: when speech pauses this long
        # the utterance may be over, and the last window can be embedded before the end is certain.
        self._pause_frames = max(1, min(PAUSE_FRAMES, end_frames - 1))
        self._pending: deque[np.ndarray] = deque(maxlen=start_frames)
        self._gap: list[np.ndarray] = []
        self.in_speech = False

    def reset(self) -> None:
        """Forget any utterance in progress."""
        # webrtcvad keeps calling frames voiced for a while after speech (its hangover); a fresh
        # instance, so that the frames after a reset cannot start an utterance made of silence.
        self._vad = webrtcvad.Vad(self._aggressiveness)
        self._pending.clear()
        self._gap.clear()
        self.in_speech = False

    def is_speech(self, frame: np.ndarray) -> bool:
        """webrtcvad's verdict on one frame of float samples."""
        return self._vad.is_speech(to_pcm16(frame), self._rate)

    def push(self, frame: np.ndarray, t: float) -> list[SpeechEvent]:
        """Add one frame (``frame_samples`` float samples) and return the events it causes."""
        if frame.shape != (self.frame_samples,):
            raise ValueError(f"VAD frames must be {self.frame_samples} samples, got {frame.shape}")
        voiced = self.is_speech(frame)
        if not self.in_speech:
            if voiced:
                self._pending.append(frame)
                if len(self._pending) == self._start_frames:
                    self.in_speech = True
                    audio = np.concatenate(self._pending)
                    self._pending.clear()
                    return [SpeechEvent("start", t, audio)]
            else:
                self._pending.clear()
            return []
        if voiced:
            events = [SpeechEvent("audio", t, gap) for gap in self._gap]
            self._gap.clear()
            return events + [SpeechEvent("audio", t, frame)]
        self._gap.append(frame)
        if len(self._gap) >= self._end_frames:
            self._gap.clear()
            self.in_speech = False
            return [SpeechEvent("end", t, np.zeros(0, np.float32))]
        if len(self._gap) == self._pause_frames:
            return [SpeechEvent("pause", t, np.zeros(0, np.float32))]
        return []


def voiced_audio(samples: np.ndarray, segmenter: SpeechSegmenter) -> list[np.ndarray]:
    """Split a whole recording into its utterances (used for enrolment and evaluation)."""
    utterances, current = [], []
    n = segmenter.frame_samples
    for i, start in enumerate(range(0, samples.size - n + 1, n)):
        for event in segmenter.push(samples[start:start + n], i * n / SAMPLE_RATE_HZ):
            if event.kind in ("start", "audio"):
                current.append(event.audio)
            elif event.kind == "end" and current:
                utterances.append(np.concatenate(current))
                current = []
    if current:
        utterances.append(np.concatenate(current))
    segmenter.reset()
    return utterances
