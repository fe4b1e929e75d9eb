"""StrictModes for the state: nothing that another local user could change (or read) is used.

Tests run as root in CI; "another user" is a file chowned to an unused uid. Every refusal must name
the path and its mode, and nothing may be read or written once a check fails.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import numpy as np
import pytest

from daemon.decide.lockout import Lockout, LockoutPolicy
from daemon.errors import StoreError, UnsafePermissions
from daemon.state.keys import create_device_key
from daemon.state.permissions import check_directory, check_private_file, check_state_dir
from daemon.state.store import open_store
from daemon.state.templates import Person

MODELS = "models-fingerprint-a"
STRANGER = 12345  # a uid no account uses: "another local user"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root (CI runs as root)")


def _person(name: str, seed: int) -> Person:
    rng = np.random.default_rng(seed)
    face = rng.standard_normal((1, 128)).astype(np.float32)
    voice = rng.standard_normal((1, 256)).astype(np.float32)
    return Person(name, face / np.linalg.norm(face), voice / np.linalg.norm(voice))


@pytest.fixture
def door(tmp_path) -> Path:
    """An initialised door with one person enrolled, made the way avid makes it."""
    state = tmp_path / "state"
    store = open_store(state, None, MODELS, create_key=True)
    store.save(_person("alice", 1))
    return state


def _record(state: Path) -> Path:
    [record] = (state / "templates").glob("*.tpl")
    return record


def _refused(state: Path, *fragments: str) -> str:
    with pytest.raises(UnsafePermissions) as caught:
        open_store(state, None, MODELS).load()
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_a_door_made_by_avid_passes(door):
    assert sorted(open_store(door, None, MODELS).load()) == ["alice"]
    assert stat.S_IMODE(door.stat().st_mode) == 0o700
    assert stat.S_IMODE((door / "device.key").stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o720, 0o702])
def test_a_state_directory_others_can_write_is_refused(door, mode):
    door.chmod(mode)
    _refused(door, str(door), f"mode {mode:04o}", "writable by group or others", "chmod go-w")


def test_a_sticky_state_directory_is_still_refused(door):
    door.chmod(0o1777)
    _refused(door, str(door), "mode 1777")


def test_a_writable_parent_directory_is_refused(door):
    door.parent.chmod(0o777)
    _refused(door, str(door.parent), "mode 0777")


def test_a_sticky_shared_parent_like_tmp_is_accepted(door):
    # /tmp itself is 1777: others cannot rename or remove what we own inside it.
    door.parent.chmod(0o1777)
    assert sorted(open_store(door, None, MODELS).load()) == ["alice"]


@needs_root
def test_our_folder_owned_by_someone_else_inside_a_sticky_parent_is_refused(door):
    door.parent.chmod(0o1777)
    os.chown(door, STRANGER, STRANGER)
    _refused(door, str(door), "owned by another user", f"uid {STRANGER}")


@pytest.mark.parametrize("mode, problem", [
    (0o640, "readable by group or others"), (0o604, "readable by group or others"),
    (0o620, "writable by group or others"), (0o602, "writable by group or others"),
])
def test_a_key_others_can_read_or_write_is_refused(door, mode, problem):
    (door / "device.key").chmod(mode)
    _refused(door, str(door / "device.key"), f"mode {mode:04o}", problem)


@needs_root
def test_a_key_owned_by_another_user_is_refused(door):
    os.chown(door / "device.key", STRANGER, STRANGER)
    _refused(door, str(door / "device.key"), "owned by another user", f"uid {STRANGER}")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o606])
def test_a_template_others_can_read_is_refused(door, mode):
    _record(door).chmod(mode)
    _refused(door, str(_record(door)), f"mode {mode:04o}")


def test_a_readable_templates_folder_is_refused(door):
    (door / "templates").chmod(0o755)
    _refused(door, str(door / "templates"), "readable by group or others")


@needs_root
def test_a_template_owned_by_another_user_is_refused(door):
    os.chown(_record(door), STRANGER, STRANGER)
    _refused(door, str(_record(door)), "owned by another user")


def test_checks_also_guard_enrolment_and_deletion(door):
    store = open_store(door, None, MODELS)
    door.chmod(0o777)
    before = sorted(p.name for p in (door / "templates").iterdir())
    with pytest.raises(UnsafePermissions):
        store.save(_person("mallory", 2))
    with pytest.raises(UnsafePermissions):
        store.delete("alice")
    assert sorted(p.name for p in (door / "templates").iterdir()) == before


def test_every_problem_is_listed_at_once(door):
    door.parent.chmod(0o777)
    (door / "device.key").chmod(0o644)
    _record(door).chmod(0o666)
    message = _refused(door)
    assert message.count("\n  - ") == 4, message  # parent, key, record (read and write)


def test_the_attack_of_the_issue_is_refused(door):
    """A world-writable state directory let a local user swap in their own key and templates."""
    door.chmod(0o777)
    (door / "device.key").rename(door / "device.key.moved")
    (door / "templates").rename(door / "templates.moved")
    create_device_key(door / "device.key")
    with pytest.raises(UnsafePermissions):
        open_store(door, None, MODELS)


# --- symbolic links --------------------------------------------------------------------------
def test_a_state_directory_reached_through_a_safe_link_is_accepted(door, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(door)
    assert sorted(open_store(link, None, MODELS).load()) == ["alice"]


def test_a_link_into_a_writable_directory_is_refused(door, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o700)
    door.rename(shared / "state")
    shared.chmod(0o777)
    (tmp_path / "state").symlink_to(shared / "state")
    _refused(tmp_path / "state", str(shared), "mode 0777")


def test_a_relative_link_chain_is_followed_and_checked(door, tmp_path):
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("state")
    assert check_directory(tmp_path / "a") == door
    door.chmod(0o777)
    with pytest.raises(UnsafePermissions, match="0777"):
        check_directory(tmp_path / "a")


def test_a_link_loop_is_an_error_not_a_hang(tmp_path):
    (tmp_path / "x").symlink_to("y")
    (tmp_path / "y").symlink_to("x")
    with pytest.raises(StoreError, match="too many symbolic links"):
        check_private_file(tmp_path / "x")


def test_a_key_that_is_a_link_inside_the_state_directory_is_refused(door, tmp_path):
    elsewhere = tmp_path / "elsewhere.key"
    (door / "device.key").rename(elsewhere)
    (door / "device.key").symlink_to(elsewhere)
    _refused(door, str(door / "device.key"), "symbolic link inside the state directory")


@needs_root
def test_a_link_owned_by_another_user_in_a_sticky_directory_is_refused(door, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)
    link = shared / "state"
    link.symlink_to(door)
    os.chown(link, STRANGER, STRANGER, follow_symlinks=False)
    with pytest.raises(UnsafePermissions, match="symbolic link owned by another user"):
        check_state_dir(link)


# --- POSIX ACLs: the mode alone does not tell who can read -------------------------------------
def _acl(*entries: tuple[int, int, int]) -> bytes:
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def _acls_supported() -> bool:
    """Whether the temp file system stores POSIX ACLs (probed once, on a file of its own)."""
    import tempfile

    with tempfile.NamedTemporaryFile() as probe:
        try:
            os.setxattr(probe.name, "system.posix_acl_access",
                        _acl((0x01, 0o6, 0xFFFFFFFF), (0x04, 0, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)))
        except OSError:
            return False
    return True


needs_acls = pytest.mark.skipif(not _acls_supported(), reason="this file system has no POSIX ACLs")


@needs_acls
def test_an_acl_that_lets_another_user_read_the_key_is_refused(door):
    key = door / "device.key"
    undefined = 0xFFFFFFFF
    acl = _acl((0x01, 0o6, undefined), (0x02, 0o4, STRANGER), (0x04, 0, undefined),
               (0x10, 0o4, undefined), (0x20, 0, undefined))
    os.setxattr(key, "system.posix_acl_access", acl)
    _refused(door, str(key), f"an ACL gives access to uid {STRANGER}")


@needs_acls
def test_an_acl_for_the_service_user_only_is_accepted(door):
    # systemd hands a credential to the service user this way (root-owned, user:avid:r).
    key = door / "device.key"
    undefined = 0xFFFFFFFF
    acl = _acl((0x01, 0o6, undefined), (0x02, 0o4, os.geteuid()), (0x04, 0, undefined),
               (0x10, 0o4, undefined), (0x20, 0, undefined))
    os.setxattr(key, "system.posix_acl_access", acl)
    assert stat.S_IMODE(key.stat().st_mode) == 0o640  # the group bits now show the ACL mask
    assert sorted(open_store(door, None, MODELS).load()) == ["alice"]


# --- the config file and the lockout counter -------------------------------------------------
@pytest.mark.parametrize("mode, may_be_read, ok", [
    (0o640, True, True), (0o644, True, True), (0o600, False, True),
    (0o644, False, False), (0o660, True, False), (0o666, True, False), (0o646, True, False),
])
def test_check_private_file_for_a_config(tmp_path, mode, may_be_read, ok):
    config = tmp_path / "config.yaml"
    config.write_text("lock: {}\n")
    config.chmod(mode)
    if ok:
        assert check_private_file(config, may_be_read=may_be_read) == config
    else:
        with pytest.raises(UnsafePermissions, match=f"{config}.*mode {mode:04o}"):
            check_private_file(config, may_be_read=may_be_read)


@needs_root
def test_a_config_owned_by_another_user_is_refused(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("lock: {}\n")
    config.chmod(0o600)
    os.chown(config, STRANGER, STRANGER)
    with pytest.raises(UnsafePermissions, match="owned by another user"):
        check_private_file(config, may_be_read=True)


def test_a_lockout_counter_others_can_write_is_refused(tmp_path):
    path = tmp_path / "lockout.json"
    path.write_text('{"consecutive_failures": 5, "level": 1, "remaining_seconds": 30}')
    path.chmod(0o666)
    with pytest.raises(UnsafePermissions, match="lockout.json"):
        Lockout(path, LockoutPolicy())
    path.chmod(0o644)
    assert Lockout(path, LockoutPolicy()).locked_out


def test_dot_dot_through_a_link_is_resolved_like_the_kernel_does(door, tmp_path):
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    (other / "up").symlink_to(door / "templates")
    # other/up/.. is the state directory (the link's target's parent), not other/.
    assert check_directory(other / "up" / "..") == door
    door.chmod(0o777)
    with pytest.raises(UnsafePermissions, match="0777"):
        check_directory(other / "up" / "..")
