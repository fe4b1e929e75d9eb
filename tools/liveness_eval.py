"""Evaluate the audio-visual liveness check (ISO/IEC 30107-3 terms: APCER per attack type, BPCER).

Bona fide presentations are the real talking-face clips of ``av_dir`` (GRID, talking-head
references, the Hamilton clip), each with its own audio. Attacks, built from the same material:

- ``photo``: one frame of the clip (the middle one) held up to the camera by hand: the still image
  is re-rendered for every frame time with a slow, smooth rigid motion (rotation, translation,
  scale and a slight perspective tilt) and sensor noise, then detected and landmarked like a live
  frame; the clip's real audio is played.
- ``replay_dub``: the clip's video with the audio of another clip (another utterance of the same
  person where there is one, otherwise of another person).
- ``desync``: the clip's video and its own audio shifted by +-0.5, +-0.8 or +-1.0 s.
- ``deepfake``: the generated talking heads of ``av_spoof_dir`` with their own driving audio.

Frames are taken at 15 fps (the daemon's rate) from the videos' own timestamps; speech is found with
the daemon's webrtcvad segmenter, and every utterance is cut into attempts of at most
``ATTEMPT_S`` seconds (dropping pieces shorter than ``MIN_ATTEMPT_S``). Attacks whose speech would
fall outside the video (a shift past its end) are left out rather than counted as caught.

The threshold pair (sync correlation, sync contrast) is chosen (with the still-face limits and
``max_far_advantage`` as given) on these same trials: of the pairs
keeping BPCER at or under 5 %, the one with the lowest worst APCER over photo, replay_dub and desync
(deepfakes are reported, never tuned for). Numbers on 14 bona fide clips are coarse: one clip is
7 %.

Run: ``python -m tools.liveness_eval [--av ../shared/data/av] [--av-spoof ../shared/data/av_spoof]
[--models models] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from daemon.capture.audio import SAMPLE_RATE_HZ, read_wav
from daemon.detect.face_detector import FaceDetector
from daemon.detect.face_landmarks import FaceLandmarker
from daemon.detect.vad import SpeechSegmenter
from daemon.liveness.sync import FaceTrack, LivenessParams, SpeechTrack, measure
from daemon.liveness.tracks import FaceTrackBuilder, SpeechTrackBuilder
from tools import challenge_eval
from tools.challenge_eval import Recording, loudspeaker

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
FPS = 15.0
ATTEMPT_S = 3.0
MIN_ATTEMPT_S = 1.0
DESYNC_SHIFTS_S = (-1.0, -0.8, -0.5, 0.5, 0.8, 1.0)
ATTACK_TYPES = ("photo", "replay_dub", "desync", "deepfake", "full_replay", "vc_dub")
#: A phone's loudspeaker: the band it plays and how late its audio is behind its picture.
SPEAKER_BAND_HZ, SPEAKER_SKEW_S = (300.0, 7000.0), 0.04
#: Random challenges drawn per recording (tools/challenge_eval.py).
CHALLENGE_DRAWS = 5
MAX_BPCER = 0.05
#: The attacks the sync thresholds are chosen against (deepfakes and whole replays are reported,
#: never tuned for: no threshold of this check can stop a replay of a real talking face).
TUNED_ON = ("photo", "replay_dub", "desync")
AUDIO_BLOCK = 480


@dataclass(frozen=True)
class Clip:
    """One audio-visual clip: where it is, whose it is, its 15 fps frames and its audio."""

    name: str
    identity: str
    video: Path
    samples: np.ndarray


def find_clips(root: Path) -> list[tuple[str, str, Path]]:
    """Return ``(name, identity, video path)`` of every clip folder under ``root`` that has a video
    and an ``audio_16k.wav``; the identity is the folder above the clip's."""
    clips = []
    for audio in sorted(root.rglob("audio_16k.wav")):
        videos = sorted(p for p in audio.parent.glob("video.*"))
        if videos:
            name = str(audio.parent.relative_to(root))
            clips.append((name, audio.parent.parent.name, videos[0]))
    return clips


