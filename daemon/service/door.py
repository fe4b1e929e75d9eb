"""The door, assembled in one place from its configuration.

:func:`build_door` loads and verifies the models, opens the template store with the device key,
reads the operating point, and builds the policy, the lockout and the liveness check. Everything
that can fail does so here, at start-up, before ``READY=1``: a model that does not match its
manifest, an unreadable key, an invalid calibration file. The caller exits non-zero and the relay is
never energised. The frame and audio sources are not part of the door: the capture loop
(:class:`~daemon.service.loop.CaptureLoop`) takes them as arguments, so the daemon passes the
configured devices and the demo, the benchmark and the tests pass their own.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from daemon.capture.audio import wav_seconds
from daemon.capture.sources import open_audio_source, open_frame_source
from daemon.config import Config
from daemon.decide.decision import Decision, Policy, decide
from daemon.decide.evidence import Evidence, decide_attempt, decide_early
from daemon.detect.vad import VadSettings
from daemon.decide.lockout import Lockout, LockoutPolicy
from daemon.fuse.calibration import OperatingPoint, load_operating_point
from daemon.fuse.fusion import FusionParams
from daemon.inference.selftest import run_selftest
from daemon.inference.tflite import DEFAULT_MODELS_DIR, SHIPPED_CALIBRATION, release_model_pages
from daemon.liveness.check import LivenessCheck, make_liveness_check
from daemon.pipeline import Pipeline
from daemon.state import store as state_store
from daemon.state.templates import Person, TemplateStore

log = logging.getLogger(__name__)

#: Calibration shipped with the models, used until an installer runs ``avid calibrate``.
DEFAULT_CALIBRATION = SHIPPED_CALIBRATION


def make_policy(config: Config, point: OperatingPoint) -> Policy:
    """The decision policy from the config and the operating point."""
    return Policy(point.threshold, point.margin, config.decision.missing_modality,
                  config.decision.single_modality_threshold, config.liveness.required,
                  config.decision.min_modality_llr,
                  challenge_required=config.prompt.challenge_on)


def make_fusion(config: Config, point: OperatingPoint, voice_backend=None) -> FusionParams:
    """The fusion parameters: the operating point's calibrations with the configured weights, and
    the pipeline's voice back-end (:attr:`Pipeline.voice_backend`)."""
    return FusionParams(point.face, point.voice, config.decision.face_weight, config.decision.voice_weight,
                        voice_backend=voice_backend)


def make_pipeline(config: Config) -> Pipeline:
    """Load and verify every model named by the config, and check that they compute what they
    should on this CPU and runtime (:func:`~daemon.inference.selftest.run_selftest`: a model whose
    outputs are wrong stops the command, and the door stays locked)."""
    pipeline = Pipeline(config.models.directory, config.models.num_threads,
                        min_face_width_px=config.attempt.min_face_width_px,
                        min_brightness=config.attempt.min_brightness,
                        min_face_score=config.attempt.min_face_score,
                        vad=VadSettings.from_config(config),
                        max_speech_seconds=config.attempt.max_speech_seconds)
    run_selftest(config.models.directory, config.models.num_threads, models=pipeline.loaded_models())
    return pipeline


def open_store(config: Config, fingerprint: str, create_key: bool = False) -> TemplateStore:
    """The template store under the state directory (rules: :mod:`daemon.state.store`)."""
    return state_store.open_store(config.state_dir, config.state.key_file, fingerprint, create_key)


def open_lockout(config: Config, clock=time.monotonic) -> Lockout:
    """The persisted failure counter."""
    policy = LockoutPolicy(config.lockout.max_consecutive_failures,
                           config.lockout.initial_delay_seconds, config.lockout.max_delay_seconds)
    return Lockout(config.state_dir / "lockout.json", policy, clock=clock)


def source_factories(config: Config, clock=time.monotonic):
    """Callables that open (and re-open after a fault) the configured frame and audio sources."""
    gap, durations = 0.0, None
    if config.microphone.backend == "replay":
        gap = config.microphone.gap_seconds
        # One video with its own audio: play the video on the audio's timeline. A looping video
        # (a scene behind an unrelated recording) keeps its own length.
        if config.camera.backend == "replay" and len(config.microphone.paths) == 1 \
                and not config.camera.loop and not config.camera.path.is_dir():
            durations = [wav_seconds(config.microphone.paths[0])]
    return (lambda: open_frame_source(config.camera, clock=clock, gap_seconds=gap, durations=durations),
            lambda: open_audio_source(config.microphone, clock=clock))


