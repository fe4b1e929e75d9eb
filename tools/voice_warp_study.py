"""Study: the speaker encoder on frequency-warped speech, over a range of warp factors.

Usage::

    .venv/bin/python tools/voice_warp_study.py ../shared/data --cache out/eval/cache \\
        --out out/warp-study [--warps 0.84 0.88 0.9 0.92 0.95 1.0 1.12] [--seeds 1 2 3 4 5 6 7 8]

The door reads speech at :data:`daemon.embed.voice_windows.FREQUENCY_WARP` before the speaker
encoder, which lowers every frequency by that factor (see that module). This tool measures the
choice: for each factor, every voice unit of the evaluation is embedded again through the door's
own windows at that factor (``VoiceWindows(warp=...)``, the shipped TFLite model, the evaluation's
VAD, 4 s cohort segments and 6 s limit), then scored with the evaluation's one-shot protocol
(``voice.eer``: speaker halves, each through a voice back-end fitted on the other half *of the same
factor's embeddings*) for each trial seed (1 is the evaluation's). 1.0 is the door without a warp.

Prints a table (mean over seeds, with the range) and writes ``<out>/warp_study.json``: per factor,
per seed, ``eer``, ``fnmr_at_fmr_1e-2``, ``fnmr_at_fmr_1e-3`` and ``by_source_eer``. About 1.5 min
of embedding per factor per worker on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
for folder in (REPO, REPO / "tools"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import evaluate  # noqa: E402
from daemon.offline import calibrate as cal  # noqa: E402
from daemon.offline.dataset import scan  # noqa: E402
from daemon.offline.embeddings import Embeddings, VoiceSegment, embed_cuts, extract  # noqa: E402
from speaker_views_study import voiced_units  # noqa: E402

log = logging.getLogger("voice_warp_study")
DEFAULT_WARPS = (0.84, 0.88, 0.9, 0.92, 0.95, 1.0, 1.12)
DEFAULT_SEEDS = tuple(range(1, 9))

_AUDIO: dict[str, np.ndarray] = {}  # the voiced units, shared with forked workers


def embed_at(warp: float, models_dir=None) -> dict[str, dict]:
    """Every voice unit's cut embeddings with the speech warped by ``warp``."""
    from daemon.pipeline import Pipeline
    pipeline = Pipeline(models_dir=models_dir)
    return {key: embed_cuts(pipeline, voiced, warp) for key, voiced in _AUDIO.items()}


def with_voices(emb: Embeddings, cuts: dict[str, dict]) -> Embeddings:
    """The evaluation's embeddings with every voice unit's cuts replaced."""
    return Embeddings(emb.faces, {key: VoiceSegment(segment.seconds, cuts[key])
                                  for key, segment in emb.voices.items()}, emb.units)


def one_shot(units, cohort, emb: Embeddings, seed: int) -> dict:
    """The evaluation's ``voice`` figures (one enrolment utterance, whole-utterance probes)."""
    groups = evaluate.crossfit_trials(units, emb, 1, seed, cohort)
    return evaluate.trial_figures(*evaluate.crossfit_scores(groups, emb, "full"))


def table(results: dict) -> str:
    rows = ["| warp | voice EER (mean over seeds, range) | speechocean762 EER | FNMR at FMR 1e-3 |",
            "|---|---|---|---|"]
    for warp, by_seed in results.items():
        eer = [f["eer"] * 100 for f in by_seed.values()]
        ocean = [f["by_source_eer"]["speechocean762"] * 100 for f in by_seed.values()]
        tail = [f["fnmr_at_fmr_1e-3"] * 100 for f in by_seed.values()]
        rows.append(f"| {warp} | {np.mean(eer):.2f} % ({min(eer):.2f}-{max(eer):.2f}) | "
                    f"{np.mean(ocean):.2f} % | {np.mean(tail):.1f} % |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--cache", type=Path, required=True, help="the evaluation's embedding cache")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--warps", type=float, nargs="+", default=list(DEFAULT_WARPS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--workers", type=int, default=2, help="factors embedded in parallel")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default: shipped)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from daemon.pipeline import Pipeline
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(models_dir=args.models)
    data = scan(args.data_dir).without_voices(pipeline.speaker_encoder.trained_on)
    emb = extract(pipeline, data, args.cache, faces=False)
    _AUDIO.update(voiced_units(data, pipeline, emb))
    log.info("%d voice units; embedding at %d warp factors", len(_AUDIO), len(args.warps))
    with multiprocessing.get_context("fork").Pool(max(1, args.workers)) as pool:
        embedded = pool.starmap(embed_at, [(warp, args.models) for warp in args.warps])
    units, cohort = cal.sentence_units(emb), data.cohort_sources()
    results = {}
    for warp, cuts in zip(args.warps, embedded):
        warped_emb = with_voices(emb, cuts)
        results[str(warp)] = {str(seed): one_shot(units, cohort, warped_emb, seed) for seed in args.seeds}
        log.info("warp %s done", warp)
    text = table(results)
    print(text)
    (args.out / "warp_study.json").write_text(json.dumps(
        {"command": " ".join(sys.argv), "seeds": args.seeds, "units": len(_AUDIO), "results": results,
         "wall_s": round(time.monotonic() - started)}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
