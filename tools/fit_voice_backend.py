"""Estimate the voice back-end (mean-centring + shrunk WCCN) from development speakers only.

Usage::

    python tools/fit_voice_backend.py /work/shared/data --cache eval_out/cache [--shrinkage 0.75]
                                      [--no-wccn] [--out models]

Training rows are the speaker encoder's embeddings of every sentence-length unit of the data
folder, each whole and cut to its first 1, 2 and 3 s of speech (so the within-speaker scatter
includes what a short door utterance does to an embedding), labelled by speaker. Writes
``<out>/voice_backend.npz`` and its entry under ``backends`` in ``<out>/manifest.json`` (sha256,
size and provenance), which :func:`daemon.embed.voice_backend.load_voice_backend` verifies.
What it buys is measured on disjoint speakers by ``tools/evaluate.py`` (back-end fitted on one half
of the speakers, scored on the other).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from daemon.embed.voice_backend import BACKEND_NAME, fit_voice_backend, to_bytes  # noqa: E402
from daemon.inference.tflite import DEFAULT_MODELS_DIR, MANIFEST_NAME, sha256_of  # noqa: E402
from daemon.offline.calibrate import BACKEND_TRAINING_CUTS, voice_backend_rows  # noqa: E402
from daemon.state.atomic import write_atomic  # noqa: E402

FILE_NAME = "voice_backend.npz"
def _commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def write_backend(out_dir: Path, backend, provenance: dict) -> dict:
    """Write the file and its manifest entry; return the entry."""
    out_dir = Path(out_dir)
    path = out_dir / FILE_NAME
    write_atomic(path, to_bytes(backend.mean, backend.projection), mode=0o644)
    manifest_path = out_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    entry = {"file": FILE_NAME, "sha256": sha256_of(path), "size_bytes": path.stat().st_size,
             "role": "voice back-end: y = P (x - mean), applied to speaker embeddings before cosine scoring",
             "licence": "derived from the development data's voices (CC BY 4.0 and others, see "
                        "/work/shared/data/manifest.csv); holds no utterance, only a mean and a 256x256 map",
             "source": provenance}
    manifest.setdefault("backends", {})[BACKEND_NAME] = entry
    write_atomic(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode(), mode=0o644)
    return entry


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--cache", type=Path, default=None, help="embedding cache folder (as tools/evaluate.py's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODELS_DIR, help="models folder to write to")
    parser.add_argument("--shrinkage", type=float, default=0.75)
    parser.add_argument("--no-wccn", action="store_true", help="mean-centring only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from daemon.offline.dataset import scan
    from daemon.inference.tflite import EMBEDDING_RECIPE
    from daemon.offline.embeddings import extract
    from daemon.pipeline import Pipeline

    pipeline = Pipeline(models_dir=args.out, voice_backend=False)
    data = scan(args.data_dir).without_voices(pipeline.speaker_encoder.trained_on)
    emb = extract(pipeline, data, args.cache, faces=False)
    rows, speakers = voice_backend_rows(emb)
    backend = fit_voice_backend(rows, speakers, args.shrinkage, wccn=not args.no_wccn)
    provenance = {"tool": "tools/fit_voice_backend.py", "commit": _commit(),
                  "data": str(Path(args.data_dir).resolve()), "data_half": "development only",
                  "rows": int(len(rows)), "speakers": len(set(speakers)), "cuts": list(BACKEND_TRAINING_CUTS),
                  "wccn": not args.no_wccn, "shrinkage": args.shrinkage,
                  "speaker_encoder_sha256": pipeline.speaker_encoder.sha256,
                  "embedding_recipe": EMBEDDING_RECIPE,
                  "speakers_left_out": len(pipeline.speaker_encoder.trained_on),
                  "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    entry = write_backend(args.out, backend, provenance)
    print(json.dumps(entry, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
