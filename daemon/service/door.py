"""Builds a door from its configuration: models, templates, calibration, lockout, lock, loop.

Everything that can fail does so here, at start-up, before ``READY=1``: a model that does not match
its manifest, an unreadable key, a GPIO factory that cannot start. The caller exits non-zero and
the relay is never energised.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from daemon.capture.audio import open_audio_source, wav_seconds
from daemon.capture.frames import open_frame_source
from daemon.config import Config
from daemon.decide.decision import Policy
from daemon.decide.lockout import Lockout, LockoutPolicy
from daemon.embed.runtime import DEFAULT_MODELS_DIR
from daemon.errors import ConfigError
from daemon.fuse.fusion import FusionParams
from daemon.pipeline import Pipeline
from daemon.score.calibration import Calibration
from daemon.state import store as state_store
from daemon.state.templates import TemplateStore

log = logging.getLogger(__name__)

#: Calibration shipped with the models, used until an installer runs ``avid calibrate``.
DEFAULT_CALIBRATION = DEFAULT_MODELS_DIR / "calibration_default.json"


@dataclass(frozen=True)
class OperatingPoint:
    """Calibrations, threshold and margin in force, and where they came from."""

    fusion: FusionParams
    threshold: float
    margin: float
    liveness_threshold: float | None
    source: str


def load_operating_point(config: Config, models_fingerprint: str) -> OperatingPoint:
    """Read the installer's calibration, else the shipped default; config values override."""
    path = config.calibration_path if config.calibration_path.is_file() else DEFAULT_CALIBRATION
    try:
        data = json.loads(Path(path).read_text())
        face, voice = Calibration.from_dict(data["face"]), Calibration.from_dict(data["voice"])
        threshold, margin = float(data["threshold"]), float(data["margin"])
        liveness_threshold = data.get("liveness_threshold")
    except FileNotFoundError:
        raise ConfigError(f"no calibration file: {path} (run 'avid calibrate' or restore the models)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"calibration file {path} is invalid: {exc}") from exc
    if data.get("models") not in (None, models_fingerprint):
        raise ConfigError(f"calibration file {path} was made for other models: run 'avid calibrate' again")
    decision = config.decision
    fusion = FusionParams(face, voice, decision.face_weight, decision.voice_weight)
    return OperatingPoint(
        fusion,
        decision.threshold if decision.threshold is not None else threshold,
        decision.margin if decision.margin is not None else margin,
        config.liveness.min_sync_correlation if config.liveness.min_sync_correlation is not None
        else liveness_threshold,
        str(path))


def make_policy(config: Config, point: OperatingPoint) -> Policy:
    """The decision policy from the config and the operating point."""
    return Policy(point.threshold, point.margin, config.decision.missing_modality,
                  config.decision.single_modality_threshold, config.liveness.required,
                  config.decision.min_modality_llr)


def make_pipeline(config: Config) -> Pipeline:
    """Load and verify every model named by the config."""
    return Pipeline(config.models.directory, config.models.num_threads,
                    min_face_width_px=config.attempt.min_face_width_px,
                    min_brightness=config.attempt.min_brightness,
                    min_face_score=config.attempt.min_face_score,
                    vad_aggressiveness=config.vad.aggressiveness,
                    max_speech_seconds=config.attempt.max_speech_seconds)


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
