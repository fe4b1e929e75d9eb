"""Speech segmentation on real read speech (LibriSpeech test-other, CC BY 4.0) with hysteresis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.capture.audio import SAMPLE_RATE_HZ, read_wav
from daemon.detect.vad import SpeechSegmenter, voiced_audio

VOICES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "voices" / "librispeech_test-other"
CLIP_A = VOICES / "1688" / "1688-142285-0004.wav"   # 4.5 s, one sentence
CLIP_B = VOICES / "1688" / "1688-142285-0005.wav"   # 4.3 s, one sentence
FRAME = 480                                         # 30 ms
FRAME_S = FRAME / SAMPLE_RATE_HZ


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE_HZ), np.float32)


def _run(samples: np.ndarray, segmenter: SpeechSegmenter) -> list[dict]:
    """Feed 30 ms frames; return utterances as {start, end, audio} (start: first sample's time)."""
    utterances, current = [], None
    for i in range(samples.size // FRAME):
        for event in segmenter.push(samples[i * FRAME:(i + 1) * FRAME], i * FRAME_S):
            if event.kind == "start":
                assert current is None
                # The start event carries the frames that started it, ending with frame i.
                current = {"start": (i + 1) * FRAME_S - event.audio.size / SAMPLE_RATE_HZ,
                           "audio": [event.audio]}
            elif event.kind == "audio":
                current["audio"].append(event.audio)
            elif event.kind == "pause":
                assert current is not None and event.audio.size == 0
            else:
                current["end"] = event.t
                current["audio"] = np.concatenate(current["audio"])
                utterances.append(current)
                current = None
    assert current is None, "utterance still open at the end of the recording"
    return utterances


def _energy_bounds(samples: np.ndarray) -> tuple[float, float]:
    """Onset and offset of speech: first and last 30 ms frame above 10% of the loudest frame's RMS."""
    frames = samples[:samples.size // FRAME * FRAME].reshape(-1, FRAME)
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    loud = np.flatnonzero(rms > 0.1 * rms.max())
    return loud[0] * FRAME_S, (loud[-1] + 1) * FRAME_S


@pytest.mark.parametrize("aggressiveness", [2, 3])
def test_one_sentence_padded_with_silence_is_one_utterance(aggressiveness):
    clip = read_wav(CLIP_A)
    samples = np.concatenate([_silence(1.0), clip, _silence(1.0)])
    onset, offset = _energy_bounds(samples)
    assert 1.0 <= onset < 1.5 and offset <= 1.0 + clip.size / SAMPLE_RATE_HZ
    [utterance] = _run(samples, SpeechSegmenter(aggressiveness, 30, start_frames=4, end_frames=20))
    assert abs(utterance["start"] - onset) <= 0.3, (utterance["start"], onset)
    assert utterance["end"] > offset
    # It ends end_frames (0.6 s) after the last voiced frame, and not much later.
    assert utterance["end"] <= offset + 0.6 + 0.4
    # The utterance audio is the speech, without the trailing unvoiced frames that ended it.
    seconds = utterance["audio"].size / SAMPLE_RATE_HZ
    assert offset - onset - 0.5 <= seconds <= offset - onset + 0.3


def test_utterance_audio_is_the_recording_itself():
    clip = read_wav(CLIP_A)
    samples = np.concatenate([_silence(1.0), clip, _silence(1.0)])
    [utterance] = _run(samples, SpeechSegmenter(2))
    first = int(round(utterance["start"] * SAMPLE_RATE_HZ))
    assert np.array_equal(utterance["audio"], samples[first:first + utterance["audio"].size])


def test_two_sentences_apart_are_two_utterances():
    a, b = read_wav(CLIP_A), read_wav(CLIP_B)
    samples = np.concatenate([_silence(1.0), a, _silence(1.5), b, _silence(1.0)])
    first, second = _run(samples, SpeechSegmenter(2))
    b_starts = (SAMPLE_RATE_HZ + a.size + int(1.5 * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    assert first["end"] < b_starts <= second["start"] + 0.1
    assert len(voiced_audio(samples, SpeechSegmenter(2))) == 2


def test_a_pause_shorter_than_end_frames_does_not_split():
    clip = read_wav(CLIP_A)
    onset, offset = _energy_bounds(clip)
    middle = int((onset + offset) / 2 * SAMPLE_RATE_HZ)
    pause = _silence(0.3)  # 10 frames < end_frames=20
    samples = np.concatenate([_silence(1.0), clip[:middle], pause, clip[middle:], _silence(1.0)])
    [utterance] = _run(samples, SpeechSegmenter(2, end_frames=20))
    # The pause stays inside the utterance: its audio contains the 0.3 s of zeros.
    assert utterance["audio"].size / SAMPLE_RATE_HZ >= offset - onset
    # The same pause with a shorter end_frames does split it.
    assert len(_run(samples, SpeechSegmenter(2, end_frames=5))) == 2


def test_silence_and_low_noise_are_not_speech():
    rng = np.random.default_rng(7)
    assert _run(_silence(3.0), SpeechSegmenter(2)) == []
    noise = (rng.standard_normal(3 * SAMPLE_RATE_HZ) * 0.002).astype(np.float32)
    assert _run(noise, SpeechSegmenter(2)) == []
    assert voiced_audio(noise, SpeechSegmenter(3)) == []


def _scripted(segmenter: SpeechSegmenter, verdicts: str) -> list[str]:
    """Push one frame per verdict ('1' voiced, '0' not), webrtcvad replaced by the script."""
    script = iter(verdicts)
    segmenter.is_speech = lambda frame: next(script) == "1"
    kinds = []
    for i in range(len(verdicts)):
        kinds += [f"{e.kind}@{i}" for e in segmenter.push(np.full(FRAME, i, np.float32), i * FRAME_S)]
    return kinds


def test_start_needs_start_frames_voiced_in_a_row():
    assert _scripted(SpeechSegmenter(2, start_frames=4), "1110111011100000") == []
    segmenter = SpeechSegmenter(2, start_frames=4)
    assert _scripted(segmenter, "11101111")[0] == "start@7"


def test_end_needs_end_frames_unvoiced_in_a_row():
    kinds = _scripted(SpeechSegmenter(2, start_frames=2, end_frames=3), "11" "001" "001" "000" "0")
    # Pauses of two frames (2-3, 5-6) are delivered when speech resumes; the three unvoiced
    # frames that ended it (8, 9, 10) are not part of the utterance. With end_frames=3 a 'pause'
    # is announced after two unvoiced frames.
    assert kinds == ["start@1", "pause@3", "audio@4", "audio@4", "audio@4", "pause@6", "audio@7",
                     "audio@7", "audio@7", "pause@9", "end@10"]


def test_start_event_carries_the_frames_that_started_it():
    segmenter = SpeechSegmenter(2, start_frames=3)
    script = iter("0111")
    segmenter.is_speech = lambda frame: next(script) == "1"
    events = [e for i in range(4) for e in segmenter.push(np.full(FRAME, i, np.float32), i * FRAME_S)]
    [start] = events
    assert start.kind == "start" and start.t == pytest.approx(3 * FRAME_S)
    assert np.array_equal(start.audio, np.repeat(np.array([1, 2, 3], np.float32), FRAME))


def test_reset_forgets_an_utterance_in_progress():
    clip = read_wav(CLIP_A)
    segmenter = SpeechSegmenter(2)
    _, offset = _energy_bounds(clip)
    for i in range(int(offset / 2 / FRAME_S)):
        segmenter.push(clip[i * FRAME:(i + 1) * FRAME], i * FRAME_S)
    assert segmenter.in_speech
    segmenter.reset()
    assert not segmenter.in_speech
    assert _run(_silence(1.0), segmenter) == []


@pytest.mark.parametrize("size", [479, 481, 320, 0])
def test_wrong_frame_size_is_a_value_error(size):
    with pytest.raises(ValueError, match="480 samples"):
        SpeechSegmenter(2, 30).push(np.zeros(size, np.float32), 0.0)


def test_frame_size_follows_frame_ms():
    assert SpeechSegmenter(2, 10).frame_samples == 160
    assert SpeechSegmenter(2, 20).frame_samples == 320
    assert SpeechSegmenter(2, 10).push(np.zeros(160, np.float32), 0.0) == []
