"""Enrolled people's templates, encrypted at rest.

Layout under ``<state dir>/templates/``::

    <id>.tpl   one person: a JSON header (schema, id, models, nonce) and the AES-GCM ciphertext of
               the person's name and embeddings
    <id>.key   that person's data key, wrapped (AES-GCM) under the device key

The authenticated data binds the record to its id, the encoders' fingerprint and the schema
version, so a record cannot be moved to another id or used with other models. Deleting a person
removes both files: without the data key the ciphertext is unreadable even if a copy survives
(crypto-shredding). Files are 0600 and written atomically; a replaced person gets a new id, and the
old record is removed only after the new one is durable, so a crash at any point leaves either the
old or the new person, never neither.

Writers (save, delete) hold the state directory's lock alone (:class:`~daemon.state.statelock.StateLock`),
readers share it, so parallel enrolments queue instead of removing each other's files. Before
anything is read, the directory, the key and the records are checked as OpenSSH's ``StrictModes``
would (:mod:`daemon.state.permissions`). Every failure is a :class:`~daemon.errors.StoreError`
naming the path, never a bare ``OSError``.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from daemon.errors import StoreError
from daemon.state.atomic import make_private_dirs, remove_durably, remove_stale_temporaries, write_atomic
from daemon.state.permissions import check_state_dir
from daemon.state.statelock import StateLock

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FACE_DIM, VOICE_DIM = 128, 256
# Used with fullmatch: "$" alone would also match before a final newline ("alice\n").
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# A record holds a few dozen embeddings (a few hundred kB in base64); anything much larger is not
# one of ours and is not read into memory.
MAX_RECORD_BYTES = 4 * 1024 * 1024
MAX_KEY_RECORD_BYTES = 4096
# What a hostile or damaged JSON file can raise besides ValueError: a number too large for an int
# or float ("1e999" into int()), nesting deeper than the interpreter's stack.
PARSE_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError, RecursionError,
                MemoryError)


@dataclass
class Person:
    """One enrolled person: unit-length embeddings per modality and a store generation."""

    name: str
    face: np.ndarray = field(default_factory=lambda: np.zeros((0, 128), np.float32))
    voice: np.ndarray = field(default_factory=lambda: np.zeros((0, 256), np.float32))
    generation: int = 0
    id: str = ""
    #: The person's own recordings of the digits for the challenge, as MFCC arrays keyed
    #: "<digit>.<take>" (daemon.challenge.digits.DigitTemplates.to_arrays); empty when not enrolled.
    digits: dict = field(default_factory=dict)

    def centroid(self, modality: str) -> np.ndarray | None:
        """The unit-length mean of the person's embeddings for ``modality``, or None if none."""
        samples = getattr(self, modality)
        if len(samples) == 0:
            return None
        mean = samples.mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)


@dataclass(frozen=True)
class RefusedRecord:
    """A record that exists but cannot be used, and why."""

    id: str
    reason: str


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"expected base64 text, got {type(text).__name__}")
    return base64.b64decode(text.encode("ascii"), validate=True)


def shorten(text, limit: int = 40) -> str:
    """``repr(text)`` cut to about ``limit`` characters, for messages about untrusted input."""
    shown = repr(text)
    if len(shown) <= limit:
        return shown
    length = f", {len(text)} characters" if isinstance(text, (str, bytes)) else ""
    return f"{shown[:limit]}... (truncated{length})"


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid person name, else raise :class:`StoreError`."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise StoreError(f"invalid name {shorten(name)}: use 1-64 letters, digits, '.', '_' or '-'")
    return name


def _hint(exc: OSError) -> str:
    hints = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exhausted",
             errno.EROFS: "the file system is read-only",
             errno.EACCES: "permission denied: run avid as the service user",
             errno.EPERM: "operation not permitted: run avid as the service user",
             errno.ENOTDIR: "a path component is not a directory",
             errno.EISDIR: "a directory is in the way", errno.EIO: "input/output error (failing SD card?)"}
    return hints.get(exc.errno, exc.strerror or str(exc))


def _read_bounded(path: Path, limit: int) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


