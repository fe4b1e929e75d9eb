"""``python -m daemon.web [--config PATH]``: ``avid web`` without the door's imports (what the unit runs).

``avid web`` goes through the command table, which loads numpy, OpenCV and the models' code for
the door's commands; the page needs none of them, and on a Pi the difference is resident memory.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from daemon.config import exit_status, load_config
from daemon.logs import setup_logging
from daemon.web import serve

log = logging.getLogger("daemon.web")


def main(argv: list[str] | None = None) -> int:
    """Serve the web page for the config at ``--config``; exit status as ``avid web``."""
    parser = argparse.ArgumentParser(prog="python -m daemon.web", description="the installer's web page")
    parser.add_argument("--config", type=Path, default=Path("/etc/avid/config.yaml"), metavar="PATH")
    args = parser.parse_args(argv)
    setup_logging("info")

    def run() -> int:
        config = load_config(args.config)
        setup_logging(config.logging.level)
        return serve(config, args)
    return exit_status(run, log)


if __name__ == "__main__":
    sys.exit(main())
