"""The capture loop: camera and microphone → attempts → decisions → lock.

Threads:

* **frames** reads the frame source (bounded waits), detects faces, judges them, aligns chips;
* **audio** reads the audio source, runs the VAD and feeds speech events;
* **embed** runs the face and speaker encoders from a bounded queue (face chips are dropped when it
  is full: a late frame is worth less than a fresh one; voice windows wait);
* the **main** thread decides each finished attempt, drives the lock, writes the log line and feeds
  the systemd watchdog after every complete, fresh iteration.

Every path that fails leaves the relay de-energised: a device fault aborts the attempt in progress
(denied with ``reason=error``), and the lock relocks on its own timer whatever the loop does.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from daemon.capture.base import ThreadedSource
from daemon.decide.attempt import Attempt, AttemptTracker, EmbedJob
from daemon.decide.decision import Decision, decide
from daemon.decide.evidence import Evidence
from daemon.detect.vad import VadSettings
from daemon.errors import AvidError, LockError, SourceError, SourceTimeout
from daemon.liveness.result import LivenessResult

log = logging.getLogger(__name__)
#: The decision log: one line per attempt with stable key=value fields.
decisions_log = logging.getLogger("daemon.decision")

#: Reasons that count towards the lockout: attempts that reached a comparison or the liveness check.
COUNTED_FAILURES = frozenset({"no_match", "face_mismatch", "voice_mismatch", "ambiguous", "liveness_failed",
                              "challenge_failed"})
SETTLE_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class DecisionEvent:
    """What the loop reports for each decided attempt (tests and the demo read these)."""

    attempt_id: int
    decision: Decision
    latency_ms: float
    end_reason: str
    speech_ended_at: float | None
    decided_at: float
    speech_seconds: float | None = None


class DeviceHealth:
    """Logs a device going away once, and once when it is back (not every frame).

    ``status`` (e.g. the sd_notify ``STATUS=`` sender) hears the same two transitions.
    """

    def __init__(self, name: str, status: Callable[[str], object] | None = None):
        self.name = name
        self.ok = True
        self.failures = 0
        self._status = status

    def failed(self, why: str) -> None:
        self.failures += 1
        if self.ok:
            self.ok = False
            log.warning("%s unavailable: %s (attempts are denied until it is back)", self.name, why)
            if self._status:
                self._status(f"{self.name} unavailable: {why}")

    def recovered(self) -> None:
        if not self.ok:
            self.ok = True
            log.info("%s is back", self.name)
            if self._status:
                self._status("running")


class CaptureLoop:
    """Runs a :class:`~daemon.service.door.Door` until :meth:`stop` (or until replay sources end).

    ``open_frames`` and ``open_audio`` build a fresh source (called again after a device fault):
    the configured devices in the daemon, replays in the demo, the benchmark and the tests.
    ``health`` is an optional :class:`~daemon.service.watchdog.HealthGate`; ``notifier`` an optional
    sd_notify client for ``STATUS=`` lines; ``on_decision`` hears every :class:`DecisionEvent`.
    """

    def __init__(self, door, lock, open_frames: Callable[[], ThreadedSource],
                 open_audio: Callable[[], ThreadedSource], *, health=None,
                 clock: Callable[[], float] = time.monotonic,
                 on_decision: Callable[[DecisionEvent], None] | None = None,
                 stop_at_end_of_replay: bool = False, notifier=None):
        self.door = door
        self.config = door.config
        self.pipeline = door.pipeline
        self.lock = lock
        self.lockout = door.lockout
        self.liveness = door.liveness
        self._open_frames, self._open_audio = open_frames, open_audio
        self._health = health
        self._clock = clock
        self._on_decision = on_decision
        self._stop_at_end = stop_at_end_of_replay
        self._stop = threading.Event()
        self._jobs: queue.Queue = queue.Queue(maxsize=8)
        #: ("finished", attempt) to decide, ("early", attempt) when more of it is embedded, or
        #: ("command", callable) from another thread (e.g. a remote unlock) to run here.
        self._inbox: queue.Queue = queue.Queue()
        decision = self.config.decision
        self.tracker = AttemptTracker(
            self.config.attempt, self._dispatch, self._attempt_finished,
            speculate_from_seconds=decision.early_min_speech_seconds if decision.early_accept else None)
        #: The random challenge (daemon/challenge/runner.py), None without a prompt device.
        self.challenge = getattr(door, "challenge", None)
        if self.challenge is not None:
            self.tracker.on_start = self.challenge.start
        self._vad = VadSettings.from_config(self.config)
        self._early_accept = self.config.decision.early_accept
        self._decision_listeners: list[Callable[[DecisionEvent], None]] = []
        # A media clock (avid demo --fast) waits for queued work instead of replaying past it.
        self._hold = getattr(self._clock, "hold", lambda: None)
        self._unhold = getattr(self._clock, "unhold", lambda: None)
        status = notifier.status if notifier is not None else None
        self.camera = DeviceHealth("camera", status)
        self.microphone = DeviceHealth("microphone", status)
        self._ended = {"frames": False, "audio": False}
        self.events: list[DecisionEvent] = []
        self._threads: list[threading.Thread] = []
        self._last_frame_digest = None
        self._frozen_since: float | None = None

    # --- public ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask every thread to finish; the lock is relocked by the caller's close()."""
        self._stop.set()

    def submit(self, command: Callable[[], object]) -> None:
        """Run ``command()`` on the main thread as soon as it is free (from any thread)."""
        self._inbox.put(("command", command))

    def add_decision_listener(self, listener: Callable[[DecisionEvent], None]) -> None:
        """Call ``listener(event)`` on the main thread after each decision (must not block)."""
        self._decision_listeners.append(listener)

    def run(self, duration_s: float | None = None) -> list[DecisionEvent]:
        """Run until stopped, until ``duration_s`` passes, or until replay sources end."""
        self._threads = [
            threading.Thread(target=self._frames_worker, name="avid-frames", daemon=True),
            threading.Thread(target=self._audio_worker, name="avid-audio", daemon=True),
            threading.Thread(target=self._embed_worker, name="avid-embed", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        started = self._clock()
        try:
            while not self._stop.is_set():
                try:
                    kind, attempt = self._inbox.get(timeout=0.1)
                except queue.Empty:
                    kind, attempt = None, None
                if kind == "finished":
                    try:
                        self._decide(attempt)
                    finally:
                        self._unhold()
                elif kind == "early":
                    try:
                        self._try_early(attempt)
                    finally:
                        self._unhold()
                elif kind == "command":
                    try:
                        attempt()
                    except Exception:
                        log.exception("queued command failed")
                now = self._clock()
                if self.challenge is not None:
                    self.challenge.poll(now)
                    current = self.tracker.current
                    if current is not None:
                        self.challenge.recognise_early(current, self.liveness, self.door.people(), now)
                self.tracker.poll(now)
                if self._health is not None:
                    self._health.iteration_done()
                if duration_s is not None and now - started >= duration_s:
                    break
                if self._stop_at_end and all(self._ended.values()) and self._inbox.empty() \
                        and self.tracker.current is None:
                    break
                if self._stop_at_end and all(self._ended.values()) and self.tracker.current is not None:
                    self.tracker.poll(float("inf"))
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(timeout=2.0)
            self.lock.relock("loop stopped")
        return self.events

    # --- workers ---------------------------------------------------------------------------
    def _source_loop(self, name: str, open_source, health: DeviceHealth, handle, timeout_s: float):
        source = None
        while not self._stop.is_set():
            try:
                if source is None:
                    source = open_source().start()
                item = source.read(timeout=timeout_s)
                if item is None:
                    self._ended[name] = True
                    return
                handle(item)
            except SourceTimeout as exc:
                health.failed(str(exc))
                self.tracker.abort(self._clock(), f"{health.name}_timeout")
            except (SourceError, AvidError, OSError, ValueError) as exc:
                health.failed(str(exc))
                self.tracker.abort(self._clock(), f"{health.name}_error")
                if source is not None:
                    source.close()
                    source = None
                self._stop.wait(1.0)  # bounded back-off before reopening the device
            except Exception as exc:  # an unexpected bug must not kill the loop silently
                log.exception("%s worker: unexpected error", name)
                health.failed(f"unexpected {type(exc).__name__}")
                self.tracker.abort(self._clock(), f"{health.name}_error")
                self._stop.wait(1.0)
        if source is not None:
            source.close()

    def _frames_worker(self) -> None:
        self._source_loop("frames", self._open_frames, self.camera, self._on_frame,
                          self.config.camera.read_timeout_seconds)

    def _audio_worker(self) -> None:
        segmenter = self._vad.segmenter()
        pending = np.zeros(0, np.float32)

        def on_block(item) -> None:
            nonlocal pending
            samples = np.asarray(item.data, dtype=np.float32).reshape(-1)
            if not np.all(np.isfinite(samples)):
                # Garbage from a working device: drop it and the utterance it broke, keep reading.
                self.microphone.failed("audio block contains NaN or infinite samples")
                self.tracker.abort(item.t, "microphone_garbage")
                segmenter.reset()
                pending = np.zeros(0, np.float32)
                return
            self.microphone.recovered()
            if self.challenge is not None:
                samples = self.challenge.mask(item.t, samples)
            attempt = self.tracker.current
            if attempt is not None and self.liveness is not None:
                self.liveness.observe_audio(attempt, item.t, samples)
            # Blocks of any size (short reads included) are re-cut into VAD frames.
            pending = np.concatenate([pending, samples])
            n = segmenter.frame_samples
            while pending.size >= n:
                frame, pending = pending[:n], pending[n:]
                for event in segmenter.push(frame, item.t):
                    self.tracker.on_speech(event)

        self._source_loop("audio", self._open_audio, self.microphone, on_block,
                          self.config.microphone.read_timeout_seconds)

    def _on_frame(self, item) -> None:
        now = self._clock()
        if now - item.t > self.config.watchdog.max_frame_age_seconds:
            raise SourceTimeout(f"frame is {now - item.t:.1f} s old (stale)")
        self._check_frozen(item)
        self.camera.recovered()
        if self._health is not None:
            self._health.frame_seen()
        observation = self.pipeline.observe_face(item.data)
        if self._health is not None:
            self._health.inference_ok()
        attempt = self.tracker.on_frame(item.t, observation)
        if attempt is not None and self.liveness is not None:
            self.liveness.observe_frame(attempt, item.t, item.data, observation)

    def _check_frozen(self, item) -> None:
        # A camera stack that keeps handing out the same buffer is as dead as one that blocks.
        digest = hash(item.data[::16, ::16].tobytes())
        if digest != self._last_frame_digest:
            self._last_frame_digest, self._frozen_since = digest, item.t
        elif item.t - self._frozen_since > self.config.watchdog.max_frame_age_seconds:
            raise SourceTimeout("camera returns the same frame over and over (frozen)")

    def _attempt_finished(self, attempt: Attempt) -> None:
        self._hold()
        self._inbox.put(("finished", attempt))

    def _dispatch(self, job: EmbedJob) -> bool:
        self._hold()
        try:
            if job.kind in ("face", "tail"):
                self._jobs.put_nowait(job)
            else:
                self._jobs.put(job, timeout=1.0)
            return True
        except queue.Full:
            self._unhold()
            return False

    def _embed_worker(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                if job.kind == "face":
                    embedding = self.pipeline.embed_chip(job.data)
                else:  # "voice" or "tail"
                    embedding = self.pipeline.embed_window(job.data)
                job.attempt.deliver(job, embedding)
                if job.kind != "face" and self._early_accept and job.attempt.early_decision is None:
                    self._hold()
                    self._inbox.put(("early", job.attempt))
            except Exception as exc:
                log.error("embedding failed: %s", exc)
                job.attempt.deliver(job, None, f"{job.kind}_embedding_failed")
            finally:
                self._unhold()

    # --- decisions -------------------------------------------------------------------------
    def _try_early(self, attempt: Attempt) -> None:
        """Accept an attempt still under way if the evidence so far suffices (else do nothing:
        the attempt is decided when it ends)."""
        if attempt.early_decision is not None or self.lockout.locked_out:
            return
        try:
            snapshot = self.tracker.snapshot(attempt)
            if snapshot is None:
                return
            evidence, _ = snapshot
            if self.door.policy.liveness_required:
                evidence = dataclasses.replace(evidence, liveness=self._check_liveness(attempt, self._clock()))
            decision = self.door.decide_early(evidence)
        except Exception:
            log.exception("attempt %d: early decision failed (the attempt is decided at its end)", attempt.id)
            return
        if decision is not None:
            attempt.early_decision = decision
            if not self.tracker.end_early(attempt, self._clock()):
                attempt.early_decision = None  # it ended meanwhile: decided the usual way

    def _decide(self, attempt: Attempt) -> None:
        try:
            decision = attempt.early_decision or self.door.decide(self._evidence(attempt))
        except Exception as exc:
            log.exception("attempt %d: decision failed", attempt.id)
            decision = decide([], self.door.policy, error=f"{type(exc).__name__}")
        if decision.accepted:
            try:
                self.lock.grant()
            except LockError as exc:  # closed: a stop signal came while the decision was made
                log.error("attempt %d: lock failed: %s", attempt.id, exc)
                decision = decide([], self.door.policy, error="lock_failed")
            except Exception:
                log.exception("attempt %d: lock failed", attempt.id)
                decision = decide([], self.door.policy, error="lock_failed")
        decided_at = self._clock()
        speech_end = attempt.speech_ended_at
        latency_ms = (decided_at - (speech_end if speech_end is not None else attempt.ended_at)) * 1000
        try:
            if decision.accepted:
                self.lockout.record_success()
            elif decision.reason in COUNTED_FAILURES:
                self.lockout.record_failure()
        except AvidError as exc:
            log.error("lockout state not saved: %s", exc)
        abandoned = (attempt.end_reason in ("timeout", "challenge_done")
                     and attempt.speech_started_at is None)
        self._log_decision(attempt, decision, latency_ms, abandoned)
        event = DecisionEvent(attempt.id, decision, latency_ms, attempt.end_reason, speech_end, decided_at,
                              attempt.voice.seconds)
        self.events.append(event)
        if self._on_decision is not None:
            self._on_decision(event)
        for listener in self._decision_listeners:
            try:
                listener(event)
            except Exception:
                log.exception("decision listener failed")

    def _evidence(self, attempt: Attempt) -> Evidence:
        """What the attempt offers, with its liveness judged when the policy needs it."""
        if self.lockout.locked_out:
            return Evidence()  # denied as locked out; nothing else is worth computing
        if not attempt.wait_settled(SETTLE_TIMEOUT_SECONDS):
            return Evidence(error="embedding_timeout")
        evidence = attempt.evidence(self.pipeline.embed_window, self.config.attempt.min_speech_seconds)
        if self.door.policy.liveness_required and not evidence.problems and not evidence.error:
            evidence = dataclasses.replace(evidence, liveness=self._check_liveness(attempt))
        if self.door.policy.challenge_required and not evidence.problems and not evidence.error:
            evidence = dataclasses.replace(evidence, challenge=self._check_challenge(attempt, evidence))
        return evidence

    def _check_challenge(self, attempt: Attempt, evidence: Evidence):
        from daemon.challenge.result import ChallengeResult
        from daemon.decide.evidence import score_evidence
        if self.challenge is None:
            return ChallengeResult(False, "no_challenge")
        try:
            # Only the best-scoring candidate can be accepted (decision.py): check the answers
            # against that person's digits alone.
            candidates = score_evidence(evidence, self.door.people(), self.door.fusion)
            best = max(candidates, key=lambda c: (c.fused != c.fused, c.fused), default=None)
            people = [p for p in self.door.people() if best is not None and p.name == best.name]
            return self.challenge.judge(attempt, self.liveness, people)
        except Exception as exc:
            log.error("attempt %d: challenge check failed: %s", attempt.id, exc)
            return ChallengeResult(False, f"error: {type(exc).__name__}")

    def _check_liveness(self, attempt: Attempt, until: float | None = None) -> LivenessResult:
        if self.liveness is None:
            return LivenessResult(False, None, "no liveness check available")
        try:
            return self.liveness.judge(attempt, until)
        except Exception as exc:
            log.error("attempt %d: liveness check failed: %s", attempt.id, exc)
            return LivenessResult(False, None, f"error: {type(exc).__name__}")

    def _log_decision(self, attempt: Attempt, decision: Decision, latency_ms: float, abandoned: bool):
        def fmt(value):
            return "-" if value is None else f"{value:.2f}"

        level = logging.INFO if decision.accepted or abandoned else logging.WARNING
        decisions_log.log(
            level, "attempt=%d decision=%s person=%s reason=%s face=%s voice=%s fused=%s "
                   "runner_up=%s liveness=%s speech_s=%.1f faces=%d end=%s latency_ms=%.0f",
            attempt.id, decision.decision, decision.person or "-",
            "abandoned" if abandoned and not decision.accepted else decision.reason,
            fmt(decision.face), fmt(decision.voice), fmt(decision.fused), fmt(decision.runner_up),
            fmt(decision.liveness), attempt.voice.seconds, len(attempt.faces), attempt.end_reason,
            latency_ms)
