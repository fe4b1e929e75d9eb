"""Enrolment, listing, verification and deletion through the `avid` command line, on real files."""

import json

import cv2
import pytest

from daemon.cli import main
from door_harness import DEMO, clip_frames

SHARED = DEMO.parent.parent.parent / "shared" / "data"


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("AVID_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def _frame(tmp_path, clip, index=8):
    path = tmp_path / f"{clip}_{index}.jpg"
    cv2.imwrite(str(path), clip_frames(clip)[index])
    return str(path)


def _verify(capsys, face, voice):
    assert main(["verify", "--face", face, "--voice", voice, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_enrol_verify_list_delete(tmp_path, state, capsys):
    assert main(["enroll", "alice", "--face", _frame(tmp_path, "s1_bbaf2n"),
                 "--voice", str(DEMO / "s1_bbaf2n" / "audio_16k.wav")]) == 0
    assert main(["enroll", "bob", "--face", _frame(tmp_path, "gridX_brbk7n_brbk7n"),
                 "--voice", str(DEMO / "gridX_brbk7n_brbk7n" / "audio_16k.wav")]) == 0
    capsys.readouterr()

    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "alice" in listing and "bob" in listing

    # Alice on clips not used for enrolment (one-shot enrolment).
    for clip in ("s1_bbaf4p", "s1_bbaf5a"):
        result = _verify(capsys, _frame(tmp_path, clip), str(DEMO / clip / "audio_16k.wav"))
        assert result["decision"] == "accept" and result["person"] == "alice", result
        assert set(result["scores"]) == {"face", "voice", "fused"}
    # A stranger.
    result = _verify(capsys, _frame(tmp_path, "gridX_lwbsza_lwbsza"),
                     str(DEMO / "gridX_lwbsza_lwbsza" / "audio_16k.wav"))
    assert result["decision"] == "deny" and result["person"] is None
    assert result["reason"] == "no_match"
    # Alice's face with a stranger's voice: no single modality opens the door.
    result = _verify(capsys, _frame(tmp_path, "s1_bbaf4p"),
                     str(DEMO / "gridX_lwbsza_lwbsza" / "audio_16k.wav"))
    assert result["decision"] == "deny"

    assert main(["delete", "alice"]) == 0
    result = _verify(capsys, _frame(tmp_path, "s1_bbaf4p"), str(DEMO / "s1_bbaf4p" / "audio_16k.wav"))
    assert result["decision"] == "deny"
    assert main(["delete", "alice"]) == 1


def test_strangers_from_shared_data_are_denied(tmp_path, state, capsys):
    assert main(["enroll", "alice", "--face", _frame(tmp_path, "s1_bbaf2n"),
                 "--voice", str(DEMO / "s1_bbaf2n" / "audio_16k.wav")]) == 0
    capsys.readouterr()
    faces = sorted((SHARED / "faces" / "att_orl").glob("*/1.*"))[:3]
    voices = sorted((SHARED / "voices" / "librispeech_test-other").glob("*/*.wav"))[:3]
    assert faces and voices
    for face, voice in zip(faces, voices):
        result = _verify(capsys, str(face), str(voice))
        assert result["decision"] == "deny", result


def test_enrolment_refuses_unusable_samples(tmp_path, state, capsys):
    blank = tmp_path / "blank.jpg"
    cv2.imwrite(str(blank), (clip_frames("s1_bbaf2n")[0] * 0 + 90))
    assert main(["enroll", "carol", "--face", str(blank),
                 "--voice", str(DEMO / "s1_bbaf2n" / "audio_16k.wav")]) == 1
    assert "no_face" in capsys.readouterr().err
    assert main(["list"]) == 0
    assert "nobody is enrolled" in capsys.readouterr().out


def test_verify_without_a_voice_denies_but_exits_zero(tmp_path, state, capsys):
    assert main(["enroll", "alice", "--face", _frame(tmp_path, "s1_bbaf2n"),
                 "--voice", str(DEMO / "s1_bbaf2n" / "audio_16k.wav")]) == 0
    capsys.readouterr()
    assert main(["verify", "--face", _frame(tmp_path, "s1_bbaf4p"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["decision"] == "deny" and result["reason"] == "no_speech"


def test_enrolment_from_one_voice_clip_says_what_it_costs(tmp_path, state, capsys):
    clips = ("s1_bbaf2n", "s1_bbaf3s", "s1_bbaf4p")
    assert main(["enroll", "alice", "--face", _frame(tmp_path, clips[0]),
                 "--voice", str(DEMO / clips[0] / "audio_16k.wav")]) == 0
    one = capsys.readouterr().out
    assert "1 voice clip(s) enrolled" in one and "three different sentences" in one
    assert main(["enroll", "alice", "--replace", "--face", _frame(tmp_path, clips[0]),
                 "--voice", *[str(DEMO / c / "audio_16k.wav") for c in clips]]) == 0
    three = capsys.readouterr().out
    assert "3 voice sample(s)" in three and "voice clip(s) enrolled" not in three


def test_voice_enrolment_advice_by_number_of_clips():
    from daemon.service.enrolment import (DOOR_FALSE_REJECTS_BY_UTTERANCES, VOICE_EER_BY_UTTERANCES,
                                          voice_enrolment_advice)

    assert VOICE_EER_BY_UTTERANCES[1] > VOICE_EER_BY_UTTERANCES[2] > VOICE_EER_BY_UTTERANCES[3]
    assert DOOR_FALSE_REJECTS_BY_UTTERANCES[1] > DOOR_FALSE_REJECTS_BY_UTTERANCES[2]
    assert "2 voice clip(s)" in voice_enrolment_advice(2) and "turned away" not in voice_enrolment_advice(2)
    one = voice_enrolment_advice(1)
    assert "turned away 6.6 %" in one and "2.7 % for the same people enrolled from two" in one
    assert voice_enrolment_advice(3) is None and voice_enrolment_advice(5) is None


def test_the_door_false_rejects_quoted_to_installers_are_the_shipped_calibrations():
    import json

    from daemon.inference.tflite import SHIPPED_CALIBRATION
    from daemon.service.enrolment import DOOR_FALSE_REJECTS_BY_UTTERANCES

    measured = json.loads(SHIPPED_CALIBRATION.read_text())["door_one_to_one_by_enrol_utterances"]["2"]
    assert measured["enrolled_from_1"]["n_genuine"] == measured["enrolled_from_2"]["n_genuine"] >= 200
    for units, quoted in DOOR_FALSE_REJECTS_BY_UTTERANCES.items():
        assert abs(measured[f"enrolled_from_{units}"]["fnmr"] - quoted) < 0.0005
