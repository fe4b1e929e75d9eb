"""Opening a door's state: who may create a key, and every file system failure as a clear error.

- a key is never created beside templates, and never by ``avid run`` (``create_key=False``);
- a mistyped state directory is an error, not an empty door;
- full disk, read-only or unreadable state, a file in place of the directory: a StoreError that
  names the path, nothing half-written left behind, never a traceback from the CLI.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from daemon import cli
from daemon.config import STATE_DIR_ENV
from daemon.errors import NotInitialised, StoreError
from daemon.state.keys import create_device_key, load_device_key
from daemon.state.store import open_store
from daemon.state.templates import Person, TemplateStore, validate_name

MODELS = "models-fingerprint-a"
SERVICE_UID = 12345  # the "service user" of the tests that drop root
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root (CI runs as root)")
ROOT = Path(__file__).resolve().parent.parent


def _person(name: str, seed: int) -> Person:
    rng = np.random.default_rng(seed)
    face = rng.standard_normal((1, 128)).astype(np.float32)
    voice = rng.standard_normal((1, 256)).astype(np.float32)
    return Person(name, face / np.linalg.norm(face), voice / np.linalg.norm(voice))


# --- who creates a key -----------------------------------------------------------------------
def test_the_first_enrolment_initialises_a_private_door(tmp_path):
    state = tmp_path / "new" / "state"
    store = open_store(state, None, MODELS, create_key=True)
    store.save(_person("alice", 1))
    for folder in (tmp_path / "new", state, state / "templates"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE((state / "device.key").stat().st_mode) == 0o600
    assert sorted(open_store(state, None, MODELS).load()) == ["alice"]


def test_run_refuses_a_door_without_a_key(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with pytest.raises(NotInitialised, match="initialise the door first"):
        open_store(state, None, MODELS)
    assert not (state / "device.key").exists()


def test_run_refuses_a_mistyped_state_directory_and_does_not_create_it(tmp_path):
    with pytest.raises(NotInitialised, match="does not exist.*mistyped"):
        open_store(tmp_path / "stat", None, MODELS)
    assert not (tmp_path / "stat").exists()


def test_no_key_is_created_beside_existing_templates(tmp_path):
    state = tmp_path / "state"
    open_store(state, None, MODELS, create_key=True).save(_person("alice", 1))
    (state / "device.key").unlink()
    for create_key in (True, False):
        with pytest.raises(NotInitialised, match="2 template file.*restore the key"):
            open_store(state, None, MODELS, create_key=create_key)
        assert not (state / "device.key").exists()
    with pytest.raises(NotInitialised, match="does not create a new key beside existing templates"):
        load_device_key(state, create=True)


def test_a_configured_key_file_is_never_created(tmp_path):
    state = tmp_path / "state"
    with pytest.raises(NotInitialised, match="not found"):
        open_store(state, tmp_path / "door.key", MODELS, create_key=True)
    assert not (tmp_path / "door.key").exists()


def test_create_device_key_never_replaces_a_key(tmp_path):
    path = tmp_path / "device.key"
    first = create_device_key(path)
    assert create_device_key(path) == first == path.read_bytes()


# --- file system failures are StoreErrors naming the path --------------------------------------
def test_a_state_directory_that_is_a_file(tmp_path):
    state = tmp_path / "state"
    state.write_text("oops")
    for create_key in (True, False):
        with pytest.raises(StoreError, match=f"{state} is not a directory"):
            open_store(state, None, MODELS, create_key=create_key)


def test_a_key_that_is_a_directory(tmp_path):
    state = tmp_path / "state"
    (state / "device.key").mkdir(parents=True, mode=0o700)
    state.chmod(0o700)
    with pytest.raises(StoreError, match="device.key is a directory"):
        open_store(state, None, MODELS)


def test_templates_that_are_a_file_are_an_error_not_nobody(tmp_path):
    state = tmp_path / "state"
    store = open_store(state, None, MODELS, create_key=True)
    (state / "templates").write_bytes(b"")
    (state / "templates").chmod(0o600)
    with pytest.raises(StoreError, match="cannot list the templates"):
        store.load()


@contextmanager
def _as_service_user(*paths: Path):
    """Run the block with the effective uid and gid of an unprivileged service user."""
    for path in paths:
        os.chown(path, SERVICE_UID, SERVICE_UID)
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(SERVICE_UID)
    os.seteuid(SERVICE_UID)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


@pytest.fixture
def service_door():
    """A door under /tmp owned by the service user (pytest's own tmp folder is root's 0700)."""
    base = Path(tempfile.mkdtemp(prefix="avid-door-"))
    state = base / "state"
    store = open_store(state, None, MODELS, create_key=True)
    store.save(_person("alice", 1))
    owned = [base, state, state / "device.key", state / "templates", *(state / "templates").iterdir()]
    for path in owned:
        os.chown(path, SERVICE_UID, SERVICE_UID)
    yield state
    subprocess.run(["rm", "-rf", str(base)], check=True)


@needs_root
def test_an_unreadable_templates_folder_is_an_error_not_nobody(service_door):
    (service_door / "templates").chmod(0o000)
    with _as_service_user():
        with pytest.raises(StoreError, match="cannot list .*templates.*Permission denied"):
            open_store(service_door, None, MODELS)
        with pytest.raises(StoreError, match="cannot list .*templates.*Permission denied"):
            TemplateStore(service_door, bytes(32), MODELS).load()


@needs_root
def test_an_unreadable_key_is_a_store_error(service_door):
    (service_door / "device.key").chmod(0o000)
    with _as_service_user():
        with pytest.raises(StoreError, match="cannot read the device key.*Permission denied"):
            open_store(service_door, None, MODELS)


@needs_root
def test_a_read_only_state_directory_refuses_enrolment_cleanly(service_door):
    (service_door / "templates").chmod(0o500)
    before = sorted(os.listdir(service_door / "templates"))
    with _as_service_user():
        store = open_store(service_door, None, MODELS, create_key=True)
        with pytest.raises(StoreError, match="cannot save bob.*permission denied"):
            store.save(_person("bob", 2))
        assert sorted(store.load()) == ["alice"]
    assert sorted(os.listdir(service_door / "templates")) == before


FULL_DISK = r"""
import resource, signal, sys
from pathlib import Path
import numpy as np
from daemon.decide.lockout import Lockout, LockoutPolicy
from daemon.state.templates import Person, TemplateStore
state = Path(sys.argv[1])
# The kernel refuses to grow a file past RLIMIT_FSIZE (EFBIG), as a full disk refuses (ENOSPC).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (32, resource.RLIM_INFINITY))
store = TemplateStore(state, bytes(32), "m")
try:
    store.save(Person("bob", np.ones((1, 128), np.float32), np.ones((1, 256), np.float32)))
