"""Evaluate avid's real pipeline (detector, alignment, int8 encoders, fusion, decision) on a data folder.

Usage::

    python tools/evaluate.py /work/shared/data --out eval_out [--seed 1] [--limit-face-identities N]
                             [--limit-voice-speakers N] [--workers 2] [--bootstrap 200]

Writes ``metrics.json``, ``det.png``, ``scores.png`` and ``report.md`` to the output folder;
embeddings are cached under ``<out>/cache`` (keyed by file sha256 and model fingerprint), so a
rerun only recomputes the metrics. The protocols are described in the report it writes and in
:mod:`daemon.offline.calibrate` / :mod:`daemon.offline.dataset`.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import multiprocessing
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from daemon.inference.tflite import DEFAULT_MODELS_DIR  # noqa: E402
from daemon.offline import calibrate as cal  # noqa: E402
from daemon.offline import metrics  # noqa: E402
from daemon.offline.dataset import SHORT_WORD_SOURCES, DataSet, scan  # noqa: E402
from daemon.offline.embeddings import CUTS, extract, pipeline_fingerprint  # noqa: E402

log = logging.getLogger("evaluate")

FMR_TARGETS = {"1e-2": 1e-2, "1e-3": 1e-3, "1e-4": 1e-4}


# --------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------


def progress_bar(items, total: int, description: str, unit: str = "file"):
    """tqdm when installed, else a line on stderr every 10 %."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _plain_progress(items, total, description)
    interactive = sys.stderr.isatty()
    return tqdm(items, total=total, desc=description, unit=unit, file=sys.stderr,
                mininterval=1.0 if interactive else 30.0, disable=False)


