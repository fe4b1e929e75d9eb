"""The voice back-end: a fixed linear map applied to speaker embeddings before they are compared.

``y = P (x - mean)``: mean-centring removes the direction every utterance shares (the encoder's
embeddings all lie in one cone, so raw cosines of strangers are high), and ``P`` whitens the
within-speaker scatter (WCCN: the Cholesky factor of the inverse of the within-speaker covariance,
shrunk toward a scaled identity), so that directions in which one speaker's utterances vary count
less. Both are estimated from development speakers only by ``tools/fit_voice_backend.py`` and
shipped as ``models/voice_backend.npz``, listed under ``backends`` in ``models/manifest.json`` with
its sha256 and provenance; :func:`load_voice_backend` verifies it like a model, so a corrupt or
substituted file stops the daemon (the door stays locked).

The map is applied where scores are made (:func:`daemon.fuse.fusion.score_candidates`), to the
probe and to the template's centroid alike, so every path (door, ``avid verify``, the evaluation)
uses it, and cached or stored embeddings stay the encoder's own.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daemon.errors import ModelError
from daemon.inference.tflite import DEFAULT_MODELS_DIR, EMBEDDING_RECIPE, read_manifest, sha256_of

log = logging.getLogger(__name__)

BACKEND_NAME = "voice_backend"
EMBEDDING_SIZE = 256


@dataclass(frozen=True)
class VoiceBackend:
    """``apply(x) = projection @ (x - mean)``, L2-normalised (cosines stay cosines)."""

    mean: np.ndarray = field(repr=False)
    projection: np.ndarray = field(repr=False)
    sha256: str = ""

    def apply(self, embedding: np.ndarray) -> np.ndarray:
        """The back-end's unit-length image of one embedding."""
        y = self.projection @ (np.asarray(embedding, np.float64) - self.mean)
        norm = float(np.linalg.norm(y))
        return (y / norm if norm > 0 else y).astype(np.float32)

    def apply_many(self, embeddings: np.ndarray) -> np.ndarray:
        """:meth:`apply` on each row of an ``(n, 256)`` array."""
        y = (np.asarray(embeddings, np.float64) - self.mean) @ self.projection.T
        norms = np.linalg.norm(y, axis=1, keepdims=True)
        return (y / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def to_bytes(mean: np.ndarray, projection: np.ndarray) -> bytes:
    """The ``.npz`` bytes of a back-end (what :func:`load_voice_backend` reads)."""
    buffer = io.BytesIO()
    np.savez(buffer, mean=np.asarray(mean, np.float64), projection=np.asarray(projection, np.float64))
    return buffer.getvalue()


def load_voice_backend(models_dir: Path = DEFAULT_MODELS_DIR, manifest: dict | None = None) -> VoiceBackend:
    """Read and verify the shipped back-end; :class:`ModelError` if it is missing, altered or malformed."""
    models_dir = Path(models_dir)
    manifest = manifest if manifest is not None else read_manifest(models_dir)
    try:
        entry = manifest["backends"][BACKEND_NAME]
        path = models_dir / entry["file"]
        expected_sha = str(entry["sha256"])
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{BACKEND_NAME}: manifest entry missing or invalid ({exc}); "
                         "fit one with tools/fit_voice_backend.py") from exc
    if not path.is_file():
        raise ModelError(f"{BACKEND_NAME}: file not found: {path}")
    # A back-end maps one speaker model's embeddings; another model's would be scored wrongly.
    fitted_for = (entry.get("source") or {}).get("speaker_encoder_sha256")
    speaker_sha = ((manifest.get("models") or {}).get("speaker_encoder") or {}).get("sha256")
    if fitted_for and speaker_sha and fitted_for != speaker_sha:
        raise ModelError(f"{BACKEND_NAME}: fitted for the speaker encoder {fitted_for[:12]}..., but the "
                         f"manifest's is {speaker_sha[:12]}...; fit it again with tools/fit_voice_backend.py")
    # ... and embeddings made one way: a back-end fitted before the speech was frequency-warped
    # (recipe 3) maps another distribution.
    recipe = (entry.get("source") or {}).get("embedding_recipe")
    if recipe != EMBEDDING_RECIPE:
        raise ModelError(f"{BACKEND_NAME}: fitted for embedding recipe {recipe or 'unrecorded (before 3)'}, "
                         f"the daemon makes recipe {EMBEDDING_RECIPE}; fit it again with tools/fit_voice_backend.py")
    actual_sha = sha256_of(path)
    if actual_sha != expected_sha:
        raise ModelError(f"{BACKEND_NAME}: {path} has sha256 {actual_sha[:12]}..., the manifest expects "
                         f"{expected_sha[:12]}... (file truncated, corrupt or replaced)")
    try:
        with np.load(path, allow_pickle=False) as data:
            mean, projection = np.array(data["mean"], np.float64), np.array(data["projection"], np.float64)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{BACKEND_NAME}: {path} cannot be read: {exc}") from exc
    if mean.shape != (EMBEDDING_SIZE,) or projection.shape != (EMBEDDING_SIZE, EMBEDDING_SIZE):
        raise ModelError(f"{BACKEND_NAME}: expected a ({EMBEDDING_SIZE},) mean and a {EMBEDDING_SIZE}x"
                         f"{EMBEDDING_SIZE} projection, got {mean.shape} and {projection.shape}")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(projection))):
        raise ModelError(f"{BACKEND_NAME}: {path} holds non-finite values")
    log.debug("loaded voice back-end %s (sha256 %s)", path.name, actual_sha[:12])
    return VoiceBackend(mean, projection, actual_sha)


