"""Commissioning at an installed door: a few genuine attempts per resident, with the door's own
camera, microphone and prompt device, and the site's real false-reject and challenge-failure rates.

Run on the door (the service stopped: the tool opens the devices itself)::

    sudo systemctl stop avid
    sudo systemd-run --pty --wait --collect --quiet -p User=avid \\
        -p SupplementaryGroups="video audio" -p LoadCredential=avid-key:/etc/avid/device.key \\
        -E AVID_STATE_DIR=/var/lib/avid /opt/avid/venv/bin/python -m daemon.challenge.commission \\
        --config /etc/avid/config.yaml --attempts 5 [--person NAME ...] [--json report.json]
    sudo systemctl start avid

(as the service gets its device key; docs/install.md, step 3).

For each resident in turn it asks for ``--attempts`` attempts ("NAME: step up, look at the camera and
answer the prompts"), decides each with the door's own decision path, and reports per resident and
overall: the false-reject rate (not let in as themselves), the challenge-failure rate (refused by
the challenge, the part a site changes most: prompt device, room noise, people's answering speed),
each with its 95 % Clopper-Pearson interval and the number of attempts behind it, and the reasons.
With five attempts for each of four residents the interval is wide (0 of 20 is 0-17 %): more
attempts give a tighter figure.

It keeps no biometric data after it finishes: the relay is never driven (a mock pin factory), the
lockout counter is a temporary file (commissioning failures do not lock residents out), nothing is
enrolled or logged but decisions, scores and reasons, and the optional JSON report holds counts and
reasons only.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

# Installed with the package (tools/ is not on the Pi); offline statistics, never loaded by the door.
from daemon.offline.metrics import clopper_pearson

log = logging.getLogger("commission")

#: How long one attempt may take before the installer is asked to go again (seconds).
ATTEMPT_WAIT_S = 30.0


def rate(errors: int, trials: int) -> dict:
    """``errors`` of ``trials`` as a rate with its 95 % Clopper-Pearson interval."""
    if trials == 0:
        return {"rate": None, "ci95": None, "errors": 0, "trials": 0}
    low, high = clopper_pearson(errors, trials)
    return {"rate": errors / trials, "ci95": [low, high], "errors": errors, "trials": trials}


def summarise(outcomes: dict[str, list[dict]]) -> dict:
    """The report from ``{person: [{"accepted_as", "reason", "challenge", "latency_ms"}, ...]}``."""
    def section(rows: list[dict], person: str | None) -> dict:
        rejected = sum(1 for r in rows if r["accepted_as"] != (person or r["person"]))
        challenged = sum(1 for r in rows if r["reason"] == "challenge_failed")
        latencies = sorted(r["latency_ms"] for r in rows if r["latency_ms"] is not None)
        return {"false_reject": rate(rejected, len(rows)),
                "challenge_failure": rate(challenged, len(rows)),
                "reasons": dict(Counter(r["reason"] for r in rows)),
                "challenge_reasons": dict(Counter(r["challenge"] for r in rows if r["challenge"])),
                "latency_ms_p50": latencies[len(latencies) // 2] if latencies else None}
    everyone = [dict(r, person=p) for p, rows in outcomes.items() for r in rows]
    return {"overall": section(everyone, None),
            "people": {p: section(rows, p) for p, rows in outcomes.items()}}


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def format_report(report: dict) -> str:
    """The report as the installer reads it."""
    lines = []
    for name, section in [("ALL RESIDENTS", report["overall"]), *report["people"].items()]:
        fr, cf = section["false_reject"], section["challenge_failure"]
        lines.append(f"{name}: false rejects {fr['errors']}/{fr['trials']} = {_pct(fr['rate'])} "
                     f"(95 % CI {_pct(fr['ci95'][0] if fr['ci95'] else None)}-"
                     f"{_pct(fr['ci95'][1] if fr['ci95'] else None)}); challenge failures "
                     f"{cf['errors']}/{cf['trials']} = {_pct(cf['rate'])} (95 % CI "
                     f"{_pct(cf['ci95'][0] if cf['ci95'] else None)}-"
                     f"{_pct(cf['ci95'][1] if cf['ci95'] else None)}); reasons {section['reasons']}"
                     + (f"; challenge {section['challenge_reasons']}" if section["challenge_reasons"] else ""))
    return "\n".join(lines)


def commission(config, people: list[str] | None, attempts: int, ask=input, say=print,
               sources=None, wait_s: float = ATTEMPT_WAIT_S, pipeline=None, rng=None) -> dict:
    """Guide ``attempts`` attempts for each of ``people`` (default: everyone enrolled) at the door
    described by ``config`` and return the report (:func:`summarise`).

    ``ask(text)`` waits for the installer (Enter); ``sources`` overrides the configured devices
    (``(open_frames, open_audio)``; tests replay recordings), ``pipeline`` reuses loaded models and
    ``rng`` replaces the challenge's :mod:`secrets` (tests only).
    """
    from gpiozero.pins.mock import MockFactory

    from daemon.actuate.lock import open_lock
    from daemon.decide.lockout import Lockout
    from daemon.service.door import build_door, source_factories
    from daemon.service.loop import CaptureLoop

    door = build_door(config, pipeline=pipeline)
    if rng is not None and door.challenge is not None:
        door.challenge._rng = rng
    enrolled = sorted(p.name for p in door.people())
    people = people or enrolled
    unknown = [p for p in people if p not in enrolled]
    if unknown:
        raise SystemExit(f"not enrolled: {', '.join(unknown)}")
    if door.challenge is None:
        say("warning: no prompt device (prompt.backend: none): the door has no challenge, so the "
            "challenge-failure rate is not measured and replayed video is not stopped")
    events: queue.Queue = queue.Queue()
    outcomes: dict[str, list[dict]] = {p: [] for p in people}
    factory = MockFactory()  # commissioning never drives the relay
    with tempfile.TemporaryDirectory(prefix="avid-commission-") as scratch:
        door.lockout = Lockout(Path(scratch) / "lockout.json", door.lockout.policy)
        lock = open_lock(config.lock.model_copy(update={"pin_factory": "mock"}), pin_factory=factory)
        open_frames, open_audio = sources or source_factories(config)
        loop = CaptureLoop(door, lock, open_frames, open_audio, on_decision=events.put)
        runner = threading.Thread(target=loop.run, name="avid-commission-loop", daemon=True)
        runner.start()
        try:
            for person in people:
                n = 0
                while n < attempts:
                    ask(f"\n{person}: attempt {n + 1}/{attempts}. Step away from the door, then press "
                        "Enter, step up, look at the camera and answer the prompts.")
                    try:
                        event = events.get(timeout=wait_s)
                    except queue.Empty:
                        say("  no attempt seen (no face or speech): again")
                        continue
                    d = event.decision
                    outcomes[person].append({
                        "accepted_as": d.person if d.accepted else None, "reason": d.reason,
                        "challenge": d.details.get("challenge") if d.reason == "challenge_failed" else None,
                        "latency_ms": event.latency_ms})
                    verdict = "let in" if d.accepted and d.person == person else (
                        f"let in as {d.person}!" if d.accepted else f"refused ({d.reason})")
                    say(f"  {verdict}")
                    n += 1
                    # The cooldown after a decision, so that the next attempt starts fresh.
                    time.sleep(config.attempt.cooldown_seconds)
        finally:
            loop.stop()
            runner.join(timeout=5.0)
            lock.close()
            factory.close()
    return summarise(outcomes)


def main(argv=None) -> int:
    """Command line: see the module doc."""
    from daemon.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("/etc/avid/config.yaml"))
    parser.add_argument("--attempts", type=int, default=5, help="attempts per resident")
    parser.add_argument("--person", nargs="+", help="residents to commission (default: everyone)")
    parser.add_argument("--json", type=Path, help="also write the report (counts and reasons only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report = commission(load_config(args.config), args.person, args.attempts)
    print("\n" + format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
