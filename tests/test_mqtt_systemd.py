"""The sandbox drop-in for a TCP broker: it parses, keeps exposure <= 2.0 and opens only the broker."""

import subprocess

from test_systemd_unit import MAX_EXPOSURE, REPO, UNIT, exposure_score, unit_directives, verify_problems

DROPIN = REPO / "systemd" / "mqtt-tcp.conf"
INSTALL = REPO / "tools" / "install.sh"
BROKER = "192.0.2.10"


def _with_dropin() -> str:
    # Appending a [Service] section has the same effect as a drop-in: later lines win, lists add up.
    return UNIT.read_text() + "\n" + DROPIN.read_text().replace("@BROKER@", BROKER)


def test_tcp_dropin_keeps_exposure_at_most_two(tmp_path):
    merged = tmp_path / "avid.service"
    merged.write_text(_with_dropin())
    assert verify_problems(merged.read_text(), tmp_path) == []
    score = exposure_score(merged)
    print(f"systemd-analyze security exposure with the MQTT TCP drop-in: {score}")
    assert score <= MAX_EXPOSURE


def test_tcp_dropin_allows_only_the_broker():
    directives = [(k, v) for s, k, v in unit_directives(_with_dropin()) if s == "Service"]
    assert ("IPAddressDeny", "any") in directives
    allowed = [v for k, v in directives if k == "IPAddressAllow"]
    assert allowed == [f"localhost {BROKER}"]
    assert ("PrivateNetwork", "no") in directives


def test_install_writes_the_dropin_only_when_asked():
    def dry_run(*extra):
        return subprocess.run(["bash", str(INSTALL), "--dry-run", "--no-start", *extra],
                              capture_output=True, text=True, timeout=60)

    plain = dry_run()
    assert plain.returncode == 0 and "mqtt.conf" not in plain.stdout
    tcp = dry_run("--mqtt-broker", BROKER)
    assert tcp.returncode == 0
    assert f"IPAddressAllow=localhost {BROKER}" in tcp.stdout and "LoadCredential=avid-mqtt-password" in tcp.stdout
    unix = dry_run("--mqtt-broker", "unix")
    assert unix.returncode == 0 and "IPAddressAllow" not in unix.stdout and "PrivateNetwork" not in unix.stdout
    assert "SupplementaryGroups=mosquitto" in unix.stdout
    bad = dry_run("--mqtt-broker", "broker;rm -rf /")
    assert bad.returncode != 0
