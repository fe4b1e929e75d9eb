"""One attempt at the door, from the first face or speech to the end of the utterance.

States: idle → active → (finished, handed to the decider) → cooldown → idle. An attempt starts when
a face or speech appears and ends when the utterance ends, or at ``timeout_seconds``; a face that
never speaks is *abandoned* (no decision is logged as a failure: people walk past doors). During an
attempt the best few face frames (by quality) and the voiced audio are kept, and embedding jobs are
handed out as soon as their input is complete, so that little is left when speech ends.

After an early accept the rest of that person's utterance starts no new attempt, until the VAD
ends it or their face has been gone for :data:`PERSON_LEFT_SECONDS`. webrtcvad can hold an
utterance open through background noise it calls voiced; a face-started attempt then takes the
speech of that open utterance from its own start, instead of waiting for a 'start' that would not
come before the next silence.

All times are the capture times of the events (seconds on the injected monotonic clock), so the
tracker is deterministic under test and replay.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from daemon.decide.evidence import Evidence
from daemon.detect.face_quality import scorable
from daemon.embed.speaker_encoder import mean_embedding
from daemon.capture.audio import SAMPLE_RATE_HZ
from daemon.embed.voice_windows import VoiceWindows

log = logging.getLogger(__name__)

_attempt_ids = itertools.count(1)

#: No face for this long means the person who was accepted early has left: a face after that is a
#: new person, even if the VAD still holds an utterance open (background noise it calls voiced).
PERSON_LEFT_SECONDS = 1.0


@dataclass
class FaceSample:
    """A face frame kept for the attempt; ``embedding`` arrives from the embedding worker."""

    t: float
    quality: float
    chip: np.ndarray | None = field(repr=False, default=None)
    embedding: np.ndarray | None = field(repr=False, default=None)


@dataclass(frozen=True)
class EmbedJob:
    """Work for the embedding worker: a face chip or a voice window of one attempt."""

    attempt: "Attempt"
    kind: str          # "face", "voice" or "tail" (a speculative last window)
    key: object
    data: np.ndarray


class Attempt:
    """Evidence gathered during one attempt."""

    def __init__(self, started_at: float, best_faces: int, max_speech_seconds: float):
        self.id = next(_attempt_ids)
        self.started_at = started_at
        self.best_faces = best_faces
        self.faces: dict[int, FaceSample] = {}
        self.face_frames = 0
        self.face_problems: Counter[str] = Counter()
        self.speech_started_at: float | None = None
        self.speech_ended_at: float | None = None
        self.voice = VoiceWindows(max_speech_seconds)
        self.window_embeddings: dict[int, np.ndarray] = {}
        #: Speculative embeddings of the tail windows, by (voiced length, window index).
        self.tail_embeddings: dict[tuple[int, int], np.ndarray | None] = {}
        self.windows_sent = 0
        self.ended_at: float | None = None
        self.end_reason = ""
        self.errors: list[str] = []
        #: Set when the attempt was accepted before its utterance ended (it is then not decided again).
        self.early_decision = None
        #: Kept by the liveness check (:class:`~daemon.liveness.check.LivenessCheck`), opaque here.
        self.liveness_record = None
        #: With a challenge (daemon.challenge.runner): the end of speech does not end the attempt
        #: before ``release_after`` (set when the last prompt is out), and it ends at ``hold_until``.
        self.challenge_record = None
        self.hold_until: float | None = None
        self.release_after: float | None = None
        self._pending = 0
        self._settled = threading.Condition()
        self._sample_ids = itertools.count()

    # --- embedding results -----------------------------------------------------------------
    def _job_sent(self) -> None:
        with self._settled:
            self._pending += 1

    def deliver(self, job: EmbedJob, embedding: np.ndarray | None, error: str | None = None) -> None:
        """Called by the embedding worker with a job's result (or its error)."""
        with self._settled:
            self._pending -= 1
            if error:
                self.errors.append(error)
            elif job.kind == "face" and job.key in self.faces:
                self.faces[job.key].embedding = embedding
            elif job.kind == "voice":
                self.window_embeddings[job.key] = embedding
            elif job.kind == "tail":
                self.tail_embeddings[job.key] = embedding
            self._settled.notify_all()

    def wait_settled(self, timeout: float) -> bool:
        """Wait until every job handed out has a result; False on timeout."""
        with self._settled:
            return self._settled.wait_for(lambda: self._pending == 0, timeout=timeout)

    def last_windows(self, embed) -> list[np.ndarray]:
        """Embeddings of the windows left once the utterance has ended, reusing speculative ones
        computed at the last pause; ``embed`` computes any that are missing."""
        length = self.voice.length
        result = []
        for index, window in self.voice.peek_finish():
            ready = self.tail_embeddings.get((length, index))
            result.append(ready if ready is not None else embed(window))
        self.voice.finish()
        return result

    def face_embeddings(self) -> list[np.ndarray]:
        """Embeddings of the kept face frames, best quality first."""
        kept = sorted(self.faces.values(), key=lambda s: s.quality, reverse=True)
        return [s.embedding for s in kept if s.embedding is not None]

    def face_quality(self) -> float:
        """Mean quality of the kept faces (0 when none)."""
        return float(np.mean([s.quality for s in self.faces.values()])) if self.faces else 0.0

    def settled(self) -> bool:
        """True when every embedding job handed out has its result."""
        with self._settled:
            return self._pending == 0

    def evidence_so_far(self) -> tuple[Evidence, int] | None:
        """Evidence from what is already embedded, before the utterance ends, and the voiced length
        it covers (None when there is nothing to judge yet). The voice is the complete windows plus
        the newest fully embedded set of last windows (embedded at a pause, or speculatively while
        speech goes on). Call with the tracker's lock held."""
        if self.errors or self.speech_started_at is None:
            return None
        full = sorted(self.window_embeddings)
        if full != list(range(len(full))):
            return None  # a window is still being embedded
        windows = [self.window_embeddings[k] for k in full]
        covered = self.voice.covered_by(len(windows))
        for length in sorted({k[0] for k in self.tail_embeddings}, reverse=True):
            tail = {k[1]: e for k, e in self.tail_embeddings.items() if k[0] == length}
            if length > covered and all(e is not None for e in tail.values()):
                windows = windows[:min(tail)] + [tail[i] for i in sorted(tail)]
                covered = length
                break
        faces = tuple(self.face_embeddings())
        if not windows or not faces:
            return None
        evidence = Evidence(faces, self.face_quality(), (), mean_embedding(windows), covered / SAMPLE_RATE_HZ, ())
        return evidence, covered

    def evidence(self, embed_window, min_speech_seconds: float) -> Evidence:
        """The attempt as :class:`~daemon.decide.evidence.Evidence` (liveness not yet judged).

        ``embed_window`` embeds any last voice window not already embedded at the pause.
        """
        if self.errors:
            return Evidence(error=self.errors[0])
        voice, voice_problems = None, ()
        if self.speech_started_at is None:
            voice_problems = ("no_speech",)
        elif self.voice.seconds < min_speech_seconds:
            voice_problems = ("speech_too_short",)
        else:
            windows = [self.window_embeddings[k] for k in sorted(self.window_embeddings)]
            windows += self.last_windows(embed_window)
            voice = mean_embedding(windows) if windows else None
        face_problems = tuple(p for p, _ in self.face_problems.most_common())
        return Evidence(tuple(self.face_embeddings()), self.face_quality(), face_problems,
                        voice, self.voice.seconds, voice_problems)


