"""The CLI side of the control socket: ``avid status/enroll/delete/list/lockout`` against the
running daemon.

Each function takes the parsed arguments and a :class:`~daemon.control.client.ControlClient`,
prints what the offline command prints, and returns the exit status. :func:`via_daemon` is the
routing: it runs the command through the daemon when one listens, and returns None otherwise (the
caller then works on the state directory).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from daemon.control.client import ControlClient, connect_if_running
from daemon.control.protocol import (
    MAX_DIGIT_FILE_BYTES, MAX_DIGIT_TAKES, MAX_FILE_BYTES, MAX_FILES, MAX_PAYLOAD_BYTES,
)
from daemon.errors import EnrolmentError

log = logging.getLogger(__name__)


def _print_json(obj) -> None:
    print(json.dumps(obj, sort_keys=True))


def status(args, client: ControlClient, config) -> int:
    """``avid status [--json]``: the running door's state."""
    state = client.status()
    if getattr(args, "json", False):
        _print_json({"running": True, **state})
        return 0
    lockout = state.get("lockout") or {}
    devices = state.get("devices") or {}
    print(f"avid is running: door {state.get('lock', '?')}"
          + (" (decisions suspended: enrolment in progress)" if state.get("suspended") else ""))
    print(f"enrolled: {state.get('enrolled', '?')}")
    print("lockout: " + (f"locked out for {lockout.get('remaining_seconds', 0):.0f} s more"
                         if lockout.get("locked_out") else "not locked out")
          + f" ({lockout.get('consecutive_failures', 0)} consecutive failure(s))")
    print("devices: " + (", ".join(f"{name} {health}" for name, health in sorted(devices.items())) or "-"))
    if state.get("door") not in (None, "unknown"):
        print(f"door contact: {state['door']}")
    if state.get("alarms"):
        print(f"alarms: {', '.join(state['alarms'])}")
    print(f"models: {state.get('models', '?')}")
    for decision in state.get("last_decisions") or []:
        print("  " + " ".join(f"{key}={'-' if value is None else value}" for key, value in decision.items()))
    return 0


def read_enrolment_files(paths: list[Path], kind: str, max_files: int = MAX_FILES,
                         max_bytes: int = MAX_FILE_BYTES) -> list[bytes]:
    """Read the files named on the command line, within the protocol's size limits.

    :raises EnrolmentError: naming every file that is missing, unreadable or too large
    """
    if len(paths) > max_files:
        raise EnrolmentError(f"at most {max_files} {kind} files per enrolment")
    contents, problems = [], []
    for path in paths:
        try:
            size = Path(path).stat().st_size
            if size > max_bytes:
                problems.append(f"{path}: {size} bytes, over the limit of {max_bytes}")
                continue
            contents.append(Path(path).read_bytes())
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
    if problems:
        raise EnrolmentError.refused(problems)
    return contents


def read_digit_files(paths: list[Path]) -> dict[str, list[bytes]]:
    """The ``--digits`` recordings (files, or folders of ``*.wav`` named after their digit), read
    and grouped by digit within the protocol's limits.

    :raises EnrolmentError: naming every misnamed, unreadable or oversized file and any digit with
        more recordings than the door takes
    """
    from daemon.challenge.enrol import digit_files

    found, problems = digit_files(paths)
    by_digit: dict[str, list[Path]] = {}
    for digit, path in found:
        by_digit.setdefault(digit, []).append(path)
    digits = {}
    for digit, files in sorted(by_digit.items()):
        try:
            digits[digit] = read_enrolment_files(files, f"digit {digit}", MAX_DIGIT_TAKES, MAX_DIGIT_FILE_BYTES)
        except EnrolmentError as exc:
            problems += exc.problems
    if problems:
        raise EnrolmentError.refused(problems, "digit enrolment")
    return digits


def enroll(args, client: ControlClient, config) -> int:
    """``avid enroll NAME (--face IMG... --voice WAV... | --live [--samples N]) [--digits WAV/DIR...
    | --live-digits] [--replace]``, through the running door."""
    from daemon.challenge.enrol import NO_DIGITS_WARNING, live_digits_wanted
    from daemon.service.enrolment import voice_enrolment_advice

    live_digits = live_digits_wanted(config, args)
    if live_digits and not args.live:
        # The running door holds the microphone: its live capture is one guided session.
        raise EnrolmentError("with the door running, --live-digits goes with --live (the door asks for "
                             "the digits after the sentences); or give recordings with --digits")
    if args.live:
        def show(event: dict) -> None:
            step = f"[{event['step']}/{event['of']}] " if "step" in event and "of" in event else ""
            print(f"{step}{event.get('prompt', '')}", flush=True)

        result = client.enrol_live(args.name, args.samples, args.replace, on_progress=show,
                                   live_digits=live_digits)
    else:
        faces = read_enrolment_files(args.face, "face")
        voices = read_enrolment_files(args.voice, "voice")
        digits = read_digit_files(args.digits) if getattr(args, "digits", None) else {}
        total = sum(map(len, faces + voices)) + sum(len(d) for takes in digits.values() for d in takes)
        if total > MAX_PAYLOAD_BYTES:
            raise EnrolmentError(f"enrolment files over {MAX_PAYLOAD_BYTES} bytes in all")
        result = client.enrol_files(args.name, faces, voices, args.replace, digits=digits)
    recordings = int(result.get("digit_recordings", 0))
    print(f"enrolled {result['name']}: {result['face_samples']} face sample(s), "
          f"{result['voice_samples']} voice sample(s), {recordings} digit recording(s)")
    advice = voice_enrolment_advice(int(result["voice_samples"]))
    if advice:
        print(advice)
    if not recordings and config.prompt.challenge_on:
        print(NO_DIGITS_WARNING, file=sys.stderr)
    return 0


def delete(args, client: ControlClient, config) -> int:
    """``avid delete NAME``."""
    if not client.delete(args.name):
        print(f"{args.name} is not enrolled", file=sys.stderr)
        return 1
    print(f"deleted {args.name} (record and key removed)")
    return 0


def list_people(args, client: ControlClient, config) -> int:
    """``avid list``."""
    people = client.list_people()
    for person in people:
        print(f"{person['name']}\tface samples: {person['face_samples']}\tvoice samples: {person['voice_samples']}"
              f"\tdigit recordings: {person.get('digit_recordings', 0)}")
    if not people:
        print("nobody is enrolled")
    return 0


def lockout(args, client: ControlClient, config) -> int:
    """``avid lockout [--clear]``."""
    if args.clear:
        client.clear_lockout()
        print("lockout cleared")
        return 0
    state = client.lockout()
    failures = state["consecutive_failures"]
    print(f"consecutive failures: {failures}; locked out for {state['remaining_seconds']:.0f} s more"
          if state["locked_out"] else f"consecutive failures: {failures}; not locked out")
    return 0


#: Sub-command name → function, for the commands the daemon can answer.
COMMANDS = {"status": status, "enroll": enroll, "delete": delete, "list": list_people, "lockout": lockout}


def via_daemon(config, args) -> int | None:
    """Run ``args.command`` through the running daemon; None when no daemon listens.

    :raises ControlError: the daemon answered with an error (the CLI prints it and exits 1)
    """
    if not config.control.enabled:
        return None
    client = connect_if_running(config.control.socket_path)
    if client is None:
        return None
    with client:
        log.debug("talking to the running daemon on %s", config.control.socket_path)
        return COMMANDS[args.command](args, client, config)
