"""Judging the answers to a challenge: when each answer started, whether it is the prompted digit
and whether the mouth in front of the camera opened for it.

An answer to a prompt is the first speech onset inside the prompt's window (see
:meth:`~daemon.challenge.prompts.Prompt.window`) that follows at least ``rest_s`` of silence: a
recording plays on through the prompts, so its speech onsets fall where the recording has them,
not where the door's random prompts ask for them. The door's own prompt audio is masked out before
the onsets are looked for (the loudspeaker is heard by the microphone).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from daemon.challenge.digits import DigitTemplates, recognise
from daemon.challenge.prompts import Challenge, ChallengeParams
from daemon.challenge.result import REASONS, ChallengeResult

log = logging.getLogger(__name__)

FRAME_S = 0.01
#: No voice is quieter than this (dBFS over 50 ms): a silent or dead microphone has no answers.
MIN_SPEECH_DB = -60.0


@dataclass(frozen=True)
class Answer:
    """The answer found for one prompt: start and end (seconds after the challenge start), None
    when nothing started inside the window."""

    start: float | None
    end: float | None = None

    @property
    def found(self) -> bool:
        return self.start is not None


def levels_db(samples: np.ndarray, sample_rate_hz: int = 16000) -> np.ndarray:
    """Level (dB) of each 10 ms frame, of the power averaged over 50 ms around it (so that the
    flicker of a noisy background does not read as speech)."""
    hop = int(sample_rate_hz * FRAME_S)
    n = samples.size // hop
    frames = np.asarray(samples[:n * hop], np.float64).reshape(n, hop)
    power = (frames ** 2).mean(axis=1)
    if n >= 5:
        power = np.convolve(power, np.ones(5) / 5, mode="same")
    return 10.0 * np.log10(power + 1e-12)


def speech_runs(levels: np.ndarray, masked: np.ndarray | None = None,
                merge_frames: int = 15) -> list[tuple[int, int, int]]:
    """Runs of speech frames ``(first, voiced, last)``, by two thresholds over the attempt's noise
    floor (its 10th percentile level): a run holds frames 5 dB over the floor (weak sounds such as
    the /s/ of "six" or a breath are only that loud) and two in a row 12 dB over it, within 35 dB of
    the loudest frame and over :data:`MIN_SPEECH_DB`, the first of which is ``voiced``; runs closer than ``merge_frames`` are one.
    The door's own prompts (``masked``) are silence.
    """
    masked = np.zeros(levels.shape, bool) if masked is None else masked
    usable = levels[~masked]
    if usable.size == 0:
        return []
    floor, peak = np.percentile(usable, 10), usable.max()
    strong = (levels >= max(floor + 12.0, peak - 35.0, MIN_SPEECH_DB)) & ~masked
    strong = strong & (np.roll(strong, -1) | np.roll(strong, 1))
    weak = (levels >= max(floor + 5.0, peak - 45.0)) & ~masked
    runs, i, n = [], 0, levels.size
    while i < n:
        if not weak[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and weak[j + 1]:
            j += 1
        loud = np.flatnonzero(strong[i:j + 1])
        if loud.size:
            if runs and i - runs[-1][2] <= merge_frames:
                runs[-1] = (runs[-1][0], runs[-1][1], j)
            else:
                runs.append((i, i + int(loud[0]), j))
        i = j + 1
    return runs


def find_answers(challenge: Challenge, samples: np.ndarray, samples_t0: float,
                 params: ChallengeParams, sample_rate_hz: int = 16000) -> list[Answer]:
    """The answer to each prompt in ``samples`` (whose first sample was taken at ``samples_t0`` on
    the capture clock): the first run of speech whose voiced onset falls in the prompt's window,
    that began no earlier than the prompt ended (a breath may come before the voice) and followed
    ``rest_s`` of silence."""
    levels = levels_db(np.asarray(samples, np.float32).reshape(-1), sample_rate_hz)
    frame_t = samples_t0 - challenge.started_at + (np.arange(levels.size) + 0.5) * FRAME_S
    masked = np.zeros(levels.size, bool)
    for prompt in challenge.prompts:
        if prompt.duration_s > 0:
            # Plus 50 ms: the room's echo of the prompt.
            masked |= (frame_t >= prompt.at - 0.02) & (frame_t <= prompt.at + prompt.duration_s + 0.05)
    rest = max(1, int(round(params.rest_s / FRAME_S)))
    runs = speech_runs(levels, masked, max(1, int(round(params.end_silence_s / FRAME_S))))
    longest = max(1, int(round(params.max_answer_s / FRAME_S)))
    answers = []
    for prompt in challenge.prompts:
        low, high = prompt.window(params)
        answer = Answer(None)
        for k, (first, voiced, last) in enumerate(runs):
            previous_end = runs[k - 1][2] if k else -rest - 1
            if (low <= frame_t[voiced] <= high and frame_t[first] >= prompt.at + prompt.duration_s
                    and first - previous_end > rest and first >= rest):
                # The answer runs on over every run that starts within max_answer_s of its voice.
                for later_first, _, later_last in runs[k + 1:]:
                    if later_first >= voiced + longest:
                        break
                    last = later_last
                last = min(last, voiced + longest - 1)
                answer = Answer(float(frame_t[voiced] - FRAME_S / 2), float(frame_t[last] + FRAME_S / 2))
                break
        answers.append(answer)
    return answers


def answer_samples(answer: Answer, challenge: Challenge, samples: np.ndarray, samples_t0: float,
                   sample_rate_hz: int = 16000) -> np.ndarray:
    """The samples of one answer (with 50 ms either side)."""
    offset = challenge.started_at - samples_t0
    start = max(0, int((offset + answer.start - 0.05) * sample_rate_hz))
    end = min(samples.size, int((offset + answer.end + 0.05) * sample_rate_hz))
    return samples[start:end]


def mouth_opened(answer: Answer, mouth_t: np.ndarray, mouth: np.ndarray,
                 params: ChallengeParams) -> bool:
    """Whether the mouth moved for ``answer``: from ``mouth_lead_s`` before it started to its end,
    the mouth opening (:func:`daemon.liveness.tracks.mouth_opening`) must vary by at least
    ``min_mouth_movement`` (90th minus 10th percentile), from rest into the word.

    ``mouth_t`` are frame times (seconds after the challenge start), ``mouth`` the opening per
    frame (NaN where no face). Chosen on data: see :data:`daemon.challenge.CHOICE`.
    """
    t, m = np.asarray(mouth_t, np.float64), np.asarray(mouth, np.float64)
    finite = np.isfinite(m)
    during = (t >= answer.start) & (t <= answer.end) & finite
    window = (t >= answer.start - params.mouth_lead_s) & (t <= answer.end) & finite
    if during.sum() < 2:
        return False
    low, high = np.percentile(m[window], [10.0, 90.0])
    return bool(high - low >= params.min_mouth_movement)


def answers_not_still(answers: Sequence[Answer], mouth_t: np.ndarray, mouth: np.ndarray,
                      params: ChallengeParams) -> bool:
    """The liveness check's still-face rule (:mod:`daemon.liveness.sync`: the mouth opening varies
    by ``min_mouth_range`` and closes between openings, ``min_mouth_closure``) over the frames of
    the answers (from ``mouth_lead_s`` before each to its end): between answers a live face rests,
    so the whole attempt would dilute it."""
    from daemon.liveness.sync import mouth_closure, robust_range
    t, m = np.asarray(mouth_t, np.float64), np.asarray(mouth, np.float64)
    inside = np.zeros(t.shape, bool)
    for answer in answers:
        inside |= (t >= answer.start - params.mouth_lead_s) & (t <= answer.end)
    values = m[inside & np.isfinite(m)]
    return bool(robust_range(values) >= params.min_mouth_range
                and mouth_closure(values) >= params.min_mouth_closure)


#: ``content(index, prompted digit, answer samples) -> set of people whose recordings match``
Content = Callable[[int, str, np.ndarray], frozenset]


def template_content(templates: Mapping[str, DigitTemplates], params: ChallengeParams) -> Content:
    """The content check the door uses: the answer must be (within ``max_ratio`` of) nearest to the
    prompted digit among a person's own recordings, within ``max_distance``; returns the people for
    whom it is."""
    def check(index: int, digit: str, samples: np.ndarray) -> frozenset:
        matched = set()
        for person, person_templates in templates.items():
            if recognise(samples, person_templates).matches(digit, params.max_distance,
                                                            params.max_ratio):
                matched.add(person)
        return frozenset(matched)
    return check


def judge_challenge(challenge: Challenge | None, samples: np.ndarray | None, samples_t0: float,
                    mouth_t: np.ndarray | None, mouth: np.ndarray | None, content: Content,
                    people: Sequence[str], params: ChallengeParams = ChallengeParams(),
                    sample_rate_hz: int = 16000) -> ChallengeResult:
    """Judge an attempt's answers to its challenge.

    :param challenge: what was prompted (None: no challenge was presented, which fails).
    :param samples: the attempt's audio (float, mono), first sample at ``samples_t0`` (capture clock).
    :param mouth_t: frame times on the capture clock; ``mouth`` the mouth opening per frame (None:
        no camera evidence, which fails).
    :param content: which people an answer's samples match as the prompted digit
        (:func:`template_content`).
    :param people: everyone the content check can name.
    """
    if challenge is None or not challenge.prompts or samples is None or mouth_t is None:
        return ChallengeResult(False, "no_challenge")
    samples = np.asarray(samples, np.float32).reshape(-1)
    answers = find_answers(challenge, samples, samples_t0, params, sample_rate_hz)
    rel_t = np.asarray(mouth_t, np.float64) - challenge.started_at
    timed = [i for i, a in enumerate(answers) if a.found]
    moving = [i for i in timed if mouth_opened(answers[i], rel_t, mouth, params)]
    still = not answers_not_still([answers[i] for i in timed], rel_t, mouth, params)
    votes = {p: 0 for p in people}
    for i in moving:
        segment = answer_samples(answers[i], challenge, samples, samples_t0, sample_rate_hz)
        for person in content(i, challenge.prompts[i].digit, segment):
            votes[person] = votes.get(person, 0) + 1
    correct = max(votes.values(), default=0)
    n = len(challenge.prompts)
    need = min(params.min_correct, n)
    passing = frozenset(p for p, v in votes.items() if v >= need)
    reason = ""
    if len(timed) < need:
        reason = "not_answered"
    elif still:
        reason = "still_face"
    elif len(moving) < need:
        reason = "mouth_still"
    elif not passing:
        reason = "wrong_answer"
    log.debug("challenge: %d prompts, %d answered in time, %d with the mouth opening, best %d right",
              n, len(timed), len(moving), correct)
    return ChallengeResult(not reason, reason, len(timed), correct, n, passing)
