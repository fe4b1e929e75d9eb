"""Embeddings of a data folder's files through the real :class:`~daemon.pipeline.Pipeline`,
cached per file so that evaluation and calibration reruns are fast.

A cache entry is keyed by the file's sha256, the sha256 of every model file in the manifest, and
the pre-processing settings, so a changed model or setting never reuses a stale embedding.

Voice files are segmented by the VAD once; the speech is embedded whole (as the door does, up to
its maximum speech length) and cut to its first 1, 2 and 3 seconds. A cohort speaker's single
recording is cut into :data:`~daemon.offline.dataset.SEGMENT_SECONDS` segments first, each one a
unit of its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.capture.audio import SAMPLE_RATE_HZ, read_wav
from daemon.detect.vad import voiced_audio
from daemon.embed.voice_windows import FREQUENCY_WARP, VoiceWindows, mean_embedding
from daemon.errors import SourceError
from daemon.offline.dataset import MIN_SENTENCE_SECONDS, SEGMENT_SECONDS, DataSet, VoiceUnit

log = logging.getLogger(__name__)

#: Probe lengths (seconds of speech; None = the whole utterance as the door would take it).
CUTS: dict[str, float | None] = {"1s": 1.0, "2s": 2.0, "3s": 3.0, "full": None}
#: Bumped whenever what is cached changes meaning (2: mirror-averaged faces + single-pass ones).
CACHE_VERSION = 2
#: Pipeline attributes that do not change a cached embedding: the voice back-end is applied when
#: scores are made, so one cache serves every back-end (and the back-end's own fitting).
NOT_CACHED = frozenset({"voice_backend", "models_fingerprint"})

Progress = Callable[[Iterable, int, str], Iterable]


def no_progress(items: Iterable, total: int, description: str) -> Iterable:
    """A progress wrapper that shows nothing."""
    return items


@dataclass
class FaceRecord:
    """One image: its embedding (None when no face was found), quality and problems; ``plain`` is
    the single-pass embedding (without the mirror image), kept to measure what mirroring buys."""

    embedding: np.ndarray | None
    quality: float
    problems: tuple[str, ...]
    plain: np.ndarray | None = None


@dataclass
class VoiceSegment:
    """One unit of speech: its length and its embedding per probe cut (None if no speech)."""

    seconds: float
    embeddings: dict[str, np.ndarray | None]


def pipeline_fingerprint(pipeline, segment_seconds: float = SEGMENT_SECONDS) -> str:
    """Hash of every model file and the settings that change an embedding."""
    digest = hashlib.sha256()
    for name in sorted(pipeline.manifest["models"]):
        digest.update(f"{name}={pipeline.manifest['models'][name]['sha256']};".encode())
    # Every plain setting of the pipeline (thresholds of the face quality check, the VAD, the
    # speech length...) changes what is cached.
    plain = (int, float, str, bool, type(None))
    settings = {}
    for name, value in sorted(vars(pipeline).items()):
        if name in NOT_CACHED:
            continue
        if isinstance(value, plain):
            settings[name] = value
        elif hasattr(value, "__dict__"):  # the detector's and encoders' own settings
            settings[name] = {k: v for k, v in sorted(vars(value).items()) if isinstance(v, plain)}
    settings.update(version=CACHE_VERSION, cuts=CUTS, segment=segment_seconds)
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class EmbeddingCache:
    """``<folder>/<fingerprint>/<sha[:2]>/<sha>.<kind>.npz``; a None folder caches nothing."""

    def __init__(self, folder: Path | None, fingerprint: str):
        self.folder = Path(folder) / fingerprint if folder is not None else None

    def _path(self, sha: str, kind: str) -> Path:
        return self.folder / sha[:2] / f"{sha}.{kind}.npz"

    def get(self, sha: str, kind: str) -> dict | None:
        """The stored arrays of an entry, or None."""
        if self.folder is None:
            return None
        path = self._path(sha, kind)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable cache entry %s: %s", path, exc)
            return None

    def put(self, sha: str, kind: str, arrays: dict) -> None:
        """Store an entry (written to a temporary name first, so a killed run leaves no half file)."""
        if self.folder is None:
            return
        path = self._path(sha, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)


# --------------------------------------------------------------------------------------------
# Faces
# --------------------------------------------------------------------------------------------


def compute_face(pipeline, path: Path) -> FaceRecord:
    """Detect, align and embed the face of one image."""
    try:
        embedding, plain, observation, problems = pipeline.face_views_from_image(path)
    except SourceError as exc:
        log.warning("%s", exc)
        return FaceRecord(None, 0.0, ("unreadable",))
    quality = observation.quality if observation is not None else 0.0
    return FaceRecord(embedding, float(quality), tuple(problems), plain)


def _face_to_arrays(record: FaceRecord) -> dict:
    arrays = {"quality": np.float64(record.quality), "problems": np.array(list(record.problems), dtype=str)}
    if record.embedding is not None:
        arrays["embedding"] = np.asarray(record.embedding, np.float32)
    if record.plain is not None:
        arrays["plain"] = np.asarray(record.plain, np.float32)
    return arrays


def _face_from_arrays(arrays: dict) -> FaceRecord:
    return FaceRecord(arrays.get("embedding"), float(arrays["quality"]),
                      tuple(str(p) for p in arrays["problems"]), arrays.get("plain"))


# --------------------------------------------------------------------------------------------
# Voices
# --------------------------------------------------------------------------------------------


def speech_of(pipeline, samples: np.ndarray) -> np.ndarray:
    """The voiced audio of a recording (its utterances joined), as the door's VAD finds it."""
    utterances = voiced_audio(samples, pipeline.vad.segmenter())
    return np.concatenate(utterances) if utterances else np.zeros(0, np.float32)


