"""The installer's web page in a real browser (Debian's headless chromium, Selenium) against a real
`avid web` and a real `avid run` with replayed camera and microphone (gpiozero's MockFactory).

The browser logs in and follows one replayed timeline (about 40 s) on the pages:

    5 s empty | alice A (denied: nobody enrolled) | 16 s (enrol alice from uploaded files) |
    alice B (accepted) | 3 s | stranger (denied: no match; lockout after one failure) | 20 s
    (clear the lockout, delete alice, start a live enrolment of "carol") | alice C (captured by the
    live enrolment at the door) | 4 s

Requests without a session, with a foreign Origin or to a foreign Host name are refused.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.parse

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from control_harness import ROOT, SocketFolder, build_replay, enrolment_files, replay_door_config
from daemon.control.client import ControlClient
from shared_data import DATA
from web_harness import PASSWORD, Browser, WebProcess, env, free_port, http, set_password


def _config(folder, socket_path, video, wav, port):
    return replay_door_config(folder, socket_path, video, wav, f"""lockout:
  max_consecutive_failures: 1
  initial_delay_seconds: 600
web:
  port: {port}
  password_file: {folder / 'web' / 'passwords'}
  poll_seconds: 0.5
""")


def _decision_row(driver, attempt, timeout):
    """The status page's row of ``attempt`` once it has arrived live, as its cell texts."""
    locator = (By.CSS_SELECTOR, f'#decisions tr[data-attempt="{attempt}"]')
    row = WebDriverWait(driver, timeout).until(EC.presence_of_element_located(locator))
    return [td.text for td in row.find_elements(By.TAG_NAME, "td")]


def _text_is(driver, element_id, pattern, timeout=15):
    def matches(d):
        text = d.find_element(By.ID, element_id).text
        return text if re.search(pattern, text) else False
    try:
        return WebDriverWait(driver, timeout).until(matches)
    except TimeoutException:
        raise AssertionError(f"#{element_id} is {driver.find_element(By.ID, element_id).text!r}, "
                             f"not /{pattern}/") from None


def _login_cookie(url, password=PASSWORD):
    form = urllib.parse.urlencode({"user": "admin", "password": password}).encode()
    status, _, headers = http(f"{url}/login", "POST", form, {
        "Origin": url, "Content-Type": "application/x-www-form-urlencoded"})
    return status, headers.get("Set-Cookie", "")


