"""config.yaml validation: every mistake reported at once, with its key path and line; exit 78."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from daemon import cli
from daemon.config import (EX_CONFIG, STATE_DIR_ENV, Config, InvalidConfig, OpenCVCameraConfig,
                           ReplayCameraConfig, ReplayMicrophoneConfig, SoundDeviceMicrophoneConfig,
                           load_config, parse_config, summary)

REPO = Path(__file__).resolve().parents[1]

# Ten different mistakes: typos, a replay camera without a path and with an OpenCV setting,
# ranges, types, enums.
TEN_MISTAKES = """\
models:
  num_thread: 2
camera:
  backend: replay
  fps: 120
  width_px: wide
microphone:
  sample_rat_hz: 16000
  block_ms: 25
vad:
  aggressiveness: 7
attempt:
  best_faces: 2.5
lock:
  relay_pin: -1
  unlock_secs: 5
"""

#: (key path, line, a piece of the message) for each mistake in TEN_MISTAKES.
EXPECTED = [
    ("models.num_thread", 2, "did you mean 'num_threads'"),
    ("camera.path", 3, "the 'replay' camera backend needs it"),
    ("camera.fps", 5, "less than or equal to 60"),
    ("camera.width_px", 6, "not a setting of the 'replay' camera backend (it belongs to 'opencv')"),
    ("microphone.sample_rat_hz", 8, "did you mean 'sample_rate_hz'"),
    ("microphone.block_ms", 9, "10, 20 or 30"),
    ("vad.aggressiveness", 11, "less than or equal to 3"),
    ("attempt.best_faces", 13, "fractional part"),
    ("lock.relay_pin", 15, "greater than or equal to 0"),
    ("lock.unlock_secs", 16, "did you mean 'unlock_seconds'"),
]


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch):
    """cli.main() installs its own root handler; put pytest's back afterwards."""
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_config_is_valid(tmp_path, monkeypatch, capsys):
    assert summary(load_config(REPO / "config.yaml")).startswith(
        "config OK: camera=opencv microphone=sounddevice lock=lgpio:GPIO17")
    assert "state=/var/lib/avid" in summary(load_config(REPO / "config.yaml"))
    # check-config also looks at the state folder, which exists only on an installed door.
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    monkeypatch.setenv(STATE_DIR_ENV, str(state))
    status = cli.main(["check-config", str(REPO / "config.yaml")])
    out = capsys.readouterr().out
    assert status == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("config OK: camera=opencv microphone=sounddevice lock=lgpio:GPIO17")


def test_ten_mistakes_are_ten_problems_with_paths_and_lines():
    with pytest.raises(InvalidConfig) as caught:
        parse_config(TEN_MISTAKES, "bad.yaml")
    problems = caught.value.problems
    assert len(problems) == 10, caught.value.report()
    by_path = {p.path: p for p in problems}
    assert sorted(by_path) == sorted(path for path, _, _ in EXPECTED)
    for path, line, text in EXPECTED:
        assert by_path[path].line == line, (path, by_path[path])
        assert text in by_path[path].message, (path, by_path[path].message)
    # Reported in file order, so a reader can walk down the file.
    assert [p.line for p in problems] == sorted(p.line for p in problems)


def test_check_config_reports_every_problem_and_exits_78(tmp_path, capsys):
    bad = _write(tmp_path, TEN_MISTAKES)
    status = cli.main(["check-config", str(bad)])
    err = capsys.readouterr().err
    assert status == EX_CONFIG == 78
    assert f"{bad}: 10 error(s) in the configuration:" in err
    problem_lines = [line for line in err.splitlines() if line.startswith("  - ")]
    assert len(problem_lines) == 10
    for (path, line, _), shown in zip(EXPECTED, problem_lines):
        assert shown.startswith(f"  - line {line}: {path}: "), shown
    assert "door stays locked" in err


def test_run_refuses_a_bad_config_with_the_same_report(tmp_path, capsys):
    bad = _write(tmp_path, TEN_MISTAKES)
    cli.main(["check-config", str(bad)])
    check_report = capsys.readouterr().err
    status = cli.main(["run", "--config", str(bad)])
    run_report = capsys.readouterr().err
    assert status == 78
    assert run_report == check_report


