"""A zygote for many short-lived ``avid`` processes: import avid once, then fork one process per command.

The signal fuzz starts one daemon per example. A fresh interpreter spends about 0.45 s of CPU
importing numpy, OpenCV, the TFLite runtime and avid before avid's own code runs; that cost has
nothing to do with what the fuzz tests (what avid does when a signal arrives), and it bounds how
many examples a long run can afford. This process imports those modules once, while it still has
a single thread, and forks a child for every command it is sent. The child runs the unchanged
``avid`` entry point (through tests/gpio_line.py, for the GPIO line that outlives its process)
and ends like the real program: ``sys.exit(status)`` and the interpreter's own shutdown, where
one of the fuzz's finds was.

What the fork leaves out: the imports themselves (a signal that arrives while Python imports
modules). The fuzz keeps a share of examples that start a whole new interpreter for that moment.

Protocol, one JSON object per line::

    -> {"argv": [...], "env": {...}, "stderr": "/path/file"}
    <- {"pid": 1234}
    <- {"pid": 1234, "returncode": 0}       (negative: killed by that signal, as subprocess says)

One command at a time; the zygote ends when its input closes.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# What `avid run` and `avid relock` import on their way, so that a child starts at avid's code.
import cv2  # noqa: E402,F401
import numpy  # noqa: E402,F401
from gpiozero.pins.mock import MockFactory  # noqa: E402,F401

import gpio_line  # noqa: E402
from daemon import cli, commands  # noqa: E402,F401
from daemon.actuate import door_io, lock  # noqa: E402,F401
from daemon.control import server  # noqa: E402,F401
from daemon.inference import selftest, tflite  # noqa: E402,F401
from daemon.service import admin, door, loop, relock, run, sdnotify, signals, watchdog  # noqa: E402,F401


def _child(request: dict, err: int) -> None:
    """In the forked child: become ``avid <argv>`` and never return to the zygote's loop."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(err, 2)
    os.close(null)
    os.close(err)
    os.environ.update(request.get("env", {}))
    for name in request.get("unset", []):
        os.environ.pop(name, None)
    # SystemExit unwinds to the top of this script: the interpreter then shuts down as avid's does.
    sys.exit(gpio_line.main(request["argv"]))


def serve() -> None:
    if threading.active_count() != 1:
        raise SystemExit("zygote: a thread was started while importing; forking now would be unsafe")
    for line in sys.stdin:
        request = json.loads(line)
        # Opened before the fork, as a shell opens a redirection before exec: a signal that kills
        # the child at once still leaves the (empty) file the test reads.
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        pid = os.fork()
        if pid == 0:
            _child(request, err)
        os.close(err)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "returncode": -os.WTERMSIG(status) if os.WIFSIGNALED(status)
                          else os.WEXITSTATUS(status)}), flush=True)


if __name__ == "__main__":
    serve()
