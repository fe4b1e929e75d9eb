"""The calibration file is held to the config's strictness: a bad one stops the door (exit 78)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.config import EX_CONFIG
from daemon.errors import ConfigError
from daemon.fuse.calibration import read_calibration_file
from daemon.inference.tflite import DEFAULT_MODELS_DIR
from daemon.state.keys import create_device_key

SHIPPED = DEFAULT_MODELS_DIR / "calibration_default.json"


def good() -> dict:
    return json.loads(SHIPPED.read_text())


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "calibration.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_the_shipped_calibration_is_valid():
    data = read_calibration_file(SHIPPED)
    assert data.face.a > 0 and data.voice.a > 0 and math.isfinite(data.threshold)


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d.update(threshold=-1e308), "threshold"),
    (lambda d: d.update(threshold=1e308), "threshold"),
    (lambda d: d.update(margin=-3.0), "margin"),
    (lambda d: d.update(threshold="5"), "threshold"),
    (lambda d: d.update(threshold=True), "threshold"),
    (lambda d: d["face"].update(a=-189.0), "face.a"),
    (lambda d: d["voice"].update(b=1e300), "voice.b"),
    (lambda d: d["voice"].update(c=1.0), "voice.c"),
    (lambda d: d.update(schema=2), "schema"),
    (lambda d: d.pop("schema"), "schema"),
    (lambda d: d.pop("face"), "face"),
    (lambda d: d.update(liveness_threshold=7.0), "liveness_threshold"),
    (lambda d: d.update(target_fmr=0.0), "target_fmr"),
])
def test_out_of_range_or_malformed_values_are_refused_with_their_key(tmp_path, change, fragment):
    data = good()
    change(data)
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        read_calibration_file(write(tmp_path, data))


@pytest.mark.parametrize("text", ['{"threshold": Infinity}', '{"threshold": NaN}', "[1, 2]", "not json",
                                  "[" * 100000 + "]" * 100000, ""])
def test_non_numbers_nesting_and_garbage_are_refused(tmp_path, text):
    with pytest.raises(ConfigError):
        read_calibration_file(write(tmp_path, text))


def test_every_problem_is_reported_at_once(tmp_path):
    data = good()
    data.update(threshold=-1e308, margin=-1.0)
    data["face"]["a"] = 0.0
    with pytest.raises(ConfigError) as caught:
        read_calibration_file(write(tmp_path, data))
    assert "3 error(s)" in str(caught.value)


def test_a_huge_file_is_refused_without_parsing_it(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_bytes(b" " * (2 << 20))
    with pytest.raises(ConfigError, match="larger than"):
        read_calibration_file(path)


def test_verify_stops_with_exit_78_on_an_invalid_installer_calibration(tmp_path, capsys, monkeypatch):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    create_device_key(state / "device.key")  # an initialised door
    data = good()
    data["threshold"] = -1e308
    write(state, data)
    monkeypatch.setenv("AVID_STATE_DIR", str(state))
    config = tmp_path / "config.yaml"
    config.write_text("liveness:\n  required: false\n")
    # The calibration is read before any sample: the samples are never looked at.
    never_read = tmp_path / "never_read"
    assert main(["verify", "--config", str(config), "--face", str(never_read), "--voice", str(never_read)]) == EX_CONFIG
    assert "threshold" in capsys.readouterr().err


def test_an_integer_where_a_float_is_expected_is_accepted(tmp_path):
    data = good()
    data["threshold"] = 7
    assert read_calibration_file(write(tmp_path, data)).threshold == 7.0


def test_the_operating_point_carries_what_the_fit_expected_for_operators(tmp_path):
    from daemon.config import Config
    from daemon.fuse.calibration import REPORT_KEYS, load_operating_point

    config = Config.model_validate({"state": {"directory": str(tmp_path / "state")}})
    shipped = good()
    point = load_operating_point(config, shipped["models"], SHIPPED)
    assert point.source == str(SHIPPED)
    assert set(point.report) == set(REPORT_KEYS)
    assert point.report["door_one_to_one_by_enrol_utterances"] == shipped["door_one_to_one_by_enrol_utterances"]
    assert point.report["expected_fnmr"] == shipped["expected_fnmr"]
    assert point.report["door_one_to_one"]["false_reject_reasons"] == shipped["door_one_to_one"]["false_reject_reasons"]