def test_union_field_mistake_is_one_problem():
    with pytest.raises(InvalidConfig) as caught:
        parse_config("camera:\n  device: [1, 2]\n")
    [problem] = caught.value.problems
    assert problem.path == "camera.device"
    assert problem.line == 2
    assert "integer" in problem.message and "string" in problem.message


@pytest.mark.parametrize("text, path", [
    ("lock:\n  relay_pin: yes\n", "lock.relay_pin"),       # would silently be GPIO1
    ("camera:\n  device: on\n", "camera.device"),          # would silently be camera 1
    ("lock:\n  unlock_seconds: true\n", "lock.unlock_seconds"),
])
def test_yes_no_values_are_refused_for_numbers(text, path):
    with pytest.raises(InvalidConfig) as caught:
        parse_config(text)
    [problem] = caught.value.problems
    assert problem.path == path and problem.line == 2 and "true/false" in problem.message


def test_yes_no_values_are_fine_for_yes_no_settings():
    config = parse_config("liveness:\n  required: no\nlock:\n  active_high: off\n"
                          "camera:\n  backend: replay\n  path: v.mpg\n  loop: yes\n")
    assert config.liveness.required is False and config.lock.active_high is False and config.camera.loop


def test_a_section_without_backend_is_the_default_backend():
    config = parse_config("camera:\n  device: /dev/video2\nmicrophone:\n  block_ms: 20\n")
    assert isinstance(config.camera, OpenCVCameraConfig) and config.camera.device == "/dev/video2"
    assert isinstance(config.microphone, SoundDeviceMicrophoneConfig) and config.microphone.block_ms == 20
    assert Config().camera == OpenCVCameraConfig() and Config().microphone == SoundDeviceMicrophoneConfig()


def test_each_backend_gets_its_own_settings():
    config = parse_config("camera:\n  backend: replay\n  path: door.mpg\n  loop: true\n"
                          "microphone:\n  backend: replay\n  paths: [a.wav]\n  gap_seconds: 1.5\n")
    assert isinstance(config.camera, ReplayCameraConfig) and config.camera.loop is True
    assert isinstance(config.microphone, ReplayMicrophoneConfig) and config.microphone.gap_seconds == 1.5
    assert not hasattr(config.camera, "device") and not hasattr(config.microphone, "sample_rate_hz")


@pytest.mark.parametrize("text, path, owner", [
    ("camera:\n  backend: replay\n  path: v.mpg\n  device: 1\n", "camera.device", "opencv"),
    ("camera:\n  loop: true\n", "camera.loop", "replay"),
    ("microphone:\n  backend: replay\n  paths: [a.wav]\n  sample_rate_hz: 48000\n",
     "microphone.sample_rate_hz", "sounddevice"),
    ("microphone:\n  paths: [a.wav]\n", "microphone.paths", "replay"),
])
def test_a_key_of_another_backend_says_whose_it_is(text, path, owner):
    with pytest.raises(InvalidConfig) as caught:
        parse_config(text)
    [problem] = caught.value.problems
    assert problem.path == path and problem.line == text.count("\n")
    assert problem.message.startswith("not a setting of the '")
    assert problem.message.endswith(f"backend (it belongs to '{owner}')")


def test_a_section_that_is_not_a_mapping_names_no_model_class():
    with pytest.raises(InvalidConfig) as caught:
        parse_config("camera: replay\n")
    [problem] = caught.value.problems
    assert (problem.path, problem.line, problem.value) == ("camera", 1, "replay")
    assert "mapping" in problem.message and "Config" not in problem.message


def test_a_typo_in_a_backend_section_gets_a_did_you_mean():
    with pytest.raises(InvalidConfig) as caught:
        parse_config("camera:\n  backend: replay\n  path: v.mpg\n  realtim: false\n")
    [problem] = caught.value.problems
    assert (problem.path, problem.line) == ("camera.realtim", 4)
    assert problem.message == "unknown key; did you mean 'realtime'?"


def test_an_unknown_backend_is_reported_at_its_key_with_the_choices():
    with pytest.raises(InvalidConfig) as caught:
        parse_config("camera:\n  fps: 15\nmicrophone:\n  block_ms: 30\n  backend: pulseaudio\n")
    [problem] = caught.value.problems
    assert (problem.path, problem.line, problem.value) == ("microphone.backend", 5, "pulseaudio")
    assert problem.message == "Input should be 'sounddevice' or 'replay'"


