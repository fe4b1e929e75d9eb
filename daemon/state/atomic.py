"""Crash-safe file writes: a reader always sees the old content or the new, never a mix.

temp file in the same folder → write → fsync → rename over the target → fsync the folder.
Files are created with mode 0600: they hold biometric templates and security counters. A temp file
is named after its writer (``.<name>.tmp<pid>.<random>``) and removed when the write fails, so
clean-up never has to guess whose it is.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

#: ``.<name>.tmp<pid>.<random>`` (and ``.<name>.tmp<pid>`` from avid before 2026-12).
TEMP_PATTERN = re.compile(r"\..+\.tmp(?P<pid>[0-9]{1,10})(?:\.[0-9a-f]{8,32})?")
#: A temp file older than this is stale even if its pid is in use again: no write takes an hour.
STALE_AFTER_S = 3600.0


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dirs(directory: str | os.PathLike) -> Path:
    """Create ``directory`` and any missing parents with mode 0700 (``mkdir -p -m 0700``)."""
    directory = Path(directory)
    missing = []
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        try:
            candidate.mkdir(mode=0o700)
        except FileExistsError:
            pass
    return directory


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}.{secrets.token_hex(4)}")


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    tmp = _temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        # A full disk or an I/O error: the half-written temp file must not stay behind.
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_atomic(path: str | os.PathLike, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    Raises the ``OSError`` of the step that failed; no temp file is left behind in that case.
    """
    path = Path(path)
    make_private_dirs(path.parent)
    tmp = _write_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def create_exclusive(path: str | os.PathLike, data: bytes, mode: int = 0o600) -> None:
    """Write ``path`` atomically and durably, failing with ``FileExistsError`` if it exists.

    The complete file appears at once (``link`` of a synced temp file), and an existing file is
    never replaced, even by a concurrent writer.
    """
    path = Path(path)
    make_private_dirs(path.parent)
    tmp = _write_temp(path, data, mode)
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or a value we cannot ask about): not provably dead
    return True


def is_stale_temporary(path: Path, now: float | None = None) -> bool:
    """True when ``path`` is a temp file whose writer is provably gone.

    Its writer is gone when its pid names no running process, or when the file is older than
    :data:`STALE_AFTER_S` (the pid was reused). Our own temp files count as in flight.
    """
    match = TEMP_PATTERN.fullmatch(path.name)
    if match is None:
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return False
    if not _pid_alive(pid):
        return True
    try:
        age = (time.time() if now is None else now) - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    return age > STALE_AFTER_S


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete temp files left by writes that were killed before their rename; return them.

    Only provably stale ones go (see :func:`is_stale_temporary`): another process's write in
    flight is left alone. Callers hold the state lock, which makes "in flight" rare to begin with.
    """
    removed = []
    try:
        candidates = [directory / name for name in os.listdir(directory)]
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for tmp in candidates:
        if is_stale_temporary(tmp):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
