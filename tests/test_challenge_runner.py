"""The challenge during an attempt: prompt devices, presenting on time, masking the door's own
prompts, judging an attempt's recorded audio and mouth track."""

import random
import shutil

import numpy as np
import pytest

from daemon.capture.audio import read_wav
from daemon.challenge import ChallengeParams, DigitTemplates
from daemon.challenge.present import (DisplayPresenter, LogPresenter, PromptError, SpeakerPresenter,
                                      load_prompt_sounds, make_presenter, open_display,
                                      render_prompts)
from daemon.challenge.runner import ChallengeRunner, make_challenge_runner, params_from_config
from daemon.config import Config, parse_config
from daemon.decide.attempt import Attempt
from daemon.detect.face_detector import Face
from daemon.detect.face_landmarks import (LOWER_INNER_LIP, MOUTH_CORNER_LEFT, MOUTH_CORNER_RIGHT,
                                          UPPER_INNER_LIP)
from daemon.liveness.check import LivenessCheck
from daemon.liveness.sync import LivenessParams
from daemon.state.templates import Person
from tests.shared_data import DATA

FSDD = DATA / "voices" / "fsdd"


def take(speaker: str, digit: str, n: int) -> np.ndarray:
    samples = read_wav(FSDD / speaker / f"{digit}_{n}.wav")
    return samples * np.float32(0.5 / np.abs(samples).max())


class Clock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Recorder(SpeakerPresenter):
    """The speaker backend with its loudspeaker replaced (hardware): records what it plays."""

    def __init__(self, seconds: float = 0.4):
        self.played = []
        sounds = {d: np.full(int(seconds * 16000), 0.1, np.float32) for d in "0123456789"}
        super().__init__(sounds, play=lambda samples, rate: self.played.append(samples.size))


def synthetic_landmarks(opening: float) -> np.ndarray:
    """468 landmarks whose mouth is ``opening`` open (inner-lip gap over mouth width)."""
    points = np.zeros((468, 3), np.float32)
    points[MOUTH_CORNER_RIGHT, :2] = (0.0, 0.0)
    points[MOUTH_CORNER_LEFT, :2] = (1.0, 0.0)
    points[UPPER_INNER_LIP, :2] = (0.5, 0.0)
    points[LOWER_INNER_LIP, :2] = (0.5, opening)
    return points


FACE = Face((100.0, 100.0, 200.0, 200.0), 0.9, np.array([[130, 130], [170, 130], [150, 150],
                                                          [150, 175], [110, 140], [190, 140]],
                                                         np.float32))


class NoLandmarker:
    """Stands in for the camera's face mesh: the frames below carry their own landmarks."""


def test_log_presenter_logs_each_prompt(caplog):
    caplog.set_level("INFO")
    LogPresenter().show("7", 1, 4)
    assert "challenge prompt 2/4: say 7" in caplog.text


def test_speaker_presenter_plays_and_reports_its_length():
    speaker = Recorder(0.5)
    speaker.show("3", 0, 4)
    assert speaker.played == [8000] and speaker.prompt_seconds("3") == pytest.approx(0.5)
    speaker.close()
    speaker.close()
    speaker.show("3", 1, 4)
    assert speaker.played == [8000]


def test_speaker_presenter_needs_every_digit():
    with pytest.raises(PromptError, match="digit"):
        SpeakerPresenter({"1": np.ones(10, np.float32)}, play=lambda s, r: None)


def test_espeak_renders_ten_prompts_once(tmp_path):
    assert shutil.which("espeak-ng"), "tools/bootstrap.sh test installs espeak-ng"
    paths = render_prompts(tmp_path / "prompts")
    assert [p.name for p in paths] == [f"{d}.wav" for d in range(10)]
    stamps = [p.stat().st_mtime_ns for p in paths]
    render_prompts(tmp_path / "prompts")
    assert [p.stat().st_mtime_ns for p in paths] == stamps
    sounds = load_prompt_sounds(tmp_path / "prompts")
    lengths = [sounds[d].size / 16000 for d in "0123456789"]
    assert all(0.15 < s < 1.2 for s in lengths), lengths