class TemplateStore:
    """The encrypted templates of everyone enrolled at this door."""

    def __init__(self, state_dir: Path, device_key: bytes, models_fingerprint: str):
        self.state_dir = Path(state_dir)
        self.directory = self.state_dir / "templates"
        self._device_key = AESGCM(device_key)
        self._models = models_fingerprint
        self.refused: list[RefusedRecord] = []

    def _aad(self, record_id: str, models: str, schema: int) -> bytes:
        return f"avid-template|{schema}|{record_id}|{models}".encode()

    def _paths(self, record_id: str) -> tuple[Path, Path]:
        return self.directory / f"{record_id}.tpl", self.directory / f"{record_id}.key"

    # --- reading ----------------------------------------------------------------------------
    def load(self) -> dict[str, Person]:
        """Decrypt and return every usable person by name.

        Records made by other models, or that fail to decrypt, are listed in :attr:`refused` and
        logged; a corrupt record raises nothing here so that the others still work. A store that
        cannot be read at all (unsafe permissions, ``templates/`` unreadable) raises
        :class:`StoreError`: it must never look like "nobody is enrolled".
        """
        people: dict[str, Person] = {}
        check_state_dir(self.state_dir)
        if not self.state_dir.is_dir():
            everyone = self._read_all()
        else:
            with StateLock(self.state_dir, exclusive=False):
                everyone = self._read_all()
        for person in everyone:
            other = people.get(person.name)
            if other is None or person.generation > other.generation:
                people[person.name] = person
        return people

    def _read_all(self) -> list[Person]:
        self.refused = []
        people = []
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return people
        except OSError as exc:
            raise StoreError(f"cannot list the templates in {self.directory}: {_hint(exc)}") from exc
        for name in sorted(names):
            if not name.endswith(".tpl") or name.startswith("."):
                continue
            record_id = name[:-len(".tpl")]
            try:
                people.append(self._read(record_id))
            except StoreError as exc:
                self.refused.append(RefusedRecord(record_id, str(exc)))
                log.error("template %s refused: %s", record_id, exc)
        return people

    def _read(self, record_id: str) -> Person:
        record_path, key_path = self._paths(record_id)
        try:
            header = json.loads(_read_bounded(record_path, MAX_RECORD_BYTES))
            schema, models = header["schema"], header["models"]
            if type(schema) is not int or not isinstance(models, str):
                raise ValueError("schema or models of the wrong type")
            nonce, ciphertext = _unb64(header["nonce"]), _unb64(header["ciphertext"])
            if header["id"] != record_id:
                raise ValueError("id does not match the file name")
        except OSError as exc:
            raise StoreError(f"record {record_path.name} cannot be read ({_hint(exc)})") from exc
        except PARSE_ERRORS as exc:
            raise StoreError(f"record {record_path.name} is corrupt or truncated "
                             f"({shorten(str(exc), 80)})") from exc
        if schema != SCHEMA_VERSION:
            raise StoreError(f"record {record_path.name} has schema {shorten(schema)}, this avid reads "
                             f"{SCHEMA_VERSION}: re-enrol the person")
        if models != self._models:
            raise StoreError(f"record {record_path.name} was made by other models ({shorten(models, 80)}, now "
                             f"{self._models}): re-enrol the person with 'avid enroll NAME --replace'")
        aad = self._aad(record_id, models, schema)
        try:
            wrapped = json.loads(_read_bounded(key_path, MAX_KEY_RECORD_BYTES))
            data_key = self._device_key.decrypt(_unb64(wrapped["nonce"]), _unb64(wrapped["key"]), aad)
        except FileNotFoundError:
            raise StoreError(f"record {record_path.name} has no key file (deleted person)") from None
        except (OSError, InvalidTag, *PARSE_ERRORS) as exc:
            raise StoreError(f"key of {record_path.name} cannot be unwrapped (corrupt file or "
                             "another device key)") from exc
        try:
            payload = json.loads(AESGCM(data_key).decrypt(nonce, ciphertext, aad))
            face = np.frombuffer(_unb64(payload["face"]), np.float32).reshape(-1, FACE_DIM)
            voice = np.frombuffer(_unb64(payload["voice"]), np.float32).reshape(-1, VOICE_DIM)
            generation = payload["generation"]
            if type(generation) is not int or generation < 0:
                raise ValueError("generation is not a non-negative integer")
            digits = {str(k): np.frombuffer(_unb64(v["data"]), np.float32).reshape(v["shape"]).copy()
                      for k, v in payload.get("digits", {}).items()}
            return Person(validate_name(payload["name"]), face.copy(), voice.copy(),
                          generation, record_id, digits)
        except InvalidTag as exc:
            raise StoreError(f"record {record_path.name} fails authentication (corrupt or tampered)") from exc
        except PARSE_ERRORS as exc:
            raise StoreError(f"record {record_path.name} has an invalid payload "
                             f"({shorten(str(exc), 80)})") from exc

    # --- writing ----------------------------------------------------------------------------
    def _writing(self) -> StateLock:
        """The exclusive lock of the state directory, which is created (0700) if needed."""
        try:
            make_private_dirs(self.state_dir)
        except OSError as exc:
            raise StoreError(f"cannot create the state directory {self.state_dir}: {_hint(exc)}") from exc
        check_state_dir(self.state_dir)
        return StateLock(self.state_dir, exclusive=True)

    def save(self, person: Person, replace: bool = False) -> Person:
        """Store ``person`` durably under a new id; with ``replace`` an existing namesake goes.

        Concurrent saves and deletes (other processes) are serialised by the state lock, so each
        one that returns has its record on disk.

        Raises :class:`StoreError` if the name exists and ``replace`` is false, and for any file
        system failure (full disk, read-only file system...), with nothing half-written left behind.
        """
        validate_name(person.name)
        for modality, width in (("face", FACE_DIM), ("voice", VOICE_DIM)):
            samples = np.asarray(getattr(person, modality))
            # _read() reshapes the bytes to (-1, width): any other shape would come back garbled.
            if samples.ndim != 2 or samples.shape[1] != width or not np.all(np.isfinite(samples)):
                raise StoreError(f"{person.name}: {modality} embeddings must be finite and of shape "
                                 f"(n, {width}), got {samples.shape}")
        for key, mfcc in person.digits.items():
            mfcc = np.asarray(mfcc)
            if mfcc.ndim != 2 or mfcc.shape[0] == 0 or not np.all(np.isfinite(mfcc)):
                raise StoreError(f"{person.name}: digit recording {key!r} must be a finite, "
                                 f"non-empty (frames, coefficients) array, got {mfcc.shape}")
        with self._writing():
            try:
                return self._save_locked(person, replace)
            except OSError as exc:
                if isinstance(exc, StoreError):
                    raise
                raise StoreError(f"cannot save {person.name} in {self.directory}: {_hint(exc)}") from exc

    def _save_locked(self, person: Person, replace: bool) -> Person:
        everyone = self._read_all()
        namesakes = [p for p in everyone if p.name == person.name]
        if namesakes and not replace:
            raise StoreError(f"{person.name!r} is already enrolled: use --replace to re-enrol, or delete first")
        remove_stale_temporaries(self.directory)
        generation = 1 + max((p.generation for p in everyone), default=0)
        record_id = secrets.token_hex(8)
        record_path, key_path = self._paths(record_id)
        aad = self._aad(record_id, self._models, SCHEMA_VERSION)
        data_key = AESGCM.generate_key(bit_length=256)
        key_nonce, nonce = secrets.token_bytes(12), secrets.token_bytes(12)
        wrapped = {"nonce": _b64(key_nonce), "key": _b64(self._device_key.encrypt(key_nonce, data_key, aad))}
        payload = json.dumps({
            "name": person.name, "generation": generation,
            "face": _b64(np.ascontiguousarray(person.face, np.float32).tobytes()),
            "voice": _b64(np.ascontiguousarray(person.voice, np.float32).tobytes()),
            "digits": {str(k): {"shape": list(np.shape(v)),
                                "data": _b64(np.ascontiguousarray(v, np.float32).tobytes())}
                       for k, v in person.digits.items()},
        }).encode()
        header = {"schema": SCHEMA_VERSION, "id": record_id, "models": self._models,
                  "nonce": _b64(nonce), "ciphertext": _b64(AESGCM(data_key).encrypt(nonce, payload, aad))}
        # The key first: a record without its key would be unreadable, a key without a record is
        # only an orphan that the next save or delete removes.
        try:
            write_atomic(key_path, json.dumps(wrapped).encode())
            write_atomic(record_path, json.dumps(header).encode())
        except BaseException:
            # Nothing half-made may stay: the new record is either complete or absent.
            remove_durably(record_path, key_path)
            raise
        for old in namesakes:
            remove_durably(*self._paths(old.id))
        self._remove_orphan_keys()
        return Person(person.name, person.face, person.voice, generation, record_id, person.digits)

    def delete(self, name: str) -> bool:
        """Remove a person's record and data key (crypto-shredding); False if not enrolled."""
        with self._writing():
            try:
                return self._delete_locked(name)
            except OSError as exc:
                if isinstance(exc, StoreError):
                    raise
                raise StoreError(f"cannot delete {shorten(name)} from {self.directory}: {_hint(exc)}") from exc

    def _delete_locked(self, name: str) -> bool:
        targets = [p.id for p in self._read_all() if p.name == name]
        if not targets:
            return False
        for record_id in targets:
            record_path, key_path = self._paths(record_id)
            # The key first: once it is gone the record is unreadable even if unlinking it fails.
            remove_durably(key_path)
            remove_durably(record_path)
        remove_stale_temporaries(self.directory)
        self._remove_orphan_keys()
        return True

    def _remove_orphan_keys(self) -> None:
        # A key without its record is a save cut short; a record without its key is a delete cut
        # short (the key goes first): neither can ever be read, so both go. Only called with the
        # state lock held, so no other writer is between its two writes.
        names = set(os.listdir(self.directory))
        for name in names:
            stem, dot, suffix = name.rpartition(".")
            if name.startswith(".") or not dot:
                continue
            if suffix == "key" and f"{stem}.tpl" not in names:
                remove_durably(self.directory / name)
            elif suffix == "tpl" and f"{stem}.key" not in names:
                remove_durably(self.directory / name)
