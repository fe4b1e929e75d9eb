"""Refuse state, keys and config that someone other than the service user and root could change.

The rules are OpenSSH's ``StrictModes``, with the same reasoning: a file is only as safe as every
directory on the way to it. A path is trusted when

- it and every directory from ``/`` down to it is owned by the user running avid (the effective
  uid, i.e. the service user) or by root;
- none of them can be written by group or others (permission bits or POSIX ACL entries). A
  directory writable by others is accepted only with the sticky bit (``/tmp``), because there the
  next component, which must itself be owned by the service user or root, cannot be renamed or
  removed by anyone else;
- for private files (the device key, templates), group and others cannot read it either;
- symbolic links are followed one component at a time, and every directory that holds a link or is
  reached through one is checked by the same rules (a link in a directory someone else can write
  could be re-pointed at any time).

Group ownership is deliberately not trusted, even the service's own group: ``/etc/avid`` is
``root:avid 0750`` and the config ``0640`` (group may read), but nothing avid trusts may be
group-writable. Every problem found is reported at once, with its path, owner and mode and the
command that fixes it.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from daemon.errors import StoreError, UnsafePermissions

#: Links followed while resolving one path before giving up (Linux's own limit is 40).
MAX_LINKS = 40

_ACL_XATTR = "system.posix_acl_access"
# Tags of the kernel's POSIX ACL xattr format (include/uapi/linux/posix_acl_xattr.h).
_ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK = 0x02, 0x04, 0x08, 0x10
_ACL_WRITE, _ACL_READ = 0o2, 0o4


@dataclass(frozen=True)
class _Access:
    """Who besides the owner may read or write an inode."""

    group_read: bool
    group_write: bool
    other_read: bool
    other_write: bool
    untrusted_users: tuple[int, ...]  # ACL ``user:UID:`` entries with access, UID neither us nor root


def _trusted_uids() -> frozenset[int]:
    return frozenset({os.geteuid(), 0})


def _user(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def _acl_entries(path: Path) -> list[tuple[int, int, int]] | None:
    """The (tag, perm, id) entries of ``path``'s access ACL, or None if it has none."""
    try:
        raw = os.getxattr(path, _ACL_XATTR, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
            return None
        # Unable to read the ACL (a seccomp filter, say): the mode's group bits then show the ACL
        # mask, which is the conservative view.
        return None
    if len(raw) < 4 or (len(raw) - 4) % 8:
        return None
    return [struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw), 8)]


def _access(path: Path, st: os.stat_result) -> _Access:
    mode = st.st_mode
    group = (mode >> 3) & 0o7
    untrusted: list[int] = []
    entries = _acl_entries(path) if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else None
    if entries:
        # With an ACL the mode's group bits are the ACL mask: the owning group's real rights are
        # its own entry, and named users and groups are limited by the mask.
        mask = group
        group, trusted = 0, _trusted_uids()
        for tag, perm, ident in entries:
            if tag == _ACL_GROUP_OBJ or tag == _ACL_GROUP:
                group |= perm & mask
            elif tag == _ACL_USER and perm & mask and ident not in trusted:
                untrusted.append(ident)
    return _Access(bool(group & _ACL_READ), bool(group & _ACL_WRITE),
                   bool(mode & stat.S_IROTH), bool(mode & stat.S_IWOTH), tuple(untrusted))


def _describe(path: Path, st: os.stat_result, what: str, fix: str = "") -> str:
    text = (f"{path}: {what} (owner {_user(st.st_uid)}, group {st.st_gid}, "
            f"mode {stat.S_IMODE(st.st_mode):04o})")
    return f"{text}; fix: {fix}" if fix else text


def _owner_problem(path: Path, st: os.stat_result) -> str | None:
    if st.st_uid in _trusted_uids():
        return None
    me = _user(os.geteuid())
    return _describe(path, st, f"owned by another user; it must belong to {me} or root",
                     f"chown {me.split()[0]} {path}, or run avid as its owner")


