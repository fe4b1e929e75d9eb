"""Speaker embeddings: Resemblyzer's GE2E voice encoder, run as a TFLite model.

The model (``models/speaker_encoder.tflite``, built by ``tools/modelbuild/speaker_encoder.py``)
maps one 1.6 s window of 160 linear-power mel frames to a 256-d L2-normalised embedding. An
utterance's embedding is, as in Resemblyzer's ``VoiceEncoder.embed_utterance``, the L2-normalised
mean of the embeddings of overlapping windows (1.3 windows per second; a last, partial window is
zero-padded when it covers at least 75 % of its span).

The window embedding (:meth:`SpeakerEncoder.embed_window`), the window layout
(:func:`partial_windows`) and the averaging (:func:`mean_embedding`) are separate so that the
daemon can embed windows while the person is still speaking and average them at the end.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from daemon.embed import mel
from daemon.inference.tflite import DEFAULT_MODELS_DIR, TFLiteModel
from daemon.errors import EnrolmentError

log = logging.getLogger(__name__)

MODEL_NAME = "speaker_encoder"
WINDOW_FRAMES = 160
EMBEDDING_SIZE = 256
PARTIALS_PER_SECOND = 1.3
MIN_COVERAGE = 0.75


def partial_windows(n_samples: int, rate: float = PARTIALS_PER_SECOND,
                    min_coverage: float = MIN_COVERAGE) -> list[slice]:
    """Return the mel-frame slices of the windows Resemblyzer embeds for ``n_samples`` samples.

    Same arithmetic as ``VoiceEncoder.compute_partial_slices``: windows of 160 frames every
    ``round(16000 / rate / 160)`` frames (77 at 1.3/s); the last window is dropped when it covers
    less than ``min_coverage`` of its span, unless it is the only one. Slices may reach past the end
    of the audio: pad the waveform with zeros to ``slices[-1].stop * 160`` samples before computing
    the mel spectrogram (as :meth:`SpeakerEncoder.utterance_windows` does).
    """
    if not 0 < min_coverage <= 1:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
    n_samples = int(n_samples)
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    n_frames = int(np.ceil((n_samples + 1) / mel.HOP_LENGTH))
    frame_step = int(np.round((mel.SAMPLE_RATE / rate) / mel.HOP_LENGTH))
    if not 0 < frame_step <= WINDOW_FRAMES:
        raise ValueError(f"rate {rate} gives a window step of {frame_step} frames, "
                         f"outside 1..{WINDOW_FRAMES}")
    steps = max(1, n_frames - WINDOW_FRAMES + frame_step + 1)
    slices = [slice(start, start + WINDOW_FRAMES) for start in range(0, steps, frame_step)]
    last_start_sample = slices[-1].start * mel.HOP_LENGTH
    coverage = (n_samples - last_start_sample) / (WINDOW_FRAMES * mel.HOP_LENGTH)
    if coverage < min_coverage and len(slices) > 1:
        slices = slices[:-1]
    return slices


def mean_embedding(window_embeddings: np.ndarray) -> np.ndarray:
    """Return the L2-normalised mean of window embeddings (shape ``(n, 256)``, n >= 1)."""
    window_embeddings = np.asarray(window_embeddings, dtype=np.float32)
    if window_embeddings.ndim != 2 or window_embeddings.shape[0] == 0:
        raise ValueError(f"expected (n >= 1, {EMBEDDING_SIZE}) embeddings, "
                         f"got {window_embeddings.shape}")
    mean = window_embeddings.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm == 0.0:
        raise ValueError("window embeddings average to zero")
    return (mean / norm).astype(np.float32)


def fine_tuned_speakers(entry: dict) -> frozenset[str]:
    """The speakers (``source/speaker``) a speaker model's manifest entry says it was fine-tuned
    on (none for the pretrained weights)."""
    return frozenset(entry.get("fine_tuned", {}).get("speakers", ()))


class SpeakerEncoder:
    """The verified speaker encoder model with Resemblyzer's windowing around it."""

    def __init__(self, models_dir: Path = DEFAULT_MODELS_DIR, num_threads: int = 1,
                 manifest: dict | None = None):
        # The model runs the LSTM as one WHILE loop whose body holds each weight matrix once,
        # so XNNPACK packs the weights once (a few MB); its kernels more than halve the time of
        # the built-in ones on the loop's one-row matrix products.
        self._model = TFLiteModel(MODEL_NAME, models_dir, num_threads=num_threads,
                                  manifest=manifest, xnnpack=True)

    @property
    def sha256(self) -> str:
        """The sha256 of the loaded model file."""
        return self._model.sha256

    @property
    def model(self):
        """The loaded :class:`~daemon.inference.tflite.TFLiteModel`."""
        return self._model

    @property
    def trained_on(self) -> frozenset[str]:
        """The development speakers (``source/speaker``) the model was fine-tuned on, from its
        manifest entry (``fine_tuned.speakers``); the offline tools score no voice of theirs."""
        return fine_tuned_speakers(self._model.entry)

    def embed_window(self, mel_window: np.ndarray) -> np.ndarray:
        """Embed one ``(160, 40)`` linear-power mel window; returns an L2-normalised ``(256,)``."""
        mel_window = np.asarray(mel_window, dtype=np.float32)
        if mel_window.shape != (WINDOW_FRAMES, mel.N_MELS):
            raise ValueError(f"a speaker window is ({WINDOW_FRAMES}, {mel.N_MELS}) mel frames, "
                             f"got {mel_window.shape}")
        return self._model.run(mel_window[None])[0].reshape(EMBEDDING_SIZE)

    def embed_windows(self, mel_windows: np.ndarray) -> np.ndarray:
        """Embed a stack of ``(n, 160, 40)`` windows; returns ``(n, 256)``."""
        return np.stack([self.embed_window(w) for w in mel_windows]).astype(np.float32)

    @staticmethod
    def utterance_windows(wav: np.ndarray) -> np.ndarray:
        """Return the ``(n, 160, 40)`` mel windows Resemblyzer embeds for a preprocessed waveform."""
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        slices = partial_windows(len(wav))
        needed = slices[-1].stop * mel.HOP_LENGTH
        if needed >= len(wav):
            wav = np.pad(wav, (0, needed - len(wav)))
        frames = mel.mel_spectrogram(wav)
        return np.stack([frames[s] for s in slices])

    def embed_utterance(self, wav: np.ndarray, preprocess: bool = True,
                        return_windows: bool = False):
        """Embed a whole 16 kHz float utterance; returns an L2-normalised ``(256,)``.

        With ``preprocess`` (the default) the waveform first goes through Resemblyzer's
        ``preprocess_wav`` (:func:`daemon.embed.mel.preprocess_wav`: volume to -30 dBFS, long
        silences removed). With ``return_windows`` the ``(n, 256)`` window embeddings come back too.
        Raises :class:`~daemon.errors.EnrolmentError` (a ``ValueError``) when no speech is left.
        """
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if preprocess:
            wav = mel.preprocess_wav(wav)
        if len(wav) == 0:
            raise EnrolmentError("no speech in the utterance (nothing left after silence trimming)")
        windows = self.utterance_windows(wav)
        window_embeddings = self.embed_windows(windows)
        embedding = mean_embedding(window_embeddings)
        log.debug("embedded %.2f s of speech from %d windows", len(wav) / mel.SAMPLE_RATE,
                  len(windows))
        if return_windows:
            return embedding, window_embeddings
        return embedding
