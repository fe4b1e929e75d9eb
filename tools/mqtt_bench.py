"""What MQTT costs avid: memory of paho and of ``avid run`` with MQTT on, and how long a publish blocks.

    .venv/bin/python tools/mqtt_bench.py [--runs 2] [--out out/mqtt_bench.json]

* ``paho_import_rss_mb``: resident memory added by importing paho and starting its network thread;
* ``avid_run.peak_rss_mb.{off,on}``: VmHWM of ``avid run`` (real models, a bundled clip replayed in
  real time, mock relay) without and with MQTT to a local Mosquitto (Unix socket), the median of
  ``--runs`` alternating runs each (tools/bench.py's method and environment);
* ``publish_us.{broker_up,broker_down,black_hole}``: p50/p99/max time one ``on_decision`` call
  takes on the caller's thread, with the broker up, with no broker, and with a TCP peer that
  accepts the connection and then never answers. Needs Debian's ``mosquitto``.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from bench import run_child, unit_environment  # noqa: E402

CLIP = REPO / "daemon" / "demo_data" / "s1_bbaf4p"


def start_broker(work: Path) -> tuple[subprocess.Popen, Path]:
    sock = work / "mosquitto.sock"
    conf = work / "mosquitto.conf"
    lines = ["allow_anonymous true", "persistence false", f"listener 0 {sock}"]
    if os.geteuid() == 0:
        lines.insert(0, f"user {pwd.getpwuid(os.getuid()).pw_name}")
    conf.write_text("\n".join(lines) + "\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not sock.exists():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("mosquitto did not start")
        time.sleep(0.05)
    return process, sock


def vm_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def paho_import_rss() -> float:
    code = ("import sys; sys.path.insert(0, 'tools'); from mqtt_bench import vm_rss_kb; before = vm_rss_kb(); "
            "import paho.mqtt.client as p; from paho.mqtt.enums import CallbackAPIVersion as V; "
            "c = p.Client(V.VERSION2); c.loop_start(); import time; time.sleep(0.2); "
            "print(vm_rss_kb() - before); c.loop_stop()")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024


def fake_event(i: int):
    decision = SimpleNamespace(accepted=i % 2 == 0, reason="match" if i % 2 == 0 else "no_match",
                               person="alice", face=12.3, voice=8.1, fused=15.2, runner_up=None, liveness=0.5)
    return SimpleNamespace(attempt_id=i, decision=decision, latency_ms=9.5, end_reason="speech_end",
                           speech_seconds=2.5)


def publish_times(url: str, calls: int = 2000) -> dict:
    from daemon.config import Config
    from daemon.publish.mqtt import MqttBridge

    config = Config.model_validate({"mqtt": {"url": url, "door_id": "bench"}, "lock": {"pin_factory": "mock"}})
    bridge = MqttBridge(config.mqtt, config.lock).start()
    time.sleep(1.0)  # connected (or failing) by now
    times = []
    try:
        for i in range(calls):
            started = time.perf_counter()
            bridge.on_decision(fake_event(i))
            times.append((time.perf_counter() - started) * 1e6)
            time.sleep(0.0005)
    finally:
        bridge.close()
    times.sort()
    return {"p50": round(statistics.median(times), 1), "p99": round(times[int(0.99 * len(times))], 1),
            "max": round(times[-1], 1), "calls": calls}


def black_hole() -> tuple[socket.socket, int]:
    """A TCP listener whose backlog accepts the connection and which never reads or answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    return listener, listener.getsockname()[1]


def avid_run_rss(work: Path, mqtt_url: str | None) -> float:
    import yaml

    config = {
        "state": {"directory": str(work / "state")},
        "camera": {"backend": "replay", "path": str(CLIP / "video.mpg"), "fps": 15.0, "realtime": True},
        "microphone": {"backend": "replay", "paths": [str(CLIP / "audio_16k.wav")], "realtime": True,
                       "gap_seconds": 1.0},
        "lock": {"pin_factory": "mock", "unlock_seconds": 0.5},
    }
    if mqtt_url:
        config["mqtt"] = {"url": mqtt_url, "door_id": "bench"}
    path = work / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k not in ("AVID_STATE_DIR", "CREDENTIALS_DIRECTORY",
                                                            "NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.update(unit_environment())
    status, peak = run_child([sys.executable, "-m", "daemon", "run", "--config", str(path)],
                             work / "run.log", cwd=REPO, env=env)
    if status != 0:
        raise RuntimeError((work / "run.log").read_text()[-2000:])
    if mqtt_url and "MQTT: connected" not in (work / "run.log").read_text():
        raise RuntimeError("avid run did not connect to the broker")
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = {}
    with tempfile.TemporaryDirectory(prefix="avid-mqtt-bench-") as tmp:
        work = Path(tmp)
        broker, sock = start_broker(work)
        try:
            result["paho_import_rss_mb"] = round(paho_import_rss(), 1)
            listener, port = black_hole()
            result["publish_us"] = {
                "broker_up": publish_times(f"unix://{sock}"),
                "broker_down": publish_times(f"unix://{work / 'nobody.sock'}"),
                "black_hole": publish_times(f"mqtt://127.0.0.1:{port}"),
            }
            listener.close()
            peaks = {"off": [], "on": []}
            for _ in range(args.runs):
                for mode, url in (("off", None), ("on", f"unix://{sock}")):
                    peaks[mode].append(avid_run_rss(work, url))
            result["avid_run"] = {"peak_rss_mb": {k: round(statistics.median(v), 1) for k, v in peaks.items()},
                                  "runs": {k: [round(p, 1) for p in v] for k, v in peaks.items()}}
        finally:
            broker.terminate()
            broker.wait(timeout=5)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
