"""The random challenge of one attempt: digits from :mod:`secrets`, shown one at a time at random
intervals, each with the window in which its spoken answer must start."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from daemon.challenge.digits import DIGITS


@dataclass(frozen=True)
class ChallengeParams:
    """How challenges are drawn and answered (defaults: see :data:`daemon.challenge.CHOICE`).

    Times are seconds. A prompt is presented ``first_prompt_s`` after the challenge starts, the next
    ones ``interval_s`` after the previous; its answer must start between ``min_latency_s`` and
    ``max_latency_s`` after the prompt has been fully presented (a spoken prompt's own length is
    added), after at least ``rest_s`` of silence.
    """

    digits: int = 4
    #: Answers that must be right (timed, the right digit, the mouth opening) for the challenge to pass.
    min_correct: int = 3
    first_prompt_s: tuple[float, float] = (0.6, 1.4)
    interval_s: tuple[float, float] = (1.7, 2.7)
    min_latency_s: float = 0.1
    max_latency_s: float = 1.4
    rest_s: float = 0.15
    #: An answer ends at this much silence, or this long after it started (a digit is short).
    end_silence_s: float = 0.15
    max_answer_s: float = 1.0
    #: DTW distance (see :mod:`daemon.challenge.digits`) under which the nearest digit is believed.
    max_distance: float = 7.0
    #: The prompted digit may be this many times as far as the nearest digit (a near tie).
    max_ratio: float = 1.1
    #: From ``mouth_lead_s`` before an answer to its end the mouth opening must vary this much.
    min_mouth_movement: float = 0.05
    mouth_lead_s: float = 0.3
    #: The liveness check's still-face rule, applied to the frames of the answers
    #: (daemon.liveness.sync.LivenessParams has the same defaults and their calibration).
    min_mouth_range: float = 0.04
    min_mouth_closure: float = 0.5

    def __post_init__(self):
        if not 1 <= self.min_correct <= self.digits:
            raise ValueError("min_correct must be between 1 and digits")
        if not 0 <= self.min_latency_s < self.max_latency_s:
            raise ValueError("min_latency_s must be under max_latency_s")
        for low, high in (self.first_prompt_s, self.interval_s):
            if not 0 <= low <= high:
                raise ValueError("interval bounds must be ordered and non-negative")


@dataclass(frozen=True)
class Prompt:
    """One prompted digit: ``at`` is when it is presented (seconds after the challenge starts) and
    ``duration_s`` how long presenting it takes (a spoken digit; 0 for a display)."""

    digit: str
    at: float
    duration_s: float = 0.0

    def window(self, params: ChallengeParams) -> tuple[float, float]:
        """When the answer may start, in seconds after the challenge starts."""
        done = self.at + self.duration_s
        return done + params.min_latency_s, done + params.max_latency_s


@dataclass(frozen=True)
class Challenge:
    """The prompts of one attempt; ``started_at`` is on the capture clock (the attempt's)."""

    prompts: tuple[Prompt, ...]
    started_at: float = 0.0

    @property
    def text(self) -> str:
        """The prompted digits as one string (for the prompt device only: never logged)."""
        return "".join(p.digit for p in self.prompts)

    def ends_at(self, params: ChallengeParams) -> float:
        """When the last answer window closes, in seconds after the start."""
        last = self.prompts[-1] if self.prompts else None
        return last.window(params)[1] + params.max_answer_s if last else 0.0


def _uniform(rng, low: float, high: float) -> float:
    # 1 ms resolution from the CSPRNG: a recording cannot know the timing either.
    return low + (high - low) * rng.randrange(1001) / 1000.0


def new_challenge(params: ChallengeParams = ChallengeParams(), started_at: float = 0.0,
                  prompt_seconds=None, rng=None) -> Challenge:
    """Draw a challenge: ``params.digits`` digits and their times from ``rng`` (default
    :mod:`secrets`, the OS CSPRNG; tests and the evaluation pass a seeded
    ``random.Random``).

    ``prompt_seconds(digit)`` says how long presenting a digit takes (the spoken prompt's length;
    None: instant, as on a display).
    """
    rng = rng or secrets.SystemRandom()
    prompts, at = [], _uniform(rng, *params.first_prompt_s)
    for i in range(params.digits):
        digit = DIGITS[rng.randrange(len(DIGITS))]
        duration = float(prompt_seconds(digit)) if prompt_seconds else 0.0
        prompts.append(Prompt(digit, round(at, 3), duration))
        at += duration + _uniform(rng, *params.interval_s)
    return Challenge(tuple(prompts), started_at)