@pytest.mark.parametrize("text, path, message", [
    ("camera:\n  backend: replay\n", "camera.path", "the 'replay' camera backend needs it"),
    ("camera:\n  backend: replay\n  path: ''\n", "camera.path", "empty"),
    ("microphone:\n  backend: replay\n", "microphone.paths", "the 'replay' microphone backend needs it"),
    ("microphone:\n  backend: replay\n  paths: []\n", "microphone.paths", "at least 1 item"),
])
def test_a_replay_needs_its_files(text, path, message):
    with pytest.raises(InvalidConfig) as caught:
        parse_config(text)
    [problem] = caught.value.problems
    assert problem.path == path and message in problem.message


def test_both_weights_zero_is_reported():
    with pytest.raises(InvalidConfig) as caught:
        parse_config("decision:\n  face_weight: 0\n  voice_weight: 0\n")
    [problem] = caught.value.problems
    assert problem.path == "decision" and problem.line == 1
    assert "cannot both be 0" in problem.message


@pytest.mark.parametrize("text, line", [
    ("camera:\n  fps: 15\n   width_px: 640\n", 3),
    ("camera:\n  fps: 15\n  width_px: [640\nlock:\n  relay_pin: 17\n", 4),
    ("camera:\n\tfps: 1\n", 2),
])
def test_invalid_yaml_is_one_problem_with_a_line(text, line):
    with pytest.raises(InvalidConfig) as caught:
        parse_config(text)
    [problem] = caught.value.problems
    assert problem.line == line
    assert problem.message.startswith("not valid YAML")


@pytest.mark.parametrize("text", [
    "camera: &loop [*loop]\n",
    "camera:\n  path: &loop [*loop]\n",
    "camera:\n  path: " + "[" * 1200 + "]" * 1200 + "\n",
])
def test_recursive_or_absurdly_deep_yaml_is_a_problem_not_a_crash(text):
    with pytest.raises(InvalidConfig) as caught:
        parse_config(text)
    assert caught.value.problems


def test_top_level_must_be_a_mapping():
    with pytest.raises(InvalidConfig) as caught:
        parse_config("- camera\n- lock\n")
    [problem] = caught.value.problems
    assert "mapping" in problem.message and problem.line == 1


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_gives_the_defaults(tmp_path, text):
    config = load_config(_write(tmp_path, text))
    assert config == Config()
    assert config.lock.pin_factory == "lgpio" and config.lock.unlock_seconds == 5.0
    assert config.liveness.required is True and config.decision.missing_modality == "deny"


def test_missing_file_is_a_config_error(tmp_path, capsys):
    status = cli.main(["check-config", str(tmp_path / "absent.yaml")])
    assert status == 78
    assert "cannot read the file" in capsys.readouterr().err


def test_state_dir_environment_overrides_the_file(tmp_path, monkeypatch, capsys):
    config_path = _write(tmp_path, "state:\n  directory: /srv/door\n")
    config = load_config(config_path)
    assert config.state_dir == Path("/srv/door")
    assert config.calibration_path == Path("/srv/door/calibration.json")
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "override"))
    assert config.state_dir == tmp_path / "override"
    assert config.calibration_path == tmp_path / "override" / "calibration.json"
    (tmp_path / "override").mkdir(mode=0o700)
    assert cli.main(["check-config", "--config", str(config_path)]) == 0
    assert f"state={tmp_path / 'override'}" in capsys.readouterr().out


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    folder = tmp_path / "etc" / "door"
    folder.mkdir(parents=True)
    config = load_config(_write(folder, (
        "models:\n  directory: models\n"
        "camera:\n  backend: replay\n  path: clips/door.mpg\n"
        "microphone:\n  backend: replay\n  paths: [clips/a.wav, /abs/b.wav]\n")))
    assert config.camera.path == folder / "clips" / "door.mpg"
    assert config.microphone.paths == [folder / "clips" / "a.wav", Path("/abs/b.wav")]
    assert config.models.directory == folder / "models"


def test_absolute_paths_are_kept(tmp_path):
    config = load_config(_write(tmp_path, "camera:\n  backend: replay\n  path: /data/v.mpg\n"))
    assert config.camera.path == Path("/data/v.mpg")


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "demo", "check-config", "enroll", "delete", "list", "verify"):
        assert f"    {command} " in out or f"    {command}\n" in out, command


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main([])
    assert caught.value.code == 2
