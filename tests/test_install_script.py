"""tools/install.sh --dry-run lists the install and uninstall steps in order and changes nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "tools" / "install.sh"


def dry_run(*args: str) -> list[str]:
    result = subprocess.run(["bash", str(INSTALL), "--dry-run", *args], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def position(lines: list[str], fragment: str) -> int:
    """Index of the first command ('+ ...') or step ('==> ...') line containing fragment."""
    for index, line in enumerate(lines):
        if line.startswith(("+ ", "==> ")) and fragment in line:
            return index
    raise AssertionError(f"no step containing {fragment!r} in:\n" + "\n".join(lines))


def test_install_steps_in_order():
    lines = dry_run()
    steps = [
        "apt-get install -y --no-install-recommends python3-venv python3-pip libportaudio2 espeak-ng",
        "/etc/sysusers.d/avid.conf",
        "/usr/bin/python3 -m venv /opt/avid/venv",
        f"/opt/avid/venv/bin/pip install --upgrade {REPO}",
        "-m daemon.challenge.present /var/lib/avid/prompts",
        "/etc/avid/device.key",
        f"install -m 0644 {REPO}/systemd/avid.service /etc/systemd/system/avid.service",
        "systemctl daemon-reload",
        "systemctl enable avid.service",
        "systemctl restart avid.service",
    ]
    indices = [position(lines, step) for step in steps]
    assert indices == sorted(indices)
    user_step = "systemd-sysusers /etc/sysusers.d/avid.conf" if any(
        "systemd-sysusers" in line for line in lines) else "useradd --system"
    assert position(lines, user_step) < position(lines, "python3 -m venv")


def test_no_start_enables_without_starting():
    lines = dry_run("--no-start")
    assert position(lines, "systemctl enable avid.service") > 0
    assert not any("systemctl restart" in line or "enable --now" in line for line in lines)


def test_uninstall_keeps_config_and_state_unless_purged():
    kept = dry_run("--uninstall")
    assert position(kept, "systemctl disable --now avid.service") < position(kept, "rm -rf /opt/avid")
    assert position(kept, "rm -f /etc/systemd/system/avid.service") > 0
    assert not any("/etc/avid" in line or "/var/lib/avid" in line
                   for line in kept if line.startswith("+ "))
    assert not any("userdel" in line for line in kept)

    purged = dry_run("--uninstall", "--purge")
    assert position(purged, "rm -rf /etc/avid /var/lib/avid") > position(purged, "rm -rf /opt/avid")
    assert position(purged, "userdel avid") > 0


def test_rejects_unknown_options_and_purge_without_uninstall():
    for args in (["--dry-run", "--frobnicate"], ["--dry-run", "--purge"]):
        result = subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        assert "error:" in result.stderr
