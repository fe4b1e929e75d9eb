"""avid-web.service, its account and tools/install.sh --web: the unit parses and is locked down, its
user is in avid-admin, and the install makes avid.service see that group."""

from __future__ import annotations

import subprocess
import sys

from test_install_script import dry_run, position
from test_systemd_unit import REPO, exposure_score, unit_directives

UNIT = REPO / "systemd" / "avid-web.service"


def _service(key: str) -> list[str]:
    return [v for s, k, v in unit_directives(UNIT.read_text()) if s == "Service" and k == key]


def test_web_unit_parses_and_is_locked_down(tmp_path):
    copy = tmp_path / "avid-web.service"
    copy.write_text(UNIT.read_text().replace("ExecStart=/opt/avid/venv/bin/python", f"ExecStart={sys.executable}"))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True,
                            text=True, timeout=120)
    # verify exits 0 even for unknown keys, so every line naming the unit counts.
    assert result.returncode == 0 and "avid-web" not in result.stdout + result.stderr, result.stderr
    score = exposure_score(UNIT)
    print(f"systemd-analyze security exposure of avid-web.service: {score}")
    assert score <= 2.0
    # Its own user, no devices, the admin group for the control socket, the config as a credential.
    assert _service("User") == ["avid-web"] and _service("SupplementaryGroups") == ["avid-admin"]
    assert _service("PrivateDevices") == ["yes"] and _service("IPAddressDeny") == ["any"]
    assert _service("LoadCredential") == ["avid-config:/etc/avid/config.yaml"]
    assert "LoadCredential=avid-key" not in UNIT.read_text()


def test_sysusers_put_avid_web_in_avid_admin_and_tmpfiles_keep_its_state_private(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    subprocess.run(["systemd-sysusers", f"--root={root}", str(REPO / "systemd" / "avid-web.sysusers.conf")],
                   check=True, capture_output=True, timeout=60)
    passwd = (root / "etc" / "passwd").read_text().splitlines()
    group = (root / "etc" / "group").read_text().splitlines()
    user = next(line for line in passwd if line.startswith("avid-web:")).split(":")
    assert (user[5], user[6]) == ("/var/lib/avid-web", "/usr/sbin/nologin")
    admins = next(line for line in group if line.startswith("avid-admin:")).split(":")[3].split(",")
    assert admins == ["avid-web"]
    subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create",
                    str(REPO / "systemd" / "avid-web.tmpfiles.conf")], check=True, capture_output=True, timeout=60)
    state = (root / "var" / "lib" / "avid-web").stat()
    assert (oct(state.st_mode & 0o777), state.st_uid) == ("0o700", int(user[2]))
    tls = (root / "etc" / "avid-web").stat()
    assert (oct(tls.st_mode & 0o777), tls.st_uid, tls.st_gid) == ("0o750", 0, int(user[3]))


def test_install_web_adds_the_unit_and_lets_avid_see_the_admin_group():
    lines = dry_run("--web")
    text = "\n".join(lines)
    assert position(lines, "systemd-sysusers /etc/sysusers.d/avid-web.conf") < position(
        lines, "systemd/avid-web.service /etc/systemd/system/avid-web.service")
    assert "write /etc/systemd/system/avid.service.d/web.conf" in text and "PrivateUsers=no" in text
    assert position(lines, "web.conf") < position(lines, "systemctl daemon-reload") \
        < position(lines, "systemctl enable avid-web.service") < position(lines, "systemctl restart avid-web.service")
    assert "openssl" not in text and "bind.conf" not in text
    assert "avid-web" not in "\n".join(dry_run())


def test_install_web_bind_makes_a_certificate_and_opens_the_address():
    text = "\n".join(dry_run("--web-bind", "192.168.1.20"))
    assert "openssl req -x509" in text and "subjectAltName=IP:192.168.1.20" in text
    assert "tls_cert_file: /etc/avid-web/tls.crt" in text
    assert "write /etc/systemd/system/avid-web.service.d/bind.conf" in text and "IPAddressDeny=\n" in text + "\n"


def test_uninstall_removes_the_web_unit_and_purge_its_user():
    text = "\n".join(dry_run("--uninstall", "--purge"))
    assert "disable --now avid-web.service" in text and "rm -f /etc/systemd/system/avid-web.service" in text
    assert "userdel avid-web" in text and "rm -rf /etc/avid-web /var/lib/avid-web" in text
