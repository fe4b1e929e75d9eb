"""Measure daemon/detect/speech_check.py: real speech must pass, noise, tones and music must fail.

Real speech: every voice clip of the development data (``$AVID_DATA``, default /work/shared/data:
voices/ and av/) and the bundled demo clips. Not speech: generated white, pink, brown and
speech-shaped noise (steady, and gated at a syllable rate), pure and amplitude-modulated tones,
beeps, sweeps, DTMF, hum, chords, melodies of harmonic notes, and drum-like bursts, at several
levels and lengths. Prints the pass rate of each group, the features' ranges and every real clip
that fails::

    python -m tools.speech_check_eval [--limit N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from daemon.capture.audio import read_wav
from daemon.detect.speech_check import speech_features, speech_problems

DATA = Path(os.environ.get("AVID_DATA", "/work/shared/data"))
DEMO = Path(__file__).resolve().parent.parent / "daemon" / "demo_data"
RATE = 16000


def real_clips(limit: int | None = None) -> list[Path]:
    """Every real speech WAV of the development data and the demo."""
    clips = sorted((DATA / "voices").rglob("*.wav")) + sorted((DATA / "av").rglob("*.wav"))
    clips += sorted(DEMO.rglob("*.wav"))
    return clips[:limit] if limit else clips


def _shaped_noise(rng, seconds, exponent):
    """Noise with a 1/f^exponent power spectrum (0 white, 1 pink, 2 brown)."""
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / RATE), 20.0)
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    return noise / np.abs(noise).max()


def _speech_shaped(rng, seconds, speech):
    """Speech-shaped noise: white noise filtered by a real recording's long-term spectrum, smoothed
    over 100 Hz as the standard test noises are (no harmonics of the speaker's pitch are left)."""
    n = int(seconds * RATE)
    power = np.abs(np.fft.rfft(speech[:n] if speech.size >= n else np.resize(speech, n), n)) ** 2
    width = max(1, int(100 * n / RATE))
    template = np.sqrt(np.convolve(power, np.ones(width) / width, mode="same"))
    noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * template, n)
    return noise / np.abs(noise).max()


def _gate(signal, rate_hz, duty=0.5):
    t = np.arange(signal.size) / RATE
    return signal * ((t * rate_hz) % 1.0 < duty)


def _note(freq, seconds, harmonics=6, decay=0.0):
    t = np.arange(int(seconds * RATE)) / RATE
    tone = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1))
    return tone * np.exp(-decay * t)