except Exception as exc:
    print(type(exc).__name__, exc)
lockout = Lockout(state / "lockout.json", LockoutPolicy(1, 30, 900))
try:
    lockout.record_failure()
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_a_full_disk_is_a_store_error_and_leaves_no_temp_file(tmp_path):
    state = tmp_path / "state"
    TemplateStore(state, bytes(32), "m").save(_person("alice", 1))
    before = sorted(os.listdir(state / "templates"))
    result = subprocess.run([sys.executable, "-c", FULL_DISK, str(state)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    save_error, lockout_error = result.stdout.strip().splitlines()
    assert save_error.startswith("StoreError cannot save bob") and "File too large" in save_error
    assert lockout_error.startswith("StoreError cannot write lockout state")
    assert sorted(os.listdir(state / "templates")) == before  # no temp file, no orphan key
    assert not [n for n in os.listdir(state) if ".tmp" in n]
    assert sorted(TemplateStore(state, bytes(32), "m").load()) == ["alice"]


def test_the_cli_reports_state_errors_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "no-such-door"))
    assert cli.main(["list"]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    state = tmp_path / "state"
    state.mkdir(mode=0o777)
    state.chmod(0o777)
    monkeypatch.setenv(STATE_DIR_ENV, str(state))
    assert cli.main(["list"]) == 1
    err = capsys.readouterr().err
    assert "unsafe permissions" in err and "mode 0777" in err and "Traceback" not in err


# --- names -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["alice\n", "alice\r", "\nalice", "alice\nuser=root", "alice "])
def test_names_are_matched_whole(name):
    with pytest.raises(StoreError, match="invalid name"):
        validate_name(name)


def test_a_long_invalid_name_is_truncated_in_the_message():
    with pytest.raises(StoreError) as caught:
        validate_name("x" * 10_000 + "!")
    assert len(str(caught.value)) < 200 and "10001 characters" in str(caught.value)
