"""The running door's side of the control socket (:class:`~daemon.control.api.DoorAdmin`).

:class:`LoopDoorAdmin` works on the :class:`~daemon.service.door.Door` of ``avid run``: enrolment and
deletion write through the door's template store and reload its people (a change counts from the
next attempt, without a restart); the loop's camera and microphone items are also offered to a live
enrolment (through a non-blocking tap: the loop never waits for the enrolment, see
:meth:`LoopDoorAdmin.tap`); its decisions are remembered for ``status``. While a live enrolment
runs the door is suspended (:meth:`~daemon.service.door.Door.suspend`): every attempt is denied, the
door stays locked, and ``status`` says ``suspended``.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from typing import Callable

import cv2
import numpy as np

from daemon.capture.audio import SAMPLE_RATE_HZ, read_wav
from daemon.challenge.enrol import digits_from_recordings, digits_live
from daemon.control.protocol import Busy, Cancelled
from daemon.detect.vad import VadSettings
from daemon.errors import EnrolmentError, StoreError
from daemon.service.enrolment import ENROL_MAX_SPEECH_SECONDS, embed_samples
from daemon.state.templates import Person, validate_name

log = logging.getLogger(__name__)

#: Tries per live sample before the enrolment gives up.
LIVE_TRIES = 3
#: How long a live sample waits for the person to start speaking.
LIVE_WAIT_FOR_SPEECH_SECONDS = 20.0
#: Audio kept from before the speech started (the VAD needs a few frames to decide).
_PRE_ROLL_SECONDS = 0.5


class _Tap:
    """Hands copies of a source's items to listeners; never blocks the source's reader."""

    def __init__(self):
        self._queues: list[queue.Queue] = []
        self._guard = threading.Lock()

    def subscribe(self, maxsize: int) -> queue.Queue:
        q: queue.Queue = queue.Queue(maxsize=maxsize)
        with self._guard:
            self._queues = self._queues + [q]
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self._guard:
            self._queues = [other for other in self._queues if other is not q]

    def publish(self, item) -> None:
        for q in self._queues:  # a copy-on-write list: no lock on the capture path
            try:
                q.put_nowait(item)
            except queue.Full:
                pass  # a slow listener loses items; the door does not wait for it


class _TappedSource:
    """A frame or audio source whose items are also published to a :class:`_Tap`."""

    def __init__(self, source, tap: _Tap):
        self._source, self._tap = source, tap

    def start(self) -> "_TappedSource":
        self._source.start()
        return self

    def read(self, timeout: float):
        item = self._source.read(timeout)
        if item is not None:
            self._tap.publish(item)
        return item

    def close(self) -> None:
        self._source.close()

    def __getattr__(self, name):
        return getattr(self._source, name)


class LoopDoorAdmin:
    """A :class:`~daemon.control.api.DoorAdmin` for the capture loop (thread-safe).

    :param make_pipeline: builds the models used for enrolment; enrolment never shares the loop's
        interpreters (TFLite interpreters are not thread-safe), and drops its own when done
    """

    def __init__(self, door, lock, monitor=None, make_pipeline: Callable[[], object] | None = None,
                 history: int = 10, clock: Callable[[], float] = time.monotonic):
        from daemon.service.door import make_pipeline as door_pipeline

        self.door = door
        self.config = door.config
        self._lock, self._monitor = lock, monitor
        self._lockout = door.lockout
        self._models = door.pipeline.models_fingerprint
        self._make_pipeline = make_pipeline or (lambda: door_pipeline(door.config))
        self._clock = clock
        self._writes = threading.Lock()
        self._live = threading.Lock()
        self._decisions: collections.deque = collections.deque(maxlen=history)
        self._frames_tap, self._audio_tap = _Tap(), _Tap()
        self.loop = None
        # What the door decides with, for operators (the web page cannot read the state folder).
        point, policy = door.point, door.policy
        self._operating_point = {"threshold": policy.threshold, "margin": policy.margin,
                                 "min_modality_llr": policy.min_modality_llr, "calibration": point.source,
                                 **point.report}

    def tap(self, open_frames, open_audio):
        """Source factories whose items are also offered to a live enrolment (pass them to the loop)."""
        return (lambda: _TappedSource(open_frames(), self._frames_tap),
                lambda: _TappedSource(open_audio(), self._audio_tap))

    @property
    def _people(self) -> dict[str, Person]:
        return {person.name: person for person in self.door.people()}

    # --- for the loop --------------------------------------------------------------------------
    def record_decision(self, event) -> None:
        """Remember a decision for ``status`` (the fields of the decision log line)."""
        d = event.decision

        def rounded(value):
            return None if value is None else round(float(value), 2)

        self._decisions.append({
            "attempt": event.attempt_id, "decision": d.decision, "person": d.person, "reason": d.reason,
            "face": rounded(d.face), "voice": rounded(d.voice), "fused": rounded(d.fused),
            "runner_up": rounded(d.runner_up), "liveness": rounded(d.liveness), "end": event.end_reason,
            "latency_ms": round(event.latency_ms)})

    # --- DoorAdmin -----------------------------------------------------------------------------
    def status(self) -> dict:
        """See :meth:`daemon.control.api.DoorAdmin.status`."""
        devices = {}
        if self.loop is not None:
            devices = {"camera": "ok" if self.loop.camera.ok else "unavailable",
                       "microphone": "ok" if self.loop.microphone.ok else "unavailable"}
        door, alarms = "unknown", []
        contact = getattr(self._monitor, "_contact", None)
        if contact is not None:
            door = "closed" if contact.is_pressed else "open"
        if getattr(self._monitor, "_held_reported", False):
            alarms.append("door_held_open")
        return {"lock": "unlocked" if self._lock.is_unlocked else "locked", "door": door, "alarms": alarms,
                "lockout": self.lockout(), "enrolled": len(self._people), "models": self._models,
                "devices": devices, "suspended": self.door.suspended_for is not None,
                "enrolling": self.door.suspended_for, "last_decisions": list(self._decisions),
                "operating_point": self._operating_point}

    def list_people(self) -> list[dict]:
        """See :meth:`daemon.control.api.DoorAdmin.list_people`."""
        return [_summary(p) for _, p in sorted(self._people.items())]

    def delete_person(self, name: str) -> bool:
        """See :meth:`daemon.control.api.DoorAdmin.delete_person`."""
        with self._writes:
            deleted = self.door.store.delete(name)
            if deleted:
                self.door.reload_people()
        return deleted

    def enrol_files(self, name: str, faces: list[bytes], voices: list[bytes], replace: bool,
                    digits: dict[str, list[bytes]] | None = None) -> dict:
        """See :meth:`daemon.control.api.DoorAdmin.enrol_files`."""
        self._check_name(name, replace)
        frames = [(f"face file {i}", cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
                  for i, data in enumerate(faces, 1)]
        recordings = [(f"voice file {i}", _decode_wav(data)) for i, data in enumerate(voices, 1)]
        problems, templates = [], {}
        try:
            face, voice = embed_samples(self._make_pipeline(), frames, recordings,
                                        self.config.attempt.min_speech_seconds)
        except EnrolmentError as exc:
            problems += exc.problems
        if digits:
            takes = [(digit, f"digit {digit} file {i}", lambda data=data: read_wav(data))
                     for digit, files in sorted(digits.items()) for i, data in enumerate(files, 1)]
            try:
                templates = digits_from_recordings(takes).to_arrays()
            except EnrolmentError as exc:
                problems += exc.problems
        if problems:  # every unusable sample of both kinds at once
            raise EnrolmentError.refused(problems)
        return self._save(name, list(face), list(voice), replace, templates)

    def enrol_live(self, name: str, samples: int, replace: bool,
                   progress: Callable[[dict], None], cancelled: threading.Event,
                   live_digits: bool = False) -> dict:
        """See :meth:`daemon.control.api.DoorAdmin.enrol_live`."""
        self._check_name(name, replace)
        if not self._live.acquire(blocking=False):
            raise Busy("a live enrolment is already running")
        try:
            self.door.suspend(name)
            pipeline = self._make_pipeline()
            faces, voices = [], []
            for step in range(1, samples + 1):
                face, voice = self._live_sample(pipeline, step, samples, progress, cancelled)
                faces.append(face)
                voices.append(voice)
            templates = {}
            if live_digits:
                templates = digits_live(self._recorder(cancelled), lambda text: progress({"prompt": text}),
                                        pause=lambda seconds: cancelled.wait(seconds)).to_arrays()
            return self._save(name, faces, voices, replace, templates)
        finally:
            self.door.resume()
            self._live.release()

    def lockout(self) -> dict:
        """See :meth:`daemon.control.api.DoorAdmin.lockout`."""
        return {"locked_out": self._lockout.locked_out, "remaining_seconds": round(self._lockout.remaining(), 1),
                "consecutive_failures": self._lockout.failures}

    def clear_lockout(self) -> None:
        """See :meth:`daemon.control.api.DoorAdmin.clear_lockout`."""
        self._lockout.clear()

    # --- helpers -------------------------------------------------------------------------------
    def _check_name(self, name: str, replace: bool) -> None:
        validate_name(name)
        if name in self._people and not replace:
            # Before any capture or embedding: a taken name is known at once.
            raise StoreError(f"{name!r} is already enrolled: use --replace to re-enrol, or delete first")

    def _save(self, name: str, faces: list, voices: list, replace: bool, digits: dict | None = None) -> dict:
        person = Person(name, np.array(faces, np.float32), np.array(voices, np.float32), digits=digits or {})
        with self._writes:
            saved = self.door.store.save(person, replace=replace)
            self.door.reload_people()
        return _summary(saved)

    def _live_sample(self, pipeline, step: int, of: int, progress, cancelled: threading.Event):
        problem = "no sample"
        for _ in range(LIVE_TRIES):
            progress({"prompt": "Look at the camera and say a sentence (about 3 seconds)", "step": step, "of": of})
            frames, audio = self._capture_utterance(cancelled)
            good = [o for o in (pipeline.observe_face(f) for f in frames[::3]) if o is not None]
            usable = [o for o in good if not o.problems]
            if not usable:
                seen = sorted({p for o in good for p in o.problems})
                problem = f"no usable face ({', '.join(seen) or 'no_face'})"
            else:
                voice = pipeline.voice_from_samples(audio, self.config.attempt.min_speech_seconds,
                                                    ENROL_MAX_SPEECH_SECONDS)
                if voice.embedding is not None:
                    progress({"prompt": "sample taken", "step": step, "of": of, "outcome": "taken"})
                    best = max(usable, key=lambda o: o.quality)
                    return pipeline.embed_chip(best.chip), voice.embedding
                problem = f"no usable speech ({', '.join(voice.problems)})"
            progress({"prompt": f"{problem}; try again", "step": step, "of": of, "outcome": "retry"})
        raise EnrolmentError(f"live enrolment: no usable sample in {LIVE_TRIES} tries: {problem}")

    def _recorder(self, cancelled: threading.Event) -> Callable[[float], np.ndarray]:
        """``record(seconds)`` from the loop's own microphone (via the tap): that much audio, or
        what came before a bounded wait ran out; raises :class:`Cancelled` once ``cancelled``."""
        def record(seconds: float) -> np.ndarray:
            wanted = int(seconds * SAMPLE_RATE_HZ)
            audio_q = self._audio_tap.subscribe(4096)
            blocks, have = [], 0
            deadline = self._clock() + seconds + self.config.microphone.read_timeout_seconds
            try:
                while have < wanted and self._clock() < deadline:
                    if cancelled.is_set():
                        raise Cancelled("live enrolment cancelled")
                    try:
                        item = audio_q.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    block = np.asarray(item.data, np.float32).reshape(-1)
                    blocks.append(block)
                    have += block.size
            finally:
                self._audio_tap.unsubscribe(audio_q)
            return np.concatenate(blocks)[:wanted] if blocks else np.zeros(0, np.float32)
        return record

    def _capture_utterance(self, cancelled: threading.Event) -> tuple[list, np.ndarray]:
        """Frames and audio of the next utterance, from the loop's own sources (via the taps)."""
        config = self.config
        segmenter = VadSettings.from_config(config).segmenter()
        fps = max(1.0, config.camera.fps)
        frames_q = self._frames_tap.subscribe(int(fps * 4))
        audio_q = self._audio_tap.subscribe(4096)
        recent_frames: collections.deque = collections.deque(maxlen=int(fps * (config.attempt.timeout_seconds + 2)))
        pre_roll: collections.deque = collections.deque(maxlen=max(1, int(_PRE_ROLL_SECONDS * 1000 / config.microphone.block_ms)))
        audio, pending = [], np.zeros(0, np.float32)
        started_at = None
        deadline = self._clock() + LIVE_WAIT_FOR_SPEECH_SECONDS
        try:
            while self._clock() < deadline:
                if cancelled.is_set():
                    raise Cancelled("live enrolment cancelled")
                while True:
                    try:
                        recent_frames.append(frames_q.get_nowait())
                    except queue.Empty:
                        break
                try:
                    item = audio_q.get(timeout=0.1)
                except queue.Empty:
                    continue
                block = np.asarray(item.data, np.float32).reshape(-1)
                (audio if started_at is not None else pre_roll).append(block)
                pending = np.concatenate([pending, block])
                n = segmenter.frame_samples
                ended = False
                while pending.size >= n:
                    frame, pending = pending[:n], pending[n:]
                    for event in segmenter.push(frame, item.t):
                        if event.kind == "start" and started_at is None:
                            started_at = item.t
                            audio = list(pre_roll)
                            deadline = self._clock() + config.attempt.timeout_seconds
                        elif event.kind == "end" and started_at is not None:
                            ended = True
                if ended:
                    break
        finally:
            self._frames_tap.unsubscribe(frames_q)
            self._audio_tap.unsubscribe(audio_q)
        while True:  # the frames of the last moments of speech
            try:
                recent_frames.append(frames_q.get_nowait())
            except queue.Empty:
                break
        if started_at is None:
            return [], np.zeros(0, np.float32)
        frames = [item.data for item in recent_frames if item.t >= started_at - _PRE_ROLL_SECONDS]
        return frames, np.concatenate(audio) if audio else np.zeros(0, np.float32)


def _decode_wav(data: bytes) -> np.ndarray | None:
    try:
        return read_wav(data)
    except Exception:  # any malformed header: the sample is unusable, nothing more
        return None


def _summary(person: Person) -> dict:
    return {"name": person.name, "face_samples": int(len(person.face)), "voice_samples": int(len(person.voice)),
            "digit_recordings": len(person.digits)}
