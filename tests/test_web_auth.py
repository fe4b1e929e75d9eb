"""The web page's passwords, sessions, login backoff and its config rules (no browser needed)."""

from __future__ import annotations

import pytest

from daemon import cli
from daemon.config import EX_CONFIG, InvalidConfig, parse_config
from daemon.errors import AvidError
from daemon.web.auth import (LoginBackoff, Sessions, WebAuthError, hash_password, read_passwords, set_password,
                             verify_password)

# A cheap cost for tests only; the stored parameters travel with each hash.
FAST = {"n": 2 ** 10, "r": 8, "p": 1}


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_password_hash_is_salted_and_verifies_only_the_password():
    first, second = hash_password("door opens", **FAST), hash_password("door opens", **FAST)
    assert first != second and first.startswith("scrypt$1024$8$1$")
    assert verify_password("door opens", first) and verify_password("door opens", second)
    assert not verify_password("door opens!", first)
    assert not verify_password("door opens", "scrypt$1024$8$1$not-base64$xx")
    assert not verify_password("door opens", "md5$abc")


def test_shipped_cost_is_slow_scrypt():
    assert hash_password("a long password").startswith("scrypt$32768$8$1$")


def test_web_passwd_writes_a_private_file_and_replaces_one_user(tmp_path, monkeypatch, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(f"web:\n  password_file: {tmp_path / 'web' / 'passwords'}\n")
    monkeypatch.setenv("AVID_WEB_PASSWORD", "first password")
    assert cli.main(["web-passwd", "--config", str(config)]) == 0
    monkeypatch.setenv("AVID_WEB_PASSWORD", "second password")
    assert cli.main(["web-passwd", "installer", "--config", str(config)]) == 0
    path = tmp_path / "web" / "passwords"
    assert path.stat().st_mode & 0o777 == 0o600
    users = read_passwords(path)
    assert sorted(users) == ["admin", "installer"]
    assert verify_password("first password", users["admin"])
    assert "password" not in path.read_text().replace("passwords", "")  # hashes only


@pytest.mark.parametrize("user, password", [("Admin", "long enough pw"), ("admin", "short"), ("a:b", "long enough pw")])
def test_bad_user_or_short_password_is_refused(tmp_path, user, password):
    with pytest.raises(WebAuthError) as caught:
        set_password(tmp_path / "passwords", user, password)
    assert isinstance(caught.value, AvidError)
    assert not (tmp_path / "passwords").exists()


def test_sessions_end_when_idle_or_too_old():
    clock = FakeClock()
    sessions = Sessions(idle_seconds=60, max_seconds=300, clock=clock)
    token = sessions.create("admin")
    assert len(token) >= 40 and sessions.get(token).user == "admin"
    clock.now += 59
    assert sessions.get(token) is not None  # use keeps it alive...
    for _ in range(5):
        clock.now += 59
        sessions.get(token)
    assert sessions.get(token) is None  # ...but not past max_seconds
    idle = sessions.create("admin")
    clock.now += 30
    assert sessions.alive(idle)  # a live stream's check is not use:
    clock.now += 31
    assert not sessions.alive(idle)
    assert sessions.get(idle) is None
    other = sessions.create("admin")
    sessions.end(other)
    assert sessions.get(other) is None and sessions.get("forged") is None and sessions.get(None) is None


def test_login_backoff_doubles_up_to_a_cap_and_resets_on_success():
    clock = FakeClock()
    backoff = LoginBackoff(first_seconds=1, max_seconds=8, clock=clock)
    assert backoff.wait_seconds() == 0
    waits = []
    for _ in range(6):
        backoff.failed()
        waits.append(backoff.wait_seconds())
    assert waits == [1, 2, 4, 8, 8, 8]
    clock.now += 8
    assert backoff.wait_seconds() == 0
    backoff.succeeded()
    backoff.failed()
    assert backoff.wait_seconds() == 1


def test_non_loopback_bind_without_tls_is_refused_by_check_config(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("web:\n  host: 0.0.0.0\n  tls_cert_file: /etc/avid/web.crt\n")
    assert cli.main(["check-config", str(config)]) == EX_CONFIG
    report = capsys.readouterr().err
    assert "web.host: listening on '0.0.0.0' (not loopback) needs TLS" in report
    assert "web.tls_cert_file: TLS needs both tls_cert_file and tls_key_file" in report


@pytest.mark.parametrize("text", ["web:\n  host: 127.0.0.1\n", "web:\n  host: ::1\n",
                                  "web:\n  host: 192.168.1.20\n  tls_cert_file: /c.pem\n  tls_key_file: /k.pem\n"])
def test_loopback_or_tls_binds_are_accepted(text):
    assert parse_config(text).web.port == 8080


def test_web_section_is_strict():
    with pytest.raises(InvalidConfig) as caught:
        parse_config("web:\n  prot: 80\n  session_idle_minutes: 0\n")
    paths = {p.path for p in caught.value.problems}
    assert {"web.prot", "web.session_idle_minutes"} <= paths


def test_avid_web_refuses_to_serve_without_a_user_or_with_a_bad_config(tmp_path):
    import subprocess
    import sys

    from control_harness import ROOT

    config = tmp_path / "config.yaml"
    config.write_text(f"web:\n  port: 1\n  password_file: {tmp_path / 'none'}\n")
    nobody = subprocess.run([sys.executable, "-m", "daemon", "web", "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert nobody.returncode == EX_CONFIG and "no web user" in nobody.stderr
    config.write_text("web:\n  host: 0.0.0.0\n")
    exposed = subprocess.run([sys.executable, "-m", "daemon.web", "--config", str(config)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert exposed.returncode == EX_CONFIG and "web.host" in exposed.stderr