class AttemptTracker:
    """Turns per-frame face observations and speech events into attempts.

    ``dispatch(job)`` sends embedding work away (returns False if it was dropped); ``finished``
    receives each attempt that ended and needs a decision.
    """

    def __init__(self, config, dispatch: Callable[[EmbedJob], bool],
                 finished: Callable[[Attempt], None], speculate_from_seconds: float | None = None,
                 speculate_every_seconds: float = 0.25):
        self._config = config
        # While speech goes on, embed the last windows every so often once this much was heard, so
        # that an early decision can use all the speech so far (None: only at pauses).
        self._speculate_from = speculate_from_seconds
        self._speculate_every = int(speculate_every_seconds * SAMPLE_RATE_HZ)
        self._dispatch = dispatch
        self._finished = finished
        self._lock = threading.RLock()
        self.current: Attempt | None = None
        self._cooldown_until = float("-inf")
        # After an early accept the person usually goes on speaking: the rest of that utterance
        # (until the VAD's end, at most one attempt timeout) belongs to the decided attempt and
        # must not start another.
        self._finishing_until = float("-inf")
        self._no_face_since: float | None = None
        #: Called with each new attempt (the challenge runner starts its challenge here).
        self.on_start: Callable[[Attempt], None] | None = None

    # --- inputs ----------------------------------------------------------------------------
    def on_frame(self, t: float, observation) -> Attempt | None:
        """A processed frame: ``observation`` is a FaceObservation or None (no face).

        Returns the attempt the frame belongs to (None when no attempt is running).
        """
        with self._lock:
            attempt = self.current
            if observation is None:
                if self._no_face_since is None:
                    self._no_face_since = t
            else:
                if attempt is None and self._no_face_since is not None \
                        and t - self._no_face_since >= PERSON_LEFT_SECONDS:
                    self._finishing_until = float("-inf")  # whoever was accepted early has gone
                self._no_face_since = None
            if attempt is None:
                if observation is None or t < max(self._cooldown_until, self._finishing_until):
                    return None
                attempt = self._start(t, "face")
            if observation is None:
                return attempt
            attempt.face_frames += 1
            if observation.problems:
                attempt.face_problems.update(observation.problems)
                if not scorable(observation.problems):
                    return attempt
            self._offer_face(attempt, t, observation)
            return attempt

    def _offer_face(self, attempt: Attempt, t: float, observation) -> None:
        kept = attempt.faces
        if len(kept) >= attempt.best_faces:
            worst_key = min(kept, key=lambda k: kept[k].quality)
            if observation.quality <= kept[worst_key].quality:
                return
            del kept[worst_key]
        key = next(attempt._sample_ids)
        kept[key] = FaceSample(t, observation.quality, observation.chip)
        self._send(EmbedJob(attempt, "face", key, observation.chip))

    def on_speech(self, event) -> None:
        """A :class:`~daemon.detect.vad.SpeechEvent`."""
        with self._lock:
            if event.kind in ("start", "end") and self._finishing_until > float("-inf"):
                # The early-accepted utterance is over: the cooldown counts from its end.
                self._finishing_until = float("-inf")
                if event.kind == "end":
                    self._cooldown_until = max(self._cooldown_until, event.t + self._config.cooldown_seconds)
            attempt = self.current
            if attempt is None:
                if event.kind != "start" or event.t < self._cooldown_until:
                    return
                attempt = self._start(event.t, "speech")
            if event.kind == "start":
                if attempt.speech_started_at is None:
                    attempt.speech_started_at = event.t
                self._add_voice(attempt, event.audio)
            elif event.kind == "audio":
                # An utterance already under way when a face started the attempt (the VAD took
                # background noise for speech and has not ended it): the attempt takes the speech
                # from now on rather than waiting for a start that will not come.
                if attempt.speech_started_at is None:
                    attempt.speech_started_at = event.t
                self._add_voice(attempt, event.audio)
            elif event.kind == "pause" and attempt.speech_started_at is not None:
                self._embed_tail(attempt)
            elif event.kind == "end" and attempt.speech_started_at is not None:
                attempt.speech_ended_at = event.t
                if attempt.hold_until is not None and event.t < attempt.hold_until and (
                        attempt.release_after is None or event.t < attempt.release_after):
                    return  # an answer ended; more prompts are coming
                self._end(attempt, event.t, "speech_end")

    def _add_voice(self, attempt: Attempt, samples: np.ndarray) -> None:
        for window in attempt.voice.add(samples):
            self._send(EmbedJob(attempt, "voice", attempt.windows_sent, window))
            attempt.windows_sent += 1
        if self._speculate_from is not None and attempt.voice.seconds >= self._speculate_from:
            newest = max((k[0] for k in attempt.tail_embeddings), default=0)
            if attempt.voice.length - newest >= self._speculate_every:
                self._embed_tail(attempt)

    def _embed_tail(self, attempt: Attempt) -> None:
        # Speech paused: if this is the end, the last (partial) windows are already known. Embed
        # them now, keyed by the voiced length, so that the decision can reuse them if nothing is
        # added before the end event.
        for index, window in attempt.voice.peek_finish():
            key = (attempt.voice.length, index)
            if key not in attempt.tail_embeddings:
                attempt.tail_embeddings[key] = None
                self._send(EmbedJob(attempt, "tail", key, window))

    def snapshot(self, attempt: Attempt) -> tuple[Evidence, int] | None:
        """The attempt's evidence so far and the voiced length it covers, if it is still running."""
        with self._lock:
            if self.current is not attempt:
                return None
            return attempt.evidence_so_far()

    def end_early(self, attempt: Attempt, now: float) -> bool:
        """End a running attempt that was accepted early (False if it has ended meanwhile). More
        speech after the evidence was taken does not matter: what was heard already sufficed."""
        with self._lock:
            if self.current is not attempt:
                return False
            self._end(attempt, now, "early")
            self._finishing_until = now + self._config.timeout_seconds
            return True

    def poll(self, now: float) -> None:
        """End the current attempt if it has run for ``timeout_seconds`` (with a challenge: when
        the challenge is over)."""
        with self._lock:
            attempt = self.current
            if attempt is None:
                return
            if attempt.hold_until is not None:
                if now >= attempt.hold_until:
                    self._end(attempt, now, "challenge_done")
            elif now - attempt.started_at >= self._config.timeout_seconds:
                self._end(attempt, now, "timeout")

    def abort(self, now: float, reason: str) -> None:
        """End the current attempt because a device failed; it will be denied."""
        with self._lock:
            if self.current is not None:
                self.current.errors.append(reason)
                self._end(self.current, now, "error")

    # --- internals -------------------------------------------------------------------------
    def _start(self, t: float, trigger: str) -> Attempt:
        attempt = Attempt(t, self._config.best_faces, self._config.max_speech_seconds)
        self.current = attempt
        log.debug("attempt %d started by %s", attempt.id, trigger)
        if self.on_start is not None:
            self.on_start(attempt)
        return attempt

    def _send(self, job: EmbedJob) -> None:
        job.attempt._job_sent()
        if not self._dispatch(job):
            job.attempt.deliver(job, None, None if job.kind in ("face", "tail") else "embedding queue full")

    def _end(self, attempt: Attempt, t: float, reason: str) -> None:
        attempt.ended_at, attempt.end_reason = t, reason
        self.current = None
        self._cooldown_until = t + self._config.cooldown_seconds
        self._finished(attempt)
