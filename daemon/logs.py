"""Logging set-up for a terminal or for journald.

Under systemd (``INVOCATION_ID`` or ``JOURNAL_STREAM`` set) lines go to stderr without timestamps,
prefixed with ``<N>`` syslog priorities so that ``journalctl -p warning`` filters them; elsewhere they
are readable lines with the time.
"""

from __future__ import annotations

import logging
import os
import sys

#: syslog priorities (sd-daemon.h) for Python levels.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def under_systemd(environ=os.environ, stream=None) -> bool:
    """True when stderr is connected to journald by systemd.

    ``JOURNAL_STREAM`` (``device:inode``) is checked against stderr itself, as systemd.exec(5)
    advises, so that a command started from a unit's shell but writing to a terminal keeps readable
    lines; ``INVOCATION_ID`` alone counts only when stderr is not a terminal.
    """
    stream = stream if stream is not None else sys.stderr
    journal = environ.get("JOURNAL_STREAM")
    try:
        fd = stream.fileno()
        info = os.fstat(fd)
        is_tty = os.isatty(fd)
    except (OSError, ValueError, AttributeError):
        return bool(journal or environ.get("INVOCATION_ID"))
    if journal:
        return journal == f"{info.st_dev}:{info.st_ino}"
    return bool(environ.get("INVOCATION_ID")) and not is_tty


class JournalFormatter(logging.Formatter):
    """``<N>logger: message`` lines, N being the syslog priority; journald adds the time."""

    def __init__(self):
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in _PRIORITIES if record.levelno >= level), 7)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def setup_logging(level: str | int = "info", verbosity: int = 0, environ=os.environ) -> None:
    """Configure the root logger; ``verbosity`` is the count of -v minus the count of -q."""
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    level = min(logging.CRITICAL, max(logging.DEBUG, level - 10 * verbosity))
    handler = logging.StreamHandler(sys.stderr)
    if under_systemd(environ):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                               "%H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Quiet native-library chatter that says nothing about the door.
    for noisy in ("gpiozero", "PIL", "matplotlib", "absl"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