def test_missing_espeak_is_a_clear_error(tmp_path):
    with pytest.raises(PromptError, match="espeak-ng"):
        render_prompts(tmp_path, espeak="no-such-espeak-binary")


def test_display_draws_each_digit_on_a_dummy_device():
    device = open_display("dummy", 1, 0x3C, 128, 64)
    display = DisplayPresenter(device)
    images = {}
    for digit in "18":
        display.show(digit, 0, 4)
        images[digit] = np.asarray(device.image.convert("L"), np.uint8)
    assert images["1"].max() == 255 and (images["1"] != images["8"]).any()
    # The digit fills the middle of the screen, not a corner.
    assert images["8"][16:48, 40:88].mean() > images["8"].mean()
    display.clear()
    display.close()
    display.close()


def test_missing_display_is_a_clear_error():
    with pytest.raises(PromptError, match="I2C"):
        open_display("ssd1306", 19, 0x3C, 128, 64)


def test_config_chooses_the_presenter(tmp_path):
    assert make_presenter(Config().prompt) is None
    assert isinstance(make_presenter(parse_config("prompt: {backend: log}").prompt), LogPresenter)
    shown = make_presenter(parse_config("prompt: {backend: display, display: {driver: dummy}}").prompt)
    assert isinstance(shown, DisplayPresenter)
    config = parse_config(f"prompt: {{backend: speaker, speaker: {{sounds_directory: {tmp_path}}}}}")
    assert isinstance(make_presenter(config.prompt), SpeakerPresenter)
    assert make_challenge_runner(Config()) is None
    params = params_from_config(parse_config("challenge: {digits: 5, min_correct: 4}"))
    assert (params.digits, params.min_correct) == (5, 4)


def test_runner_presents_prompts_on_time_and_releases_after_the_last():
    clock, speaker = Clock(), Recorder(0.4)
    runner = ChallengeRunner(speaker, ChallengeParams(), clock, rng=random.Random(2))
    attempt = Attempt(100.0, 3, 6.0)
    challenge = runner.start(attempt)
    assert attempt.hold_until == pytest.approx(100.0 + challenge.ends_at(ChallengeParams()))
    times = [100.0 + p.at for p in challenge.prompts]
    runner.poll(times[0] - 0.01)
    assert speaker.played == []
    for i, t in enumerate(times):
        runner.poll(t + 0.05)
        assert len(speaker.played) == i + 1
        assert (attempt.release_after is not None) == (i == len(times) - 1)
    presented = runner.presented(attempt)
    assert [p.at for p in presented.prompts] == pytest.approx([t + 0.05 - 100.0 for t in times])


def test_runner_masks_its_own_spoken_prompt():
    clock, speaker = Clock(), Recorder(0.4)
    runner = ChallengeRunner(speaker, ChallengeParams(), clock, rng=random.Random(2))
    attempt = Attempt(100.0, 3, 6.0)
    challenge = runner.start(attempt)
    shown = 100.0 + challenge.prompts[0].at
    runner.poll(shown)
    block = np.ones(16000, np.float32)
    masked = runner.mask(shown - 0.5, block)
    silent = np.flatnonzero(masked == 0)
    assert silent[0] == pytest.approx(0.48 * 16000, abs=2)
    assert silent[-1] == pytest.approx(0.95 * 16000, abs=2)
    assert runner.mask(shown + 2.0, block) is block


