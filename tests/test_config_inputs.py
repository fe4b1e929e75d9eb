"""The config file as hostile input: alias bombs, huge or special files, duplicate keys, shared pins,
and check-config catching what `avid run` would fail on (state folder, key, models, media)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import cli
from daemon.config import (MAX_CONFIG_BYTES, MAX_CONFIG_NODES, STATE_DIR_ENV, InvalidConfig,
                           environment_problems, load_config, parse_config)
from door_harness import DEMO

ROOT = Path(__file__).resolve().parents[1]

BILLION_LAUGHS = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)]
    + ["camera:\n  device: *i"]) + "\n"


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _check_config(path: Path, timeout_s: float = 60, **env) -> subprocess.CompletedProcess:
    """`avid check-config` in a child with a hard time limit (a hang fails the test, not the run)."""
    environment = {k: v for k, v in os.environ.items() if k != STATE_DIR_ENV}
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "daemon", "check-config", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout_s, env=environment)


# --- alias bombs and size ---------------------------------------------------------------------
def test_billion_laughs_is_refused_quickly_with_one_short_problem(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 1000
    result = _check_config(path, timeout_s=30)
    assert result.returncode == 78
    assert f"expands to more than {MAX_CONFIG_NODES} values" in result.stderr
    assert len(result.stderr) < 1000  # the report does not print the expanded value


def test_a_few_aliases_are_still_fine():
    config = parse_config("lock:\n  relay_pin: &pin 5\ndoor:\n  held_open_seconds: *pin\n")
    assert config.lock.relay_pin == 5 and config.door.held_open_seconds == 5


def test_a_wide_but_legal_looking_file_is_bounded_by_nodes():
    text = "camera:\n  device: [" + ", ".join(["1"] * (MAX_CONFIG_NODES + 10)) + "]\n"
    with pytest.raises(InvalidConfig, match="expands to more than"):
        parse_config(text)


def test_a_huge_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * (MAX_CONFIG_BYTES + 10) + "\n")
    with pytest.raises(InvalidConfig, match=f"the limit is {MAX_CONFIG_BYTES} bytes"):
        load_config(path)


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "folder"])
def test_special_files_as_config_exit_78_at_once(tmp_path, special):
    path = Path(special)
    if special == "fifo":
        path = tmp_path / "config.yaml"
        os.mkfifo(path)
    elif special == "folder":
        path = tmp_path
    result = _check_config(path, timeout_s=30)
    assert result.returncode == 78
    assert "not a regular file" in result.stderr


def test_a_config_that_is_not_utf8_is_one_problem(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("lock:\n  relay_pin: 17 # caf\xe9\n".encode("latin-1"))
    with pytest.raises(InvalidConfig, match="not UTF-8"):
        load_config(path)


# --- duplicate keys and pins ---------------------------------------------------------------
def test_duplicate_keys_are_each_reported_with_both_lines():
    text = "lock:\n  relay_pin: 17\n  unlock_seconds: 3\n  relay_pin: 27\ncamera:\n  fps: 10\nlock:\n  active_high: true\n"
    with pytest.raises(InvalidConfig) as caught:
        parse_config(text, "dup.yaml")
    found = {(p.path, p.line) for p in caught.value.problems}
    assert ("lock.relay_pin", 4) in found
    assert ("lock", 7) in found
    messages = [p.message for p in caught.value.problems]
    assert any("first given on line 2" in m for m in messages)
    assert any("first given on line 1" in m for m in messages)


def test_duplicates_come_with_every_other_problem():
    with pytest.raises(InvalidConfig) as caught:
        parse_config("camera:\n  fps: 10\n  fps: -1\nlock:\n  relay_pin: 99\n")
    paths = sorted(p.path for p in caught.value.problems)
    assert paths == ["camera.fps", "camera.fps", "lock.relay_pin"]


@pytest.mark.parametrize("text, key, pin", [
    ("lock:\n  relay_pin: 17\ndoor:\n  contact_pin: 17\n", "door.contact_pin", 17),
    ("door:\n  exit_button_pin: 17\n", "door.exit_button_pin", 17),  # the default relay pin
    ("lock:\n  relay_pin: 5\ndoor:\n  contact_pin: 6\n  exit_button_pin: 6\n", "door.exit_button_pin", 6),
])
def test_relay_contact_and_exit_button_need_their_own_pins(text, key, pin):
    with pytest.raises(InvalidConfig) as caught:
        parse_config(text)
    [problem] = caught.value.problems
    assert problem.path == key and f"GPIO{pin} is already used" in problem.message


def test_distinct_pins_are_fine():
    config = parse_config("lock:\n  relay_pin: 5\ndoor:\n  contact_pin: 6\n  exit_button_pin: 13\n")
    assert (config.door.contact_pin, config.door.exit_button_pin) == (6, 13)


# --- paths resolve against the config's folder -----------------------------------------------
def test_every_relative_path_resolves_against_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "config.yaml").write_text("state:\n  directory: state\n  key_file: keys/device.key\n"
                                        "decision:\n  calibration_file: cal.json\n")
    monkeypatch.chdir(tmp_path)  # a working directory that is not the config's folder
    config = load_config(Path("etc/config.yaml"))
    assert config.state.directory == folder / "state"
    assert config.state_dir == folder / "state"
    assert config.state.key_file == folder / "keys" / "device.key"
    assert config.calibration_path == folder / "cal.json"


# --- check-config checks what run needs ---------------------------------------------------------
def _valid(tmp_path: Path, extra: str = "", state: Path | None = None) -> Path:
    state = state or tmp_path / "state"
    if not state.exists():
        state.mkdir(mode=0o700)
    path = tmp_path / "config.yaml"
    path.write_text(f"state:\n  directory: {state}\n{extra}")
    return path


def test_a_good_environment_passes(tmp_path, capsys):
    assert cli.main(["check-config", str(_valid(tmp_path))]) == 0
    assert "config OK" in capsys.readouterr().out


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "the folder does not exist"),
    (lambda p: p.write_text("x"), "is not a folder"),
    (lambda p: (p.mkdir(), os.chmod(p, 0o777)), "writable by others (mode 0777)"),
    (lambda p: (p.mkdir(), os.chmod(p, 0o770)), "writable by others (mode 0770)"),
])
def test_a_state_folder_run_cannot_use_is_an_error(tmp_path, capsys, make, message):
    state = tmp_path / "var-lib-avid"
    make(state)
    path = tmp_path / "config.yaml"
    path.write_text(f"state:\n  directory: {state}\n")
    assert cli.main(["check-config", str(path)]) == 78
    err = capsys.readouterr().err
    assert "state.directory" in err and message in err


def test_missing_key_calibration_models_and_media_are_all_listed(tmp_path, capsys):
    extra = (f"state:\n  directory: {tmp_path / 'state'}\n  key_file: /nonexistent/device.key\n"
             "decision:\n  calibration_file: /dev/null\n"
             f"models:\n  directory: {tmp_path / 'models'}\n"
             f"camera:\n  backend: replay\n  path: {tmp_path / 'absent.mpg'}\n"
             f"microphone:\n  backend: replay\n  paths: [{tmp_path / 'absent.wav'}, {tmp_path / 'bad.wav'}]\n")
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "models").mkdir()
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    path = tmp_path / "config.yaml"
    path.write_text(extra)
    assert cli.main(["check-config", str(path)]) == 78
    err = capsys.readouterr().err
    for expected in ("state.key_file: the file does not exist", "decision.calibration_file: is not a regular file",
                     "models.directory: cannot read manifest.json", "camera.path: the file does not exist",
                     "microphone.paths.0", "microphone.paths.1", "no fmt chunk"):
        assert expected in err, expected
    assert "5 error(s)" in err or "6 error(s)" in err


def test_a_models_folder_with_a_corrupt_model_is_an_error(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    data = (models / "face_encoder.tflite").read_bytes()
    (models / "face_encoder.tflite").write_bytes(data[: len(data) // 2])
    config = load_config(_valid(tmp_path, f"models:\n  directory: {models}\n"))
    problems = environment_problems(config)
    assert [(p.path, "face_encoder" in p.message) for p in problems] == [("models.directory", True)]


def test_the_shipped_models_and_demo_media_pass(tmp_path):
    clip = DEMO / "s1_bbaf2n"
    config = load_config(_valid(tmp_path, f"models:\n  directory: {ROOT / 'models'}\n"
                                          f"camera:\n  backend: replay\n  path: {clip / 'video.mpg'}\n"
                                          f"microphone:\n  backend: replay\n  paths: [{clip / 'audio_16k.wav'}]\n"))
    assert environment_problems(config) == []


def test_state_dir_environment_is_checked_under_its_own_name(tmp_path, monkeypatch):
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "missing"))
    config = load_config(_valid(tmp_path))
    [problem] = environment_problems(config)
    assert problem.path == f"${STATE_DIR_ENV}"


def test_a_manifest_that_is_not_a_table_is_an_error(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "manifest.json").write_text(json.dumps({"models": [1, 2]}))
    config = load_config(_valid(tmp_path, f"models:\n  directory: {models}\n"))
    [problem] = environment_problems(config)
    assert "no table of models" in problem.message