def embed_cuts(pipeline, voiced: np.ndarray, warp: float = FREQUENCY_WARP) -> dict[str, np.ndarray | None]:
    """Embeddings of the whole speech and of its first 1, 2, 3 seconds (a cut longer than the
    speech is the whole speech), through the door's own windowing (``warp``: another frequency
    warp, for studies)."""
    if voiced.size == 0:
        return {name: None for name in CUTS}
    # The cuts share their leading windows with the whole speech; embed each distinct window once.
    memo: dict[bytes, np.ndarray] = {}

    def embed_window(window: np.ndarray) -> np.ndarray:
        key = hashlib.sha1(window.tobytes()).digest()
        if key not in memo:
            memo[key] = pipeline.embed_window(window)
        return memo[key]

    def embed(samples: np.ndarray) -> np.ndarray | None:
        windows = VoiceWindows(pipeline.max_speech_seconds, warp)
        return mean_embedding([embed_window(w) for w in windows.add(samples) + windows.finish()])

    whole = embed(voiced)
    found = {}
    for name, seconds in CUTS.items():
        n = voiced.size if seconds is None else int(seconds * SAMPLE_RATE_HZ)
        found[name] = whole if n >= voiced.size else embed(voiced[:n])
    return found


def segments_of(voiced: np.ndarray, segment_seconds: float) -> list[np.ndarray]:
    """Consecutive segments of ``segment_seconds``; a shorter tail is kept if sentence-length."""
    n = int(segment_seconds * SAMPLE_RATE_HZ)
    pieces = [voiced[i:i + n] for i in range(0, voiced.size, n)]
    return [p for p in pieces if p.size == n or p.size >= MIN_SENTENCE_SECONDS * SAMPLE_RATE_HZ]


def voiced_pieces(pipeline, path: Path, segment_seconds: float | None) -> list[np.ndarray]:
    """The voiced audio of one recording's units: the whole of its speech, or its segments when
    ``segment_seconds`` (keyed by :func:`unit_key`); an unreadable file is one unit without speech."""
    try:
        voiced = speech_of(pipeline, read_wav(path))
    except SourceError as exc:
        log.warning("%s", exc)
        return [np.zeros(0, np.float32)]
    pieces = segments_of(voiced, segment_seconds) if segment_seconds else [voiced]
    return pieces or [voiced]


