"""Screenshots of the web page for docs/web-*.png, against a real `avid run` replaying demo clips.

    .venv/bin/python tools/web_screenshots.py [--report DIR] [--out docs]

Needs Debian's chromium and chromium-driver (tools/bootstrap.sh test). ``--report`` is an
evaluation report folder (tools/evaluate.py --out) shown on the calibration page. Also prints the
resident memory of the `python -m daemon.web` process (what avid-web.service runs).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT, ROOT / "tests"):  # the test harnesses import tools.scenes
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from control_harness import SocketFolder, build_replay, enrolment_files, replay_door_config  # noqa: E402
from daemon.control.client import ControlClient  # noqa: E402
from web_harness import PASSWORD, Browser, WebProcess, env, free_port, set_password  # noqa: E402


def _rss_kb(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, help="evaluation report folder for the calibration page")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="avid-shots-"))
    faces, voices = enrolment_files(tmp)
    video, wav = build_replay(tmp, [3.0, "s1_bbaf4p", 12.0, "s1_bbaf5a", 3.0, "gridX_brbk7n_brbk7n", 30.0])
    port = free_port()
    with SocketFolder() as folder:
        socket_path = folder / "control.sock"
        report = f"\n  report_dir: {args.report.resolve()}" if args.report else ""
        config = replay_door_config(tmp, socket_path, video, wav, f"""lockout:
  max_consecutive_failures: 1
  initial_delay_seconds: 600
web:
  port: {port}
  password_file: {tmp / 'passwords'}
  poll_seconds: 0.5{report}
""")
        set_password(config)
        with WebProcess(config, port, slim=True) as web, Browser() as driver:
            print("avid web idle: RSS %d kB (peak %d kB)" % _rss_kb(web.process.pid))
            driver.get(f"{web.url}/login")
            driver.save_screenshot(str(args.out / "web-login.png"))
            driver.find_element("id", "password").send_keys(PASSWORD)
            driver.find_element("id", "login").click()
            daemon = subprocess.Popen([sys.executable, "-m", "daemon", "run", "--config", str(config)], cwd=ROOT,
                                      env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 60
                while not socket_path.exists() and time.monotonic() < deadline:
                    time.sleep(0.2)
                client = ControlClient(socket_path)
                while len(client.status()["last_decisions"]) < 1 and time.monotonic() < deadline + 30:
                    time.sleep(0.5)
                client.enrol_files("alice", [p.read_bytes() for p in faces], [p.read_bytes() for p in voices])
                while len(client.status()["last_decisions"]) < 3 and time.monotonic() < deadline + 60:
                    time.sleep(0.5)
                time.sleep(1.5)
                print("decisions:", [(d["decision"], d["person"], d["reason"]) for d in client.status()["last_decisions"]])
                for page in ("status", "people", "lockout", "calibration"):
                    if page == "calibration":
                        driver.set_window_size(1100, 1500)  # the DET plot below the figures
                    driver.get(f"{web.url}/" + ("" if page == "status" else page))
                    time.sleep(2.5)
                    driver.save_screenshot(str(args.out / f"web-{page}.png"))
                print("avid web after the pages: RSS %d kB (peak %d kB, scrypt at login: 32 MiB)"
                      % _rss_kb(web.process.pid))
            finally:
                daemon.terminate()
                daemon.wait(timeout=20)
    print(f"screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
