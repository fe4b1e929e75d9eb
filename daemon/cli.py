"""The ``avid`` command line (also ``python -m daemon``).

Exit status: 0 on success (for ``verify``: a decision was made, accept or deny), 78 (EX_CONFIG) for
an invalid configuration, 1 for any other error. Every sub-command accepts ``--config PATH``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from daemon.config import (EX_CONFIG, STATE_DIR_ENV, InvalidConfig, check_environment, exit_status, load_config,
                           summary)
from daemon.logs import setup_logging

log = logging.getLogger(__name__)

#: Where the installed service keeps its config; used when --config is not given and it exists.
SYSTEM_CONFIG = Path("/etc/avid/config.yaml")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", type=Path,
                        help=f"config file (default: {SYSTEM_CONFIG} if it exists, else built-in defaults)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeatable)")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less log output (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="avid", description="Audio-visual identity daemon: opens a door for enrolled people "
                                 "who look at the camera and speak.",
        epilog=f"State directory: state.directory in the config, overridden by ${STATE_DIR_ENV}.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run the door daemon (capture loop, decisions, lock)")
    _add_common(p)

    p = sub.add_parser("demo", help="enrol bundled people and replay attempts through the real pipeline")
    _add_common(p)
    p.add_argument("--fast", action="store_true",
                   help="replay as fast as this machine computes, judging time in media time")

    p = sub.add_parser("check-config", help="validate a config file and list every error")
    _add_common(p)
    p.add_argument("path", nargs="?", type=Path, help="config file (same as --config)")

    p = sub.add_parser("self-test", help="check every model against its bundled reference outputs "
                                         "on this CPU and runtime (exit 1: refuse to start)")
    _add_common(p)

    p = sub.add_parser("enroll", help="enrol a person from files or live from the camera and microphone")
    _add_common(p)
    p.add_argument("name", help="the person's name (letters, digits, '.', '_' or '-')")
    p.add_argument("--face", nargs="+", type=Path, default=[], metavar="IMG", help="face image(s)")
    p.add_argument("--voice", nargs="+", type=Path, default=[], metavar="WAV", help="voice clip(s)")
    p.add_argument("--live", action="store_true", help="capture samples from the camera and microphone")
    p.add_argument("--samples", type=int, default=3, help="live samples to take: sentences (default 3)")
    p.add_argument("--replace", action="store_true", help="replace an existing person of that name")
    p.add_argument("--digits", nargs="+", type=Path, default=[], metavar="WAV",
                   help="recordings of the digits 0-9 for the challenge (files or folders, named "
                        "after the digit: 7_1.wav), twice each recommended")
    p.add_argument("--live-digits", action="store_true",
                   help="capture the digits 0-9 twice each from the microphone (the default with --live "
                        "when a prompt device is configured)")

    p = sub.add_parser("delete", help="delete an enrolled person and their key")
    _add_common(p)
    p.add_argument("name")

    p = sub.add_parser("list", help="list enrolled people")
    _add_common(p)

    p = sub.add_parser("verify", help="decide on face image(s) and voice clip(s) as the door would")
    _add_common(p)
    p.add_argument("--face", nargs="+", type=Path, default=[], metavar="IMG", help="face image(s) or a video")
    p.add_argument("--voice", nargs="+", type=Path, default=[], metavar="WAV", help="voice clip(s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("calibrate", help="fit score calibration and the threshold for a target FMR")
    _add_common(p)
    p.add_argument("data_dir", type=Path, help="folder laid out as faces/<source>/<id>/*, voices/<source>/<id>/*.wav")
    p.add_argument("--target-fmr", type=float, default=1e-4, help="false match rate to operate at")
    p.add_argument("--seed", type=int, default=1)

    p = sub.add_parser("status", help="the running door: lock, lockout, people, devices, last decisions")
    _add_common(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("relock", help="de-energise the relay pin and exit (systemd ExecStopPost)")
    _add_common(p)

    p = sub.add_parser("lockout", help="show or clear the failed-attempt lockout")
    _add_common(p)
    p.add_argument("--clear", action="store_true", help="clear the lockout")

    p = sub.add_parser("web", help="serve the installer's web page (a client of the control socket)")
    _add_common(p)
    p = sub.add_parser("web-passwd", help="set a web page user's password (scrypt hash in web.password_file)")
    _add_common(p)
    p.add_argument("user", nargs="?", default="admin", help="user name (default: admin)")
    return parser


def _config_path(args) -> Path | None:
    path = getattr(args, "path", None) or args.config
    if path is None and SYSTEM_CONFIG.exists():
        path = SYSTEM_CONFIG
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``avid`` console script."""
    args = build_parser().parse_args(argv)
    verbosity = args.verbose - args.quiet
    setup_logging("info", verbosity)
    path = _config_path(args)
    try:
        config = load_config(path)
        if args.command == "check-config":
            # What run would fail on later (files, folders), reported with every other problem.
            check_environment(config, str(path or "<built-in defaults>"))
    except InvalidConfig as exc:
        print(exc.report(), file=sys.stderr)
        if args.command == "relock":
            from daemon.service.relock import relock_with_broken_config
            return relock_with_broken_config(path)
        return EX_CONFIG
    setup_logging(config.logging.level, verbosity)
    if args.command == "check-config":
        print(summary(config))
        return 0
    if path is None:
        log.warning("no config file given and %s does not exist: using built-in defaults", SYSTEM_CONFIG)
    from daemon import commands

    return exit_status(lambda: commands.COMMANDS[args.command](config, args), log)