def negatives(seed: int = 7, speech: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Generated sounds that are not speech, each 3 s unless the name says otherwise."""
    rng = np.random.default_rng(seed)
    t = np.arange(3 * RATE) / RATE
    out: dict[str, np.ndarray] = {}
    for name, exponent in (("white", 0), ("pink", 1), ("brown", 2)):
        out[f"{name} noise"] = _shaped_noise(rng, 3, exponent)
        out[f"{name} noise gated 4 Hz"] = _gate(_shaped_noise(rng, 3, exponent), 4)
        out[f"{name} noise 10 s"] = _shaped_noise(rng, 10, exponent)
    if speech is not None:
        out["speech-shaped noise"] = _speech_shaped(rng, 3, speech)
        out["speech-shaped noise gated 4 Hz"] = _gate(_speech_shaped(rng, 3, speech), 4)
    for freq in (100, 150, 220, 440, 1000, 3000):
        out[f"tone {freq} Hz"] = np.sin(2 * np.pi * freq * t)
        out[f"tone {freq} Hz, 4 Hz AM"] = np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
        out[f"harmonic tone {freq} Hz"] = _note(freq, 3)
    out["beeps 1 kHz"] = _gate(np.sin(2 * np.pi * 1000 * t), 2)
    out["sweep 100-4000 Hz"] = np.sin(2 * np.pi * (100 * t + (3900 / 6) * t ** 2))
    out["sweep 100-400 Hz harmonic"] = sum(np.sin(2 * np.pi * k * (100 * t + 50 * t ** 2)) / k for k in range(1, 7))
    out["siren 600-900 Hz"] = np.sin(2 * np.pi * np.cumsum(750 + 150 * np.sin(2 * np.pi * 0.5 * t)) / RATE)
    out["DTMF digits"] = np.concatenate([np.concatenate([
        np.sin(2 * np.pi * lo * t[:2400]) + np.sin(2 * np.pi * hi * t[:2400]), np.zeros(1600)])
        for lo, hi in [(697, 1209), (770, 1336), (852, 1477), (941, 1633)] * 3])
    out["mains hum 50 Hz + harmonics"] = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 10))
    out["chord C-E-G"] = sum(_note(f, 3) for f in (261.6, 329.6, 392.0))
    melody = [261.6, 293.7, 329.6, 349.2, 392.0, 440.0, 493.9, 523.3, 392.0, 329.6, 261.6, 196.0]
    out["melody (harmonic notes)"] = np.concatenate([_note(f, 0.25) for f in melody])
    out["plucked melody"] = np.concatenate([_note(f, 0.25, decay=8) for f in melody])
    out["melody with vibrato"] = np.concatenate([
        np.sin(2 * np.pi * np.cumsum(f * (1 + 0.01 * np.sin(2 * np.pi * 6 * t[:4000]))) / RATE)
        for f in melody])
    out["melody over pink noise"] = out["melody (harmonic notes)"] + 0.3 * _shaped_noise(rng, 3, 1)
    drums = np.zeros(3 * RATE)
    for start in range(0, drums.size - 2000, RATE // 4):
        drums[start:start + 2000] += rng.standard_normal(2000) * np.exp(-np.arange(2000) / 300)
    out["drum-like bursts"] = drums
    out["clicks 10 Hz"] = np.where(np.arange(3 * RATE) % (RATE // 10) < 16, 1.0, 0.0)
    scaled = {}
    for name, signal in out.items():
        signal = signal / (np.abs(signal).max() + 1e-12)
        for level in (0.5, 0.05):
            scaled[f"{name} @{level:g}"] = (signal * level).astype(np.float32)
    return scaled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, help="real clips to measure (default: all)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    real, failed, features = 0, [], []
    enrollable, enrollable_failed = 0, []
    for path in real_clips(args.limit):
        samples = read_wav(path)
        f = speech_features(samples)
        problems = speech_problems(samples)
        features.append(f)
        real += 1
        if f.voiced_seconds >= 1.0:
            enrollable += 1
            if problems:
                enrollable_failed.append((path, problems, f))
        if problems:
            failed.append((path, problems, f))
    print(f"real speech clips: {real}; passed {real - len(failed)} ({(real - len(failed)) / real:.1%})")
    print(f"  with >= 1 s voiced (what enrolment accepts): {enrollable}; passed "
          f"{enrollable - len(enrollable_failed)}")
    print("  features of those (each check's threshold is in daemon/detect/speech_check.py):")
    for name in ("voiced_seconds", "periodic_fraction", "flatness", "spectral_change_db",
                 "steady_pitch_fraction"):
        values = np.array([getattr(f, name) for f in features if f.voiced_seconds >= 1.0])
        print(f"  {name:22s} min {values.min():.3g}  p1 {np.percentile(values, 1):.3g}  "
              f"median {np.median(values):.3g}  p99 {np.percentile(values, 99):.3g}  max {values.max():.3g}")
    for path, problems, f in failed:
        tag = "ENROLLABLE " if f.voiced_seconds >= 1.0 else ""
        print(f"  {tag}fails: {path.relative_to(path.parents[2])}: {'; '.join(problems)}")
    speech = read_wav(real_clips()[0]) if real_clips() else None
    generated = negatives(speech=speech)
    accepted = []
    for name, signal in generated.items():
        if not speech_problems(signal):
            accepted.append((name, speech_features(signal)))
    print(f"generated non-speech: {len(generated)}; refused {len(generated) - len(accepted)}")
    for name, f in accepted:
        print(f"  ACCEPTED: {name}: {f}")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0 if not enrollable_failed and not accepted else 1


if __name__ == "__main__":
    sys.exit(main())
