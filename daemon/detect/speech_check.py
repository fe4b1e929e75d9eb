"""Is an enrolment sample speech? Refuses noise, tones, hum and music-like sounds, saying why.

webrtcvad alone takes white noise and many tones for speech, and a template made from noise later
matches any noise. A recording is accepted as a voice sample only if, over the frames webrtcvad
calls voiced:

- enough of them are voiced (``MIN_VOICED_SECONDS``);
- a good share is *periodic* (a normalised autocorrelation peak for a pitch of 70-400 Hz): vocal
  folds make voiced speech periodic, noise never is (:data:`MIN_PERIODIC_FRACTION`);
- the spectrum is not flat like noise (:data:`MAX_FLATNESS`), nor a few bare lines like pure
  tones, sweeps and sirens: breath noise and many harmonics keep speech above :data:`MIN_FLATNESS`;
- the spectrum changes over time as formants move from sound to sound (:data:`MIN_SPECTRAL_CHANGE_DB`),
  which a tone, a hum or a steady noise does not;
- the pitch glides: speech pitch is never held steady for long, while notes of instruments and
  tones are (:data:`MAX_STEADY_PITCH_FRACTION`).

Thresholds were set on real recordings (``python -m tools.speech_check_eval``; figures in
SECURITY.md): every development speech clip with at least a second of speech passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE_HZ = 16000
MIN_VOICED_SECONDS = 0.5
MIN_PERIODIC_FRACTION = 0.2
MAX_FLATNESS = 0.35
MIN_FLATNESS = 1e-4
MIN_SPECTRAL_CHANGE_DB = 4.0
MAX_STEADY_PITCH_FRACTION = 0.5

_FRAME = 480  # 30 ms: webrtcvad's frame and the analysis frame
_FFT = 1024
_MIN_LAG, _MAX_LAG = SAMPLE_RATE_HZ // 400, SAMPLE_RATE_HZ // 70  # pitch 70..400 Hz
_PERIODIC = 0.5  # normalised autocorrelation peak of a periodic frame
_STEADY = 0.005  # relative pitch change between frames below which a pitch counts as held


@dataclass(frozen=True)
class SpeechFeatures:
    """What :func:`speech_problems` judges, for reports and tuning."""

    voiced_seconds: float
    periodic_fraction: float
    flatness: float
    spectral_change_db: float
    steady_pitch_fraction: float


def _bands(n_bands: int = 24) -> np.ndarray:
    """Triangular bands, evenly spaced on the mel scale from 100 Hz to 7 kHz, over rfft bins."""
    mel = lambda hz: 2595 * np.log10(1 + hz / 700)  # noqa: E731
    edges_mel = np.linspace(mel(100), mel(7000), n_bands + 2)
    edges = 700 * (10 ** (edges_mel / 2595) - 1) * _FFT / SAMPLE_RATE_HZ
    bins = np.arange(_FFT // 2 + 1)
    weights = np.zeros((n_bands, bins.size))
    for i in range(n_bands):
        low, mid, high = edges[i], edges[i + 1], edges[i + 2]
        weights[i] = np.clip(np.minimum((bins - low) / (mid - low), (high - bins) / (high - mid)), 0, None)
    return weights


_BAND_WEIGHTS = _bands()


def speech_features(samples: np.ndarray, sample_rate: int = SAMPLE_RATE_HZ,
                    vad_aggressiveness: int = 3) -> SpeechFeatures:
    """Measure a mono recording (float in [-1, 1]); see the module documentation."""
    import webrtcvad

    from daemon.capture.audio import resample, to_pcm16

    samples = np.asarray(samples, np.float32).ravel()
    if sample_rate != SAMPLE_RATE_HZ:
        samples = resample(samples, sample_rate)
    samples = np.nan_to_num(samples)
    n_frames = samples.size // _FRAME
    if n_frames == 0:
        return SpeechFeatures(0.0, 0.0, 1.0, 0.0, 0.0)
    frames = samples[:n_frames * _FRAME].reshape(n_frames, _FRAME).astype(np.float64)
    vad = webrtcvad.Vad(vad_aggressiveness)
    voiced = np.array([vad.is_speech(to_pcm16(f), SAMPLE_RATE_HZ) for f in frames], bool)
    frames = frames[voiced]
    if frames.shape[0] == 0:
        return SpeechFeatures(0.0, 0.0, 1.0, 0.0, 0.0)
    frames = frames - frames.mean(axis=1, keepdims=True)
    # Only frames within 30 dB of the loud ones: the voice detector's hangover also lets through
    # near-silent frames, whose spectra are only the noise floor.
    level = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    frames = frames[level > max(np.percentile(level, 95) - 30, -90)]
    if frames.shape[0] == 0:
        return SpeechFeatures(float(voiced.sum() * _FRAME / SAMPLE_RATE_HZ), 0.0, 1.0, 0.0, 0.0)
    window = np.hanning(_FRAME)
    power = np.abs(np.fft.rfft(frames * window, _FFT)) ** 2 + 1e-12

    # Periodicity: autocorrelation of the (unwindowed) frame, normalised by the energy of the
    # overlapping parts so that long lags are not penalised. The peak must be a local maximum
    # inside the pitch range: the falling main lobe of low-pass noise (brown, speech-shaped) is
    # high at the shortest lag but is no pitch.
    spectrum = np.fft.rfft(frames, _FFT)
    autocorr = np.fft.irfft(np.abs(spectrum) ** 2, _FFT)[:, :_MAX_LAG + 2]
    energy = np.cumsum(frames ** 2, axis=1)
    total = energy[:, -1:]
    lags = np.arange(_MIN_LAG - 1, _MAX_LAG + 2)
    later = total - np.concatenate([np.zeros((frames.shape[0], 1)), energy[:, :-1]], axis=1)[:, lags]
    earlier = energy[:, _FRAME - 1 - lags]
    normalised = autocorr[:, lags] / np.sqrt(later * earlier + 1e-12)
    inner = normalised[:, 1:-1]
    is_peak = (inner >= normalised[:, :-2]) & (inner >= normalised[:, 2:])
    candidates = np.where(is_peak, inner, -1.0)
    best = candidates.argmax(axis=1)
    peak = candidates[np.arange(best.size), best]
    periodic = peak > _PERIODIC
    pitch = SAMPLE_RATE_HZ / lags[1:-1][best]

    # Flatness over 100 Hz..4 kHz, where voiced speech has its harmonics and formants.
    band = slice(int(100 * _FFT / SAMPLE_RATE_HZ), int(4000 * _FFT / SAMPLE_RATE_HZ))
    flatness = np.exp(np.mean(np.log(power[:, band]), axis=1)) / np.mean(power[:, band], axis=1)

    # Spectral change: the spread over time of each band's level (dB) around its mean, after
    # taking out each frame's overall level (a tone switched on and off does not count).
    bands_db = 10 * np.log10(power @ _BAND_WEIGHTS.T + 1e-12)
    shape = bands_db - bands_db.mean(axis=1, keepdims=True)
    change = float(np.mean(np.std(shape, axis=0))) if shape.shape[0] > 1 else 0.0

    # Held pitch: consecutive periodic frames whose pitch differs by less than 0.5%.
    both = periodic[1:] & periodic[:-1]
    if both.any():
        step = np.abs(np.diff(np.log(pitch)))[both]
        steady = float(np.mean(step < _STEADY))
    else:
        steady = 0.0
    return SpeechFeatures(voiced_seconds=float(voiced.sum() * _FRAME / SAMPLE_RATE_HZ),
                          periodic_fraction=float(periodic.mean()),
                          flatness=float(np.median(flatness)),
                          spectral_change_db=change,
                          steady_pitch_fraction=steady)


def speech_problems(samples: np.ndarray, sample_rate: int = SAMPLE_RATE_HZ) -> list[str]:
    """Why a recording is not usable as a voice sample; empty when it is speech.

    :param samples: mono audio, float in [-1, 1].
    :param sample_rate: its rate in Hz (resampled to 16 kHz if different).
    :returns: one plain sentence per failed check (an enrolment refusal lists them).
    """
    f = speech_features(samples, sample_rate)
    if f.voiced_seconds < MIN_VOICED_SECONDS:
        return [f"not enough speech: {f.voiced_seconds:.2f} s the voice detector calls voiced "
                f"(at least {MIN_VOICED_SECONDS:g} s needed)"]
    problems = []
    if f.periodic_fraction < MIN_PERIODIC_FRACTION:
        problems.append(f"no voice in it: only {f.periodic_fraction:.0%} of the sound has a voice's pitch "
                        f"(speech has {MIN_PERIODIC_FRACTION:.0%} or more); noise?")
    if f.flatness > MAX_FLATNESS:
        problems.append(f"noise-like spectrum: flatness {f.flatness:.2f} (speech stays under {MAX_FLATNESS:g})")
    if f.flatness < MIN_FLATNESS:
        problems.append(f"pure tones: the spectrum is a few bare lines (flatness {f.flatness:.1e}; speech "
                        f"stays over {MIN_FLATNESS:g}); a beep, whistle, sweep or siren?")
    if f.spectral_change_db < MIN_SPECTRAL_CHANGE_DB:
        problems.append(f"the sound hardly changes: {f.spectral_change_db:.1f} dB of spectral change "
                        f"(speech has {MIN_SPECTRAL_CHANGE_DB:g} dB or more); a tone, hum or steady noise?")
    if f.steady_pitch_fraction > MAX_STEADY_PITCH_FRACTION:
        problems.append(f"held notes: the pitch is steady {f.steady_pitch_fraction:.0%} of the time "
                        f"(speech under {MAX_STEADY_PITCH_FRACTION:.0%}); music or tones?")
    return problems
