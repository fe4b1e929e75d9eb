"""The models together: from a frame or a recording to embeddings, as the door computes them.

:class:`Pipeline` loads and verifies every model once. Enrolment, ``avid verify``, the evaluation
and the capture loop all call these same methods, so a template and a probe are always made by the
same code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daemon.capture.audio import read_wav
from daemon.detect.face_detector import Face, FaceDetector
from daemon.detect.face_quality import assess_face
from daemon.detect.vad import VadSettings, voiced_audio
from daemon.embed.align import face_chip
from daemon.embed.face_encoder import FaceEncoder, mirror_average
from daemon.embed.voice_backend import load_voice_backend
from daemon.inference.tflite import DEFAULT_MODELS_DIR, models_fingerprint, read_manifest
from daemon.embed.speaker_encoder import SpeakerEncoder
from daemon.embed.speaker_encoder import WINDOW_FRAMES, mean_embedding
from daemon.embed.voice_windows import VoiceWindows, window_mel
from daemon.files import read_image

log = logging.getLogger(__name__)


@dataclass
class FaceObservation:
    """The best face of one frame: where it is, how good it is, and its aligned chip."""

    face: Face
    quality: float
    problems: tuple[str, ...]
    chip: np.ndarray | None = field(default=None, repr=False)


@dataclass
class VoiceResult:
    """A recording's utterance embedding (None when unusable) and why."""

    embedding: np.ndarray | None
    speech_seconds: float
    problems: tuple[str, ...]


class Pipeline:
    """Detector, encoders and their pre-processing, loaded and verified once."""

    def __init__(self, models_dir: Path | None = None, num_threads: int = 1,
                 min_face_width_px: int = 60, min_brightness: float = 40.0, min_face_score: float = 0.72,
                 vad: VadSettings = VadSettings(), max_speech_seconds: float = 6.0,
                 voice_backend: bool = True):
        models_dir = Path(models_dir or DEFAULT_MODELS_DIR)
        self.manifest = read_manifest(models_dir)
        self.models_fingerprint = models_fingerprint(self.manifest)
        self.detector = FaceDetector(models_dir=models_dir, num_threads=num_threads, min_score=min_face_score)
        self.face_encoder = FaceEncoder(models_dir=models_dir, num_threads=num_threads)
        self.speaker_encoder = SpeakerEncoder(models_dir=models_dir, num_threads=num_threads)
        #: Applied where voices are scored (FusionParams.voice_backend); embeddings stay the encoder's.
        #: (``voice_backend=False``: none, only for the tool that fits one.)
        self.voice_backend = load_voice_backend(models_dir, self.manifest) if voice_backend else None
        self._min_face_width_px = min_face_width_px
        self._min_brightness = min_brightness
        #: The door's VAD settings: enrolment and evaluation segment speech exactly as the door does.
        self.vad = vad
        self.max_speech_seconds = max_speech_seconds

    def loaded_models(self) -> dict:
        """The loaded TFLite models by manifest name (for the start-up self-test)."""
        return {"face_detector": self.detector.model, "face_encoder": self.face_encoder.model,
                "speaker_encoder": self.speaker_encoder.model}

    def warm_up(self) -> None:
        """Run every model once so that the first person at the door does not pay for set-up."""
        blank = np.full((480, 640, 3), 64, np.uint8)
        self.detector.detect(blank)
        self.face_encoder.embed(np.zeros((150, 150, 3), np.uint8))
        self.embed_window(np.zeros(WINDOW_FRAMES * 160, np.float32))

    # --- face -------------------------------------------------------------------------------
    def observe_face(self, frame_bgr: np.ndarray, with_chip: bool = True) -> FaceObservation | None:
        """Detect the most prominent face of a frame and judge it; None if there is no face."""
        faces = self.detector.detect(frame_bgr)
        if not faces:
            return None
        face = max(faces, key=lambda f: f.width * f.score)
        quality = assess_face(frame_bgr, face, min_box_width_px=self._min_face_width_px,
                              min_luminance_mean=self._min_brightness)
        chip = face_chip(frame_bgr, face.keypoints) if with_chip else None
        return FaceObservation(face, quality.score, tuple(quality.problems), chip)

    def embed_chip(self, chip_rgb: np.ndarray) -> np.ndarray:
        """The unit-length face embedding of an aligned chip: the mean of the chip's and its mirror
        image's (:func:`~daemon.embed.face_encoder.mirror_average`)."""
        return self.embed_chip_views(chip_rgb)[0]

    def embed_chip_views(self, chip_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the door's embedding of a chip, the chip's own single-pass embedding)."""
        plain = self.face_encoder.embed(chip_rgb)
        mirrored = self.face_encoder.embed(np.ascontiguousarray(np.asarray(chip_rgb)[:, ::-1]))
        return mirror_average(plain, mirrored), plain

    def face_from_image(self, path: Path) -> tuple[np.ndarray | None, FaceObservation | None, tuple[str, ...]]:
        """Embed the face of an image file: (embedding or None, observation, problems)."""
        embedding, _, observation, problems = self.face_views_from_image(path)
        return embedding, observation, problems

    def face_views_from_image(self, path: Path):
        """:meth:`face_from_image` with the single-pass embedding too (for the evaluation):
        (embedding, single-pass embedding, observation, problems); the embeddings are None when
        there is no face."""
        frame = read_image(path)
        observation = self.observe_face(frame)
        if observation is None:
            return None, None, None, ("no_face",)
        embedding, plain = self.embed_chip_views(observation.chip)
        return embedding, plain, observation, observation.problems

    # --- voice ------------------------------------------------------------------------------
    def embed_window(self, window: np.ndarray) -> np.ndarray:
        """The speaker embedding of one 1.6 s window of voiced audio."""
        return self.speaker_encoder.embed_window(window_mel(window))

    def embed_voiced(self, voiced: np.ndarray, max_seconds: float | None = None) -> np.ndarray | None:
        """The utterance embedding of voiced audio, through the same windows as the door uses
        (the first ``max_seconds`` of speech; default: the door's ``max_speech_seconds``)."""
        windows = VoiceWindows(max_seconds or self.max_speech_seconds)
        chunks = windows.add(voiced) + windows.finish()
        return mean_embedding([self.embed_window(w) for w in chunks]) if chunks else None

    def voice_from_samples(self, samples: np.ndarray, min_speech_seconds: float = 1.0,
                           max_seconds: float | None = None) -> VoiceResult:
        """Segment a recording with the VAD and embed its speech."""
        utterances = voiced_audio(samples, self.vad.segmenter())
        if not utterances:
            return VoiceResult(None, 0.0, ("no_speech",))
        voiced = np.concatenate(utterances)
        seconds = voiced.size / 16000
        if seconds < min_speech_seconds:
            return VoiceResult(None, seconds, ("speech_too_short",))
        return VoiceResult(self.embed_voiced(voiced, max_seconds), seconds, ())

    def voice_from_wav(self, path: Path, min_speech_seconds: float = 1.0,
                       max_seconds: float | None = None) -> VoiceResult:
        """Embed the speech of a WAV file."""
        return self.voice_from_samples(read_wav(path), min_speech_seconds, max_seconds)
