"""The web page's calibration summary: what the running door says it decides with, else the files
(the installer's calibration, else the one shipped with the models), and a plain note when neither
can be read (the web service may not read the state folder)."""

from __future__ import annotations

import json

from daemon.config import Config
from daemon.inference.tflite import SHIPPED_CALIBRATION
from daemon.web.app import calibration_summary


def config_in(tmp_path) -> Config:
    return Config.model_validate({"state": {"directory": str(tmp_path / "state")}})


def test_the_running_doors_operating_point_comes_first(tmp_path):
    config = config_in(tmp_path)
    by_enrolment = {"2": {"enrolled_from_2": {"fnmr": 0.02, "people": 40, "n_genuine": 80},
                          "enrolled_from_1": {"fnmr": 0.05, "people": 40, "n_genuine": 80}}}
    door = {"fnmr": 0.03, "n_genuine": 100, "false_reject_reasons": {"no_match": 2, "voice_mismatch": 1}}
    point = {"threshold": 4.5, "margin": 4.6, "min_modality_llr": 0.0, "calibration": "/var/lib/avid/calibration.json",
             "target_fmr": 1e-4, "expected_fnmr": 0.03, "fnmr_ci": [0.02, 0.05], "created": "2026-12-03T10:00:00+00:00",
             "door_one_to_one_by_enrol_utterances": by_enrolment, "door_one_to_one": door}
    summary = calibration_summary(config, {"lock": "locked", "operating_point": point})
    assert summary["calibration"] == {"threshold": 4.5, "margin": 4.6, "target_fmr": 1e-4, "expected_fnmr": 0.03,
                                      "fnmr_ci": [0.02, 0.05], "created": "2026-12-03T10:00:00+00:00",
                                      "door_one_to_one_by_enrol_utterances": by_enrolment,
                                      "door_one_to_one": door}
    assert summary["calibration_file"] == "/var/lib/avid/calibration.json"
    assert summary["calibration_note"] == "in use by the running door"


def test_without_a_door_the_installers_file_then_the_shipped_one_is_read(tmp_path):
    config = config_in(tmp_path)
    summary = calibration_summary(config, None)  # no installer calibration: the shipped one
    shipped = json.loads(SHIPPED_CALIBRATION.read_text())
    assert summary["calibration_file"] == str(SHIPPED_CALIBRATION)
    assert summary["calibration"]["threshold"] == shipped["threshold"]
    assert summary["calibration"]["door_one_to_one_by_enrol_utterances"] == \
        shipped["door_one_to_one_by_enrol_utterances"]
    assert "shipped with the models" in summary["calibration_note"]
    config.calibration_path.parent.mkdir(parents=True)
    config.calibration_path.write_text(json.dumps({**shipped, "threshold": 5.25}))
    summary = calibration_summary(config, {"lock": "locked"})  # a door from before operating_point
    assert summary["calibration_file"] == str(config.calibration_path)
    assert summary["calibration"]["threshold"] == 5.25


def test_an_unreadable_calibration_is_said_plainly(tmp_path):
    config = config_in(tmp_path)
    config.calibration_path.mkdir(parents=True)  # a folder where the file should be: unreadable
    summary = calibration_summary(config, None)
    assert summary["calibration"] is None
    assert summary["calibration_note"].startswith(f"the door is not running and {config.calibration_path} "
                                                  "is not readable by the web service")


def test_the_calibration_page_shows_what_enrolling_from_more_sentences_buys(tmp_path):
    """In a real browser against `avid web` with no door running: the shipped calibration's rows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from web_harness import PASSWORD, Browser, WebProcess, free_port, set_password

    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"""
state: {{directory: {tmp_path / 'state'}}}
control: {{socket_path: {tmp_path / 'nobody.sock'}}}
web:
  port: {port}
  password_file: {tmp_path / 'passwords'}
""")
    assert set_password(config).returncode == 0
    two = json.loads(SHIPPED_CALIBRATION.read_text())["door_one_to_one_by_enrol_utterances"]["2"]
    with WebProcess(config, port, slim=True) as web, Browser() as driver:
        driver.get(f"{web.url}/login")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login").click()
        WebDriverWait(driver, 20).until(EC.url_to_be(f"{web.url}/"))
        driver.get(f"{web.url}/calibration")
        WebDriverWait(driver, 20).until(lambda d: "threshold" in d.find_element(By.ID, "cal-point").text)
        rows = driver.find_element(By.ID, "cal-point").text
    several, alone = two["enrolled_from_2"], two["enrolled_from_1"]
    assert (f"false rejects, people enrolled from 2 sentences\n{100 * several['fnmr']:.2f} % "
            f"(the same {several['people']} people from one: {100 * alone['fnmr']:.2f} %)") in rows, rows
    # and why the fit's genuine attempts were refused at that threshold, commonest reason first
    door = json.loads(SHIPPED_CALIBRATION.read_text())["door_one_to_one"]
    assert door["false_reject_reasons"] == {"no_match": 12, "face_mismatch": 2, "voice_mismatch": 1}
    assert (f"refused by the door's rule\n{100 * door['fnmr']:.2f} %: 12 under the threshold, 2 a face that "
            "alone points elsewhere (min_modality_llr), 1 a voice that alone points elsewhere "
            "(min_modality_llr)") in rows, rows
