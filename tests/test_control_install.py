"""What the control socket needs from the installation: the avid-admin group (sysusers file and
tools/install.sh --admin), a runtime folder others can traverse, and the config's default path in it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from daemon.config import Config

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "tools" / "install.sh"


def install(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), "--dry-run", *args], capture_output=True, text=True, timeout=60)


def test_sysusers_creates_the_admin_group(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    subprocess.run(["systemd-sysusers", f"--root={root}", str(REPO / "systemd" / "avid.sysusers.conf")],
                   check=True, capture_output=True, timeout=60)
    groups = {line.split(":")[0] for line in (root / "etc" / "group").read_text().splitlines()}
    assert Config().control.admin_group in groups


def test_install_adds_each_admin_after_the_group_exists():
    result = install("--admin", "alice", "--admin", "bob")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    sysusers = next(i for i, line in enumerate(lines) if "systemd-sysusers" in line or "groupadd" in line)
    adds = [i for i, line in enumerate(lines) if line.startswith("+ usermod --append --groups avid-admin")]
    assert [lines[i].split()[-1] for i in adds] == ["alice", "bob"]
    assert sysusers < adds[0]


def test_install_refuses_admin_without_a_user_or_on_uninstall():
    for args in (["--admin"], ["--admin", "--no-start"], ["--uninstall", "--admin", "alice"]):
        result = install(*args)
        assert result.returncode != 0 and "error:" in result.stderr, args


def test_purge_removes_the_admin_group():
    result = install("--uninstall", "--purge")
    assert "+ groupdel avid-admin" in result.stdout.splitlines()


def test_socket_lives_in_the_units_runtime_directory():
    unit = (REPO / "systemd" / "avid.service").read_text().splitlines()
    assert "RuntimeDirectory=avid" in unit
    # Traversable (x) for others, never listable or writable: the socket answers who may administer.
    mode = int(next(line for line in unit if line.startswith("RuntimeDirectoryMode=")).split("=")[1], 8)
    assert mode & 0o001 and not mode & 0o066
    assert Config().control.socket_path == Path("/run/avid/control.sock")
