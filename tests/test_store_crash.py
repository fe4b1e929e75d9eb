"""SIGKILL during enrolment, hundreds of times: the person is always there, old or new, never corrupt.

A helper process (the product interpreter) imports the store once and forks a worker per round, so
that each round costs a fork instead of an interpreter start. The worker re-enrols one person in a
loop, each time with embeddings filled with a new value ``k``, and reports ``saving k`` / ``saved k``
on its stdout. The test kills the worker with SIGKILL at a random moment (seeded), then opens the
store itself and checks that the person loads, that no record is refused, and that the embeddings
are those of the last completed save or of the save that was interrupted.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from daemon.state.templates import Person, TemplateStore

KILLS = 200
SEED = 20261122
MODELS = "crash-test-models"

HELPER = r"""
import os, sys
import numpy as np
from pathlib import Path
from daemon.state.templates import Person, TemplateStore

state, key = Path(sys.argv[1]), bytes.fromhex(sys.argv[2])
store = TemplateStore(state, key, sys.argv[3])
out = sys.stdout
for line in sys.stdin:
    k = int(line)
    pid = os.fork()
    if pid == 0:
        while True:
            out.write(f"saving {k}\n"); out.flush()
            store.save(Person("alice", np.full((1, 128), k, np.float32),
                              np.full((1, 256), k, np.float32)), replace=True)
            out.write(f"saved {k}\n"); out.flush()
            k += 1
    out.write(f"pid {pid}\n"); out.flush()
    os.waitpid(pid, 0)
    out.write(f"reaped {pid}\n"); out.flush()
"""


def _lines(stream, sink: queue.Queue) -> None:
    for line in stream:
        sink.put(line.split())
    sink.put(None)


def _next(lines: queue.Queue, kind: str) -> list[str]:
    """Skip progress lines up to the next ``kind`` line, returning the progress seen."""
    seen = []
    while True:
        line = lines.get(timeout=30)
        assert line is not None, "helper exited"
        if line[0] == kind:
            return seen + [line]
        seen.append(line)


def test_sigkill_during_re_enrolment_never_loses_the_person(tmp_path):
    rng = random.Random(SEED)
    key = os.urandom(32)
    store = TemplateStore(tmp_path, key, MODELS)
    store.save(Person("alice", np.zeros((1, 128), np.float32), np.zeros((1, 256), np.float32)))
    repo = Path(__file__).resolve().parents[1]
    helper = subprocess.Popen([sys.executable, "-c", HELPER, str(tmp_path), key.hex(), MODELS],
                              cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              bufsize=1)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(helper.stdout, lines), daemon=True).start()
    committed, interrupted_saves, outcomes = 0, 0, {"old": 0, "new": 0}
    try:
        for _ in range(KILLS):
            helper.stdin.write(f"{committed + 1}\n")
            helper.stdin.flush()
            # The worker may report progress before the helper reports its pid.
            *progress, (_, worker) = _next(lines, "pid")
            # Kill points spread over the first few saves, including before the first one starts.
            time.sleep(rng.uniform(0.0, 0.06))
            os.kill(int(worker), signal.SIGKILL)
            progress += _next(lines, "reaped")[:-1]
            saved = [int(k) for kind, k in progress if kind == "saved"]
            started = [int(k) for kind, k in progress if kind == "saving"]
            last_saved = saved[-1] if saved else committed
            in_flight = started[-1] if started and started[-1] > last_saved else None

            people = store.load()
            assert store.refused == [], store.refused
            assert list(people) == ["alice"], f"person missing after a kill (last saved {last_saved})"
            value = people["alice"].face[0, 0]
            assert np.all(people["alice"].face == value) and np.all(people["alice"].voice == value)
            assert value in (last_saved, in_flight), (value, last_saved, in_flight)
            outcomes["new" if in_flight is not None and value == in_flight else "old"] += 1
            interrupted_saves += in_flight is not None
            committed = int(value)
    finally:
        helper.stdin.close()
        helper.wait(timeout=10)
    assert helper.returncode == 0
    # The kills really landed inside saves, and both outcomes of an interrupted save occurred.
    assert interrupted_saves >= KILLS // 2, outcomes
    assert outcomes["new"] > 0 and outcomes["old"] > 0, outcomes
    # Whatever the kills left behind, the next save cleans up to one record and one key.
    store.save(Person("alice", np.ones((1, 128), np.float32), np.ones((1, 256), np.float32)), replace=True)
    folder = tmp_path / "templates"
    assert len(list(folder.glob("*.tpl"))) == 1 and len(list(folder.glob("*.key"))) == 1
    assert not list(folder.glob(".*"))