def _dir_problems(path: Path, st: os.stat_result, allow_sticky: bool) -> list[str]:
    problems = [p for p in (_owner_problem(path, st),) if p]
    access = _access(path, st)
    writable = access.group_write or access.other_write
    if writable and not (allow_sticky and st.st_mode & stat.S_ISVTX):
        problems.append(_describe(path, st, "directory writable by group or others", f"chmod go-w {path}"))
    if access.untrusted_users:
        problems.append(_describe(path, st, "an ACL gives access to "
                                  + ", ".join(map(_user, access.untrusted_users)), f"setfacl -b {path}"))
    return problems


def _file_problems(path: Path, st: os.stat_result, may_be_read: bool) -> list[str]:
    problems = [p for p in (_owner_problem(path, st),) if p]
    access = _access(path, st)
    if access.group_write or access.other_write:
        problems.append(_describe(path, st, "writable by group or others", f"chmod go-w {path}"))
    if not may_be_read and (access.group_read or access.other_read):
        problems.append(_describe(path, st, "readable by group or others", f"chmod go-rwx {path}"))
    if access.untrusted_users:
        problems.append(_describe(path, st, "an ACL gives access to "
                                  + ", ".join(map(_user, access.untrusted_users)), f"setfacl -b {path}"))
    return problems


def _lstat(path: Path) -> os.stat_result:
    try:
        return os.lstat(path)
    except OSError as exc:
        raise StoreError(f"cannot check {path}: {exc.strerror}") from exc


def resolve_checked(path: str | os.PathLike, problems: list[str]) -> tuple[Path, os.stat_result | None]:
    """Resolve ``path`` component by component and check every directory on the way.

    Appends a line to ``problems`` for each untrusted directory or link; returns the resolved path
    and the ``lstat`` of its last component (None when it does not exist). Directories reached
    through symbolic links are checked too.

    :param path: the path to resolve (relative paths are taken from the working directory).
    :param problems: the list that collects problem descriptions.
    """
    # Not os.path.abspath: it drops "x/.." lexically, while the kernel follows x if it is a link.
    absolute = os.fspath(path)
    if not os.path.isabs(absolute):
        absolute = os.path.join(os.getcwd(), absolute)
    pending = list(Path(absolute).parts[1:])
    current = Path("/")
    root = _lstat(current)
    problems.extend(_dir_problems(current, root, allow_sticky=False))
    links = 0
    final: os.stat_result | None = root
    while pending:
        name = pending.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = current.parent  # already checked: every directory above current was
            final = _lstat(current)
            continue
        parent_sticky = bool(final is not None and final.st_mode & stat.S_ISVTX)
        candidate = current / name
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            # Nothing further exists; what would be created there is created by us, privately.
            return Path(current, name, *pending), None
        except OSError as exc:
            raise StoreError(f"cannot check {candidate}: {exc.strerror}") from exc
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise StoreError(f"too many symbolic links resolving {path}")
            # Whoever owns a link in a sticky directory can re-point it; elsewhere the directory's
            # own check (it is ours, not writable by others) covers the link.
            if parent_sticky and st.st_uid not in _trusted_uids():
                problems.append(_describe(candidate, st, "symbolic link owned by another user in a "
                                                         "shared directory", f"rm {candidate}"))
            try:
                target = Path(os.readlink(candidate))
            except OSError as exc:
                raise StoreError(f"cannot check {candidate}: {exc.strerror}") from exc
            if target.is_absolute():
                current, final = Path("/"), root
            pending = list(target.parts[1:] if target.is_absolute() else target.parts) + pending
            continue
        current, final = candidate, st
        if stat.S_ISDIR(st.st_mode) and pending:
            problems.extend(_dir_problems(candidate, st, allow_sticky=True))
        elif pending:
            raise StoreError(f"{candidate} is not a directory (on the way to {path})")
    return current, final


