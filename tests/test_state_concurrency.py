"""Parallel enrolments: every one that reports success is enrolled, none removes another's files.

A helper process (the product interpreter) imports the store once and, per round, forks a dozen
workers that wait on one pipe and then all enrol at the same instant, as a dozen ``avid enroll``
commands started together would (the store is the part they share; the models only produce the
embeddings). In each round four workers also race for the same name without ``--replace``: exactly
one of them may win. The first round starts on an empty directory, so the workers also race to
create the device key.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from daemon.state.store import open_store
from daemon.state.statelock import StateLock
from daemon.errors import StateBusy

import pytest

WORKERS, ROUNDS, SAME_NAME = 12, 4, 4
MODELS = "concurrency-models"
ROOT = Path(__file__).resolve().parent.parent

HELPER = r"""
import os, sys
import numpy as np
from pathlib import Path
from daemon.state.store import open_store
from daemon.state.templates import Person

state, workers, rounds, same = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for r in range(rounds):
    read_end, write_end = os.pipe()
    children = []
    for i in range(workers):
        pid = os.fork()
        if pid == 0:
            os.close(write_end)
            os.read(read_end, 1)  # the starting gun
            name = f"shared{r}" if i < same else f"p{r}-{i}"
            try:
                store = open_store(state, None, sys.argv[5], create_key=True)
                saved = store.save(Person(name, np.full((1, 128), i, np.float32),
                                          np.full((1, 256), r, np.float32)))
                line = f"enrolled {name} {saved.id}"
            except Exception as exc:
                line = " ".join(f"failed {name} {type(exc).__name__}: {exc}".split())
            os.write(1, (line + "\n").encode())  # one write: lines from workers never interleave
            os._exit(0)
        children.append(pid)
    os.close(read_end)
    os.write(write_end, b"x" * workers)
    os.close(write_end)
    for pid in children:
        os.waitpid(pid, 0)
"""


def test_parallel_enrolments_all_land(tmp_path):
    state = tmp_path / "state"
    result = subprocess.run([sys.executable, "-c", HELPER, str(state), str(WORKERS), str(ROUNDS),
                             str(SAME_NAME), MODELS], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [re.fullmatch(r"(enrolled|failed) (\S+) (.+)", line) for line in result.stdout.splitlines()]
    assert len(lines) == WORKERS * ROUNDS and all(lines), result.stdout + result.stderr
    enrolled = {m[2]: m[3] for m in lines if m[1] == "enrolled"}
    failures = [(m[2], m[3]) for m in lines if m[1] == "failed"]
    # The only acceptable failure: losing the race for a name someone else just enrolled.
    assert all(name.startswith("shared") and "already enrolled" in rest for name, rest in failures), failures
    for r in range(ROUNDS):
        assert f"shared{r}" in enrolled
    assert len(enrolled) == ROUNDS * (WORKERS - SAME_NAME + 1)

    store = open_store(state, None, MODELS)
    people = store.load()
    assert store.refused == []
    assert {name: person.id for name, person in people.items()} == enrolled
    leftovers = [n for n in os.listdir(state / "templates") if not n.endswith((".tpl", ".key"))]
    assert leftovers == []
    assert len(os.listdir(state / "templates")) == 2 * len(enrolled)


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_writer_waits_a_bounded_time_for_the_lock(tmp_path):
    holder = StateLock(tmp_path, exclusive=False)
    holder.acquire()
    clock = _Clock()
    started = time.monotonic()
    with pytest.raises(StateBusy, match="busy"):
        StateLock(tmp_path, timeout_s=5, clock=clock, sleep=clock.sleep).acquire()
    assert 5 <= clock.now < 5.1 and time.monotonic() - started < 5
    with StateLock(tmp_path, exclusive=False, timeout_s=0):
        pass  # readers share
    holder.release()
    holder.release()  # idempotent
    with StateLock(tmp_path, timeout_s=0):
        pass
