"""Study: do more views of the shipped speaker network reach the voice target?

Usage::

    .venv/bin/python tools/speaker_views_study.py ../shared/data --cache out/eval/cache \\
        --out out/views-study [--seeds 1 2 3 4 5] [--fused [--fused-seeds 1 11 21]]

Issue #14 asks for a one-shot voice EER <= 2.5 % on the development data; the shipped encoder
(Resemblyzer's GE2E, 3 x 256 LSTM, run on 1.6 s windows whose embeddings are averaged) gives
3.07 %. A second encoder fused with it did not get there (``tools/speaker_fusion_study.py``). This
tool measures a lever that needs no other weights: two more *views* of the same network, each an
utterance embedding of its own, averaged with the door's:

``windows``
    the door's embedding (cached by ``tools/evaluate.py``: the shipped TFLite model on the
    door's windows);
``forward``
    one pass of the LSTM over the whole voiced utterance (up to the door's 6 s), reading the
    network's output at every frame from the 20th on (``relu(linear(h_t))``, unit length) and
    averaging: the whole utterance in one state instead of 1.6 s pieces;
``reversed``
    the same pass over the time-reversed utterance (a spectrogram read backwards keeps each
    frame's spectrum; the network integrates it in another order and errs differently).

Every combination is the unit-length mean of its views' unit vectors, for enrolment and probe
alike (and, as a separate row, for enrolment only: what a door that keeps its decision-time cost
would get). Everything else is the evaluation's own protocol: the door's VAD and 6 s limit, one
enrolment utterance, identity-disjoint halves each scored through a voice back-end fitted on the
other half *of the same views*, the same trials. ``--fused`` also runs the evaluation's fused
protocol (10 splits from each of ``--fused-seeds``: 1 is the evaluation's, 11 and 21 give ten
other splits each) with the views, faces unchanged.

Two cheaper views need no other model: the shipped TFLite window model run on

``reversed windows``
    each of the door's windows read backwards (its mel frames in reverse order): one more
    encoder call per window, nothing else;
``half-step windows``
    the door's window grid shifted by half a step (windows between the door's own).

Its figures in docs/results.md were measured before the door frequency-warped its speech
(embedding recipe 3, :data:`daemon.embed.voice_windows.FREQUENCY_WARP`); the shipped encoder's
embeddings it reads now come from warped windows, the other views' from the speech as heard.

The two passes run with the original PyTorch network (Resemblyzer 0.1.4), in the venv that
``tools/bench.py`` makes for its baseline (created here on first use), not with a TFLite model:
the door has no whole-utterance model yet. Their cost is estimated from the shipped model's
measured time per 160-frame window and the frames each view reads (printed). Writes
``<out>/speaker_views.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
for folder in (REPO, REPO / "tools"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import bench  # noqa: E402
import evaluate  # noqa: E402
from daemon.capture.audio import SAMPLE_RATE_HZ  # noqa: E402
from daemon.embed.mel import HOP_LENGTH  # noqa: E402
from daemon.embed.voice_windows import WINDOW_FRAMES, WINDOW_SAMPLES, VoiceWindows  # noqa: E402
from daemon.offline import calibrate as cal  # noqa: E402
from daemon.offline.dataset import SEGMENT_SECONDS, scan  # noqa: E402
from daemon.offline.embeddings import (CUTS, Embeddings, VoiceSegment, extract, unit_key,  # noqa: E402
                                       voiced_pieces)

log = logging.getLogger("speaker_views_study")

#: Frames (10 ms) skipped before the whole-utterance views start averaging: the LSTM's first
#: outputs come from almost no speech.
FIRST_FRAME = 20
#: The combinations measured: name -> views averaged (for enrolment and probe).
COMBINATIONS = {
    "windows (shipped)": ("windows",),
    "forward": ("forward",),
    "reversed": ("reversed",),
    "forward + reversed": ("forward", "reversed"),
    "windows + forward": ("windows", "forward"),
    "windows + reversed": ("windows", "reversed"),
    "windows + forward + reversed": ("windows", "forward", "reversed"),
    "windows + reversed windows": ("windows", "reversed windows"),
    "windows + reversed windows + half-step windows": ("windows", "reversed windows", "half-step windows"),
}
#: Combinations also run through the fused protocol with ``--fused``.
FUSED_COMBINATIONS = ("windows (shipped)", "windows + forward + reversed", "windows + reversed windows")
#: Probe cuts scored (the evaluation's full probes, and the door's 3 s attempt cut).
PROBE_CUTS = ("full", "3s")
#: Enrolment-only rows: (enrolment views, probe views).
ENROLMENT_ONLY = {"enrolment windows + forward + reversed, probe windows":
                  (("windows", "forward", "reversed"), ("windows",)),
                  "enrolment windows + reversed windows, probe windows":
                  (("windows", "reversed windows"), ("windows",))}

WORKER = r'''
import json, sys
import numpy as np, torch
args = json.loads(sys.argv[1])
sys.path.insert(0, args["repo"])
from daemon.embed.mel import mel_spectrogram, normalize_volume
from resemblyzer import VoiceEncoder
torch.set_num_threads(1)
encoder = VoiceEncoder("cpu", verbose=False)

def view(voiced):
    mel = mel_spectrogram(normalize_volume(voiced)).astype(np.float32)
    with torch.no_grad():
        out, _ = encoder.lstm(torch.from_numpy(mel[None]))
        frames = torch.relu(encoder.linear(out[0]))
        frames = frames / frames.norm(dim=1, keepdim=True).clamp_min(1e-8)
    mean = frames[min(args["first_frame"], len(frames) - 1):].mean(0).numpy()
    return mean / np.linalg.norm(mean)

audio = np.load(args["audio"])
found = {}
for index, name in enumerate(sorted(audio.files)):
    if index % args["parts"] != args["part"]:
        continue
    voiced = audio[name]
    for cut, seconds in args["cuts"].items():
        if voiced.size == 0:
            continue
        piece = voiced if seconds is None else voiced[:int(seconds * 16000)]
        found[f"{name}@{cut}@forward"] = view(piece)
        found[f"{name}@{cut}@reversed"] = view(piece[::-1].copy())
np.savez(args["out"], **found)
print(json.dumps({"views": len(found), "torch": torch.__version__}))
'''


def voiced_units(data, pipeline, emb: Embeddings) -> dict[str, np.ndarray]:
    """The voiced audio of every voice unit, as the evaluation embeds it (the door's VAD, 4 s
    segments of cohort recordings, the first 6 s of speech)."""
    cohort = data.cohort_sources()
    limit = int(pipeline.max_speech_seconds * SAMPLE_RATE_HZ)
    audio = {}
    for key in data.voice_files:
        segmented = Path(key).parts[1] in cohort
        pieces = voiced_pieces(pipeline, data.path(key), SEGMENT_SECONDS if segmented else None)
        for i, piece in enumerate(pieces):
            audio[unit_key(key, i, segmented)] = piece[:limit].astype(np.float32)
    missing = set(emb.voices) - set(audio)
    if missing:
        raise SystemExit(f"{len(missing)} voice units of the cache were not found again, e.g. {sorted(missing)[0]}")
    return audio


def whole_utterance_views(audio: dict[str, np.ndarray], out: Path, venv: Path, workers: int) -> dict:
    """{(unit key, cut, view): unit vector} of the forward and reversed passes (cached in ``out``)."""
    cache = out / "views_cache.npz"
    if not cache.exists():
        names = {key: key.replace("/", "|") for key in audio}
        audio_file = out / "voiced_audio.npz"
        np.savez(audio_file, **{names[k]: v for k, v in audio.items()})
        python = bench.baseline_python(venv)
        script = out / "views_worker.py"
        script.write_text(WORKER)
        jobs, parts = [], []
        for part in range(workers):
            part_file = out / f"views_part{part}.npz"
            args = {"repo": str(REPO), "audio": str(audio_file), "out": str(part_file), "cuts": dict(CUTS),
                    "part": part, "parts": workers, "first_frame": FIRST_FRAME}
            jobs.append(subprocess.Popen([str(python), str(script), json.dumps(args)]))
            parts.append(part_file)
        if any(job.wait() != 0 for job in jobs):
            raise SystemExit("a views worker failed")
        merged = {}
        for part_file in parts:
            with np.load(part_file) as found:
                merged.update({name: found[name] for name in found.files})
            part_file.unlink()
        np.savez(cache, **merged)
        audio_file.unlink()
    views = {}
    with np.load(cache) as found:
        for name in found.files:
            key, cut, view = name.split("@")
            views[(key.replace("|", "/"), cut, view)] = found[name].astype(np.float32)
    return views


def window_views(pipeline, voiced: np.ndarray) -> dict[str, np.ndarray]:
    """The shipped model's two extra views of one voiced utterance (unit vectors): the door's
    windows read backwards, and a window grid shifted by half a step (absent when the audio is too
    short for a shifted window)."""
    from daemon.embed.mel import mel_spectrogram, normalize_volume
    from daemon.embed.speaker_encoder import mean_embedding
    from daemon.embed.voice_windows import STEP_SAMPLES

    def windows(samples):
        grid = VoiceWindows(pipeline.max_speech_seconds)
        return grid.add(samples) + grid.finish()

    def mels(chunks):
        return [mel_spectrogram(normalize_volume(chunk))[:WINDOW_FRAMES] for chunk in chunks]

    found = {}
    door = mels(windows(voiced))
    if door:
        found["reversed windows"] = mean_embedding(
            [pipeline.speaker_encoder.embed_window(np.ascontiguousarray(m[::-1])) for m in door])
    half = STEP_SAMPLES // 2
    shifted = windows(voiced[half:]) if voiced.size > half + SAMPLE_RATE_HZ else []
    if shifted:
        found["half-step windows"] = mean_embedding([pipeline.speaker_encoder.embed_window(m)
                                                     for m in mels(shifted)])
    return found


def shipped_model_views(pipeline, audio: dict[str, np.ndarray], out: Path) -> dict:
    """{(unit key, cut, view): unit vector} of :func:`window_views` for every cut (cached in ``out``)."""
    cache = out / "window_views_cache.npz"
    if not cache.exists():
        found = {}
        for key, voiced in audio.items():
            for cut, seconds in CUTS.items():
                piece = voiced if seconds is None else voiced[:int(seconds * SAMPLE_RATE_HZ)]
                if piece.size < SAMPLE_RATE_HZ // 2:
                    continue
                for view, vector in window_views(pipeline, piece).items():
                    found[f"{key.replace('/', '|')}@{cut}@{view}"] = vector
        np.savez(cache, **found)
    with np.load(cache) as found:
        return {(name.split("@")[0].replace("|", "/"), *name.split("@")[1:]): found[name].astype(np.float32)
                for name in found.files}


def combined(emb: Embeddings, views: dict, names: tuple[str, ...]) -> Embeddings:
    """The evaluation's embeddings with every voice cut replaced by the mean of ``names``."""
    voices = {}
    for key, segment in emb.voices.items():
        cuts = {}
        for cut, vector in segment.embeddings.items():
            parts = [vector if name == "windows" else views.get((key, cut, name)) for name in names]
            if vector is None or any(p is None for p in parts):
                cuts[cut] = None
                continue
            mean = np.sum(parts, axis=0)
            cuts[cut] = (mean / np.linalg.norm(mean)).astype(np.float32)
        voices[key] = VoiceSegment(segment.seconds, cuts)
    return Embeddings(emb.faces, voices, emb.units)



