"""Run a command under the system call rules of systemd/avid.service, without systemd.

Applies the unit's ``SystemCallFilter=`` lines (the allow-list minus the ``~`` groups; everything
else fails with EPERM, as ``SystemCallErrorNumber=EPERM`` says) and, when the unit sets it,
``MemoryDenyWriteExecute=yes`` (no W+X ``mmap``, no ``mprotect``/``pkey_mprotect`` adding
PROT_EXEC, no ``shmat`` with SHM_EXEC), then execs the command, which inherits the filters. Use it
to check that the daemon and its native libraries survive the sandbox, e.g.::

    sudo apt-get install python3-seccomp
    /usr/bin/python3 tools/run_sandboxed.py -- .venv/bin/python -m daemon demo

Needs ``systemd-analyze`` (for the contents of the ``@groups``) and libseccomp's Python binding
(Debian package python3-seccomp, for /usr/bin/python3).
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import subprocess
import sys
from pathlib import Path

import seccomp

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "avid.service"
PROT_WRITE, PROT_EXEC = 0x2, 0x4
SHM_EXEC = 0o100000


@functools.cache
def expand(group: str) -> frozenset[str]:
    """The system call names of a systemd ``@group`` (nested groups included)."""
    listing = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True,
                             text=True, check=True).stdout
    names: set[str] = set()
    for line in listing.splitlines()[1:]:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        names |= expand(line) if line.startswith("@") else {line}
    return frozenset(names)


def unit_settings(unit: Path) -> tuple[list[str], list[str], bool]:
    """(allowed items, denied items, MemoryDenyWriteExecute) from the unit's [Service] lines."""
    allowed: list[str] = []
    denied: list[str] = []
    deny_write_execute = False
    for line in unit.read_text().splitlines():
        key, _, value = line.strip().partition("=")
        if key == "SystemCallFilter":
            if value.startswith("~"):
                denied += value[1:].split()
            else:
                allowed += value.split()
        elif key == "MemoryDenyWriteExecute":
            deny_write_execute = value.strip().lower() in {"yes", "true", "1", "on"}
    return allowed, denied, deny_write_execute


def names_of(items: list[str]) -> frozenset[str]:
    names: set[str] = set()
    for item in items:
        names |= expand(item) if item.startswith("@") else {item}
    return frozenset(names)


def install_filters(unit: Path) -> str:
    """Load the unit's rules into this process; return a one-line summary."""
    allowed, denied, deny_write_execute = unit_settings(unit)
    if not allowed:
        raise SystemExit(f"{unit} has no SystemCallFilter= allow-list")
    permitted = names_of(allowed) - names_of(denied)
    summary = ""
    if deny_write_execute:
        # Loaded first: the allow-list below may not permit seccomp() itself. The kernel applies the
        # strictest verdict of all loaded filters.
        no_wx = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        deny = seccomp.ERRNO(errno.EPERM)
        no_wx.add_rule(deny, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_WRITE | PROT_EXEC,
                                                 PROT_WRITE | PROT_EXEC))
        no_wx.add_rule(deny, "mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
        no_wx.add_rule(deny, "pkey_mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
        no_wx.add_rule(deny, "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, SHM_EXEC, SHM_EXEC))
        no_wx.load()
        summary = "MemoryDenyWriteExecute on, "
    allow_list = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    unknown = 0
    for name in sorted(permitted):
        try:
            allow_list.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            unknown += 1  # names this architecture or libseccomp does not have
    allow_list.load()
    summary += f"{len(permitted) - unknown} system calls allowed"
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unit", type=Path, default=UNIT, help=f"unit file (default {UNIT})")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    print(f"run_sandboxed: {install_filters(args.unit)}; exec {' '.join(command)}", file=sys.stderr)
    os.execvp(command[0], command)
    return 127


if __name__ == "__main__":
    sys.exit(main())
