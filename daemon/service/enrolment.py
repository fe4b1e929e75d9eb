"""Enrolment: a person's templates from files, or from a guided capture at the door.

Samples are embedded by the same :class:`~daemon.pipeline.Pipeline` methods (and the same VAD
settings) as the door's probes, so a template and a probe are always made alike.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from daemon.capture.audio import MAX_SAMPLE_SECONDS, read_wav
from daemon.capture.sources import open_audio_source, open_frame_source
from daemon.config import Config
from daemon.detect.vad import VadSettings
from daemon.detect.speech_check import speech_problems
from daemon.errors import AvidError, EnrolmentError, SourceError
from daemon.files import check_admin_controlled, read_image

#: A template may use more speech than one attempt at the door does: more speech, better template.
ENROL_MAX_SPEECH_SECONDS = 30.0
#: Sentences a live enrolment asks for by default (the template is their mean).
DEFAULT_LIVE_SAMPLES = 3
#: Voice EER on development speakers by enrolment utterances (tools/evaluate.py,
#: voice.by_enrol_utterances, full-length probes; 159, 116 and only 15 speakers): what one clip costs.
VOICE_EER_BY_UTTERANCES = {1: 0.0230, 2: 0.0127, 3: 0.0024}
#: The door's false rejects at the shipped threshold for the same 116 development people enrolled
#: from one and from two utterances, on the same attempts (models/calibration_default.json,
#: door_one_to_one_by_enrol_utterances; python -m daemon.offline.calibrate, docs/results.md).
DOOR_FALSE_REJECTS_BY_UTTERANCES = {1: 0.066, 2: 0.027}


def voice_enrolment_advice(n_voice: int) -> str | None:
    """What enrolling from ``n_voice`` voice clips costs, when fewer than three (None otherwise)."""
    if n_voice >= 3:
        return None
    n = max(1, n_voice)
    have, best = VOICE_EER_BY_UTTERANCES[n], VOICE_EER_BY_UTTERANCES[3]
    door = ""
    if n == 1:
        door = (f" On development data the door turned away {100 * DOOR_FALSE_REJECTS_BY_UTTERANCES[1]:.1f} % "
                f"of genuine attempts of people enrolled from one clip, against "
                f"{100 * DOOR_FALSE_REJECTS_BY_UTTERANCES[2]:.1f} % for the same people enrolled from two.")
    return (f"note: {n_voice} voice clip(s) enrolled; the voice alone then confuses people at an equal "
            f"error rate of about {100 * have:.1f} %, against {100 * best:.1f} % with three clips (development "
            f"data).{door} Re-enrol with three different sentences (--voice a.wav b.wav c.wav, or --live) "
            "for fewer false rejects at the door.")


def embed_samples(pipeline, faces: list[tuple[str, np.ndarray | None]],
                  voices: list[tuple[str, np.ndarray | None]],
                  min_speech_seconds: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Embed decoded enrolment samples: ``(label, BGR image)`` and ``(label, 16 kHz samples)``
    pairs, None where a file could not be decoded. Raises :class:`EnrolmentError` naming every
    unusable sample (by its label), so that the person can fix them all at once."""
    face_embeddings, voice_embeddings, problems = [], [], []
    for label, frame in faces:
        observation = pipeline.observe_face(frame) if frame is not None else None
        if frame is None:
            problems.append(f"{label}: not an image")
        elif observation is None or observation.problems:
            reasons = ", ".join(observation.problems) if observation is not None else "no_face"
            problems.append(f"{label}: {reasons} "
                            "(use a sharp, well-lit, frontal photo with the face at least 60 px wide)")
        else:
            face_embeddings.append(pipeline.embed_chip(observation.chip))
    for label, samples in voices:
        if samples is None:
            problems.append(f"{label}: not a readable WAV file")
            continue
        not_speech = speech_problems(samples)
        if not_speech:
            problems.append(f"{label}: not a voice sample: {'; '.join(not_speech)}")
            continue
        result = pipeline.voice_from_samples(samples, min_speech_seconds, ENROL_MAX_SPEECH_SECONDS)
        if result.embedding is None:
            problems.append(f"{label}: {', '.join(result.problems)} ({result.speech_seconds:.1f} s of "
                            f"speech; say a full sentence, at least {min_speech_seconds:g} s)")
        else:
            voice_embeddings.append(result.embedding)
    if not faces or not voices:
        problems.append("enrolment needs at least one face image (--face) and one voice clip (--voice)")
    if problems:
        raise EnrolmentError.refused(problems)
    return np.array(face_embeddings, np.float32), np.array(voice_embeddings, np.float32)


def enrol_from_files(pipeline, faces: list[Path], voices: list[Path],
                     min_speech_seconds: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Embed enrolment samples from files; raise :class:`EnrolmentError` naming every unusable file.

    Files must come from places only the admin can write (:func:`daemon.files.check_admin_controlled`),
    be regular files within the size limits, and voice clips at most
    :data:`~daemon.capture.audio.MAX_SAMPLE_SECONDS` long and speech
    (:func:`daemon.detect.speech_check.speech_problems`).
    """
    problems = []

    def load(path: Path, reader):
        try:
            check_admin_controlled(path)
            return reader(path)
        except AvidError as exc:
            problems.append(str(exc))
            return None

    frames = [(str(p), image) for p in faces if (image := load(p, read_image)) is not None]
    recordings = [(str(p), samples) for p in voices
                  if (samples := load(p, lambda q: read_wav(q, MAX_SAMPLE_SECONDS))) is not None]
    try:
        result = embed_samples(pipeline, frames, recordings, min_speech_seconds)
    except EnrolmentError as exc:
        problems += exc.problems
    if problems:
        raise EnrolmentError.refused(problems)
    return result


def live_samples(config: Config, pipeline,
                 samples: int = DEFAULT_LIVE_SAMPLES) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Guided capture from the camera and microphone: look, speak a sentence, repeat with another
    sentence (three by default: the voice template is their mean)."""
    faces, voices = [], []
    for n in range(1, samples + 1):
        which = "a sentence" if n == 1 else "another sentence (not the same words)"
        print(f"[{n}/{samples}] Look at the camera and say {which} (about 3 seconds)...", flush=True)
        frames, audio = [], []
        camera, microphone = open_frame_source(config.camera).start(), open_audio_source(config.microphone).start()
        segmenter = VadSettings.from_config(config).segmenter()
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