def symmetric(units, cohort, emb: Embeddings, seed: int) -> dict:
    """The evaluation's one-shot voice figures (``voice.eer`` and beside it) for these embeddings,
    per probe cut."""
    groups = evaluate.crossfit_trials(units, emb, 1, seed, cohort)
    return {cut: evaluate.trial_figures(*evaluate.crossfit_scores(groups, emb, cut)) for cut in PROBE_CUTS}


def enrolment_only(units, cohort, enrol: Embeddings, probe: Embeddings, seed: int) -> dict:
    """As :func:`symmetric`, with templates from ``enrol`` and probes from ``probe`` (the back-end
    fitted on the probes' embeddings of the other half)."""
    groups = evaluate.crossfit_trials(units, probe, 1, seed, cohort)
    trials = [trial for group, _ in groups for trial in group]
    return {cut: evaluate.trial_figures(trials, np.concatenate(
        [cal.voice_scores(group, probe, cut, backend, enrol_emb=enrol) for group, backend in groups]))
        for cut in PROBE_CUTS}


def _speechocean(figures: dict) -> float:
    return figures["by_source_eer"]["speechocean762"]


def frames_read(audio: dict[str, np.ndarray], max_seconds: float) -> dict:
    """Mean LSTM frames per utterance of the door's windows and of one whole-utterance pass."""
    window_frames, whole_frames = [], []
    for voiced in audio.values():
        if voiced.size == 0:
            continue
        windows = VoiceWindows(max_seconds)
        window_frames.append(WINDOW_FRAMES * len(windows.add(voiced) + windows.finish()))
        whole_frames.append(voiced.size // HOP_LENGTH + 1)
    return {"windows": float(np.mean(window_frames)), "one_whole_pass": float(np.mean(whole_frames))}


def window_ms(pipeline, voiced: np.ndarray, repeats: int = 50) -> float:
    """Median milliseconds of the shipped model on one 160-frame window (mel included), 1 thread."""
    window = voiced[:WINDOW_SAMPLES]
    pipeline.embed_window(window)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        pipeline.embed_window(window)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def fused_figures(data, emb: Embeddings, seed: int) -> dict:
    """The evaluation's fused figures (10 splits from ``seed``) that the voice feeds."""
    fused, _ = evaluate.evaluate_fused(data, emb, seed, 0, 1e-4, 10, 5000, {}, {}, 10)
    door = fused["door_by_enrol_utterances"]["2"]
    return {"eer": fused["eer"], "fnmr_at_fmr_1e-3": fused["fnmr_at_fmr"]["1e-3"]["fnmr"],
            "fnmr_at_fmr_1e-4": fused["fnmr_at_fmr"]["1e-4"]["fnmr"],
            "door_frr_enrolled_from_1": door["enrolled_from_1"]["false_reject"]["rate"],
            "door_frr_enrolled_from_2": door["enrolled_from_2"]["false_reject"]["rate"],
            "door_false_accepts_enrolled_from_1": door["enrolled_from_1"]["false_accept"]["errors"],
            "door_false_accepts_enrolled_from_2": door["enrolled_from_2"]["false_accept"]["errors"],
            "door_impostor_trials": door["enrolled_from_1"]["false_accept"]["trials"]}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--cache", type=Path, required=True, help="tools/evaluate.py's cache folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--fused", action="store_true", help="also run the fused protocol")
    parser.add_argument("--fused-seeds", type=int, nargs="+", default=[1],
                        help="first split seed of each fused run (10 splits each)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the PyTorch passes")
    parser.add_argument("--venv", type=Path, default=bench.DEFAULT_BASELINE_VENV,
                        help="venv with Resemblyzer and PyTorch (tools/bench.py's baseline venv)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from daemon.pipeline import Pipeline

    args.out.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline()
    data = scan(args.data_dir).without_voices(pipeline.speaker_encoder.trained_on)
    emb = extract(pipeline, data, args.cache, faces=args.fused)
    audio = voiced_units(data, pipeline, emb)
    started = time.monotonic()
    views = whole_utterance_views(audio, args.out, args.venv, args.workers)
    log.info("whole-utterance views of %d units ready in %.0f s", len(audio), time.monotonic() - started)
    views.update(shipped_model_views(pipeline, audio, args.out))
    units, cohort = cal.sentence_units(emb), data.cohort_sources()
    built = {name: combined(emb, views, names) for name, names in COMBINATIONS.items()}
    frames = frames_read({u.key: audio[u.key] for u in units}, pipeline.max_speech_seconds)
    per_window = window_ms(pipeline, next(audio[u.key] for u in units if u.seconds >= 2.0))
    result = {"command": "python tools/speaker_views_study.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "views": {"windows": "the door's (shipped TFLite model, evaluation cache)",
                        "forward": f"whole-utterance LSTM pass, mean of unit frame outputs from frame {FIRST_FRAME}",
                        "reversed": "the same over the time-reversed utterance",
                        "reversed windows": "the door's windows read backwards by the shipped TFLite model",
                        "half-step windows": "the shipped model on a window grid shifted by half a step"},
              "protocol": "tools/evaluate.py's one-shot voice protocol (voice.eer) per seed, each "
                          "combination through its own cross-fitted back-end",
              "cost": {"frames_per_utterance": frames, "shipped_ms_per_160_frames": per_window,
                       "note": "the door's windows read `windows` frames; each whole-utterance view "
                               "reads `one_whole_pass` more, `reversed windows` `windows` more and "
                               "`half-step windows` about `windows` more; milliseconds estimated at "
                               "the shipped model's rate"},
              "seeds": {}}
    for seed in args.seeds:
        entry = {}
        for name, emb_view in built.items():
            entry[name] = symmetric(units, cohort, emb_view, seed)
        for name, (enrol_views, probe_views) in ENROLMENT_ONLY.items():
            enrol, probe = combined(emb, views, enrol_views), combined(emb, views, probe_views)
            entry[name] = enrolment_only(units, cohort, enrol, probe, seed)
        result["seeds"][str(seed)] = entry
        log.info("seed %d: shipped %.2f %%, three views %.2f %%", seed,
                 100 * entry["windows (shipped)"]["full"]["eer"],
                 100 * entry["windows + forward + reversed"]["full"]["eer"])
    names = list(COMBINATIONS) + list(ENROLMENT_ONLY)
    result["mean_over_seeds"] = {
        name: {key: float(np.mean([_speechocean(s[name]["full"]) if key == "speechocean762_eer"
                                   else s[name]["full"][key] for s in result["seeds"].values()]))
               for key in ("eer", "speechocean762_eer", "fnmr_at_fmr_1e-3", "fnmr_at_fmr_1e-2")}
        for name in names}
    if args.fused:
        result["fused_by_seed"] = {
            str(seed): {name: fused_figures(data, built[name], seed) for name in FUSED_COMBINATIONS}
            for seed in args.fused_seeds}
    (args.out / "speaker_views.json").write_text(json.dumps(result, indent=1) + "\n")

    seeds = list(result["seeds"])
    print(f"\none-shot voice EER, full probes (seeds {', '.join(seeds)}); mean speechocean762 EER, "
          "FNMR at FMR 1e-3 and 1e-2")
    for name in names:
        by_seed = " ".join(f"{result['seeds'][s][name]['full']['eer']:6.2%}" for s in seeds)
        mean = result["mean_over_seeds"][name]
        print(f"  {name:55} {by_seed}  mean {mean['eer']:6.2%}  so762 {mean['speechocean762_eer']:6.2%}  "
              f"{mean['fnmr_at_fmr_1e-3']:6.1%} {mean['fnmr_at_fmr_1e-2']:6.1%}")
    print(f"frames per utterance: windows {frames['windows']:.0f}, one whole pass {frames['one_whole_pass']:.0f}; "
          f"shipped model {per_window:.1f} ms per 160 frames")
    for seed, by_name in result.get("fused_by_seed", {}).items():
        for name, entry in by_name.items():
            print(f"fused (splits {seed}-{int(seed) + 9}) {name}: EER {entry['eer']:.2%}, FNMR at 1e-3 "
                  f"{entry['fnmr_at_fmr_1e-3']:.2%}, at 1e-4 {entry['fnmr_at_fmr_1e-4']:.2%}; door FRR enrolled "
                  f"from 1 / 2 utterances {entry['door_frr_enrolled_from_1']:.2%} / "
                  f"{entry['door_frr_enrolled_from_2']:.2%}, false accepts "
                  f"{entry['door_false_accepts_enrolled_from_1']} / {entry['door_false_accepts_enrolled_from_2']} "
                  f"of {entry['door_impostor_trials']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
