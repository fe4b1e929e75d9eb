"""The sub-commands behind ``avid``; each takes the validated config and the parsed arguments.

Handlers only: the door is assembled in :mod:`daemon.service.door`, enrolment lives in
:mod:`daemon.service.enrolment`, the decision on files in :mod:`daemon.service.verify`.
"""

from __future__ import annotations

import json
import logging
import sys

import numpy as np

from daemon.config import Config
from daemon.control.cli_bridge import via_daemon
from daemon.errors import EnrolmentError
from daemon.service import door
from daemon import web as web_page
from daemon.state.templates import Person

log = logging.getLogger(__name__)


def print_json(obj) -> None:
    """Print one JSON object on a line (the form scripts read)."""
    print(json.dumps(obj, sort_keys=True))


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _fingerprint(config: Config) -> str:
    from daemon.inference.tflite import DEFAULT_MODELS_DIR, models_fingerprint, read_manifest

    return models_fingerprint(read_manifest(config.models.directory or DEFAULT_MODELS_DIR))


def enroll(config: Config, args) -> int:
    if (routed := via_daemon(config, args)) is not None:
        return routed
    from daemon.service.enrolment import enrol_from_files, live_samples, voice_enrolment_advice

    pipeline = door.make_pipeline(config)
    store = door.open_store(config, pipeline.models_fingerprint, create_key=True)
    if args.live:
        faces, voices = live_samples(config, pipeline, args.samples)
        if not faces or not voices:
            raise EnrolmentError("no usable live sample was taken")
        face, voice = np.array(faces, np.float32), np.array(voices, np.float32)
    else:
        face, voice = enrol_from_files(pipeline, args.face, args.voice, config.attempt.min_speech_seconds)
    digits = enrol_digits(config, args)
    store.save(Person(args.name, face, voice, digits=digits), replace=args.replace)
    print(f"enrolled {args.name}: {len(face)} face sample(s), {len(voice)} voice sample(s), "
          f"{len(digits)} digit recording(s)")
    advice = voice_enrolment_advice(len(voice))
    if advice:
        print(advice)
    return 0


def enrol_digits(config: Config, args) -> dict:
    """The challenge's digit recordings of ``avid enroll --digits/--live-digits`` (empty without)."""
    from daemon.challenge.enrol import (NO_DIGITS_WARNING, digits_from_files, digits_live, live_digits_wanted,
                                        microphone_recorder)

    if live_digits_wanted(config, args):
        return digits_live(microphone_recorder(config)).to_arrays()
    if getattr(args, "digits", None):
        return digits_from_files(args.digits).to_arrays()
    if config.prompt.challenge_on:
        print(NO_DIGITS_WARNING, file=sys.stderr)
    return {}


def delete(config: Config, args) -> int:
    if (routed := via_daemon(config, args)) is not None:
        return routed
    store = door.open_store(config, _fingerprint(config))
    if not store.delete(args.name):
        print(f"{args.name} is not enrolled", file=sys.stderr)
        return 1
    print(f"deleted {args.name} (record and key removed)")
    return 0


def list_people(config: Config, args) -> int:
    if (routed := via_daemon(config, args)) is not None:
        return routed
    store = door.open_store(config, _fingerprint(config))
    people = store.load()
    for name, person in sorted(people.items()):
        print(f"{name}\tface samples: {len(person.face)}\tvoice samples: {len(person.voice)}"
              f"\tdigit recordings: {len(person.digits)}")
    for refused in store.refused:
        print(f"(record {refused.id} unusable: {refused.reason})")
    if not people and not store.refused:
        print("nobody is enrolled")
    return 0


def verify(config: Config, args) -> int:
    from daemon.service.verify import verify_files

    decision, evidence = verify_files(config, args.face, args.voice)
    if args.json:
        print_json({"decision": decision.decision, "person": decision.person, "reason": decision.reason,
                    "scores": decision.scores(), "runner_up": decision.runner_up,
                    "liveness": None, "liveness_note": "not checked: files are not a live capture",
                    "speech_seconds": round(evidence.speech_seconds, 2)})
    else:
        print(f"decision={decision.decision} person={decision.person or '-'} reason={decision.reason} "
              f"face={_fmt(decision.face)} voice={_fmt(decision.voice)} fused={_fmt(decision.fused)} "
              "(liveness not checked on files)")
    return 0


def run(config: Config, args) -> int:
    from daemon.service.run import run_daemon

    return run_daemon(config)


def demo(config: Config, args) -> int:
    from daemon.demo import run_demo

    return run_demo(fast=getattr(args, "fast", False))


def calibrate(config: Config, args) -> int:
    from daemon.offline.calibrate import calibrate as fit, operating_point_lines, save_calibration

    pipeline = door.make_pipeline(config)
    # Embeddings are cached per file (keyed by file and model hashes), so a re-run after adding
    # data only embeds the new files.
    result = fit(pipeline, args.data_dir, target_fmr=args.target_fmr, seed=args.seed,
                 cache_dir=config.state_dir / "calibration_cache")
    save_calibration(config.calibration_path, result)
    print(f"calibration written to {config.calibration_path}")
    for line in operating_point_lines(result):
        print(line)
    return 0


def lockout(config: Config, args) -> int:
    if (routed := via_daemon(config, args)) is not None:
        return routed
    state = door.open_lockout(config)
    if args.clear:
        state.clear()
        print("lockout cleared")
    else:
        print(f"consecutive failures: {state.failures}; locked out for {state.remaining():.0f} s more"
              if state.locked_out else f"consecutive failures: {state.failures}; not locked out")
    return 0


def status(config: Config, args) -> int:
    """The running door's status; exit status 3 (and ``"running": false``) when none runs."""
    if (routed := via_daemon(config, args)) is not None:
        return routed
    if args.json:
        print_json({"running": False})
    else:
        print(f"avid is not running (nothing listens on {config.control.socket_path})")
    return 3


def self_test(config: Config, args) -> int:
    from daemon.inference import selftest

    return selftest.command(config, args)


def relock(config: Config, args) -> int:
    from daemon.service.relock import relock_command

    return relock_command(config, args)


#: Sub-command name → function.
COMMANDS = {"status": status, "relock": relock, "self-test": self_test, "run": run, "demo": demo, "enroll": enroll, "delete": delete, "list": list_people,
            "verify": verify, "calibrate": calibrate, "lockout": lockout}
COMMANDS["web"] = web_page.serve  # avid web: daemon/web/
COMMANDS["web-passwd"] = web_page.passwd