def _plain_progress(items, total: int, description: str):
    step = max(1, total // 10)
    start = time.monotonic()
    for i, item in enumerate(items, 1):
        yield item
        if i % step == 0 or i == total:
            print(f"{description}: {i}/{total} ({time.monotonic() - start:.0f} s)", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# Data selection and embedding
# --------------------------------------------------------------------------------------------


def limit_data(data: DataSet, face_identities: int | None, voice_speakers: int | None, seed: int) -> DataSet:
    """Keep at most the given number of identities / speakers per source (seeded choice)."""
    def cut(sources, limit):
        if limit is None:
            return sources
        kept = {}
        for source, ids in sources.items():
            names = sorted(ids)
            random.Random(f"limit-{source}-{seed}").shuffle(names)
            kept[source] = {n: ids[n] for n in sorted(names[:limit])}
        return kept
    return DataSet(data.root, cut(data.faces, face_identities), cut(data.voices, voice_speakers),
                   data.lfw_pairs)


_worker_pipeline = None


def _worker_init(models_dir):
    global _worker_pipeline
    from daemon.pipeline import Pipeline
    logging.basicConfig(level=logging.WARNING)
    _worker_pipeline = Pipeline(models_dir=models_dir)


def _worker_extract(job):
    data, cache_dir, faces, voices = job
    extract(_worker_pipeline, data, cache_dir, faces=bool(faces), voices=bool(voices),
            face_files=faces, voice_files=voices)
    return len(faces) + len(voices)


def warm_cache(data: DataSet, models_dir, cache_dir: Path, workers: int) -> None:
    """Fill the embedding cache with ``workers`` processes (each loads its own models)."""
    jobs = []
    chunk = 50
    for i in range(0, len(data.face_files), chunk):
        jobs.append((data, cache_dir, data.face_files[i:i + chunk], []))
    for i in range(0, len(data.voice_files), chunk):
        jobs.append((data, cache_dir, [], data.voice_files[i:i + chunk]))
    total = len(data.face_files) + len(data.voice_files)
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_worker_init, initargs=(models_dir,)) as pool:
        done = pool.imap_unordered(_worker_extract, jobs)
        for _ in progress_bar(done, len(jobs), f"embedding {total} files ({workers} processes, jobs of {chunk})",
                              unit="job"):
            pass


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def _finite(x):
    return None if x is None or not np.isfinite(x) else float(x)


def summary(scores: np.ndarray, genuine: np.ndarray, subjects, n_boot: int, seed: int,
            dcf: bool = False) -> dict:
    """EER (with subject-bootstrap CI), FNMR at FMR 1e-2/1e-3/1e-4, optional minDCF, trial counts."""
    gen, imp = scores[genuine], scores[~genuine]
    result = {"n_genuine": int(gen.size), "n_impostor": int(imp.size),
              "n_subjects": len(set(subjects))}
    if gen.size == 0 or imp.size == 0:
        result["note"] = "needs both genuine and impostor trials"
        return result
    eer = metrics.eer(gen, imp)
    result["eer"] = eer.eer
    result["eer_threshold"] = eer.threshold
    trials = metrics.Trials.from_arrays(scores, genuine, list(subjects))
    if n_boot > 0:
        try:
            ci = metrics.bootstrap_ci(trials, metrics.eer, n=n_boot, seed=seed)
            result["eer_ci"] = [ci.low, ci.high]
        except ValueError as exc:
            result["eer_ci"] = None
            log.warning("no EER interval: %s", exc)
    result["fnmr_at_fmr"] = {}
    for name, target in FMR_TARGETS.items():
        point = metrics.fnmr_at_fmr(gen, imp, target)
        entry = {"fnmr": point.fnmr, "threshold": _finite(point.threshold),
                 "n_impostor": point.n_impostor, "supported": point.supported}
        if n_boot > 0 and name == "1e-2":
            try:
                ci = metrics.bootstrap_ci(trials, functools.partial(metrics.fnmr_at_fmr, target_fmr=target),
                                          n=n_boot, seed=seed)
                entry["fnmr_ci"] = [ci.low, ci.high]
            except ValueError:
                entry["fnmr_ci"] = None
        result["fnmr_at_fmr"][name] = entry
    if dcf:
        result["min_dcf"] = metrics.min_dcf(gen, imp, p_target=0.01).min_dcf
    return result


def trial_arrays(trials, scores):
    return (np.asarray(scores, np.float64), np.array([t.genuine for t in trials], bool),
            [t.subject for t in trials])


def by_source(trials, scores) -> dict:
    """EER per source of the enrolled identity."""
    found = {}
    for source in sorted({t.source for t in trials}):
        index = np.array([t.source == source for t in trials])
        s, g, subj = trial_arrays([t for t, k in zip(trials, index) if k], scores[index])
        found[source] = summary(s, g, subj, 0, 0)
    return found


def evaluate_faces(data: DataSet, emb, seed: int, n_boot: int, curves: dict, histograms: dict) -> dict:
    result = {}
    keys = data.face_files
    missed = [k for k in keys if emb.face(k) is None]
    result["images"] = len(keys)
    result["failures_to_acquire"] = len(missed)
    rejected = [k for k in keys if emb.face(k) is not None and emb.faces[k].problems]
    result["quality_rejected"] = len(rejected)
    result["quality_rejected_rate"] = len(rejected) / len(keys) if keys else None
    result["quality_problems"] = dict(Counter(p for k in rejected for p in emb.faces[k].problems))
    result["fta_rate"] = len(missed) / len(keys) if keys else None
    result["fta_by_source"] = {s: sum(1 for k in missed if k.split("/")[1] == s) / max(1, sum(
        len(f) for f in ids.values())) for s, ids in data.faces.items()}
    if data.lfw_pairs is not None and "lfw" in data.faces:
        pairs = metrics.parse_lfw_pairs(data.lfw_pairs, image_root=data.root / "faces" / "lfw")
        usable = [p for p in pairs if p.available
                  and str(p.path1.relative_to(data.root)) in emb.faces
                  and str(p.path2.relative_to(data.root)) in emb.faces]
        scores, labels, folds, missing = [], [], [], 0
        for pair in usable:
            a = emb.face(str(pair.path1.relative_to(data.root)))
            b = emb.face(str(pair.path2.relative_to(data.root)))
            missing += a is None or b is None
            scores.append(cal.MISSING_COSINE if a is None or b is None else cal.cosine(a, b))
            labels.append(pair.same)
            folds.append(pair.fold)
        lfw = {"pairs_listed": len(pairs), "pairs_used": len(usable), "pairs_face_missed": missing,
               "n_genuine": int(sum(labels)), "n_impostor": int(len(labels) - sum(labels)),
               "folds": sorted(set(folds))}
        if len(set(folds)) >= 2:
            accuracy = metrics.lfw_accuracy(scores, labels, folds)
            lfw.update(accuracy=accuracy.mean_accuracy, std=accuracy.std, per_fold=accuracy.per_fold.tolist())
            result["lfw_accuracy"] = accuracy.mean_accuracy
        else:
            lfw["note"] = "fewer than two folds with images: no accuracy"
            result["lfw_accuracy"] = None
        result["lfw"] = lfw
    else:
        result["lfw_accuracy"] = None
    trials = cal.face_trials(data, seed)
    scores = cal.face_scores(trials, emb)
    s, g, subj = trial_arrays(trials, scores)
    result.update(summary(s, g, subj, n_boot, seed))
    result["protocol"] = ("all genuine image pairs within each source and impostor pairs within "
                          "each source (a seeded sample of at most 300000 per source); a missed face "
                          "scores -1")
    result["by_source"] = by_source(trials, scores)
    if g.any() and (~g).any():
        det = metrics.det_curve(s[g], s[~g])
        curves["face (image pairs)"] = (det.fmr, det.fnmr)
        found = s > cal.MISSING_COSINE
        histograms["face cosine (faces found)"] = (s[g & found], s[~g & found])
    return result


def evaluate_voices(data: DataSet, emb, seed: int, n_boot: int, curves: dict, histograms: dict) -> dict:
    cohort = data.cohort_sources()
    units = cal.sentence_units(emb)
    result = {"sentence_units": len(units),
              "units_without_speech": sum(1 for u in units if not u.usable),
              "units_under_2s": sum(1 for u in units if u.seconds < 2.0),
              "cohort_sources": sorted(cohort),
              "protocol": ("one-shot: one enrolment utterance, probes of other utterances; "
                           "speakers with >= 2 utterances of >= 2 s of speech after the VAD; "
                           "at most 6 genuine and 500 impostor trials per enrolled speaker; "
                           "impostors from the same source or a cohort source; cohort speakers' "
                           "single recordings cut into 4 s segments (same-recording genuine trials)")}
    trials = cal.voice_trials(units, 1, seed, cohort)
    result["n_speakers"] = len({t.subject for t in trials})
    by_cut = {}
    for name in CUTS:
        s, g, subj = trial_arrays(trials, cal.voice_scores(trials, emb, name))
        by_cut[name] = summary(s, g, subj, n_boot if name in ("full", "3s") else 0, seed, dcf=True)
        if g.any() and (~g).any():
            det = metrics.det_curve(s[g], s[~g])
            curves[f"voice one-shot, {name} probes"] = (det.fmr, det.fnmr)
    full = by_cut["full"]
    result.update(full)
    result["eer_by_duration"] = {name: by_cut[name].get("eer") for name in CUTS}
    result["by_duration"] = by_cut
    result["mean_probe_seconds"] = {name: _mean_probe_seconds(trials, emb, seconds) for name, seconds in CUTS.items()}
    full_scores = cal.voice_scores(trials, emb, "full")
    result["by_source"] = by_source(trials, full_scores)
    s, g, _ = trial_arrays(trials, full_scores)
    if g.any() and (~g).any():
        histograms["voice cosine (full)"] = (s[g], s[~g])
    few = cal.voice_trials(units, 3, seed, cohort)
    few_result = {"n_speakers": len({t.subject for t in few})}
    if few:
        for name in CUTS:
            s, g, subj = trial_arrays(few, cal.voice_scores(few, emb, name))
            few_result[name] = summary(s, g, subj, 0, seed, dcf=True)
        few_result["eer_by_duration"] = {name: few_result[name].get("eer") for name in CUTS}
        few_result["eer"] = few_result["full"].get("eer")
    result["few_shot"] = few_result
    short_units = [u for u in emb.units if u.source in SHORT_WORD_SOURCES]
    short = {"sources": sorted({u.source for u in short_units}), "units": len(short_units),
             "units_without_speech": sum(1 for u in short_units if not u.usable),
             "protocol": "one-shot enrolment on one word, probes of other words, any speech length; "
                         "no speech scores -1"}
    if short_units:
        short_trials = cal.voice_trials(short_units, 1, seed, frozenset(), min_seconds=0.0,
                                        all_probes=short_units)
        s, g, subj = trial_arrays(short_trials, cal.voice_scores(short_trials, emb, "full"))
        short.update(summary(s, g, subj, 0, seed, dcf=True))
        short["by_source"] = by_source(short_trials, s)
    result["short"] = short
    return result


def _mean_probe_seconds(trials, emb, seconds) -> float | None:
    lengths = [min(emb.voices[t.probe].seconds, seconds or np.inf) for t in trials]
    lengths = [x for x in lengths if np.isfinite(x)]
    return float(np.mean(lengths)) if lengths else None


def evaluate_fused(data: DataSet, emb, seed: int, n_boot: int, target_fmr: float, gallery_size: int,
                   rounds: int, curves: dict, histograms: dict) -> tuple[dict, dict]:
    cohort = data.cohort_sources()
    split = cal.halves(data, emb, seed)
    fit = cal.fit_system(data, emb, target_fmr, seed, face_only=split["face"][0],
                         voice_only=split["voice"][0], gallery_size=gallery_size, rounds=rounds)
    test = cal.chimeras_for(data, emb, seed, split["face"][1], split["voice"][1])
    fused = cal.fused_trials(test, emb, fit.params, cohort)
    result = summary(fused.scores, fused.genuine, fused.subjects, n_boot, seed)
    result["chimeras"] = len(test)
    result["attempts_missing_a_modality"] = fused.n_missing
    result["genuine_attempts_missing_a_modality"] = int(np.count_nonzero(fused.missing & fused.genuine))
    acquired = ~fused.missing
    result["acquired_only"] = summary(fused.scores[acquired], fused.genuine[acquired],
                                      [s for s, k in zip(fused.subjects, acquired) if k], 0, seed)
    threshold, margin = fit.operating_point.threshold, fit.margin
    gen, imp = fused.scores[fused.genuine], fused.scores[~fused.genuine]
    result["at_calibrated_threshold"] = {
        "threshold": threshold, "fmr": float(np.mean(imp >= threshold)) if imp.size else None,
        "fnmr": float(np.mean(gen < threshold)) if gen.size else None,
        "door": fused.door_rates(threshold)}
    attempts = cal.open_set_attempts(test, emb, fit.params, cohort, gallery_size, rounds, seed + 1)
    rates = cal.open_set_rates(attempts, threshold, margin)
    result["open_set_far"] = rates["far"]
    result["open_set"] = {"gallery_size": gallery_size, "threshold": threshold, "margin": margin, **rates,
                          "far_supported_at_target": metrics.rule_of_three_supported(
                              rates["stranger_attempts"], target_fmr),
                          "distinct_strangers": len(test)}
    result["calibration"] = {
        "fitted_on": "calibration half: half of the face identities and half of the voice speakers "
                     "(seeded split); the fused metrics are on chimeras of the other half only",
        "face": {"a": fit.face.a, "b": fit.face.b, "n_genuine": fit.n_face[0], "n_impostor": fit.n_face[1]},
        "voice": {"a": fit.voice.a, "b": fit.voice.b, "n_genuine": fit.n_voice[0], "n_impostor": fit.n_voice[1]},
        "threshold": threshold, "margin": margin, "target_fmr": target_fmr,
        "verification_threshold": fit.verification_threshold, "open_set_threshold": fit.open_set_threshold,
        "calibration_half_fnmr": fit.operating_point.fnmr,
        "calibration_half_impostors": fit.operating_point.n_impostor,
        "calibration_half_chimeras": len(set(fit.fused.subjects)),
        "margin_meets_open_set_target": fit.margin_meets_target}
    result["protocol"] = ("chimeric identities (a face of one person with the voice of another: no "
                          "paired data exists), one-shot enrolment of both modalities, attempts of "
                          "another image and 3 s of another utterance, scored by the door's "
                          "score_evidence (its one decision path); impostors only between chimeras of the same face source "
                          "and compatible voice sources; open set: decide() with liveness not required")
    if gen.size and imp.size:
        det = metrics.det_curve(gen, imp)
        curves["fused (chimeric, 3 s voice)"] = (det.fmr, det.fnmr)
        if acquired.any() and (fused.genuine & acquired).any() and (~fused.genuine & acquired).any():
            det = metrics.det_curve(fused.scores[fused.genuine & acquired], fused.scores[~fused.genuine & acquired])
            curves["fused, attempts with a usable face"] = (det.fmr, det.fnmr)
        histograms["fused LLR"] = (gen, imp)
    calibration_half = cal.chimeras_for(data, emb, seed, split["face"][0], split["voice"][0])
    pairing = {half: [{"chimera": c.name, "face": c.face_identity, "voice": c.voice_identity} for c in chimeras]
               for half, chimeras in (("test", test), ("calibration", calibration_half))}
    return result, pairing


def evaluate_liveness(data: DataSet, models_dir) -> dict:
    """Merge tools/liveness_eval.py's results when it and ``av/`` exist."""
    av = data.root / "av"
    if not av.is_dir():
        return {"note": "no av/ folder"}
    try:
        from tools.liveness_eval import evaluate_liveness as liveness_eval
    except ImportError as exc:
        return {"note": f"tools/liveness_eval.py not available: {exc}"}
    try:
        found = liveness_eval(av, data.root / "av_spoof", Path(models_dir or DEFAULT_MODELS_DIR))
    except Exception as exc:  # another tool's failure must not lose the rest of the evaluation
        log.error("liveness evaluation failed: %s", exc)
        return {"note": f"liveness evaluation failed: {type(exc).__name__}: {exc}"}
    if isinstance(found, dict) and isinstance(found.get("liveness"), dict):
        return found["liveness"]
    return {k.removeprefix("liveness."): v for k, v in dict(found).items()}


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def plots(out_dir: Path, curves: dict, histograms: dict, operating_points: dict) -> list[str]:
    """DET curves and score histograms (needs matplotlib, a tools-only dependency)."""
    try:
        from tools.plots import det_plot, score_histograms
        import matplotlib  # noqa: F401
    except ImportError as exc:
        log.warning("no plots: %s (pip install -r tools/requirements-tools.txt)", exc)
        return [f"no plots: {exc}"]
    if curves:
        det_plot(curves, out_dir / "det.png", operating_points=operating_points,
                 title="DET: avid pipeline on the development data")
    if histograms:
        score_histograms(histograms, out_dir / "scores.png")
    return []


def _pct(x, digits=2):
    return "n/a" if x is None else f"{100 * x:.{digits}f} %"


def _fmr_rows(section: dict) -> str:
    rows = []
    for name, entry in (section.get("fnmr_at_fmr") or {}).items():
        ci = entry.get("fnmr_ci")
        ci_text = f" (CI {_pct(ci[0])} – {_pct(ci[1])})" if ci else ""
        rows.append(f"| {name} | {_pct(entry['fnmr'])}{ci_text} | {entry['n_impostor']} | "
                    f"{'yes' if entry['supported'] else 'no (< 3/FMR impostor trials)'} |")
    return "| FMR | FNMR | impostor trials | supported |\n|---|---|---|---|\n" + "\n".join(rows)


def _eer_ci(section: dict) -> str:
    low_high = section.get("eer_ci")
    return f" (95 % subject-bootstrap CI {_pct(low_high[0])} – {_pct(low_high[1])})" if low_high else ""


def _source_rows(by_source: dict) -> list[str]:
    return ["| source | EER | genuine | impostor |", "|---|---|---|---|",
            *[f"| {s} | {_pct(v.get('eer'))} | {v['n_genuine']} | {v['n_impostor']} |" for s, v in by_source.items()]]


def _face_lines(face: dict) -> list[str]:
    lfw = face.get("lfw", {})
    return [
        "## Face", "",
        f"- LFW View-2 accuracy (leave-one-fold-out thresholds over folds {lfw.get('folds')}): "
        f"**{_pct(face.get('lfw_accuracy'))}** ± {_pct(lfw.get('std'))} ({lfw.get('pairs_used', 0)} pairs)",
        f"- Image pairs within each source: EER **{_pct(face.get('eer'))}**{_eer_ci(face)}, "
        f"{face['n_genuine']} genuine / {face['n_impostor']} impostor pairs",
        f"- Failures to acquire (no face found): {face['failures_to_acquire']} of {face['images']} "
        f"images ({_pct(face['fta_rate'])}); they count as non-matches (score -1). Faces the door "
        f"would refuse for quality: {face['quality_rejected']} ({_pct(face['quality_rejected_rate'])}, "
        f"{face['quality_problems']}); scored here, but refused in the fused attempts as at the door", "",
        _fmr_rows(face), "", *_source_rows(face["by_source"]), ""]


def _voice_lines(voice: dict) -> list[str]:
    few = voice["few_shot"].get("eer_by_duration", {})
    short = voice["short"]
    return [
        "## Voice (sentence-length speech)", "", voice["protocol"] + ".", "",
        f"- One-shot, full-length probes: EER **{_pct(voice.get('eer'))}**{_eer_ci(voice)}, minDCF(0.01) "
        f"{voice.get('min_dcf', float('nan')):.3f}, {voice['n_genuine']} genuine / {voice['n_impostor']} "
        f"impostor trials, {voice['n_speakers']} speakers", "",
        "| probe speech | EER one-shot | EER few-shot (3) | mean probe speech |", "|---|---|---|---|",
        *[f"| {name} | {_pct(voice['eer_by_duration'][name])} | {_pct(few.get(name))} | "
          f"{voice['mean_probe_seconds'][name] or 0:.2f} s |" for name in CUTS],
        "", "A cut longer than an utterance's speech uses the whole utterance.", "",
        _fmr_rows(voice), "", *_source_rows(voice["by_source"]), "",
        f"Short words ({', '.join(short.get('sources', []))}), reported apart: EER {_pct(short.get('eer'))}, "
        f"{short.get('n_genuine', 0)} genuine / {short.get('n_impostor', 0)} impostor trials.", ""]


def _fused_lines(fused: dict) -> list[str]:
    fit, at, door, open_set = (fused["calibration"], fused["at_calibrated_threshold"],
                               fused["at_calibrated_threshold"]["door"], fused["open_set"])
    return [
        "## Fused (chimeric identities)", "", fused["protocol"] + ".", "",
        f"Calibration: {fit['fitted_on']}. Face llr = {fit['face']['a']:.3f}·cos {fit['face']['b']:+.3f}; "
        f"voice llr = {fit['voice']['a']:.3f}·cos {fit['voice']['b']:+.3f}; threshold {fit['threshold']:.3f}, "
        f"the larger of {fit['verification_threshold']:.3f} (FMR {fit['target_fmr']:g} on "
        f"{fit['calibration_half_impostors']} calibration-half impostor attempts) and "
        f"{fit['open_set_threshold']:.3f} (strangers accepted by a door of {open_set['gallery_size']} at most "
        f"{fit['target_fmr']:g}); margin {fit['margin']:.2f} nats (see daemon/offline/calibrate.py for both rules).",
        "",
        f"- EER **{_pct(fused.get('eer'))}**{_eer_ci(fused)}, {fused['n_genuine']} genuine / "
        f"{fused['n_impostor']} impostor attempts, {fused['chimeras']} test chimeras; "
        f"{fused['attempts_missing_a_modality']} attempts ({fused['genuine_attempts_missing_a_modality']} "
        f"genuine) had no face the door would use (scored as the minimum); on the other attempts alone "
        f"the EER is {_pct(fused['acquired_only'].get('eer'))}",
        f"- At the calibrated threshold on the test half: FMR {_pct(at['fmr'], 3)}, FNMR {_pct(at['fnmr'])}; "
        f"with decide()'s rule that each modality's LLR must also reach {door['min_modality_llr']:g}: "
        f"FMR {_pct(door['fmr'], 3)}, FNMR {_pct(door['fnmr'])}",
        f"- Open set, {open_set['gallery_size']} people enrolled (mean {open_set['mean_gallery_size'] or 0:.1f} "
        f"where fewer compatible chimeras exist): strangers accepted as anyone "
        f"**{open_set['strangers_accepted']} of {open_set['stranger_attempts']}** (open_set_far "
        f"{_pct(fused['open_set_far'], 3)}; {open_set['distinct_strangers']} distinct strangers); enrolled "
        f"people accepted as themselves {_pct(open_set['detect_identify_rate'])}, as someone else "
        f"{open_set['wrong_person_accepts']} of {open_set['enrolled_attempts']}", "",
        _fmr_rows(fused), ""]


def write_report(out_dir: Path, result: dict, pairing: dict, command: str) -> None:
    """``report.md``: the protocols, the numbers and the chimeric pairing."""
    timing = result["timing"]
    lines = [
        "# avid evaluation", "",
        f"Command: `{command}`  ", f"Data: `{result['data']}`, models `{result['models']}`, seed {result['seed']}  ",
        f"Wall time: {timing['total_s']:.0f} s (embedding {timing['embedding_s']:.0f} s, "
        f"{timing['files_from_cache']} of {timing['files']} files already in the cache at the start, "
        f"{timing['workers']} embedding processes, {timing['cpus']} CPUs)", "",
        "Every number comes from the real pipeline (BlazeFace detection, alignment, int8 TFLite "
        "encoders, calibrated fusion, `decide`). LFW and LibriSpeech are public benchmarks the "
        "encoders' training may have seen; expect a real door to do worse.", "",
        *_face_lines(result["face"]), *_voice_lines(result["voice"]), *_fused_lines(result["fused"]),
        "## Liveness", "", "```", json.dumps(result.get("liveness"), indent=1, default=_json_default)[:3000], "```", "",
        "## Figures", "", "![DET](det.png)", "", "![scores](scores.png)", "",
        "## Chimeric pairing (test half; the calibration half is in metrics.json)", "",
        "| chimera | face | voice |", "|---|---|---|",
        *[f"| {p['chimera']} | {p['face']} | {p['voice']} |" for p in pairing["test"]], "",
    ]
    (out_dir / "report.md").write_text("\n".join(lines))


def run(data_dir, out_dir, seed: int = 1, limit_face_identities: int | None = None,
        limit_voice_speakers: int | None = None, models_dir=None, workers: int = 1, n_boot: int = 200,
        target_fmr: float = 1e-4, gallery_size: int = 10, rounds: int = 5000, command: str = "") -> dict:
    """Run the whole evaluation; write and return the metrics."""
    from daemon.pipeline import Pipeline
    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = out_dir / "cache"
    data = limit_data(scan(data_dir), limit_face_identities, limit_voice_speakers, seed)
    pipeline = Pipeline(models_dir=models_dir)
    fingerprint_dir = cache_dir / pipeline_fingerprint(pipeline)
    cached_before = sum(1 for _ in fingerprint_dir.rglob("*.npz")) if fingerprint_dir.is_dir() else 0
    if workers > 1:
        warm_cache(data, models_dir, cache_dir, workers)
    emb = extract(pipeline, data, cache_dir, progress_bar)
    embedding_s = time.monotonic() - started
    curves, histograms = {}, {}
    result = {"data": str(data.root), "seed": seed, "models": pipeline.models_fingerprint,
              "limits": {"face_identities": limit_face_identities, "voice_speakers": limit_voice_speakers}}
    log.info("scoring faces")
    result["face"] = evaluate_faces(data, emb, seed, n_boot, curves, histograms)
    log.info("scoring voices")
    result["voice"] = evaluate_voices(data, emb, seed, n_boot, curves, histograms)
    log.info("scoring fused attempts")
    result["fused"], pairing = evaluate_fused(data, emb, seed, n_boot, target_fmr, gallery_size, rounds,
                                              curves, histograms)
    result["chimeric_pairing"] = pairing
    result["liveness"] = evaluate_liveness(data, models_dir)
    files = len(data.face_files) + len(data.voice_files)
    result["timing"] = {"total_s": time.monotonic() - started, "embedding_s": embedding_s,
                        "files": files, "files_from_cache": min(files, cached_before), "workers": workers,
                        "cpus": os.cpu_count()}
    point = result["fused"]["at_calibrated_threshold"]
    operating = ({"fused operating point": (point["fmr"], point["fnmr"])}
                 if point["fmr"] is not None and point["fnmr"] is not None else {})
    result["plots"] = plots(out_dir, curves, histograms, operating)
    result["timing"]["total_s"] = time.monotonic() - started
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
    write_report(out_dir, result, pairing, command)
    log.info("done in %.0f s: %s", result["timing"]["total_s"], out_dir)
    return result


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--limit-face-identities", type=int, default=None, help="per face source")
    parser.add_argument("--limit-voice-speakers", type=int, default=None, help="per voice source")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=1, help="embedding processes")
    parser.add_argument("--bootstrap", type=int, default=200, help="subject-bootstrap resamples (0: none)")
    parser.add_argument("--target-fmr", type=float, default=1e-4)
    parser.add_argument("--gallery-size", type=int, default=10, help="people enrolled in the open-set test")
    parser.add_argument("--rounds", type=int, default=5000, help="simulated doors in the open-set test")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = "python tools/evaluate.py " + " ".join(sys.argv[1:] if argv is None else argv)
    run(args.data_dir, args.out, args.seed, args.limit_face_identities, args.limit_voice_speakers,
        args.models_dir, args.workers, args.bootstrap, args.target_fmr, args.gallery_size, args.rounds, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