# --------------------------------------------------------------------------------------------
# Estimation (used by tools/fit_voice_backend.py and the evaluation's disjoint-speaker folds)
# --------------------------------------------------------------------------------------------


def fit_voice_backend(embeddings: np.ndarray, speakers: list[str], shrinkage: float = 0.75,
                      wccn: bool = True) -> VoiceBackend:
    """Estimate a back-end from embeddings labelled by speaker.

    :param embeddings: ``(n, 256)`` utterance (or utterance-piece) embeddings.
    :param speakers: the speaker of each row; speakers with one row add nothing to the
        within-speaker scatter but do count in the mean.
    :param shrinkage: weight of the scaled identity in the within-speaker covariance, in [0, 1]
        (1: mean-centring only).
    :param wccn: False for mean-centring only.
    """
    x = np.asarray(embeddings, np.float64)
    if x.ndim != 2 or x.shape[1] != EMBEDDING_SIZE or x.shape[0] < 2:
        raise ValueError(f"expected (n >= 2, {EMBEDDING_SIZE}) embeddings, got {x.shape}")
    mean = x.mean(axis=0)
    if not wccn:
        return VoiceBackend(mean, np.eye(EMBEDDING_SIZE))
    centred = x - mean
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    labels = np.asarray(speakers)
    scatter = np.zeros((EMBEDDING_SIZE, EMBEDDING_SIZE))
    count = 0
    for speaker in np.unique(labels):
        rows = centred[labels == speaker]
        if len(rows) < 2:
            continue
        deviations = rows - rows.mean(axis=0)
        scatter += deviations.T @ deviations
        count += len(rows) - 1
    if count == 0:
        raise ValueError("no speaker has two embeddings: no within-speaker scatter to estimate")
    within = scatter / count
    target = np.trace(within) / EMBEDDING_SIZE * np.eye(EMBEDDING_SIZE)
    within = (1.0 - shrinkage) * within + shrinkage * target
    # WCCN: P^T P = W^-1, so the within-speaker covariance becomes the identity.
    projection = np.linalg.cholesky(np.linalg.inv(within)).T
    return VoiceBackend(mean, projection)
