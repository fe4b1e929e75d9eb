"""Enrolment of the challenge's digits: from files, live (microphone replaced by recordings), and
through `avid enroll`."""

import wave

import numpy as np
import pytest

from daemon.capture.audio import read_wav
from daemon.challenge.digits import recognise
from daemon.challenge.enrol import digits_from_files, digits_live, spoken_part
from daemon.errors import EnrolmentError
from tests.shared_data import DATA

FSDD = DATA / "voices" / "fsdd"


def write_wav(path, samples):
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def test_digits_from_a_folder_recognise_other_takes():
    templates = digits_from_files([FSDD / "george"])
    assert templates.complete() and all(len(templates.by_digit[d]) == 10 for d in "0123456789")
    assert recognise(read_wav(FSDD / "lucas" / "3_0.wav"), templates).digit is not None


def test_digit_files_must_be_named_and_complete(tmp_path):
    write_wav(tmp_path / "hello.wav", read_wav(FSDD / "theo" / "1_0.wav"))
    write_wav(tmp_path / "2_0.wav", np.zeros(16000, np.float32))
    with pytest.raises(EnrolmentError) as caught:
        digits_from_files([tmp_path])
    message = str(caught.value)
    assert "hello.wav: the name must start with the digit" in message
    assert "2_0.wav: no single spoken digit" in message
    assert "digit(s) 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in message


def test_spoken_part_finds_the_word_in_silence():
    take = read_wav(FSDD / "theo" / "7_3.wav")
    padded = np.concatenate([np.zeros(8000, np.float32), take, np.zeros(16000, np.float32)])
    padded += np.random.default_rng(0).normal(0, 1e-4, padded.size).astype(np.float32)
    piece = spoken_part(padded)
    assert piece is not None and piece.size < take.size + 3200


def test_live_capture_asks_each_digit_twice_and_repeats_unclear_takes():
    heard = []
    asked = []
    takes = {d: iter([np.zeros(32000, np.float32)] + [read_wav(FSDD / "theo" / f"{d}_{n}.wav")
                                                      for n in range(4)]) for d in "0123456789"}

    def show(text):
        asked.append(text)

    def record(seconds):
        digit = asked[-1].split("(")[1][0]
        heard.append(digit)
        return np.concatenate([np.zeros(4000, np.float32), next(takes[digit]), np.zeros(8000, np.float32)])

    templates = digits_live(record, show, pause=lambda s: None)
    assert templates.complete() and all(len(templates.by_digit[d]) == 2 for d in "0123456789")
    assert sum("again" in a for a in asked) == 10  # the first, silent take of each digit
    assert sorted(set(heard)) == list("0123456789")


def test_live_capture_gives_up_on_a_dead_microphone():
    with pytest.raises(EnrolmentError, match="microphone"):
        digits_live(lambda s: np.zeros(int(s * 16000), np.float32), lambda t: None,
                    pause=lambda s: None)


def test_avid_enroll_with_digits_stores_them(tmp_path, monkeypatch, capsys):
    import cv2

    from daemon.cli import main
    from door_harness import DEMO, clip_frames
    monkeypatch.setenv("AVID_STATE_DIR", str(tmp_path / "state"))
    face = tmp_path / "face.jpg"
    cv2.imwrite(str(face), clip_frames("s1_bbaf2n")[8])
    assert main(["enroll", "alice", "--face", str(face), "--voice",
                 str(DEMO / "s1_bbaf2n" / "audio_16k.wav"), "--digits", str(FSDD / "theo")]) == 0
    assert "100 digit recording(s)" in capsys.readouterr().out
    from daemon.config import Config
    from daemon.service import door
    from daemon.state.templates import TemplateStore  # noqa: F401
    config = Config.model_validate({"state": {"directory": str(tmp_path / "state")}})
    from daemon.commands import _fingerprint
    person = door.open_store(config, _fingerprint(config)).load()["alice"]
    assert len(person.digits) == 100


def test_live_enrolment_takes_the_digits_by_default_only_on_a_challenge_door():
    from argparse import Namespace

    from daemon.challenge.enrol import live_digits_wanted
    from daemon.config import Config

    challenge = Config.model_validate({"prompt": {"backend": "log"}})
    plain = Config()
    live = Namespace(live=True, live_digits=False, digits=[])
    assert live_digits_wanted(challenge, live) and not live_digits_wanted(plain, live)
    assert live_digits_wanted(plain, Namespace(live=True, live_digits=True, digits=[]))  # asked for
    assert not live_digits_wanted(challenge, Namespace(live=True, live_digits=False, digits=["d/"]))  # files given
    assert not live_digits_wanted(challenge, Namespace(live=False, live_digits=False, digits=[]))  # from files
