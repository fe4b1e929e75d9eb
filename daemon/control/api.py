"""The interface the running door offers to the control server (implemented by the service)."""

from __future__ import annotations

import threading
from typing import Callable, Protocol


class DoorAdmin(Protocol):
    """What an administrator may ask of the running door.

    The server calls these methods from its own threads, possibly several at once, so an
    implementation must be thread-safe and must never make the capture loop wait on them. Errors
    are raised as :class:`~daemon.errors.AvidError` subclasses with a plain message (it is shown to
    the administrator): :class:`~daemon.errors.EnrolmentError` for unusable samples,
    :class:`~daemon.errors.StoreError` for a name that is taken or invalid,
    :class:`~daemon.control.protocol.Busy` when a live enrolment is already running.
    """

    def status(self) -> dict:
        """A JSON-safe snapshot: ``lock`` ("locked"/"unlocked"), ``door``, ``alarms``, ``lockout``,
        ``enrolled`` (a count), ``models`` (fingerprint), ``devices``, ``suspended``,
        ``last_decisions`` (a list of dicts with the decision log line's fields) and
        ``operating_point`` (``threshold``, ``margin``, ``min_modality_llr``, ``calibration`` (the
        file) and the file's ``target_fmr``, ``expected_fnmr``, ``fnmr_ci``,
        ``door_one_to_one_by_enrol_utterances``, ``created``)."""

    def list_people(self) -> list[dict]:
        """``[{"name": ..., "face_samples": n, "voice_samples": n, "digit_recordings": n}, ...]``
        sorted by name."""

    def delete_person(self, name: str) -> bool:
        """Crypto-shred a person's record and key; False if nobody has that name."""

    def enrol_files(self, name: str, faces: list[bytes], voices: list[bytes], replace: bool,
                    digits: dict[str, list[bytes]] | None = None) -> dict:
        """Enrol from image and WAV bytes (the client read them); effective for the next attempt.
        ``digits`` maps each digit "0"-"9" to WAV bytes of it spoken (the challenge's material);
        given, every digit needs one usable recording.

        :returns: ``{"name": ..., "face_samples": n, "voice_samples": n, "digit_recordings": n}``
        :raises EnrolmentError: with a plain message naming every unusable sample
        """

    def enrol_live(self, name: str, samples: int, replace: bool,
                   progress: Callable[[dict], None], cancelled: threading.Event,
                   live_digits: bool = False) -> dict:
        """Guided enrolment at the door with the door's own camera and microphone; with
        ``live_digits`` the digits 0-9 too, twice each, after the sentences.

        Door decisions are suspended (the door stays locked and ``status()["suspended"]`` says
        so) until this returns or raises. ``progress({"prompt": ..., "step": i, "of": n})`` is
        called for every prompt; the call must return promptly once ``cancelled`` is set.

        :returns: as :meth:`enrol_files`
        """

    def lockout(self) -> dict:
        """``{"locked_out": bool, "remaining_seconds": s, "consecutive_failures": n}``."""

    def clear_lockout(self) -> None:
        """Reset the failure counter and any lockout in force."""