def test_runner_judges_answers_recorded_by_the_liveness_check():
    clock, speaker = Clock(), Recorder(0.4)
    params = ChallengeParams()
    runner = ChallengeRunner(speaker, params, clock, rng=random.Random(4))
    liveness = LivenessCheck(NoLandmarker(), LivenessParams(), 0.03, 3, 10)
    theo = DigitTemplates.from_recordings((d, take("theo", d, n)) for d in "0123456789" for n in (0, 1))
    people = [Person("theo", digits=theo.to_arrays()), Person("george", digits=DigitTemplates.from_recordings(
        (d, take("george", d, n)) for d in "0123456789" for n in (0, 1)).to_arrays())]
    attempt = Attempt(100.0, 3, 6.0)
    challenge = runner.start(attempt)
    length = challenge.ends_at(params) + 1.0
    audio = np.random.default_rng(0).normal(0, 1e-3, int(length * 16000)).astype(np.float32)
    speaking = []
    for i, prompt in enumerate(challenge.prompts):
        clock.t = 100.0 + prompt.at + 0.03
        runner.poll()
        start = clock.t - 100.0 + prompt.duration_s + 0.5
        clip = take("theo", prompt.digit, 3 + i)
        audio[int(start * 16000):int(start * 16000) + clip.size] += clip
        speaking.append((start, start + clip.size / 16000))
    # What the loop hands the check: 30 ms blocks (the door's prompts masked) and 15 fps frames.
    for offset in range(0, audio.size, 480):
        t = 100.0 + offset / 16000
        liveness.observe_audio(attempt, t, runner.mask(t, audio[offset:offset + 480]))
    record = attempt.liveness_record
    for t in np.arange(0, length, 1 / 15):
        opening = 0.25 if any(a <= t <= b for a, b in speaking) else 0.02
        record.frames.append((100.0 + t, FACE, synthetic_landmarks(opening)))
    # The answers whose windows closed are recognised while the attempt goes on; judge reuses them.
    early = runner.recognise_early(attempt, liveness, people, 100.0 + challenge.prompts[-1].at)
    assert 1 <= early < len(challenge.prompts)
    assert runner.recognise_early(attempt, liveness, people, 100.0 + challenge.prompts[-1].at) == 0
    later = runner.recognise_early(attempt, liveness, people, 100.0 + challenge.ends_at(params) + 0.3)
    assert early + later == len(challenge.prompts)
    recognised = attempt.challenge_record.recognised.values()
    assert all(matched["theo"] for _, matched in recognised)
    assert sum(matched["george"] for _, matched in recognised) < ChallengeParams().min_correct
    result = runner.judge(attempt, liveness, people)
    assert result.passed and result.passed_for("theo") and not result.passed_for("george"), result
    # The same answers with the mouth shut throughout: the voice is not the face's.
    record.frames[:] = [(t, face, synthetic_landmarks(0.02)) for t, face, _ in record.frames]
    still = runner.judge(attempt, liveness, people)
    assert not still.passed and still.reason == "still_face"


def test_runner_without_recordings_fails_closed():
    runner = ChallengeRunner(Recorder(), ChallengeParams(), Clock(), rng=random.Random(1))
    attempt = Attempt(100.0, 3, 6.0)
    assert runner.judge(attempt, None, []).reason == "no_challenge"
    runner.start(attempt)
    liveness = LivenessCheck(NoLandmarker(), LivenessParams(), 0.03, 3, 10)
    assert runner.judge(attempt, liveness, []).reason == "not_answered"


def test_check_config_says_replay_is_not_stopped_without_a_prompt_device():
    from daemon.config import summary
    assert "no challenge: a replayed video of a resident is not stopped" in summary(Config())
    assert "prompt=display challenge=4_digits" in summary(
        parse_config("prompt: {backend: display, display: {driver: dummy}}"))


def test_prompt_config_mistakes_are_listed_together():
    from daemon.config import InvalidConfig
    with pytest.raises(InvalidConfig) as caught:
        parse_config("prompt: {backend: log, speaker: {voice: 'a b'}, display: {i2c_port: 99}}\n"
                     "challenge: {digits: 2, min_correct: 3}")
    report = caught.value.report()
    for expected in ("prompt.speaker: options for the speaker backend, but backend is 'log'",
                     "prompt.display: options for the display backend",
                     "prompt.speaker.voice", "prompt.display.i2c_port",
                     "challenge.min_correct: 3 is more than the 2 digits asked"):
        assert expected in report, report
