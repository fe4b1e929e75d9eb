"""The challenge: drawing prompts, recognising digits on real recordings, judging answers."""

import random

import numpy as np
import pytest

from daemon.capture.audio import read_wav
from daemon.challenge import (ChallengeParams, DigitTemplates, judge_challenge, new_challenge,
                              recognise, template_content)
from daemon.challenge.prompts import Challenge, Prompt
from tests.shared_data import DATA

FSDD = DATA / "voices" / "fsdd"
PARAMS = ChallengeParams()


def take(speaker: str, digit: str, n: int) -> np.ndarray:
    """A recording, at a door microphone's level (the recordings peak at -20 dBFS or less)."""
    samples = read_wav(FSDD / speaker / f"{digit}_{n}.wav")
    return samples * np.float32(0.5 / np.abs(samples).max())


@pytest.fixture(scope="module")
def theo():
    return DigitTemplates.from_recordings((d, take("theo", d, n)) for d in "0123456789" for n in (0, 1))


def answered(challenge: Challenge, speaker: str, latency_s: float = 0.5, noise: float = 1e-3,
             seed: int = 0, digits: str | None = None):
    """Audio of ``speaker`` saying each prompted digit ``latency_s`` after its prompt (takes 5-9),
    and a mouth track opening exactly while they speak."""
    rng = np.random.default_rng(seed)
    length = challenge.ends_at(PARAMS) + 1.0
    audio = rng.normal(0, noise, int(length * 16000)).astype(np.float32)
    t = np.arange(0, length, 1 / 15)
    mouth = np.full(t.size, 0.02)
    for i, prompt in enumerate(challenge.prompts):
        digit = digits[i] if digits else prompt.digit
        clip = take(speaker, digit, 5 + i % 5)
        start = prompt.at + prompt.duration_s + latency_s
        at = int(start * 16000)
        audio[at:at + clip.size] += clip[:audio.size - at]
        mouth[(t >= start) & (t <= start + clip.size / 16000)] = 0.2
    return audio, t, mouth


def test_challenge_draws_digits_and_times_within_bounds():
    challenge = new_challenge(PARAMS, rng=random.Random(3))
    assert len(challenge.prompts) == PARAMS.digits
    assert all(p.digit in "0123456789" for p in challenge.prompts)
    gaps = np.diff([p.at for p in challenge.prompts])
    assert PARAMS.first_prompt_s[0] <= challenge.prompts[0].at <= PARAMS.first_prompt_s[1]
    assert np.all(gaps >= PARAMS.interval_s[0] - 1e-9) and np.all(gaps <= PARAMS.interval_s[1] + 1e-9)


def test_challenges_from_secrets_differ():
    drawn = {(new_challenge(PARAMS).text, new_challenge(PARAMS).prompts[1].at) for _ in range(20)}
    assert len(drawn) > 15


def test_spoken_prompt_length_delays_the_next_prompt_and_the_window():
    challenge = new_challenge(PARAMS, prompt_seconds=lambda d: 0.5, rng=random.Random(1))
    first, second = challenge.prompts[:2]
    assert second.at - first.at >= PARAMS.interval_s[0] + 0.5 - 1e-9
    assert first.window(PARAMS)[0] == pytest.approx(first.at + 0.5 + PARAMS.min_latency_s)


def test_digits_recognised_on_other_takes(theo):
    right = sum(recognise(take("theo", d, 7), theo).digit == d for d in "0123456789")
    assert right >= 9


def test_templates_survive_storage_round_trip(theo):
    again = DigitTemplates.from_arrays(theo.to_arrays())
    assert again.complete()
    assert recognise(take("theo", "4", 6), again).digit == recognise(take("theo", "4", 6), theo).digit


def test_genuine_answers_pass(theo):
    for seed in range(3):
        challenge = new_challenge(PARAMS, started_at=100.0, rng=random.Random(seed))
        audio, t, mouth = answered(challenge, "theo", seed=seed)
        result = judge_challenge(challenge, audio, 100.0, t + 100.0, mouth,
                                 template_content({"theo": theo}, PARAMS), ["theo"])
        assert result.passed, result
        assert result.passed_for("theo") and not result.passed_for("george")


def test_replayed_answers_to_another_challenge_fail(theo):
    old = new_challenge(PARAMS, rng=random.Random(10))
    audio, t, mouth = answered(old, "theo")
    failed = 0
    for seed in range(11, 21):
        now = new_challenge(PARAMS, rng=random.Random(seed))
        result = judge_challenge(now, audio, 0.0, t, mouth, template_content({"theo": theo}, PARAMS),
                                 ["theo"])
        failed += not result.passed
    assert failed == 10


def test_wrong_digits_in_time_fail_as_wrong_answer(theo):
    challenge = new_challenge(PARAMS, rng=random.Random(5))
    wrong = "".join(str((int(p.digit) + 5) % 10) for p in challenge.prompts)
    audio, t, mouth = answered(challenge, "theo", digits=wrong)
    result = judge_challenge(challenge, audio, 0.0, t, mouth, template_content({"theo": theo}, PARAMS),
                             ["theo"])
    assert not result.passed and result.reason == "wrong_answer"


def test_a_still_face_fails(theo):
    challenge = new_challenge(PARAMS, rng=random.Random(6))
    audio, t, _ = answered(challenge, "theo")
    result = judge_challenge(challenge, audio, 0.0, t, np.full(t.size, 0.1),
                             template_content({"theo": theo}, PARAMS), ["theo"])
    assert not result.passed and result.reason == "still_face"


def test_a_mouth_that_moves_for_one_answer_only_fails(theo):
    challenge = new_challenge(PARAMS, rng=random.Random(6))
    audio, t, mouth = answered(challenge, "theo")
    mouth[t > challenge.prompts[1].at] = 0.02
    result = judge_challenge(challenge, audio, 0.0, t, mouth,
                             template_content({"theo": theo}, PARAMS), ["theo"])
    assert not result.passed and result.reason == "mouth_still"


def test_answer_before_the_prompt_is_not_an_answer(theo):
    challenge = new_challenge(PARAMS, rng=random.Random(7))
    audio, t, mouth = answered(challenge, "theo", latency_s=-0.6)
    result = judge_challenge(challenge, audio, 0.0, t, mouth, template_content({"theo": theo}, PARAMS),
                             ["theo"])
    assert not result.passed and result.reason == "not_answered"


def test_missing_inputs_fail_closed(theo):
    challenge = new_challenge(PARAMS, rng=random.Random(8))
    content = template_content({"theo": theo}, PARAMS)
    assert judge_challenge(None, np.zeros(16000), 0.0, np.zeros(3), np.zeros(3), content, []).reason == "no_challenge"
    assert judge_challenge(challenge, None, 0.0, np.zeros(3), np.zeros(3), content, []).reason == "no_challenge"
    assert judge_challenge(challenge, np.zeros(16000 * 12), 0.0, None, None, content, []).reason == "no_challenge"
    silent = judge_challenge(challenge, np.zeros(16000 * 12, np.float32), 0.0, np.arange(0, 12, 1 / 15),
                             np.zeros(180), content, ["theo"])
    assert not silent.passed and silent.reason == "not_answered"


def test_bad_params_rejected():
    with pytest.raises(ValueError):
        ChallengeParams(digits=2, min_correct=3)
    with pytest.raises(ValueError):
        ChallengeParams(min_latency_s=2.0, max_latency_s=1.0)
