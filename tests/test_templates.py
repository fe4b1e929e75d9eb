"""The encrypted template store: round trip, file modes, refusals, crypto-shredding on delete."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from daemon.errors import StoreError
from daemon.state.keys import load_device_key
from daemon.state.templates import Person, TemplateStore

MODELS = "models-fingerprint-a"


def _person(name: str, seed: int) -> Person:
    rng = np.random.default_rng(seed)
    face = rng.standard_normal((2, 128)).astype(np.float32)
    voice = rng.standard_normal((3, 256)).astype(np.float32)
    return Person(name, face / np.linalg.norm(face, axis=1, keepdims=True),
                  voice / np.linalg.norm(voice, axis=1, keepdims=True))


@pytest.fixture
def state(tmp_path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(state) -> TemplateStore:
    return TemplateStore(state, load_device_key(state, create=True), MODELS)


def _write_private(path: Path, data: bytes) -> None:
    """Write a file the way avid does (0600): a crash leftover, a key given by the installer."""
    path.write_bytes(data)
    path.chmod(0o600)


def _all_bytes(directory: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in sorted(directory.rglob("*")) if p.is_file()]


def test_round_trip_is_exact(store, state):
    alice, bob = _person("alice", 1), _person("bob.smith-2", 2)
    saved = store.save(alice)
    store.save(bob)
    reopened = TemplateStore(state, load_device_key(state), MODELS)
    people = reopened.load()
    assert sorted(people) == ["alice", "bob.smith-2"]
    for original in (alice, bob):
        loaded = people[original.name]
        assert loaded.face.dtype == np.float32 and loaded.voice.dtype == np.float32
        assert np.array_equal(loaded.face, original.face)
        assert np.array_equal(loaded.voice, original.voice)
    assert people["alice"].id == saved.id and reopened.refused == []


def test_files_are_0600_and_folders_0700(store, state):
    store.save(_person("alice", 1))
    files = [p for p in state.rglob("*") if p.is_file()]
    assert len(files) == 3  # device.key, <id>.tpl, <id>.key
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (state, state / "templates"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_ciphertext_hides_the_name_and_embeddings(store, state):
    alice = _person("alice-wonderland", 3)
    store.save(alice)
    secrets = [b"alice-wonderland", alice.face.tobytes()[:32], alice.voice.tobytes()[:32],
               alice.face[0, :4].tobytes()]
    for path, data in _all_bytes(state):
        for secret in secrets:
            assert secret not in data, (path, secret[:16])
        assert b"alice" not in path.name.encode()


def test_records_from_other_models_are_refused_with_re_enrol(store, state):
    store.save(_person("alice", 1))
    other = TemplateStore(state, load_device_key(state), "models-fingerprint-b")
    assert other.load() == {}
    [refused] = other.refused
    assert "re-enrol" in refused.reason and "models-fingerprint-a" in refused.reason


def test_another_device_key_is_refused(store, state):
    store.save(_person("alice", 1))
    thief = TemplateStore(state, os.urandom(32), MODELS)
    assert thief.load() == {}
    [refused] = thief.refused
    assert "another device key" in refused.reason


def test_record_moved_to_another_id_is_refused(store, state):
    saved = store.save(_person("alice", 1))
    folder = state / "templates"
    for suffix in (".tpl", ".key"):
        (folder / f"{saved.id}{suffix}").rename(folder / f"{'0' * 16}{suffix}")
    assert store.load() == {}
    assert "id does not match" in store.refused[0].reason


def _flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncate", "flip_ciphertext", "flip_header", "flip_key", "empty"])
def test_a_damaged_record_is_refused_and_the_others_load(store, state, damage):
    alice, bob = store.save(_person("alice", 1)), store.save(_person("bob", 2))
    tpl, key = state / "templates" / f"{alice.id}.tpl", state / "templates" / f"{alice.id}.key"
    text = tpl.read_text()
    if damage == "truncate":
        tpl.write_text(text[:len(text) // 2])
    elif damage == "flip_ciphertext":
        header = json.loads(text)
        # Flip a bit inside the base64 body (not in its padding): the tag no longer matches.
        _flip_bit(tpl, text.index(header["ciphertext"]) + 40)
    elif damage == "flip_header":
        tpl.write_text(text.replace('"schema": 1', '"schema": 2'))
    elif damage == "flip_key":
        wrapped = json.loads(key.read_text())
        _flip_bit(key, key.read_text().index(wrapped["key"]) + 10)
    else:
        tpl.write_bytes(b"")
    damaged_bytes = tpl.read_bytes()
    people = store.load()
    assert list(people) == ["bob"] and np.array_equal(people["bob"].face, _person("bob", 2).face)
    [refused] = store.refused
    assert refused.id == alice.id
    assert any(word in refused.reason for word in ("corrupt", "truncated", "authentication",
                                                    "schema", "cannot be unwrapped")), refused.reason
    # Later saves do not overwrite or remove the damaged record (it is evidence, and may be repaired).
    store.save(_person("carol", 3))
    store.save(_person("bob", 4), replace=True)
    assert tpl.read_bytes() == damaged_bytes
    assert sorted(store.load()) == ["bob", "carol"]
    assert np.array_equal(store.load()["bob"].face, _person("bob", 4).face)


def test_delete_leaves_no_trace(store, state):
    alice = _person("alice-liddell", 5)
    saved = store.save(alice)
    store.save(_person("bob", 6))
    everything_before = b"".join(name.name.encode() + data for name, data in _all_bytes(state))
    # The grep below can see a record id: before deletion it is there (file names, header).
    assert saved.id.encode() in everything_before
    assert store.delete("alice-liddell") is True
    secrets = [b"alice-liddell", saved.id.encode(), alice.face.tobytes()[:16], alice.voice.tobytes()[:16]]
    for path, data in _all_bytes(state):
        for secret in secrets:
            assert secret not in data and secret not in str(path).encode(), (path, secret[:16])
    assert sorted(store.load()) == ["bob"]
    assert store.delete("alice-liddell") is False
    assert len(list((state / "templates").iterdir())) == 2  # bob's record and key only


def test_replace_keeps_exactly_one_record(store, state):
    store.save(_person("alice", 1))
    with pytest.raises(StoreError, match="already enrolled"):
        store.save(_person("alice", 2))
    for seed in range(2, 5):
        store.save(_person("alice", seed), replace=True)
    records = list((state / "templates").glob("*.tpl"))
    keys = list((state / "templates").glob("*.key"))
    assert len(records) == 1 and len(keys) == 1
    loaded = store.load()["alice"]
    assert np.array_equal(loaded.voice, _person("alice", 4).voice)
    assert loaded.generation == 4


def test_orphan_keys_and_stale_temporaries_are_cleaned(store, state):
    store.save(_person("alice", 1))
    folder = state / "templates"
    orphan = folder / "deadbeefdeadbeef.key"
    _write_private(orphan, b'{"nonce": "", "key": ""}')
    stale = folder / ".0123456789abcdef.tpl.tmp4242"
    _write_private(stale, b"half a record")
    store.save(_person("bob", 2))
    assert not orphan.exists() and not stale.exists()
    _write_private(orphan, b"{}")
    store.delete("bob")
    assert not orphan.exists()
    assert sorted(store.load()) == ["alice"]


@pytest.mark.parametrize("face, voice", [
    (np.zeros((2, 64), np.float32), np.zeros((1, 256), np.float32)),
    (np.zeros(128, np.float32), np.zeros((1, 256), np.float32)),
    (np.zeros((1, 128), np.float32), np.zeros((1, 128), np.float32)),
    (np.full((1, 128), np.nan, np.float32), np.zeros((1, 256), np.float32)),
])
def test_embeddings_that_would_not_load_back_are_refused(store, state, face, voice):
    with pytest.raises(StoreError, match="must be finite and of shape"):
        store.save(Person("alice", face, voice))
    assert store.load() == {} and not list((state / "templates").glob("*.tpl"))


@pytest.mark.parametrize("name", ["", "../etc", "a b", "-dash", "x" * 65, "naïve"])
def test_invalid_names_are_refused(store, name):
    with pytest.raises(StoreError, match="invalid name"):
        store.save(_person(name, 1))


def test_newest_generation_wins_when_a_crash_left_two_records(store, state):
    """A crash between writing the new record and removing the old leaves both: the new one wins."""
    old = store.save(_person("alice", 1))
    folder = state / "templates"
    kept = {p.name: p.read_bytes() for p in folder.iterdir()}
    new = store.save(_person("alice", 2), replace=True)
    for name, data in kept.items():
        _write_private(folder / name, data)
    assert old.generation < new.generation
    people = store.load()
    assert people["alice"].id == new.id and np.array_equal(people["alice"].face, _person("alice", 2).face)
    store.save(_person("alice", 3), replace=True)  # replacing removes both namesakes
    assert len(list(folder.glob("*.tpl"))) == 1


def test_device_key_rules(state, tmp_path):
    with pytest.raises(StoreError, match="not found"):
        load_device_key(state)
    key = load_device_key(state, create=True)
    assert len(key) == 32 and load_device_key(state) == key
    hex_file = tmp_path / "hex.key"
    _write_private(hex_file, (key.hex() + "\n").encode())
    assert load_device_key(state, key_file=hex_file) == key
    bad = tmp_path / "bad.key"
    _write_private(bad, b"short")
    with pytest.raises(StoreError, match="32 raw bytes"):
        load_device_key(state, key_file=bad)
    with pytest.raises(StoreError, match="not found"):
        load_device_key(state, key_file=tmp_path / "absent.key", create=True)  # never invented


def test_record_left_by_an_interrupted_delete_is_removed(store, state):
    # delete() removes the key first; a crash before the record goes leaves an unreadable record.
    alice = store.save(_person("alice", 1))
    (store.directory / f"{alice.id}.key").unlink()
    assert "alice" not in store.load() and len(store.refused) == 1
    store.save(_person("bob", 2))
    assert not (store.directory / f"{alice.id}.tpl").exists()
    store.load()
    assert store.refused == []


def test_digit_recordings_round_trip_encrypted(store, state):
    rng = np.random.default_rng(7)
    digits = {f"{d}.{take}": rng.standard_normal((20 + d, 13)).astype(np.float32)
              for d in range(10) for take in (0, 1)}
    alice = _person("alice", 1)
    alice.digits = digits
    store.save(alice)
    loaded = TemplateStore(state, load_device_key(state), MODELS).load()["alice"]
    assert sorted(loaded.digits) == sorted(digits)
    for key, mfcc in digits.items():
        assert np.array_equal(loaded.digits[key], mfcc)
    for _, data in _all_bytes(state):
        assert digits["3.1"].tobytes()[:16] not in data
    assert store.load()["alice"].digits and _person("bob", 2).digits == {}


def test_digit_recordings_that_would_not_load_back_are_refused(store):
    alice = _person("alice", 1)
    alice.digits = {"4.0": np.full((3, 13), np.nan, np.float32)}
    with pytest.raises(StoreError, match="digit recording"):
        store.save(alice)