def read_frames(video: Path, fps: float = FPS):
    """Yield ``(t, bgr)`` from a video at about ``fps`` frames per second, using the container's
    timestamps (some clips have a variable frame rate)."""
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise OSError(f"cannot open video {video}")
    next_t = 0.0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            t = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if t + 1e-6 < next_t:
                continue
            next_t += 1.0 / fps
            yield t, frame
    finally:
        capture.release()


def track_of(frames, detector: FaceDetector, landmarker: FaceLandmarker) -> FaceTrack:
    """Run detection and landmarks on ``(t, bgr)`` frames (largest face) into a :class:`FaceTrack`."""
    builder = FaceTrackBuilder(history_s=math.inf)
    for t, frame in frames:
        faces = detector.detect(frame)
        if not faces:
            builder.add(t, None, None)
            continue
        face = max(faces, key=lambda f: f.width * f.height)
        builder.add(t, face, landmarker.landmarks(frame, face))
    return builder.build()


def _holder(shape, seed: int):
    """A hand holding a picture up to a camera: ``hold(image, t)`` is the picture as the camera
    sees it at time ``t`` (slow rotation, translation, scale and tilt, and sensor noise)."""
    rng = np.random.default_rng(seed)
    height, width = shape[:2]
    phases = rng.uniform(0, 2 * np.pi, 6)
    rates = rng.uniform(0.3, 1.2, 6)
    centre = np.array([width / 2.0, height / 2.0])

    def hold(image: np.ndarray, t: float) -> np.ndarray:
        wave = np.sin(2 * np.pi * rates * t + phases)
        angle = 3.0 * wave[0]
        scale = 1.0 + 0.03 * wave[1]
        shift = np.array([0.03 * width * wave[2], 0.03 * height * wave[3]])
        affine = cv2.getRotationMatrix2D(tuple(centre), angle, scale)
        affine[:, 2] += shift
        homography = np.vstack([affine, [0.0, 0.0, 1.0]])
        # A slight tilt of the photo: perspective terms of a few degrees at this image size.
        homography[2, :2] = 2e-5 * wave[4:6] * 360.0 / max(width, height)
        warped = cv2.warpPerspective(image, homography, (width, height),
                                     borderMode=cv2.BORDER_REPLICATE)
        noise = rng.normal(0.0, 2.0, warped.shape)
        return np.clip(warped + noise, 0, 255).astype(np.uint8)
    return hold


def hand_held(frame: np.ndarray, times: np.ndarray, seed: int):
    """Yield ``(t, bgr)``: one still image moved as a hand holds a photo up to a camera."""
    hold = _holder(frame.shape, seed)
    for t in times:
        yield float(t), hold(frame, float(t))


def screen_replay(frames, seed: int, blur_sigma: float = 1.0, gamma: float = 1.2):
    """Yield ``(t, bgr)``: every frame of a video shown on a phone screen held up to the camera:
    the screen's blur (``blur_sigma`` pixels) and gamma, then the hand's motion (:func:`hand_held`)."""
    table = (255.0 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8)
    hold = None
    for t, frame in frames:
        hold = hold or _holder(frame.shape, seed)
        shown = cv2.LUT(cv2.GaussianBlur(frame, (0, 0), blur_sigma), table)
        yield float(t), hold(shown, float(t))


def recording(name: str, identity: str, track: FaceTrack, samples: np.ndarray) -> Recording:
    """A clip as the challenge evaluation presents it (its frames' mouth openings, its audio and
    where its utterances start)."""
    samples = np.asarray(samples, np.float32)
    return Recording(name, identity, np.asarray(track.t, np.float64),
                     np.asarray(track.mouth, np.float64), samples,
                     tuple(utterances(samples)))


def shifted_audio(samples: np.ndarray, shift_s: float) -> np.ndarray:
    """``samples`` starting ``shift_s`` seconds late (negative: early, the start cut off)."""
    n = int(round(abs(shift_s) * SAMPLE_RATE_HZ))
    if shift_s >= 0:
        return np.concatenate([np.zeros(n, np.float32), samples])
    return samples[n:]