def test_installer_page_in_a_browser(tmp_path):
    faces, voices = enrolment_files(tmp_path)
    (tmp_path / "digits").mkdir()
    digits = []  # one take of each digit, named as the page asks
    for d in "0123456789":
        digits.append(tmp_path / "digits" / f"{d}_first.wav")
        digits[-1].write_bytes((DATA / "voices" / "fsdd" / "george" / f"{d}_0.wav").read_bytes())
    misnamed = tmp_path / "digits" / "seven.wav"
    misnamed.write_bytes(digits[7].read_bytes())
    video, wav = build_replay(tmp_path, [5.0, "s1_bbaf4p", 16.0, "s1_bbaf5a", 3.0,
                                         "gridX_brbk7n_brbk7n", 20.0,
                                         "s1_bbaf2n", 4.0])
    port = free_port()
    with SocketFolder() as folder:
        socket_path = folder / "control.sock"
        config = _config(tmp_path, socket_path, video, wav, port)
        assert set_password(config).returncode == 0
        assert oct((tmp_path / "web" / "passwords").stat().st_mode & 0o777) == "0o600"
        with WebProcess(config, port, slim=True) as web, Browser() as driver:
            url = web.url
            wait = WebDriverWait(driver, 20)

            # Nothing without a session: the pages send to the login page, the API answers 401.
            assert http(f"{url}/api/status")[0] == 401
            assert http(f"{url}/people")[0] == 303
            assert http(f"{url}/api/lockout/clear", "POST", b"", {"Origin": url})[0] == 401
            # A page served under a name that is not this machine's (DNS rebinding) is refused.
            assert http(f"{url}/login", headers={"Host": f"evil.example:{port}"})[0] == 421

            # A wrong password is refused, and the next try must wait (backoff).
            assert _login_cookie(url, "wrong password")[0] == 303
            assert _login_cookie(url)[0] == 429
            time.sleep(1.1)

            driver.get(f"{url}/")
            assert driver.current_url.endswith("/login")
            driver.find_element(By.ID, "password").send_keys(PASSWORD)
            driver.find_element(By.ID, "login").click()
            wait.until(EC.url_to_be(f"{url}/"))
            cookie = driver.get_cookie("avid_session")
            assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict", cookie
            # No daemon yet: the page says so instead of showing stale values.
            _text_is(driver, "conn", "does not answer")

            daemon = subprocess.Popen([sys.executable, "-m", "daemon", "run", "--config", str(config)], cwd=ROOT,
                                      env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            stderr = []
            reader = threading.Thread(target=lambda: stderr.extend(daemon.stderr), daemon=True)
            reader.start()
            try:
                _text_is(driver, "conn", "^live$", timeout=60)
                assert driver.find_element(By.ID, "st-lock").text == "locked"
                assert driver.find_element(By.ID, "st-enrolled").text == "0"
                assert driver.find_element(By.ID, "st-camera").text == "ok"

                # A replayed attempt's decision appears live, with its scores, reason and latency.
                first = _decision_row(driver, 1, 40)
                assert first[1:4] == ["deny", "–", "no_enrolled"], first
                assert first[8].endswith(" ms"), first

                # Enrol alice from uploaded files, her challenge digits too; a digit recording
                # not named after its digit is refused first, naming the file.
                driver.get(f"{url}/people")
                driver.find_element(By.ID, "files-name").send_keys("alice")
                driver.find_element(By.ID, "faces").send_keys("\n".join(map(str, faces)))
                driver.find_element(By.ID, "voices").send_keys("\n".join(map(str, voices)))
                driver.find_element(By.ID, "digits").send_keys(str(misnamed))
                driver.find_element(By.ID, "enrol-files-btn").click()
                _text_is(driver, "people-msg", "seven.wav: a digit recording is named after its digit", timeout=30)
                driver.find_element(By.ID, "digits").clear()
                driver.find_element(By.ID, "digits").send_keys("\n".join(map(str, digits)))
                driver.find_element(By.ID, "enrol-files-btn").click()
                _text_is(driver, "people-msg", "enrolled alice: 2 face sample.*10 digit recording", timeout=30)
                row = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#people tr[data-name="alice"]')))
                assert [td.text for td in row.find_elements(By.TAG_NAME, "td")][1:4] == ["2", "2", "10"]

                # Her next replayed attempt is accepted, live on the status page.
                driver.get(f"{url}/")
                second = _decision_row(driver, 2, 40)
                assert second[1:4] == ["accept", "alice", "match"], second
                third = _decision_row(driver, 3, 30)
                assert third[1:4] == ["deny", "–", "no_match"], third

                # One failure locks out (max_consecutive_failures: 1).
                driver.get(f"{url}/lockout")
                _text_is(driver, "lo-locked", "^yes$")
                # A session with a foreign Origin cannot clear it (nor can anything without one).
                status, set_cookie = _login_cookie(url)
                assert status == 303, status
                session = set_cookie.split(";")[0]
                assert http(f"{url}/api/lockout/clear", "POST", b"",
                            {"Origin": "http://evil.example", "Cookie": session})[0] == 403
                assert http(f"{url}/api/lockout/clear", "POST", b"", {"Cookie": session})[0] == 403
                assert http(f"{url}/api/people/alice/delete", "POST", b"",
                            {"Origin": "http://evil.example", "Cookie": session})[0] == 403
                assert ControlClient(socket_path).lockout()["locked_out"] is True
                driver.find_element(By.ID, "clear-lockout").click()
                _text_is(driver, "lockout-msg", "lockout cleared")
                _text_is(driver, "lo-locked", "^no$")
                assert ControlClient(socket_path).lockout()["locked_out"] is False

                # Delete alice, after confirming.
                driver.get(f"{url}/people")
                button = wait.until(EC.element_to_be_clickable(
                    (By.CSS_SELECTOR, '#people tr[data-name="alice"] button.delete')))
                button.click()
                alert = wait.until(EC.alert_is_present())
                assert "Delete alice?" in alert.text
                alert.accept()
                _text_is(driver, "people-msg", "deleted alice")
                wait.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, '#people tr[data-name="alice"]')))
                assert ControlClient(socket_path).list_people() == []

                # Enrol carol at the door: the page shows the daemon's prompts live.
                driver.find_element(By.ID, "live-name").send_keys("carol")
                driver.find_element(By.ID, "enrol-live-btn").click()
                _text_is(driver, "live-progress", r"\[1/1\] Look at the camera", timeout=10)
                assert ControlClient(socket_path).status()["suspended"] is True
                _text_is(driver, "live-progress", "sample taken", timeout=40)
                _text_is(driver, "people-msg", "enrolled carol: 1 face sample", timeout=20)
                wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#people tr[data-name="carol"]')))

                status_body = json.loads(http(f"{url}/api/status", headers={"Cookie": session})[1])
                assert status_body["enrolled"] == 1 and status_body["suspended"] is False and status_body["lock"] in ("locked", "unlocked")
            finally:
                if daemon.poll() is None:
                    daemon.terminate()
                    daemon.wait(timeout=20)
                reader.join(timeout=5)
        log = web.log
    # Every act is a journal line naming the web user; refusals too. No biometric data.
    assert "web: user=admin op=login client=127.0.0.1 outcome=ok" in log
    assert "op=login client=127.0.0.1 outcome=refused" in log
    assert "op=enrol_files name=alice outcome=bad_request" in log  # the misnamed digit file
    assert "op=enrol_files name=alice faces=2 voices=2 digits=10 outcome=ok" in log
    assert "web: user=admin op=clear_lockout outcome=ok" in log
    assert "web: user=admin op=delete name=alice outcome=ok" in log
    assert "origin=http://evil.example outcome=refused_origin" in log
    assert "outcome=refused_no_session" in log
    assert "web: user=admin op=enrol_live name=carol samples=1 outcome=ok" in log
    daemon_log = "".join(stderr)
    assert "op=enrol_files name=alice outcome=ok" in daemon_log
