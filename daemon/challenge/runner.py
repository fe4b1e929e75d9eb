"""The challenge during an attempt: draw it when the attempt starts, present each prompt when it is
due, silence the door's own prompt audio, and judge the answers when the attempt ends.

This is the capture loop's one integration point with the challenge (:class:`ChallengeRunner`):
``start(attempt)`` from the tracker when an attempt starts, ``poll(now)`` from the main thread,
``mask(t, samples)`` on every audio block, ``judge(attempt, liveness, people)`` for the evidence.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable, Iterable

import numpy as np

from daemon.challenge.digits import DigitTemplates
from daemon.challenge.present import Presenter, make_presenter
from daemon.challenge.prompts import Challenge, ChallengeParams, new_challenge
from daemon.challenge.result import ChallengeResult
from daemon.challenge.verify import answer_samples, find_answers, judge_challenge, template_content

log = logging.getLogger(__name__)


class _Running:
    """One attempt's challenge, what has been presented of it (times on the capture clock), and
    the answers already recognised while later prompts were still coming."""

    def __init__(self, challenge: Challenge):
        self.challenge = challenge
        self.shown_at: list[float | None] = [None] * len(challenge.prompts)
        #: prompt index -> ((start, end) of the answer, {person: matched})
        self.recognised: dict[int, tuple[tuple[float, float], dict[str, bool]]] = {}


class ChallengeRunner:
    """Presents a random challenge per attempt through ``presenter`` and judges the answers.

    ``clock`` must be the capture clock (the attempt's times); ``rng`` defaults to :mod:`secrets`.
    """

    def __init__(self, presenter: Presenter, params: ChallengeParams = ChallengeParams(),
                 clock: Callable[[], float] = time.monotonic, rng=None):
        self.presenter = presenter
        self.params = params
        self._clock = clock
        self._rng = rng
        self._lock = threading.Lock()
        self._current: tuple[object, _Running] | None = None

    def start(self, attempt) -> Challenge:
        """Draw the challenge of a new attempt and hold the attempt open until it is over."""
        challenge = new_challenge(self.params, started_at=attempt.started_at,
                                  prompt_seconds=self.presenter.prompt_seconds, rng=self._rng)
        running = _Running(challenge)
        with self._lock:
            self._current = (attempt, running)
        attempt.challenge_record = running
        attempt.hold_until = attempt.started_at + challenge.ends_at(self.params)
        log.debug("attempt %s: challenge of %d prompts", getattr(attempt, "id", "?"),
                  len(challenge.prompts))
        return challenge

    def poll(self, now: float | None = None) -> None:
        """Present every prompt that is due (call often: a prompt is late by at most the interval
        between calls, and its answer window follows the time it was really presented)."""
        now = self._clock() if now is None else now
        with self._lock:
            current = self._current
        if current is None:
            return
        attempt, running = current
        if getattr(attempt, "ended_at", None) is not None:
            with self._lock:
                if self._current is current:
                    self._current = None
            self.presenter.clear()
            return
        challenge = running.challenge
        for index, prompt in enumerate(challenge.prompts):
            if running.shown_at[index] is None and now >= challenge.started_at + prompt.at:
                running.shown_at[index] = now
                if index == len(challenge.prompts) - 1:
                    # The end of speech after the last answer's window opened ends the attempt.
                    attempt.release_after = now + prompt.duration_s + self.params.min_latency_s
                try:
                    self.presenter.show(prompt.digit, index, len(challenge.prompts))
                except Exception as exc:  # the answer then cannot come: the attempt fails closed
                    log.error("prompt device failed: %s", exc)

    def mask(self, t: float, samples: np.ndarray) -> np.ndarray:
        """``samples`` (first taken at ``t``) with the door's own spoken prompts silenced, so that
        neither the VAD, the voice nor the answers hear the loudspeaker."""
        with self._lock:
            current = self._current
        if current is None or not samples.size:
            return samples
        _, running = current
        out = None
        for index, prompt in enumerate(running.challenge.prompts):
            shown = running.shown_at[index]
            if shown is None or prompt.duration_s <= 0:
                continue
            # Plus 50 ms: the room's echo.
            start, end = shown - 0.02, shown + prompt.duration_s + 0.05
            first = max(0, int((start - t) * 16000))
            last = min(samples.size, int(np.ceil((end - t) * 16000)))
            if first < last:
                out = samples.copy() if out is None else out
                out[first:last] = 0.0
        return samples if out is None else out

    def presented(self, attempt) -> Challenge | None:
        """The attempt's challenge as it was really presented (prompts never shown are dropped,
        which fails them)."""
        running = getattr(attempt, "challenge_record", None)
        if running is None:
            return None
        challenge = running.challenge
        prompts = tuple(dataclasses.replace(p, at=shown - challenge.started_at)
                        for p, shown in zip(challenge.prompts, running.shown_at) if shown is not None)
        return dataclasses.replace(challenge, prompts=prompts + tuple(
            dataclasses.replace(p, at=float("inf")) for p, shown in
            zip(challenge.prompts, running.shown_at) if shown is None))

    def recognise_early(self, attempt, liveness, people: Iterable, now: float) -> int:
        """Recognise the answers whose windows have closed while the attempt goes on, so that
        little is left to do when it ends; returns how many were recognised now. The final
        :meth:`judge` reuses an answer only if it finds it at the same place."""
        running = getattr(attempt, "challenge_record", None)
        if running is None or liveness is None:
            return 0
        challenge = running.challenge
        due = [i for i, (prompt, shown) in enumerate(zip(challenge.prompts, running.shown_at))
               if shown is not None and i not in running.recognised
               and now >= shown + prompt.duration_s + self.params.max_latency_s
               + self.params.max_answer_s + 0.2]
        if not due:
            return 0
        audio = liveness.audio(attempt)
        presented = self.presented(attempt)
        if audio is None or presented is None:
            return 0
        t0, samples = audio
        answers = find_answers(presented, samples, t0, self.params)
        templates = self._templates(people)
        for i in due:
            answer = answers[i]
            if not answer.found:
                running.recognised[i] = ((float("nan"), float("nan")), {})
                continue
            segment = answer_samples(answer, presented, samples, t0)
            matched = template_content(templates, self.params)(i, presented.prompts[i].digit, segment)
            running.recognised[i] = ((answer.start, answer.end), {p: p in matched for p in templates})
        return len(due)

    @staticmethod
    def _templates(people: Iterable) -> dict[str, DigitTemplates]:
        return {p.name: DigitTemplates.from_arrays(p.digits) for p in people if p.digits}

    def judge(self, attempt, liveness, people: Iterable) -> ChallengeResult:
        """Judge the attempt's answers with the audio and mouth track the liveness check recorded
        and the given enrolled people's own recordings of the digits (the loop passes the one
        person who could be accepted: only the best-scoring candidate can be, decision.py)."""
        challenge = self.presented(attempt)
        if challenge is None or liveness is None:
            return ChallengeResult(False, "no_challenge")
        audio = liveness.audio(attempt)
        mouth_t, mouth = liveness.mouth_track(attempt)
        templates = self._templates(people)
        if audio is None:
            return ChallengeResult(False, "not_answered", 0, 0, len(challenge.prompts))
        t0, samples = audio
        running = attempt.challenge_record
        check = template_content(templates, self.params)
        answers = find_answers(challenge, samples, t0, self.params)

        def content(index: int, digit: str, segment) -> frozenset:
            cached = running.recognised.get(index)
            answer = answers[index]
            if cached is not None and answer.found and abs(cached[0][0] - answer.start) < 0.02 \
                    and abs(cached[0][1] - answer.end) < 0.02 and set(cached[1]) >= set(templates):
                return frozenset(p for p in templates if cached[1][p])
            return check(index, digit, segment)
        return judge_challenge(challenge, samples, t0, mouth_t, mouth, content, list(templates),
                               self.params)

    def close(self) -> None:
        """Release the prompt device (idempotent)."""
        self.presenter.close()


def params_from_config(config) -> ChallengeParams:
    """The challenge settings of ``config.challenge``."""
    section = config.challenge
    return ChallengeParams(digits=section.digits, min_correct=min(section.min_correct, section.digits),
                           max_latency_s=section.max_answer_delay_seconds)


def make_challenge_runner(config, clock: Callable[[], float] = time.monotonic) -> ChallengeRunner | None:
    """The configured challenge, or None without a prompt device (``prompt.backend: none``)."""
    presenter = make_presenter(config.prompt, config.state_dir)
    if presenter is None:
        return None
    return ChallengeRunner(presenter, params_from_config(config), clock)


#: Said at start-up and by ``avid check-config`` when there is no prompt device.
NO_CHALLENGE_WARNING = ("no prompt device (prompt.backend: none): no random challenge, so a video "
                        "of an enrolled person played with its own audio on a phone is NOT stopped "
                        "(SECURITY.md)")


def startup_warning(config, people) -> None:
    """Log what the challenge can and cannot do with this configuration and these people."""
    if not config.prompt.challenge_on:
        log.warning(NO_CHALLENGE_WARNING)
        return
    missing = sorted(p.name for p in people if not p.digits)
    log.info("challenge on: %d digits per attempt through the %s prompt device",
             config.challenge.digits, config.prompt.backend)
    if missing:
        log.warning("%d enrolled person(s) without digit recordings cannot answer the challenge "
                    "and will be refused: %s (enrol them again with --digits)",
                    len(missing), ", ".join(missing))
    if config.prompt.backend == "log":
        log.warning("prompt.backend is 'log': prompts go to the log only, nobody at the door "
                    "sees them (tests and the demo)")
