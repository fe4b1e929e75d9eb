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
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from daemon.errors import StoreError
from daemon.state.atomic import remove_durably, remove_stale_temporaries, write_atomic

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FACE_DIM, VOICE_DIM = 128, 256
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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
    return base64.b64decode(text.encode("ascii"), validate=True)


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid person name, else raise :class:`StoreError`."""
    if not NAME_PATTERN.match(name):
        raise StoreError(f"invalid name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return name


class TemplateStore:
    """The encrypted templates of everyone enrolled at this door."""

    def __init__(self, state_dir: Path, device_key: bytes, models_fingerprint: str):
        self.directory = Path(state_dir) / "templates"
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
        logged; a corrupt record raises nothing here so that the others still work.
        """
        people: dict[str, Person] = {}
        for person in self._read_all():
            other = people.get(person.name)
            if other is None or person.generation > other.generation:
                people[person.name] = person
        return people

    def _read_all(self) -> list[Person]:
        self.refused = []
        people = []
        if not self.directory.is_dir():
            return people
        for record_path in sorted(self.directory.glob("*.tpl")):
            record_id = record_path.stem
            try:
                people.append(self._read(record_id))
            except StoreError as exc:
                self.refused.append(RefusedRecord(record_id, str(exc)))
                log.error("template %s refused: %s", record_id, exc)
        return people

    def _read(self, record_id: str) -> Person:
        record_path, key_path = self._paths(record_id)
        try:
            header = json.loads(record_path.read_text())
            schema, models = int(header["schema"]), str(header["models"])
            nonce, ciphertext = _unb64(header["nonce"]), _unb64(header["ciphertext"])
            if header["id"] != record_id:
                raise ValueError("id does not match the file name")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"record {record_path.name} is corrupt or truncated ({exc})") from exc
        if schema != SCHEMA_VERSION:
            raise StoreError(f"record {record_path.name} has schema {schema}, this avid reads "
                             f"{SCHEMA_VERSION}: re-enrol the person")
        if models != self._models:
            raise StoreError(f"record {record_path.name} was made by other models ({models}, now "
                             f"{self._models}): re-enrol the person with 'avid enroll NAME --replace'")
        aad = self._aad(record_id, models, schema)
        try:
            wrapped = json.loads(key_path.read_text())
            data_key = self._device_key.decrypt(_unb64(wrapped["nonce"]), _unb64(wrapped["key"]), aad)
        except FileNotFoundError:
            raise StoreError(f"record {record_path.name} has no key file (deleted person)") from None
        except (OSError, ValueError, KeyError, TypeError, InvalidTag) as exc:
            raise StoreError(f"key of {record_path.name} cannot be unwrapped (corrupt file or "
                             "another device key)") from exc
        try:
            payload = json.loads(AESGCM(data_key).decrypt(nonce, ciphertext, aad))
            face = np.frombuffer(_unb64(payload["face"]), np.float32).reshape(-1, FACE_DIM)
            voice = np.frombuffer(_unb64(payload["voice"]), np.float32).reshape(-1, VOICE_DIM)
            digits = {str(k): np.frombuffer(_unb64(v["data"]), np.float32).reshape(v["shape"]).copy()
                      for k, v in payload.get("digits", {}).items()}
            return Person(validate_name(payload["name"]), face.copy(), voice.copy(),
                          int(payload["generation"]), record_id, digits)
        except InvalidTag as exc:
            raise StoreError(f"record {record_path.name} fails authentication (corrupt or tampered)") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"record {record_path.name} has an invalid payload ({exc})") from exc

    # --- writing ----------------------------------------------------------------------------
    def save(self, person: Person, replace: bool = False) -> Person:
        """Store ``person`` durably under a new id; with ``replace`` an existing namesake goes.

        Raises :class:`StoreError` if the name exists and ``replace`` is false.
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
        write_atomic(key_path, json.dumps(wrapped).encode())
        write_atomic(record_path, json.dumps(header).encode())
        for old in namesakes:
            remove_durably(*self._paths(old.id))
        self._remove_orphan_keys()
        return Person(person.name, person.face, person.voice, generation, record_id, person.digits)

    def delete(self, name: str) -> bool:
        """Remove a person's record and data key (crypto-shredding); False if not enrolled."""
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
        # short (the key goes first): neither can ever be read, so both go.
        for key_path in self.directory.glob("*.key"):
            if not key_path.with_suffix(".tpl").exists():
                remove_durably(key_path)
        for record_path in self.directory.glob("*.tpl"):
            if not record_path.with_suffix(".key").exists():
                remove_durably(record_path)