def _raise(problems: list[str]) -> None:
    if problems:
        unique = list(dict.fromkeys(problems))
        raise UnsafePermissions(
            "unsafe permissions, refusing to use them (anyone who can change these can let "
            "themselves in):\n  - " + "\n  - ".join(unique))


def check_private_file(path: str | os.PathLike, may_be_read: bool = False) -> Path:
    """Check that only the service user and root can change ``path`` (or read it) and its folders.

    Call it on the config file with ``may_be_read=True`` (``/etc/avid/config.yaml`` is 0640
    root:avid), on keys and templates with the default. A missing file raises nothing here: the
    caller reports that in its own words.

    :param path: the file to check; symbolic links are followed safely.
    :param may_be_read: False for secrets (group and others may not read either).
    :returns: the resolved path.
    :raises UnsafePermissions: listing every path that fails, with owner, mode and a fix.
    """
    problems: list[str] = []
    resolved, st = resolve_checked(path, problems)
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise StoreError(f"{path} is a directory, not a file")
        problems.extend(_file_problems(resolved, st, may_be_read))
    _raise(problems)
    return resolved


def check_directory(path: str | os.PathLike) -> Path:
    """Check a directory avid writes to (the state directory) and every directory above it.

    :raises UnsafePermissions: when it, or one above it, is writable by someone else.
    :returns: the resolved path.
    """
    problems: list[str] = []
    resolved, st = resolve_checked(path, problems)
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            raise StoreError(f"state directory {path} is not a directory")
        # The state directory itself may not be shared, even with the sticky bit.
        problems.extend(_dir_problems(resolved, st, allow_sticky=False))
    _raise(problems)
    return resolved


#: Entries of the state directory that are secrets (group and others may not even read them).
PRIVATE_ENTRIES = frozenset({"device.key", "templates"})


def check_state_dir(state_dir: str | os.PathLike) -> Path:
    """Check the state directory, its parents, and what it holds.

    Everything directly in it (lockout counter, calibration, caches) must not be writable by
    anyone but the service user and root; ``device.key`` and everything in ``templates/`` must not
    be readable by them either. Symbolic links inside the state directory are refused.

    :raises UnsafePermissions: listing every offending path.
    :raises StoreError: when a path cannot be examined or is not what it should be.
    :returns: the resolved state directory.
    """
    problems: list[str] = []
    resolved, st = resolve_checked(state_dir, problems)
    if st is None:
        _raise(problems)
        return resolved
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"state directory {state_dir} is not a directory")
    problems.extend(_dir_problems(resolved, st, allow_sticky=False))
    problems.extend(_entries_problems(resolved, lambda name: name in PRIVATE_ENTRIES))
    templates = resolved / "templates"
    try:
        tst = os.lstat(templates)
    except FileNotFoundError:
        tst = None
    except OSError as exc:
        raise StoreError(f"cannot check {templates}: {exc.strerror}") from exc
    if tst is not None and stat.S_ISDIR(tst.st_mode):
        problems.extend(_entries_problems(templates, lambda name: True))
    _raise(problems)
    return resolved


def _entries_problems(directory: Path, private) -> list[str]:
    problems = []
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise StoreError(f"cannot list {directory}: {exc.strerror}") from exc
    for name in names:
        path = directory / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue  # removed meanwhile (a temp file renamed into place)
        except OSError as exc:
            raise StoreError(f"cannot check {path}: {exc.strerror}") from exc
        if stat.S_ISLNK(st.st_mode):
            problems.append(_describe(path, st, "symbolic link inside the state directory",
                                      "replace it with the file itself"))
        elif stat.S_ISDIR(st.st_mode):
            problems.extend(_dir_problems(path, st, allow_sticky=False))
            access = _access(path, st)
            if private(name) and (access.group_read or access.other_read):
                problems.append(_describe(path, st, "readable by group or others", f"chmod go-rwx {path}"))
        else:
            problems.extend(_file_problems(path, st, may_be_read=not private(name)))
    return problems