def unit_key(file_key: str, index: int, segmented: bool) -> str:
    """The key of a recording's ``index``-th unit: the file's own, or ``<file>#<index>`` for segments."""
    return f"{file_key}#{index}" if segmented else file_key


def compute_voice(pipeline, path: Path, segment_seconds: float | None) -> list[VoiceSegment]:
    """The units of one recording: the whole of it, or its segments when ``segment_seconds``."""
    return [VoiceSegment(p.size / SAMPLE_RATE_HZ, embed_cuts(pipeline, p))
            for p in voiced_pieces(pipeline, path, segment_seconds)]


def _voice_to_arrays(segments: list[VoiceSegment]) -> dict:
    arrays = {"seconds": np.array([s.seconds for s in segments], np.float64)}
    for i, segment in enumerate(segments):
        for name, embedding in segment.embeddings.items():
            if embedding is not None:
                arrays[f"{i}_{name}"] = np.asarray(embedding, np.float32)
    return arrays


def _voice_from_arrays(arrays: dict) -> list[VoiceSegment]:
    return [VoiceSegment(float(seconds), {name: arrays.get(f"{i}_{name}") for name in CUTS})
            for i, seconds in enumerate(arrays["seconds"])]


# --------------------------------------------------------------------------------------------
# A whole data folder
# --------------------------------------------------------------------------------------------


@dataclass
class Embeddings:
    """Every face record by image key, and every voice unit's segment by unit key."""

    faces: dict[str, FaceRecord]
    voices: dict[str, VoiceSegment]
    units: list[VoiceUnit]

    def face(self, key: str) -> np.ndarray | None:
        return self.faces[key].embedding

    def voice(self, key: str, cut: str = "full") -> np.ndarray | None:
        return self.voices[key].embeddings[cut]


def extract(pipeline, data: DataSet, cache_dir: Path | None = None, progress: Progress = no_progress,
            faces: bool = True, voices: bool = True, face_files: list[str] | None = None,
            voice_files: list[str] | None = None) -> Embeddings:
    """Embed the data folder's files (or the given subsets), reusing cached results."""
    cache = EmbeddingCache(cache_dir, pipeline_fingerprint(pipeline))
    face_records: dict[str, FaceRecord] = {}
    hits = 0
    if faces:
        keys = face_files if face_files is not None else data.face_files
        for key in progress(keys, len(keys), "faces"):
            path = data.path(key)
            sha = file_sha256(path)
            cached = cache.get(sha, "face")
            if cached is not None:
                face_records[key] = _face_from_arrays(cached)
                hits += 1
                continue
            record = compute_face(pipeline, path)
            cache.put(sha, "face", _face_to_arrays(record))
            face_records[key] = record
    cohort = data.cohort_sources()
    segments: dict[str, VoiceSegment] = {}
    units: list[VoiceUnit] = []
    if voices:
        keys = voice_files if voice_files is not None else data.voice_files
        for key in progress(keys, len(keys), "voices"):
            source, speaker = Path(key).parts[1:3]
            segment_seconds = SEGMENT_SECONDS if source in cohort else None
            path = data.path(key)
            sha = file_sha256(path)
            kind = f"voice{segment_seconds or ''}-warp{FREQUENCY_WARP}"  # faces keep their cache
            cached = cache.get(sha, kind)
            if cached is not None:
                found = _voice_from_arrays(cached)
                hits += 1
            else:
                found = compute_voice(pipeline, path, segment_seconds)
                cache.put(sha, kind, _voice_to_arrays(found))
            for i, segment in enumerate(found):
                name = unit_key(key, i, bool(segment_seconds))
                segments[name] = segment
                units.append(VoiceUnit(name, source, speaker, segment.seconds,
                                       segment.embeddings["full"] is not None))
    log.info("embeddings: %d faces, %d voice units (%d files from the cache)",
             len(face_records), len(units), hits)
    return Embeddings(face_records, segments, units)
