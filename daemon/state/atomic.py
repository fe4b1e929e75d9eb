"""Crash-safe file writes: a reader always sees the old content or the new, never a mix.

temp file in the same folder → write → fsync → rename over the target → fsync the folder.
Files are created with mode 0600: they hold biometric templates and security counters.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_durably(*paths: str | os.PathLike) -> None:
    """Unlink files (missing ones are fine) and make the removal durable."""
    parents = set()
    for path in map(Path, paths):
        try:
            path.unlink()
            parents.add(path.parent)
        except FileNotFoundError:
            pass
    for parent in parents:
        fsync_dir(parent)


def remove_stale_temporaries(directory: Path) -> None:
    """Delete temp files left by a write that was killed before its rename."""
    if directory.is_dir():
        for tmp in directory.glob(".*.tmp*"):
            tmp.unlink(missing_ok=True)
