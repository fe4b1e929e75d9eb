"""The numpy speaker front end (daemon/embed/mel.py) against librosa and Resemblyzer.

``tests/data/mel_reference.npz`` holds librosa's outputs (no audio) for one real VCTK utterance read
from ../shared/data at test time; ``tools/modelbuild/speaker_encoder.py`` writes it.
"""

import wave
from pathlib import Path

import numpy as np
import pytest

from daemon.embed import mel
from daemon.inference.tflite import sha256_of

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
REFERENCE = np.load(REPO_ROOT / "tests" / "data" / "mel_reference.npz")


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as handle:
        assert (handle.getframerate(), handle.getnchannels(), handle.getsampwidth()) == (16000, 1, 2)
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    path = DATA_DIR / str(REFERENCE["path"])
    assert sha256_of(path) == str(REFERENCE["file_sha256"]), f"{path} is not the reference audio"
    return read_wav(path)


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def test_filterbank_matches_librosa():
    ours = mel.mel_filterbank()
    assert ours.shape == (40, 201)
    np.testing.assert_allclose(ours, REFERENCE["mel_filterbank"], rtol=1e-5, atol=1e-9)


def test_mel_of_raw_speech_matches_librosa(speech):
    ours = mel.mel_spectrogram(speech[:16000])
    assert ours.shape == REFERENCE["raw_mel_1s"].shape == (101, 40)
    assert ours.dtype == np.float32
    assert relative_error(ours, REFERENCE["raw_mel_1s"]) < 1e-5


def test_preprocess_matches_resemblyzer(speech):
    preprocessed = mel.preprocess_wav(speech)
    assert len(preprocessed) == int(REFERENCE["preprocessed_length"])
    ours = mel.mel_spectrogram(preprocessed[:48000])
    assert relative_error(ours, REFERENCE["preprocessed_mel_3s"]) < 1e-5


@pytest.mark.parametrize("n_samples", [0, 1, 159, 160, 161, 400, 16000, 25600, 25759])
def test_frame_count(n_samples):
    frames = mel.mel_spectrogram(np.zeros(n_samples, dtype=np.float32))
    assert frames.shape == (mel.n_mel_frames(n_samples), 40)
    assert mel.n_mel_frames(n_samples) == 1 + n_samples // 160


def test_tone_lands_in_its_band():
    rate = 16000
    tone = 0.1 * np.sin(2 * np.pi * 1000.0 * np.arange(rate) / rate).astype(np.float32)
    frames = mel.mel_spectrogram(tone)
    centres = mel._mel_to_hz(np.linspace(0, mel._hz_to_mel(np.array([8000.0]))[0], 42))[1:-1]
    assert int(np.argmax(frames[50])) == int(np.argmin(np.abs(centres - 1000.0)))


def rms_dbfs(wav: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean((wav.astype(np.float64) * 32767) ** 2)) / 32767))


def test_normalize_volume_raises_quiet_audio_only(speech):
    quiet = speech * 0.01
    assert rms_dbfs(mel.normalize_volume(quiet)) == pytest.approx(-30.0, abs=1e-3)
    loud = speech / np.abs(speech).max() * 0.9
    assert rms_dbfs(loud) > -30
    np.testing.assert_array_equal(mel.normalize_volume(loud), loud)
    silence = np.zeros(1600, dtype=np.float32)
    np.testing.assert_array_equal(mel.normalize_volume(silence), silence)


def test_long_silence_is_trimmed(speech):
    gap = np.zeros(2 * 16000, dtype=np.float32)
    half = len(speech) // 2
    with_gap = np.concatenate([speech[:half], gap, speech[half:]])
    trimmed = mel.preprocess_wav(with_gap)
    baseline = mel.preprocess_wav(speech)
    # the 2 s gap shrinks to at most ~2 x 3 windows of 30 ms of dilation plus smoothing
    assert len(trimmed) - len(baseline) < 0.5 * 16000
    assert len(trimmed) < len(with_gap) - 1.5 * 16000


def test_all_silence_trims_to_nothing():
    assert len(mel.trim_long_silences(np.zeros(16000, dtype=np.float32))) == 0


def test_short_audio_keeps_one_flag_per_window(speech):
    mask = mel.voiced_window_mask(speech[16000:16000 + 5 * 480])
    assert mask.shape == (5,)
    assert len(mel.trim_long_silences(speech[:100])) == 0
