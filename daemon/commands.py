"""The sub-commands behind ``avid``; each takes the validated config and the parsed arguments."""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from daemon.cli import print_json
from daemon.config import Config
from daemon.errors import EnrolmentError, SourceError
from daemon.fuse.fusion import score_candidates
from daemon.inference import selftest
from daemon.decide.decision import decide
from daemon.service import door
from daemon.state.templates import Person

log = logging.getLogger(__name__)


# --- enrolment ----------------------------------------------------------------------------------
#: A template may use more speech than one attempt at the door does: more speech, better template.
ENROL_MAX_SPEECH_SECONDS = 30.0


def enrol_from_files(pipeline, faces: list[Path], voices: list[Path],
                     min_speech_seconds: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Embed enrolment samples; raise :class:`EnrolmentError` naming every unusable file."""
    face_embeddings, voice_embeddings, problems = [], [], []
    for path in faces:
        embedding, _, reasons = pipeline.face_from_image(path)
        if embedding is None or reasons:
            problems.append(f"{path}: {', '.join(reasons) or 'no_face'} "
                            "(use a sharp, well-lit, frontal photo with the face at least 60 px wide)")
        else:
            face_embeddings.append(embedding)
    for path in voices:
        result = pipeline.voice_from_wav(path, min_speech_seconds, ENROL_MAX_SPEECH_SECONDS)
        if result.embedding is None:
            problems.append(f"{path}: {', '.join(result.problems)} ({result.speech_seconds:.1f} s of "
                            f"speech; say a full sentence, at least {min_speech_seconds:g} s)")
        else:
            voice_embeddings.append(result.embedding)
    if not faces or not voices:
        problems.append("enrolment needs at least one face image (--face) and one voice clip (--voice)")
    if problems:
        raise EnrolmentError("enrolment refused:\n  " + "\n  ".join(problems))
    return np.array(face_embeddings, np.float32), np.array(voice_embeddings, np.float32)


def _live_samples(config: Config, pipeline, samples: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Guided capture from the camera and microphone: look, speak, repeat."""
    from daemon.capture.audio import open_audio_source
    from daemon.capture.frames import open_frame_source
    from daemon.detect.vad import SpeechSegmenter

    faces, voices = [], []
    for n in range(1, samples + 1):
        print(f"[{n}/{samples}] Look at the camera and say a sentence (about 3 seconds)...", flush=True)
        frames, audio = [], []
        camera, microphone = open_frame_source(config.camera).start(), open_audio_source(config.microphone).start()
        segmenter = SpeechSegmenter(config.vad.aggressiveness, config.microphone.block_ms,
                                    config.vad.start_frames, config.vad.end_frames)
        stop = threading.Event()

        def grab_frames():
            while not stop.is_set():
                try:
                    item = camera.read(config.camera.read_timeout_seconds)
                except SourceError:
                    return
                if item is None:
                    return
                frames.append(item.data)

        grabber = threading.Thread(target=grab_frames, daemon=True)
        grabber.start()
        deadline = time.monotonic() + config.attempt.timeout_seconds
        spoke = False
        try:
            while time.monotonic() < deadline:
                item = microphone.read(config.microphone.read_timeout_seconds)
                if item is None:
                    break
                audio.append(item.data)
                for event in segmenter.push(item.data, item.t):
                    spoke |= event.kind == "start"
                    if event.kind == "end":
                        deadline = 0
        finally:
            stop.set()
            grabber.join(timeout=2)
            camera.close()
            microphone.close()
        observations = [o for o in (pipeline.observe_face(f) for f in frames[::3]) if o is not None]
        good = [o for o in observations if not o.problems]
        if not good:
            seen = {p for o in observations for p in o.problems}
            print(f"  no usable face ({', '.join(sorted(seen)) or 'no_face'}); try again", flush=True)
            continue
        result = pipeline.voice_from_samples(np.concatenate(audio) if audio else np.zeros(0, np.float32),
                                             config.attempt.min_speech_seconds)
        if result.embedding is None:
            print(f"  no usable speech ({', '.join(result.problems)}); try again", flush=True)
            continue
        faces.append(pipeline.embed_chip(max(good, key=lambda o: o.quality).chip))
        voices.append(result.embedding)
        print("  sample taken", flush=True)
    return faces, voices


def enroll(config: Config, args) -> int:
    pipeline = door.make_pipeline(config)
    store = door.open_store(config, pipeline.models_fingerprint, create_key=True)
    if args.live:
        faces, voices = _live_samples(config, pipeline, args.samples)
        if not faces or not voices:
            raise EnrolmentError("no usable live sample was taken")
        face, voice = np.array(faces, np.float32), np.array(voices, np.float32)
    else:
        face, voice = enrol_from_files(pipeline, args.face, args.voice, config.attempt.min_speech_seconds)
    store.save(Person(args.name, face, voice), replace=args.replace)
    print(f"enrolled {args.name}: {len(face)} face sample(s), {len(voice)} voice sample(s)")
    return 0


def delete(config: Config, args) -> int:
    pipeline_fp = _fingerprint(config)
    store = door.open_store(config, pipeline_fp)
    if not store.delete(args.name):
        print(f"{args.name} is not enrolled", file=sys.stderr)
        return 1
    print(f"deleted {args.name} (record and key removed)")
    return 0


def list_people(config: Config, args) -> int:
    store = door.open_store(config, _fingerprint(config))
    people = store.load()
    for name, person in sorted(people.items()):
        print(f"{name}\tface samples: {len(person.face)}\tvoice samples: {len(person.voice)}")
    for refused in store.refused:
        print(f"(record {refused.id} unusable: {refused.reason})")
    if not people and not store.refused:
        print("nobody is enrolled")
    return 0


def _fingerprint(config: Config) -> str:
    from daemon.embed.runtime import DEFAULT_MODELS_DIR, models_fingerprint, read_manifest

    return models_fingerprint(read_manifest(config.models.directory or DEFAULT_MODELS_DIR))


# --- decisions on files ----------------------------------------------------------------------
def verify(config: Config, args) -> int:
    pipeline = door.make_pipeline(config)
    store = door.open_store(config, pipeline.models_fingerprint)
    point = door.load_operating_point(config, pipeline.models_fingerprint)
    policy = door.make_policy(config, point)
    # Liveness needs a live, synchronised face and voice; photos and clips on disk have neither.
    policy = dataclasses.replace(policy, liveness_required=False)
    problems, face_embeddings, qualities = [], [], []
    for path in args.face:
        embedding, observation, reasons = pipeline.face_from_image(path)
        if embedding is not None and not reasons:
            face_embeddings.append(embedding)
            qualities.append(observation.quality)
        else:
            problems.extend(reasons)
    if not face_embeddings:
        problems = [p for p in problems if p] or ["no_face"]
    else:
        problems = []
    voice_embedding, speech_seconds = None, 0.0
    voice_problems = []
    for path in args.voice[:1]:
        result = pipeline.voice_from_wav(path, config.attempt.min_speech_seconds)
        voice_embedding, speech_seconds, voice_problems = result.embedding, result.speech_seconds, list(result.problems)
    if not args.voice:
        voice_problems = ["no_speech"]
    candidates = score_candidates(store.load().values(), face_embeddings, voice_embedding, point.fusion,
                                  float(np.mean(qualities)) if qualities else 0.0,
                                  min(1.0, speech_seconds / 3.0))
    decision = decide(candidates, policy, problems=problems[:1] + voice_problems)
    if args.json:
        print_json({"decision": decision.decision, "person": decision.person, "reason": decision.reason,
                    "scores": decision.scores(), "runner_up": decision.runner_up,
                    "liveness": None, "liveness_note": "not checked: files are not a live capture",
                    "speech_seconds": round(speech_seconds, 2)})
    else:
        print(f"decision={decision.decision} person={decision.person or '-'} reason={decision.reason} "
              f"face={_fmt(decision.face)} voice={_fmt(decision.voice)} fused={_fmt(decision.fused)} "
              "(liveness not checked on files)")
    return 0


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


# --- the daemon --------------------------------------------------------------------------------
def build_loop(config: Config, lock, clock=time.monotonic, on_decision=None, health=None,
               stop_at_end_of_replay: bool = False, pipeline=None, notifier=None):
    """Assemble the capture loop of a door (used by ``run``, ``demo`` and the tests)."""
    from daemon.liveness.check import make_liveness_check
    from daemon.service.loop import CaptureLoop

    pipeline = pipeline or door.make_pipeline(config)
    pipeline.warm_up()
    store = door.open_store(config, pipeline.models_fingerprint)
    people = store.load()
    if store.refused:
        log.error("%d template(s) refused (see above); those people must re-enrol", len(store.refused))
    point = door.load_operating_point(config, pipeline.models_fingerprint)
    policy = door.make_policy(config, point)
    liveness, landmarker = make_liveness_check(config, point.liveness_threshold)
    lockout = door.open_lockout(config, clock=clock)
    open_frames, open_audio = door.source_factories(config, clock=clock)
    log.info("door ready: %d enrolled, threshold=%.2f margin=%.2f calibration=%s liveness=%s",
             len(people), policy.threshold, policy.margin, point.source,
             "required" if policy.liveness_required else "off")
    return CaptureLoop(config, pipeline, lock, lockout, lambda: list(people.values()), point.fusion,
                       policy, open_frames, open_audio, liveness=liveness, landmarker=landmarker,
                       health=health, clock=clock, on_decision=on_decision,
                       stop_at_end_of_replay=stop_at_end_of_replay, notifier=notifier)


def run(config: Config, args) -> int:
    from daemon.actuate.lock import open_lock
    from daemon.service.sdnotify import Notifier
    from daemon.service.watchdog import HealthGate

    from daemon.actuate.door_io import open_door_monitor
    from daemon.actuate.lock import make_pin_factory

    notifier = Notifier()
    factory = make_pin_factory(config.lock.pin_factory)
    lock = open_lock(config.lock, pin_factory=factory)
    monitor = None
    try:
        monitor = open_door_monitor(config.door, lock, factory)
        health = HealthGate(notifier, max_frame_age_s=config.watchdog.max_frame_age_seconds,
                            max_inference_age_s=config.watchdog.max_inference_age_seconds)
        loop = build_loop(config, lock, health=health, notifier=notifier,
                          stop_at_end_of_replay=config.camera.backend == "replay" and not config.camera.loop)

        def on_signal(signum, frame):
            log.info("signal %d: stopping", signum)
            notifier.stopping()
            loop.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        notifier.ready()
        notifier.status("running")
        loop.run()
    finally:
        if monitor is not None:
            monitor.close()
        lock.close()
        notifier.stopping()
        notifier.close()
    return 0


def demo(config: Config, args) -> int:
    from daemon.demo import run_demo

    return run_demo()


def calibrate(config: Config, args) -> int:
    from daemon.score.calibrate import calibrate as fit, save_calibration

    pipeline = door.make_pipeline(config)
    # Embeddings are cached per file (keyed by file and model hashes), so a re-run after adding
    # data only embeds the new files.
    result = fit(pipeline, args.data_dir, target_fmr=args.target_fmr, seed=args.seed,
                 cache_dir=config.state_dir / "calibration_cache")
    save_calibration(config.calibration_path, result)
    print(f"calibration written to {config.calibration_path}")
    return 0


def lockout(config: Config, args) -> int:
    state = door.open_lockout(config)
    if args.clear:
        state.clear()
        print("lockout cleared")
    else:
        print(f"consecutive failures: {state.failures}; locked out for {state.remaining():.0f} s more"
              if state.locked_out else f"consecutive failures: {state.failures}; not locked out")
    return 0


#: Sub-command name → function.
COMMANDS = {"run": run, "demo": demo, "enroll": enroll, "delete": delete, "list": list_people,
            "verify": verify, "calibrate": calibrate, "lockout": lockout,
            "self-test": selftest.command}
