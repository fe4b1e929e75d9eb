"""Evaluate the random challenge (daemon/challenge/) against replay, in ISO/IEC 30107-3 terms.

Every presentation draws its own challenge (``digits`` prompts at random times, seeded here, from
:mod:`secrets` at the door) and is judged by the daemon's own :func:`judge_challenge`: answer
onsets found in the real audio, the mouth opening measured on the real landmarks of the real
video. Two kinds of material:

**Audio-visual recordings** (the clips of ``av/``, the attacks that tools/liveness_eval.py builds
from them). There are no recordings of these people saying the digits, so two stand-ins are used,
and said wherever the figures appear:

- *Timing and mouth.* A genuine answer is one utterance of the person's own clip (its onset with
  0.5 s before and 0.7 s after, audio and frames together), placed so that it starts 0.3-0.8 s
  after the prompt (a human reaction; the commissioning tool measures it at a real door); the
  GRID clips are a genuine answer to a prompt of their own content ("bin blue at F two now"). An
  attack is the recording played on through the challenge: the attacker starts it on seeing the
  first prompt, so that one of its utterances starts 0.3-0.8 s after that prompt (the best an
  attacker who cannot know the later prompts can do); the rest falls where the recording has it.
- *Content.* The answer's words are those of a free-spoken-digit speaker (one per identity):
  a genuine answer is another take of the prompted digit, an attack's is a take of a random digit
  (the recording happening to say the prompted digit one time in ten), each recognised by the
  daemon's recogniser against that speaker's two enrolment takes.

**Digit recordings** (``voices/fsdd``, audio only): a genuine attempt is the speaker's own takes of
the prompted digits placed after the prompts (``fsdd_genuine``); ``digit_replay`` is a recording of
an earlier genuine attempt (other digits, other times) played through a loudspeaker against a new
challenge, started as above; both with a mouth that opens exactly while the audio is loud (a
perfectly lip-synced video: the worst case for the door), and the real content check.

Counts: every presentation is a trial; presentations drawn from the same recording are correlated,
so the intervals (Clopper-Pearson, 95 %) are narrower than they should be; the number of distinct
recordings is reported with them.

Run: ``python -m tools.challenge_eval [--fsdd ../shared/data/voices/fsdd]`` (digit recordings
only; the audio-visual part runs inside ``python -m tools.liveness_eval``).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.capture.audio import SAMPLE_RATE_HZ, read_wav
from daemon.challenge.digits import DIGITS, DigitTemplates, recognise
from daemon.challenge.prompts import Challenge, ChallengeParams, new_challenge
from daemon.challenge.verify import judge_challenge, template_content
from daemon.offline.metrics import clopper_pearson

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
FSDD_DIR = REPO_ROOT.parent / "shared" / "data" / "voices" / "fsdd"
ENROL_TAKES = (0, 1)
#: Human reaction after a prompt, seconds (assumed; the commissioning tool measures it).
LATENCY_S = (0.3, 0.8)
#: Of an answer utterance: seconds kept before its onset and after it.
BEFORE_S, AFTER_S = 0.5, 0.7
ROOM_NOISE = 3e-4   # about -70 dBFS


@dataclass(frozen=True)
class Recording:
    """What is in front of the door: frame times and mouth openings (NaN without a face) and
    audio, all on the recording's own clock (audio sample 0 at time 0)."""

    name: str
    identity: str
    t: np.ndarray
    mouth: np.ndarray
    samples: np.ndarray
    #: Its utterances ``(start, end)`` as webrtcvad finds them (tools/liveness_eval.py); empty:
    #: all of it.
    spans: tuple = ()

    def utterance_onsets(self) -> list[float]:
        """Onsets of speech after a pause: the answer detector's onsets after half a second of
        silence (an answer follows the wait for its prompt) that lie in an utterance webrtcvad found
        (a click or a breath outside speech is not one), else the utterance's start; none in the
        first 50 ms (a clip cut in mid-speech)."""
        spans = list(self.spans) or [(0.0, self.seconds)]
        detected = onsets(self.samples, 0.5)
        found = []
        for start, end in spans:
            inside = [o for o in detected if start - 0.15 <= o <= end]
            found += inside if any(abs(o - start) < 0.2 for o in inside) else [start] + inside
        # An onset in the last 0.4 s is a noise at the clip's end, not an answer that fits.
        return sorted(o for o in found if 0.05 <= o <= self.seconds - 0.4)

    def noise_bed(self, seconds: float, rng: np.random.Generator) -> np.ndarray:
        """``seconds`` of this recording's own background: its quietest quarter second, repeated
        (so that only its speech, not its noise, stands out from the room)."""
        n = int(seconds * SAMPLE_RATE_HZ)
        piece = int(0.25 * SAMPLE_RATE_HZ)
        if self.samples.size < 2 * piece:
            return rng.normal(0.0, ROOM_NOISE, n).astype(np.float32)
        starts = np.arange(0, self.samples.size - piece, piece // 2)
        quietest = min(starts, key=lambda s: float(np.mean(self.samples[s:s + piece] ** 2)))
        quiet = self.samples[quietest:quietest + piece]
        return np.resize(quiet, n).astype(np.float32) + rng.normal(0.0, ROOM_NOISE, n).astype(np.float32)

    @property
    def seconds(self) -> float:
        return self.samples.size / SAMPLE_RATE_HZ


def rate(errors: int, trials: int) -> dict:
    """An error rate with its 95 % Clopper-Pearson interval and counts (None when no trials)."""
    if trials == 0:
        return {"rate": None, "ci95": None, "errors": 0, "trials": 0}
    low, high = clopper_pearson(errors, trials)
    return {"rate": errors / trials, "ci95": [low, high], "errors": errors, "trials": trials}


def normalised(samples: np.ndarray, peak: float = 0.5) -> np.ndarray:
    """Samples at a door microphone's level (the free-spoken-digit takes peak low)."""
    top = float(np.abs(samples).max()) if samples.size else 0.0
    return samples * np.float32(peak / top) if top > 0 else samples


def loudspeaker(samples: np.ndarray, band_hz=(300.0, 7000.0), delay_s: float = 0.0) -> np.ndarray:
    """Audio as a phone's loudspeaker plays it: ``band_hz`` only, ``delay_s`` late."""
    spectrum = np.fft.rfft(np.asarray(samples, np.float64))
    freqs = np.fft.rfftfreq(samples.size, 1.0 / SAMPLE_RATE_HZ)
    spectrum[(freqs < band_hz[0]) | (freqs > band_hz[1])] = 0.0
    out = np.fft.irfft(spectrum, samples.size).astype(np.float32)
    shift = int(round(delay_s * SAMPLE_RATE_HZ))
    return np.concatenate([np.zeros(shift, np.float32), out[:out.size - shift]]) if shift else out


def onsets(samples: np.ndarray, rest_s: float = BEFORE_S) -> list[float]:
    """Utterance onsets (seconds) of a recording that follow ``rest_s`` of silence, by the daemon's
    own answer detector (:func:`daemon.challenge.verify.speech_runs`)."""
    from daemon.challenge.verify import FRAME_S, levels_db, speech_runs
    runs = speech_runs(levels_db(samples))
    found, previous_end = [], -1e9
    for first, voiced, last in runs:
        if (first - previous_end) * FRAME_S >= rest_s and first * FRAME_S >= 0.1:
            found.append(voiced * FRAME_S)
        previous_end = last
    return found


# ---------------------------------------------------------------------------------------------
# Content stand-in: free-spoken-digit speakers
# ---------------------------------------------------------------------------------------------


class DigitBank:
    """The free-spoken-digit takes, each speaker's enrolment templates, and a table of what the
    recogniser makes of every other take (computed once)."""

    def __init__(self, fsdd_dir: Path, params: ChallengeParams):
        self.params = params
        self.takes: dict[str, dict[tuple[str, int], np.ndarray]] = {}
        for folder in sorted(p for p in Path(fsdd_dir).iterdir() if p.is_dir()):
            takes = {}
            for wav in sorted(folder.glob("*.wav")):
                digit, _, take = wav.stem.partition("_")
                if digit in DIGITS and take.isdigit():
                    takes[(digit, int(take))] = normalised(read_wav(wav))
            if all((d, t) in takes for d in DIGITS for t in ENROL_TAKES):
                self.takes[folder.name] = takes
        if not self.takes:
            raise ValueError(f"no speaker with the digits 0-9 twice under {fsdd_dir}")
        self.speakers = sorted(self.takes)
        self.templates = {s: DigitTemplates.from_recordings(
            (d, self.takes[s][(d, t)]) for d in DIGITS for t in ENROL_TAKES) for s in self.speakers}
        self.recognised = {}
        for speaker in self.speakers:
            for (digit, take), samples in self.takes[speaker].items():
                if take not in ENROL_TAKES:
                    self.recognised[(speaker, digit, take)] = recognise(samples, self.templates[speaker])

    def test_takes(self, speaker: str, digit: str) -> list[int]:
        return sorted(t for (d, t) in self.takes[speaker] if d == digit and t not in ENROL_TAKES)

    def speaker_for(self, identity: str) -> str:
        """The digit speaker standing in for an audio-visual identity (fixed per identity)."""
        return self.speakers[zlib.crc32(identity.encode()) % len(self.speakers)]

    def stand_in(self, speaker: str, prompted: str, spoken: str, rng: random.Random) -> bool:
        """Whether a take of ``spoken`` by ``speaker`` passes as the ``prompted`` digit."""
        found = self.recognised[(speaker, spoken, rng.choice(self.test_takes(speaker, spoken)))]
        return found.matches(prompted, self.params.max_distance, self.params.max_ratio)


# ---------------------------------------------------------------------------------------------
# Presentations
# ---------------------------------------------------------------------------------------------


def door_accepts(recording: Recording, challenge: Challenge, start_s: float, content, people,
                 params: ChallengeParams, rng: np.random.Generator) -> bool:
    """Whether the door with the challenge lets ``recording`` (played from ``start_s``) through the
    liveness part of its decision: the challenge (with the still-face rule over the answers)."""
    return present(recording, challenge, start_s, content, people, params, rng).passed


def present(recording: Recording, challenge: Challenge, start_s: float, content, people,
            params: ChallengeParams, rng: np.random.Generator):
    """Judge ``recording`` played from ``start_s`` seconds after the challenge starts (negative:
    started before), with room noise over the whole challenge."""
    length = challenge.ends_at(params) + 0.5
    audio = recording.noise_bed(length, rng)
    at = int(round(start_s * SAMPLE_RATE_HZ))
    source = recording.samples
    if at < 0:
        source, at = source[-at:], 0
    n = max(0, min(source.size, audio.size - at))
    audio[at:at + n] = source[:n]
    return judge_challenge(challenge, audio, 0.0, recording.t + start_s, recording.mouth, content,
                           people, params)


def attacker_start(recording: Recording, challenge: Challenge, params: ChallengeParams,
                   rng: random.Random) -> float:
    """When an attacker who sees the first prompt starts the recording: one of its utterances then
    begins a human reaction after that prompt (or the recording's start does, if it has none)."""
    first = challenge.prompts[0]
    # Any onset after a short rest will do: the attacker only needs one to fall after the prompt.
    found = sorted(set(recording.utterance_onsets()) | set(onsets(recording.samples, params.rest_s))) \
        or [0.0]
    onset = rng.choice(found)
    return first.at + first.duration_s + rng.uniform(*LATENCY_S) - onset


def genuine_composite(pool: list[tuple[Recording, float]], challenge: Challenge,
                      rng: random.Random, noise: np.random.Generator) -> Recording:
    """A genuine attempt built from a person's own utterances: for each prompt, one utterance
    (audio and frames from ``BEFORE_S`` before its onset to ``AFTER_S`` after) starting a human
    reaction after the prompt."""
    length = challenge.ends_at(ChallengeParams()) + 2.0
    audio = pool[0][0].noise_bed(length, noise)
    times, mouths = [], []
    for prompt in challenge.prompts:
        recording, onset = rng.choice(pool)
        start = prompt.at + prompt.duration_s + rng.uniform(*LATENCY_S)
        low, high = max(0.0, onset - BEFORE_S), min(recording.seconds, onset + AFTER_S)
        piece = recording.samples[int(low * SAMPLE_RATE_HZ):int(high * SAMPLE_RATE_HZ)]
        at = int((start - (onset - low)) * SAMPLE_RATE_HZ)
        if at < 0 or at + piece.size > audio.size:
            continue
        # Cross-fades of 10 ms, so that the cut itself is not a click.
        fade = np.ones(piece.size, np.float32)
        ramp = min(160, piece.size // 2)
        fade[:ramp], fade[piece.size - ramp:] = np.linspace(0, 1, ramp), np.linspace(1, 0, ramp)
        audio[at:at + piece.size] = piece * fade + audio[at:at + piece.size] * (1 - fade)
        keep = (recording.t >= low) & (recording.t <= high)
        times.append(recording.t[keep] - onset + start)
        mouths.append(recording.mouth[keep])
    t = np.concatenate(times) if times else np.zeros(0)
    order = np.argsort(t, kind="stable")
    mouth = np.concatenate(mouths)[order] if mouths else np.zeros(0)
    return Recording("composite", pool[0][0].identity, t[order], mouth, audio, ())


def answer_pool(recordings: list[Recording]) -> list[tuple[Recording, float]]:
    """Every (recording, onset) usable as a genuine answer: an onset after half a second of
    silence, with frames around it."""
    pool = []
    for recording in recordings:
        for onset in recording.utterance_onsets():
            if np.isfinite(recording.mouth[(recording.t >= onset - BEFORE_S)
                                           & (recording.t <= onset + AFTER_S)]).sum() >= 4:
                pool.append((recording, onset))
    return pool


def stand_in_content(bank: DigitBank, speaker: str, genuine: bool, who: str, rng: random.Random):
    """The content check with free-spoken-digit stand-ins (see the module doc)."""
    def check(index: int, digit: str, samples: np.ndarray) -> frozenset:
        spoken = digit if genuine else rng.choice(DIGITS)
        return frozenset({who}) if bank.stand_in(speaker, digit, spoken, rng) else frozenset()
    return check


def evaluate_av(bona_fide: list[Recording], attacks: dict[str, list[Recording]], bank: DigitBank,
                params: ChallengeParams = ChallengeParams(), draws: int = 5, seed: int = 1) -> dict:
    """Outcomes of audio-visual presentations at the door with the challenge (the challenge, with
    the still-face rule over the answers): ``{"bona_fide": {name: [accepted, ...]}, "<species>":
    {name: [...]}, "excluded": {name: why}}``, ``draws`` random challenges per recording."""
    rng, noise = random.Random(seed), np.random.default_rng(seed)
    by_identity: dict[str, list[Recording]] = {}
    for recording in bona_fide:
        by_identity.setdefault(recording.identity, []).append(recording)
    pools = {identity: answer_pool(recs) for identity, recs in by_identity.items()}
    outcomes: dict[str, dict[str, list]] = {"bona_fide": {}, "excluded": {}}
    for recording in bona_fide:
        pool = [item for item in pools[recording.identity] if item[0] is recording] \
            or pools[recording.identity]
        if not pool:
            # Continuous speech with no half-second pause: nothing in it stands in for an answer.
            outcomes["excluded"][recording.name] = "no utterance after a pause of 0.5 s"
            continue
        results = []
        for _ in range(draws):
            challenge = new_challenge(params, rng=rng)
            # The person's own utterances, this clip's first: a GRID speaker with one clip answers
            # every prompt with its one sentence (the words are the stand-in's).
            composite = genuine_composite(pool + pools[recording.identity], challenge, rng, noise)
            content = stand_in_content(bank, bank.speaker_for(recording.identity), True, "p", rng)
            results.append(door_accepts(composite, challenge, 0.0, content, ["p"], params, noise))
        outcomes["bona_fide"][recording.name] = results
    for species, recordings in attacks.items():
        outcomes[species] = {}
        for recording in recordings:
            results = []
            for _ in range(draws):
                challenge = new_challenge(params, rng=rng)
                content = stand_in_content(bank, bank.speaker_for(recording.identity), False, "p", rng)
                start = attacker_start(recording, challenge, params, rng)
                results.append(door_accepts(recording, challenge, start, content, ["p"], params,
                                            noise))
            outcomes[species][recording.name] = results
    return outcomes


# ---------------------------------------------------------------------------------------------
# Digit recordings (audio only)
# ---------------------------------------------------------------------------------------------


def spoken_attempt(bank: DigitBank, speaker: str, challenge: Challenge, rng: random.Random,
                   digits: str | None = None) -> Recording:
    """The speaker saying each prompted digit (other takes than the enrolment's) a human reaction
    after its prompt, with a mouth that opens exactly while they speak."""
    length = challenge.ends_at(ChallengeParams()) + 1.0
    audio = np.zeros(int(length * SAMPLE_RATE_HZ), np.float32)
    t = np.arange(0.0, length, 1.0 / 15.0)
    mouth = np.full(t.size, 0.02)
    for i, prompt in enumerate(challenge.prompts):
        digit = digits[i] if digits else prompt.digit
        clip = bank.takes[speaker][(digit, rng.choice(bank.test_takes(speaker, digit)))]
        start = prompt.at + prompt.duration_s + rng.uniform(*LATENCY_S)
        at = int(start * SAMPLE_RATE_HZ)
        n = min(clip.size, audio.size - at)
        audio[at:at + n] += clip[:n]
        mouth[(t >= start) & (t <= start + n / SAMPLE_RATE_HZ)] = 0.2
    return Recording(f"{speaker}:{challenge.text}", speaker, t, mouth, audio)


def evaluate_digits(bank: DigitBank, params: ChallengeParams = ChallengeParams(), trials: int = 100,
                    seed: int = 1) -> dict:
    """``fsdd_genuine`` and ``digit_replay`` outcomes per speaker (see the module doc)."""
    rng, noise = random.Random(seed), np.random.default_rng(seed)
    outcomes: dict[str, dict[str, list]] = {"fsdd_genuine": {}, "digit_replay": {}}
    for speaker in bank.speakers:
        content = template_content({speaker: bank.templates[speaker]}, params)
        genuine, replayed = [], []
        for _ in range(trials):
            challenge = new_challenge(params, rng=rng)
            attempt = spoken_attempt(bank, speaker, challenge, rng)
            genuine.append(present(attempt, challenge, 0.0, content, [speaker], params, noise).passed)
            # An earlier genuine attempt, recorded and played back through a loudspeaker.
            old = new_challenge(params, rng=rng)
            recorded = spoken_attempt(bank, speaker, old, rng)
            played = Recording(recorded.name, speaker, recorded.t, recorded.mouth,
                               loudspeaker(recorded.samples, delay_s=0.04))
            start = attacker_start(played, challenge, params, rng)
            replayed.append(present(played, challenge, start, content, [speaker], params,
                                    noise).passed)
        outcomes["fsdd_genuine"][speaker] = genuine
        outcomes["digit_replay"][speaker] = replayed
    return outcomes


def summarise(outcomes: dict[str, list], bona_fide: bool) -> dict:
    """BPCER (bona fide) or APCER (attacks) over every presentation, with counts."""
    results = [r for rows in outcomes.values() for r in rows]
    errors = sum((not r) if bona_fide else bool(r) for r in results)
    return {**rate(errors, len(results)), "recordings": len(outcomes)}


def main(argv=None) -> int:
    """Command line: the digit-recording part (audio only)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fsdd", type=Path, default=FSDD_DIR)
    parser.add_argument("--trials", type=int, default=100, help="challenges per speaker")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params = ChallengeParams()
    outcomes = evaluate_digits(DigitBank(args.fsdd, params), params, args.trials, args.seed)
    print(json.dumps({"bpcer": summarise(outcomes["fsdd_genuine"], True),
                      "apcer": {"digit_replay": summarise(outcomes["digit_replay"], False)}},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
