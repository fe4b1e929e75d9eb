"""Stands in for ``avid run`` under the real unit: sd_notify, the watchdog gate and the sandbox.

Reads its scenario from /etc/avid/stub-mode: ``healthy`` (fresh frames for ever), ``wedge`` (frames
stop after 4 s, so the watchdog must fire) or ``config`` (exit 78 at once). Before that it logs what
the sandbox allows: identity and groups, the credential, the state directory, and a few refusals.
"""

import logging
import os
import socket
import sys
import time
from pathlib import Path

from daemon.service.sdnotify import Notifier
from daemon.service.watchdog import HealthGate

logging.basicConfig(level=logging.INFO, format="<6>%(name)s: %(message)s")
log = logging.getLogger("stub")


def sandbox_report() -> None:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    log.info("uid=%s gid=%s groups=%s", status["Uid"].split()[0], status["Gid"].split()[0],
             status["Groups"].strip())
    log.info("uid_map=%r", " | ".join(Path("/proc/self/uid_map").read_text().split("\n")[:-1]))
    credential = Path(os.environ["CREDENTIALS_DIRECTORY"]) / "avid-key"
    log.info("credential %s: %d bytes", credential, len(credential.read_bytes()))
    state = Path(os.environ["AVID_STATE_DIR"])
    (state / "probe").write_text("x")
    log.info("state %s writable, new file mode %o; cwd=%s", state, (state / "probe").stat().st_mode & 0o777,
             os.getcwd())
    attempts = [("write /etc", lambda: Path("/etc/avid/x").write_text("x")),
                ("chown", lambda: os.chown(state / "probe", 0, 0)),
                ("read /etc/avid/device.key", lambda: Path("/etc/avid/device.key").read_bytes()),
                ("AF_INET socket", lambda: socket.socket(socket.AF_INET)),
                ("see other processes", lambda: [p for p in os.listdir("/proc") if p.isdigit()])]
    for what, attempt in attempts:
        try:
            log.info("%s: allowed (%r)", what, attempt())
        except OSError as exc:
            log.info("%s: refused (%s)", what, exc.strerror)


def main() -> int:
    mode = Path("/etc/avid/stub-mode").read_text().strip()
    log.info("scenario %s", mode)
    sandbox_report()
    if mode == "config":
        log.error("invalid config (stub)")
        return 78
    notifier = Notifier()
    log.info("watchdog interval %s s", notifier.watchdog_interval_s())
    gate = HealthGate(notifier, max_frame_age_s=2.0, max_inference_age_s=5.0)
    notifier.ready()
    notifier.status("running")
    started = time.monotonic()
    while True:
        time.sleep(0.1)
        if mode == "healthy" or time.monotonic() - started < 4:
            gate.frame_seen()
            gate.inference_ok()
        gate.iteration_done()


if __name__ == "__main__":
    sys.exit(main())
