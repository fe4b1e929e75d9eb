"""Speaker encoder cost: milliseconds per 1.6 s window and the resident memory it adds.

    .venv/bin/python tools/speaker_bench.py [--models DIR] [--repeats 200] [--xnnpack on|off]

Runs the encoder as the daemon does (:class:`daemon.embed.speaker_encoder.SpeakerEncoder`, one
thread) on real mel windows of LibriSpeech test-other speech from ``../shared/data``, in a child
process so that the memory figures belong to the model alone:

* ``window_ms``: median, p90 and mean of ``embed_window`` over ``--repeats`` calls after warm-up,
  cycling over the windows; ``window_cpu_ms``: the same calls in thread CPU time, which a busy
  shared machine disturbs less than wall time;
* ``rss_mb``: the child's peak resident memory (``VmHWM``) before the model is loaded (Python,
  numpy, the runtime, the mel windows) and after loading it and running every timed window, and
  the difference (what the speaker encoder costs ``avid run``).

``--xnnpack on|off`` overrides the daemon's choice of the XNNPACK delegate (to compare builds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data"
SPEECH = "voices/librispeech_test-other"
UTTERANCES = 6


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _windows():
    import numpy as np

    from daemon.capture.audio import read_wav
    from daemon.embed.mel import preprocess_wav
    from daemon.embed.speaker_encoder import SpeakerEncoder

    files = sorted((DATA / SPEECH).glob("*/*.wav"))[:UTTERANCES]
    if not files:
        raise SystemExit(f"no speech under {DATA / SPEECH}")
    return np.concatenate([SpeakerEncoder.utterance_windows(preprocess_wav(read_wav(f)))
                           for f in files])


def child(models: Path, repeats: int, xnnpack: str | None) -> dict:
    """Load the encoder, time ``repeats`` windows, and report time and memory (runs in the child)."""
    import daemon  # noqa: F401 - first, as in `avid run`: it pins the BLAS threads
    import numpy as np

    from daemon.inference.tflite import TFLiteModel
    from daemon.embed.speaker_encoder import MODEL_NAME, SpeakerEncoder

    windows = _windows()
    before_kb = _status_kb("VmHWM")
    started = time.perf_counter()
    if xnnpack is None:
        embed = SpeakerEncoder(models, num_threads=1).embed_window
    else:
        model = TFLiteModel(MODEL_NAME, models, num_threads=1, xnnpack=xnnpack == "on")
        embed = lambda w: model.run(w[None])[0].reshape(-1)  # noqa: E731
    load_ms = (time.perf_counter() - started) * 1000.0
    for window in windows[:5]:
        embed(window)
    times, cpu_times = [], []
    for i in range(repeats):
        window = windows[i % len(windows)]
        start, start_cpu = time.perf_counter(), time.thread_time()
        embed(window)
        cpu_times.append((time.thread_time() - start_cpu) * 1000.0)
        times.append((time.perf_counter() - start) * 1000.0)
    after_kb = _status_kb("VmHWM")
    times, cpu_times = np.asarray(times), np.asarray(cpu_times)
    return {"window_ms": {"p50": round(float(np.median(times)), 3),
                          "p90": round(float(np.percentile(times, 90)), 3),
                          "mean": round(float(times.mean()), 3), "n": int(times.size),
                          "threads": 1},
            "window_cpu_ms": {"p50": round(float(np.median(cpu_times)), 3),
                              "p90": round(float(np.percentile(cpu_times, 90)), 3)},
            "load_ms": round(load_ms, 1),
            "rss_mb": {"before_load": round(before_kb / 1024, 1),
                       "after_load_and_run": round(after_kb / 1024, 1),
                       "model": round((after_kb - before_kb) / 1024, 1)},
            "xnnpack": xnnpack or "as the daemon runs it",
            "windows": f"{len(windows)} windows of {UTTERANCES} {SPEECH} utterances"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--xnnpack", choices=("on", "off"), default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.models, args.repeats, args.xnnpack)))
        return 0
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--models",
               str(args.models.resolve()), "--repeats", str(args.repeats)]
    if args.xnnpack:
        command += ["--xnnpack", args.xnnpack]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        return done.returncode
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