class Door:
    """Everything a door decides with: the models, the enrolled people, the operating point, the
    policy, the lockout and the liveness check.

    :meth:`decide` is the door's one decision path (:func:`~daemon.decide.evidence.decide_attempt`
    with the door's people, fusion parameters, policy and lockout).
    """

    def __init__(self, config: Config, pipeline: Pipeline, store: TemplateStore, point: OperatingPoint,
                 lockout: Lockout, liveness: LivenessCheck | None):
        self.config = config
        self.pipeline = pipeline
        self.store = store
        self.point = point
        self.policy = make_policy(config, point)
        self.fusion = make_fusion(config, point, pipeline.voice_backend)
        self.lockout = lockout
        self.liveness = liveness
        self._people_lock = threading.Lock()
        self._people: dict[str, Person] = {}
        #: The name being enrolled live at the door while decisions are suspended, else None.
        self.suspended_for: str | None = None
        self.reload_people()

    def reload_people(self) -> int:
        """Read the enrolled people again (after an enrolment or a deletion); returns the count."""
        people = self.store.load()
        if self.store.refused:
            log.error("%d template(s) refused (see above); those people must re-enrol", len(self.store.refused))
        with self._people_lock:
            self._people = people
        return len(people)

    def people(self) -> list[Person]:
        """The enrolled people, as of the last (re)load."""
        with self._people_lock:
            return list(self._people.values())

    def suspend(self, enrolling: str) -> None:
        """Deny every attempt (the door stays locked) while ``enrolling`` is enrolled at the door."""
        self.suspended_for = enrolling
        log.warning("door decisions suspended: live enrolment of %s", enrolling)

    def resume(self) -> None:
        """Decide attempts again after a live enrolment."""
        if self.suspended_for is not None:
            self.suspended_for = None
            log.info("door decisions resumed")

    def decide(self, evidence: Evidence) -> Decision:
        """Decide one attempt (denied while the door is locked out or suspended)."""
        if self.suspended_for is not None:
            return decide([], self.policy, error="suspended_for_enrolment")
        return decide_attempt(evidence, self.people(), self.fusion, self.policy,
                              locked_out=self.lockout.locked_out)

    def decide_early(self, evidence: Evidence) -> Decision | None:
        """An accept on the evidence of an attempt still under way, or None (wait for its end)."""
        settings = self.config.decision
        if not settings.early_accept or self.suspended_for is not None:
            return None
        return decide_early(evidence, self.people(), self.fusion, self.policy, margin=settings.early_margin,
                            min_speech_seconds=settings.early_min_speech_seconds,
                            locked_out=self.lockout.locked_out)


def build_door(config: Config, clock=time.monotonic, pipeline: Pipeline | None = None) -> Door:
    """Assemble the door named by the config (``pipeline``: reuse models already loaded)."""
    pipeline = pipeline or make_pipeline(config)
    pipeline.warm_up()
    store = open_store(config, pipeline.models_fingerprint)
    point = load_operating_point(config, pipeline.models_fingerprint, DEFAULT_CALIBRATION)
    door = Door(config, pipeline, store, point, open_lockout(config, clock=clock),
                make_liveness_check(config, point.liveness_threshold))
    from daemon.challenge.runner import make_challenge_runner, startup_warning
    door.challenge = make_challenge_runner(config, clock)
    startup_warning(config, door.people())
    # The models have run (self-test, warm-up): their mapped weights are mostly copies XNNPACK no
    # longer reads, and the daemon's memory budget is tight (docs/benchmarks.md).
    released = release_model_pages(config.models.directory or DEFAULT_MODELS_DIR)
    log.debug("released %.1f MB of mapped model pages", released / 2**20)
    log.info("door ready: %d enrolled, threshold=%.2f margin=%.2f calibration=%s liveness=%s",
             len(door.people()), door.policy.threshold, door.policy.margin, point.source,
             "required" if door.policy.liveness_required else "off")
    return door