def middle_frame(video: Path) -> np.ndarray:
    """The 15 fps frame nearest the middle of a video."""
    frames = list(read_frames(video))
    return frames[len(frames) // 2][1]


def envelope_of(samples: np.ndarray, shift_s: float = 0.0) -> SpeechTrack:
    """The whole recording's 10 ms envelope (fed block by block, as the daemon does), its time base
    moved by ``shift_s``; the utterance bounds are set per attempt."""
    builder = SpeechTrackBuilder(SAMPLE_RATE_HZ, history_s=math.inf)
    for start in range(0, samples.size, AUDIO_BLOCK):
        builder.add(shift_s + start / SAMPLE_RATE_HZ, samples[start:start + AUDIO_BLOCK])
    return builder.build(0.0, 0.0)


def utterances(samples: np.ndarray, segmenter: SpeechSegmenter | None = None) -> list[tuple[float, float]]:
    """Return ``(start, end)`` of each utterance webrtcvad finds: from the first voiced frame that
    started it to the last voiced frame before the silence that ended it."""
    segmenter = segmenter or SpeechSegmenter()
    frame_s = segmenter.frame_samples / SAMPLE_RATE_HZ
    n = segmenter.frame_samples
    found, start, last_voiced = [], None, 0.0
    for i, offset in enumerate(range(0, samples.size - n + 1, n)):
        t = i * frame_s
        for event in segmenter.push(samples[offset:offset + n], t):
            if event.kind == "start":
                start = t - event.audio.size / SAMPLE_RATE_HZ + frame_s
            elif event.kind == "end" and start is not None:
                found.append((start, last_voiced))
                start = None
        if segmenter.in_speech and segmenter.is_speech(samples[offset:offset + n]):
            last_voiced = t + frame_s
    if start is not None:
        found.append((start, samples.size / SAMPLE_RATE_HZ))
    segmenter.reset()
    return found


def attempts(spans: list[tuple[float, float]], attempt_s: float = ATTEMPT_S,
             min_s: float = MIN_ATTEMPT_S) -> list[tuple[float, float]]:
    """Cut utterances into consecutive attempts of at most ``attempt_s``, dropping short pieces."""
    pieces = []
    for start, end in spans:
        while end - start >= min_s:
            pieces.append((start, min(end, start + attempt_s)))
            start += attempt_s
    return pieces


def trial(track: FaceTrack, envelope: SpeechTrack, span: tuple[float, float],
          params: LivenessParams) -> dict:
    """Measure one attempt; return a JSON-able row (problem, ranges, correlation, lag, contrast)."""
    speech = replace(envelope, start=span[0], end=span[1])
    result = measure(track, speech, params)
    row = {"span": [round(span[0], 3), round(span[1], 3)], "problem": result.problem,
           "mouth_range": round(result.mouth_range, 4),
           "keypoint_range": round(result.keypoint_range, 4),
           "mouth_closure": round(result.mouth_closure, 4)}
    if result.sync is not None:
        row.update(correlation=round(result.sync.correlation, 4),
                   lag_ms=round(result.sync.lag_s * 1000.0), contrast=round(result.sync.contrast, 3),
                   far_correlation=round(result.sync.far_correlation, 4),
                   far_lag_ms=round(result.sync.far_lag_s * 1000.0))
    return row


def inside(span: tuple[float, float], track: FaceTrack) -> bool:
    """Whether an attempt's speech lies within the video's frames."""
    return len(track) > 0 and span[0] >= track.t[0] - 0.05 and span[1] <= track.t[-1] + 0.05


def accepted(rows: list[dict], min_correlation: float, min_contrast: float,
             max_far_advantage: float = math.inf) -> np.ndarray:
    """Which trials pass at the given sync thresholds (as :func:`daemon.liveness.sync.sync_passes`)."""
    return np.array([r["problem"] is None and r["correlation"] >= min_correlation
                     and r["contrast"] >= min_contrast
                     and not r["far_correlation"] - r["correlation"] > max_far_advantage
                     for r in rows], dtype=bool)


def rate(rows: list[dict], *thresholds) -> float | None:
    """Share of ``rows`` accepted at ``thresholds`` (None when there are no rows)."""
    return float(accepted(rows, *thresholds).mean()) if rows else None


def choose_thresholds(bona_fide: list[dict], attacks: dict[str, list[dict]],
                      max_bpcer: float = MAX_BPCER,
                      max_far_advantage: float = math.inf) -> tuple[float, float]:
    """The (correlation, contrast) pair keeping BPCER <= ``max_bpcer`` with the lowest worst APCER
    over the attacks other than deepfakes (ties: the stricter pair)."""
    measured = [r for r in bona_fide if r["problem"] is None]
    correlations = sorted({r["correlation"] for r in measured}) or [1.0]
    contrasts = sorted({r["contrast"] for r in measured}) or [math.inf]
    tuned = [name for name in attacks if name in TUNED_ON and attacks[name]]
    best_key, best = None, (correlations[0], contrasts[0])
    for min_correlation in correlations:
        for min_contrast in contrasts:
            thresholds = (min_correlation, min_contrast, max_far_advantage)
            if 1.0 - rate(bona_fide, *thresholds) > max_bpcer + 1e-12:
                continue
            apcers = [rate(attacks[name], *thresholds) for name in tuned]
            key = (max(apcers) if apcers else 0.0, -min_correlation - min_contrast)
            if best_key is None or key < best_key:
                best_key, best = key, (min_correlation, min_contrast)
    return best


def evaluate_liveness(av_dir: Path, av_spoof_dir: Path | None, models_dir: Path,
                      params: LivenessParams = LivenessParams(), details: dict | None = None,
                      attempt_s: float = ATTEMPT_S, spoof_dir: Path | None = None,
                      fsdd_dir: Path | None = None, challenge_draws: int = CHALLENGE_DRAWS,
                      digit_trials: int = 100) -> dict:
    """Build the bona fide and attack trials, choose the thresholds and report APCER/BPCER, for the
    door with the random challenge and without it.

    Returns ``{"liveness": {...}}`` (see the module doc); ``details``, when given, is filled with
    every trial's row for inspection. ``spoof_dir`` (voice-converted audio, default ``spoof/`` next
    to ``av_dir``) and ``fsdd_dir`` (digit recordings, default ``voices/fsdd`` next to it) feed the
    ``vc_dub`` species and the challenge's content stand-in; without digit recordings the
    challenge is not evaluated.
    """
    data_root = Path(av_dir).parent
    spoof_dir = Path(spoof_dir) if spoof_dir is not None else data_root / "spoof"
    fsdd_dir = Path(fsdd_dir) if fsdd_dir is not None else data_root / "voices" / "fsdd"
    vc_audio = [loudspeaker(read_wav(p), SPEAKER_BAND_HZ, SPEAKER_SKEW_S)
                for p in sorted(spoof_dir.rglob("*.wav"))] if spoof_dir.is_dir() else []
    recordings: dict[str, list[Recording]] = {"bona_fide": [], **{k: [] for k in ATTACK_TYPES}}
    detector, landmarker = FaceDetector(models_dir), FaceLandmarker(models_dir)
    # The sync thresholds are what is being chosen: measure with them off.
    clips = []
    for name, identity, video in find_clips(av_dir):
        samples = read_wav(video.parent / "audio_16k.wav")
        track = track_of(read_frames(video), detector, landmarker)
        spans = attempts(utterances(samples), attempt_s)
        clips.append((name, identity, video, samples, track, spans))
        log.info("%s: %d frames (%d with a mouth), %d attempt(s)", name, len(track),
                 int(np.isfinite(track.mouth).sum()), len(spans))

    bona_fide, attacks = [], {name: [] for name in ATTACK_TYPES}
    for index, (name, identity, video, samples, track, spans) in enumerate(clips):
        envelope = envelope_of(samples)
        for span in spans:
            bona_fide.append({"clip": name, **trial(track, envelope, span, params)})
        recordings["bona_fide"].append(recording(name, identity, track, samples))

        photo_track = track_of(hand_held(middle_frame(video), track.t, seed=index), detector,
                               landmarker)
        for span in spans:
            attacks["photo"].append({"clip": name, **trial(photo_track, envelope, span, params)})
        recordings["photo"].append(recording(name, identity, photo_track, samples))

        # The whole clip on a phone: every frame through the screen and the hand, its own audio
        # through the phone's loudspeaker, 40 ms behind the picture.
        screen_track = track_of(screen_replay(read_frames(video), seed=1000 + index), detector,
                                landmarker)
        played = loudspeaker(samples, SPEAKER_BAND_HZ, SPEAKER_SKEW_S)
        played_envelope = envelope_of(played)
        for span in attempts(utterances(played), attempt_s):
            if inside(span, screen_track):
                attacks["full_replay"].append({"clip": name, **trial(screen_track, played_envelope,
                                                                     span, params)})
        recordings["full_replay"].append(recording(name, identity, screen_track, played))
        if vc_audio:
            converted = vc_audio[index % len(vc_audio)]
            converted_envelope = envelope_of(converted)
            for span in attempts(utterances(converted), attempt_s):
                if inside(span, screen_track):
                    attacks["vc_dub"].append({"clip": name, "audio_from": index % len(vc_audio),
                                              **trial(screen_track, converted_envelope, span, params)})
            recordings["vc_dub"].append(recording(name, identity, screen_track, converted))

        for shift in DESYNC_SHIFTS_S:
            shifted = envelope_of(samples, shift)
            for start, end in spans:
                span = (start + shift, end + shift)
                if inside(span, track):
                    attacks["desync"].append({"clip": name, "shift_s": shift,
                                              **trial(track, shifted, span, params)})
            recordings["desync"].append(recording(f"{name}@{shift:+.1f}s", identity, track,
                                                  shifted_audio(samples, shift)))

        same_person = [c for c in clips if c[1] == identity and c[0] != name]
        donors = same_person or [c for c in clips if c[0] != name]
        for donor in donors:
            donor_envelope = envelope_of(donor[3])
            for span in donor[5]:
                if inside(span, track):
                    attacks["replay_dub"].append({"clip": name, "audio_from": donor[0],
                                                  **trial(track, donor_envelope, span, params)})
            recordings["replay_dub"].append(recording(f"{name}+{donor[0]}", identity, track,
                                                      donor[3]))

    if av_spoof_dir is not None and Path(av_spoof_dir).is_dir():
        for name, _, video in find_clips(Path(av_spoof_dir)):
            samples = read_wav(video.parent / "audio_16k.wav")
            track = track_of(read_frames(video), detector, landmarker)
            envelope = envelope_of(samples)
            for span in attempts(utterances(samples), attempt_s):
                attacks["deepfake"].append({"clip": name, **trial(track, envelope, span, params)})
            recordings["deepfake"].append(recording(name, name, track, samples))

    if not bona_fide:
        raise ValueError(f"no bona fide attempts found under {av_dir}")
    far = params.max_far_advantage
    min_correlation, min_contrast = choose_thresholds(bona_fide, attacks, max_far_advantage=far)
    chosen = (min_correlation, min_contrast, far)
    defaults = (params.min_sync_correlation, params.min_sync_contrast, far)
    bpcer = 1.0 - rate(bona_fide, *chosen)
    apcer = {name: rate(rows, *chosen) for name, rows in attacks.items()}
    at_defaults = {"bpcer": 1.0 - rate(bona_fide, *defaults),
                   "apcer": {name: rate(rows, *defaults) for name, rows in attacks.items()}}
    problems = {name: {reason: sum(r["problem"] == reason for r in rows)
                       for reason in ("too_few_frames", "still_face")}
                for name, rows in [("bona_fide", bona_fide), *attacks.items()]}
    if details is not None:
        details.update(bona_fide=bona_fide, attacks=attacks)
    n_accepted = {name: int(accepted(rows, *chosen).sum()) for name, rows in attacks.items()}
    without = {
        "bpcer": bpcer, "apcer": apcer,
        "bpcer_ci95": ci95(round(bpcer * len(bona_fide)), len(bona_fide)),
        "apcer_ci95": {name: ci95(n_accepted[name], len(rows)) for name, rows in attacks.items()},
        "threshold": min_correlation,
        "contrast_threshold": min_contrast,
        "n_bona_fide": len(bona_fide), "n_attacks": {k: len(v) for k, v in attacks.items()},
        "rejected_before_sync": problems,
        "at_default_params": at_defaults,
        "params": {"attempt_s": attempt_s, "max_far_advantage": far,
                   "min_mouth_range": params.min_mouth_range,
                   "min_mouth_closure": params.min_mouth_closure,
                   "min_keypoint_range": params.min_keypoint_range,
                   "max_lag_ms": params.max_lag_ms, "context_s": params.context_s},
        "deepfake_scoring": "generated video with its own driving audio, scored like a bona fide "
                            "attempt (the audio is what drove the lips, so sync is the hard case)"}
    if not fsdd_dir.is_dir():
        return {"liveness": {**without, "without_challenge": without,
                             "note": f"challenge not evaluated: no digit recordings at {fsdd_dir}"}}
    return {"liveness": {**with_challenge(recordings, fsdd_dir, challenge_draws, digit_trials,
                                          details),
                         "without_challenge": without}}


def ci95(errors: int, trials: int) -> list[float] | None:
    """The 95 % Clopper-Pearson interval of ``errors`` in ``trials`` (None without trials)."""
    found = challenge_eval.rate(errors, trials)
    return found["ci95"]


def with_challenge(recordings: dict, fsdd_dir: Path, draws: int, digit_trials: int,
                   details: dict | None = None) -> dict:
    """The door with the random challenge (tools/challenge_eval.py): BPCER and APCER per species
    with intervals and counts; ``digit_replay`` and ``bpcer_audio_only`` from the digit recordings."""
    params = challenge_eval.ChallengeParams()
    bank = challenge_eval.DigitBank(fsdd_dir, params)
    attacks = {name: recordings[name] for name in ATTACK_TYPES}
    outcomes = challenge_eval.evaluate_av(recordings["bona_fide"], attacks, bank, params, draws)
    excluded = outcomes.pop("excluded")
    digits = challenge_eval.evaluate_digits(bank, params, trials=digit_trials)
    outcomes["digit_replay"] = digits["digit_replay"]
    if details is not None:
        details["challenge"] = {**outcomes, "fsdd_genuine": digits["fsdd_genuine"]}
    bona_fide = challenge_eval.summarise(outcomes["bona_fide"], True)
    audio_only = challenge_eval.summarise(digits["fsdd_genuine"], True)
    species = {name: challenge_eval.summarise(outcomes[name], False)
               for name in (*ATTACK_TYPES, "digit_replay")}
    return {
        "bpcer": bona_fide["rate"], "bpcer_ci95": bona_fide["ci95"],
        "n_bona_fide": bona_fide["trials"], "bona_fide_recordings": bona_fide["recordings"],
        "bona_fide_excluded": excluded,
        "apcer": {name: s["rate"] for name, s in species.items()},
        "apcer_ci95": {name: s["ci95"] for name, s in species.items()},
        "n_attacks": {name: s["trials"] for name, s in species.items()},
        "attack_recordings": {name: s["recordings"] for name, s in species.items()},
        "bpcer_audio_only": audio_only["rate"], "bpcer_audio_only_ci95": audio_only["ci95"],
        "n_bona_fide_audio_only": audio_only["trials"],
        "challenge": {"digits": params.digits, "min_correct": params.min_correct,
                      "draws_per_recording": draws, "sync_check": "off (the challenge's mouth "
                      "check per answer replaces it; the still-face rule applies to the answers)",
                      "stand_ins": "answers' words from free-spoken-digit speakers; human latency "
                                   "0.3-0.8 s assumed (tools/challenge_eval.py)"}}


def main(argv=None) -> int:
    """Command line: print (and optionally save) the evaluation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--av", type=Path, default=DATA_DIR / "av")
    parser.add_argument("--av-spoof", type=Path, default=DATA_DIR / "av_spoof")
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--attempt-s", type=float, default=ATTEMPT_S,
                        help="longest attempt; longer utterances are cut into several")
    parser.add_argument("--json", type=Path, help="write the result and every trial here")
    parser.add_argument("--min-mouth-range", type=float, default=LivenessParams.min_mouth_range)
    parser.add_argument("--min-mouth-closure", type=float,
                        default=LivenessParams.min_mouth_closure)
    parser.add_argument("--min-keypoint-range", type=float,
                        default=LivenessParams.min_keypoint_range)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params = LivenessParams(min_mouth_range=args.min_mouth_range,
                            min_mouth_closure=args.min_mouth_closure,
                            min_keypoint_range=args.min_keypoint_range)
    details: dict = {}
    result = evaluate_liveness(args.av, args.av_spoof, args.models, params, details,
                               args.attempt_s)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**result, "trials": details}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
