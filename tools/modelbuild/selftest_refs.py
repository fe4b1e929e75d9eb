"""Generate the model self-test references: ``models/selftest.npz`` and the manifest's ``selftest`` block.

Run after any model is rebuilt (``tools/build_models.py`` does it)::

    .venv/bin/python -m tools.modelbuild.selftest_refs [--models models]

Inputs come from the bundled GRID clips (``daemon/demo_data``, CC BY 4.0), taken through the
daemon's own pre-processing, so each model sees what it sees at the door:

- face_detector: the letterboxed 128x128 frame of alice (stored as uint8, scaled to [-1, 1]);
- face_landmark: the 192x192 face crop of alice (uint8, scaled to [0, 1]);
- face_encoder: the aligned 150x150 chips of alice and bob (uint8, 0..255);
- speaker_encoder: the first 1.6 s mel window of alice's and of bob's speech (float32).

The outputs are those of this machine's runtime with XNNPACK and one thread, as the daemon runs
the models. The generator also measures how far the reference kernels (no XNNPACK) and 4 threads
are from them, records it, and fails if a tolerance leaves less than a 3x margin over it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from daemon.demo import DATA, frame_at  # noqa: E402
from daemon.inference.tflite import TFLiteModel, read_manifest, sha256_of  # noqa: E402
from daemon.inference.selftest import compare, reference_inputs, runtime_description  # noqa: E402
from daemon.inference.selftest import cpu_description  # noqa: E402

FILE_NAME = "selftest.npz"
CLIPS = {"alice": "s1_bbaf2n", "bob": "gridX_brbk7n_brbk7n"}
FRAME_SECONDS = 1.0

#: Per model: worst cosine allowed and worst relative deviation allowed. Chosen from the spread of
#: XNNPACK vs reference kernels and thread counts (recorded under "measured"), with a wide margin;
#: garbage (QEMU's SME-advertising CPU) gives a cosine near 0.4 on the face encoder.
TOLERANCES = {
    "face_detector": {"cosine_min": 0.9999, "max_deviation": 0.01},
    "face_landmark": {"cosine_min": 0.9999, "max_deviation": 0.01},
    "face_encoder": {"cosine_min": 0.99, "max_deviation": 0.2},
    "speaker_encoder": {"cosine_min": 0.99, "max_deviation": 0.2},
}
#: A tolerance must leave this factor over the measured spread (on 1 - cosine and deviation).
MARGIN = 3.0


class _Recorder:
    """Stands in front of a model and keeps the inputs it is given."""

    def __init__(self, model):
        self.model, self.inputs = model, []

    def run(self, *arrays):
        self.inputs.append([np.array(a, np.float32) for a in arrays])
        return self.model.run(*arrays)

    def __getattr__(self, name):
        return getattr(self.model, name)


def _as_uint8(tensor: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """Recover the uint8 image behind a normalised tensor, and check that it does exactly."""
    image = np.round((tensor - offset) / scale).astype(np.int64)
    if image.min() < 0 or image.max() > 255:
        raise ValueError("tensor is not a scaled uint8 image")
    image = image.astype(np.uint8)
    if not np.allclose(image.astype(np.float32) * np.float32(scale) + np.float32(offset), tensor, atol=1e-6):
        raise ValueError("the uint8 image does not reproduce the tensor")
    return image


def capture_inputs(models_dir: Path) -> dict[str, np.ndarray]:
    """The reference inputs of every model, as the daemon's pre-processing makes them."""
    from daemon.detect.face_landmarks import FaceLandmarker
    from daemon.pipeline import Pipeline

    pipeline = Pipeline(models_dir)
    landmarker = FaceLandmarker(models_dir)
    pipeline.detector.model = detector = _Recorder(pipeline.detector.model)
    landmarker.model = landmarks = _Recorder(landmarker.model)
    pipeline.speaker_encoder._model = speaker = _Recorder(pipeline.speaker_encoder._model)
    chips, windows = [], []
    for person, clip in CLIPS.items():
        frame = frame_at(DATA / clip / "video.mpg", FRAME_SECONDS)
        observation = pipeline.observe_face(frame)
        if observation is None or observation.problems:
            raise RuntimeError(f"{clip}: no usable face at {FRAME_SECONDS} s")
        chips.append(observation.chip)
        if person == "alice":
            landmarker.run(frame, observation.face)
        speaker.inputs.clear()
        pipeline.voice_from_wav(DATA / clip / "audio_16k.wav")
        windows.append(speaker.inputs[0][0][0])
    arrays = {}

    def put(name, stored, scale, offset):
        arrays[f"{name}/in0"] = stored
        arrays[f"{name}/in0_scale"] = np.float32(scale)
        arrays[f"{name}/in0_offset"] = np.float32(offset)

    put("face_detector", _as_uint8(detector.inputs[0][0], 2.0 / 255.0, -1.0), 2.0 / 255.0, -1.0)
    put("face_landmark", _as_uint8(landmarks.inputs[0][0], 1.0 / 255.0, 0.0), 1.0 / 255.0, 0.0)
    put("face_encoder", np.stack(chips).astype(np.uint8), 1.0, 0.0)
    put("speaker_encoder", np.stack(windows).astype(np.float32), 1.0, 0.0)
    return arrays


def outputs_of(model: TFLiteModel, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Each output of a model over every sample, stacked along the first axis."""
    inputs = reference_inputs(arrays, model.name, len(model.input_specs))
    runs = [model.run(*(x[i:i + 1] for x in inputs)) for i in range(inputs[0].shape[0])]
    return [np.concatenate([run[j] for run in runs]) for j in range(len(model.output_specs))]


def spread(reference: list[np.ndarray], other: list[np.ndarray]) -> dict:
    """Worst cosine and deviation of ``other`` against ``reference``, sample by sample."""
    worst_cosine, worst_deviation = 1.0, 0.0
    for i in range(reference[0].shape[0]):
        cosine, deviation = compare([o[i:i + 1] for o in other], [r[i:i + 1] for r in reference])
        worst_cosine, worst_deviation = min(worst_cosine, cosine), max(worst_deviation, deviation)
    return {"worst_cosine": round(worst_cosine, 7), "worst_deviation": round(worst_deviation, 6)}


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz byte for byte reproducibly (fixed member dates), atomically."""
    tmp = path.with_suffix(".npz.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())
    os.replace(tmp, path)


def generate(models_dir: Path) -> dict:
    """Write ``selftest.npz`` and the manifest's ``selftest`` block; return the block."""
    models_dir = Path(models_dir)
    manifest = read_manifest(models_dir)
    arrays = capture_inputs(models_dir)
    block = {"file": FILE_NAME, "sha256": "",
             "generator": "tools/modelbuild/selftest_refs.py",
             "inputs": f"GRID corpus (CC BY 4.0, daemon/demo_data): frames at {FRAME_SECONDS} s and the "
                       f"first speech window of {', '.join(CLIPS.values())}",
             "outputs_from": f"{runtime_description()}, XNNPACK, 1 thread, on {cpu_description()}",
             "models": {}}
    problems = []
    for name, entry in manifest["models"].items():
        if name not in TOLERANCES:
            raise SystemExit(f"no self-test tolerance for model {name!r}: add it to TOLERANCES")
        reference = outputs_of(TFLiteModel(name, models_dir, manifest=manifest), arrays)
        for j, out in enumerate(reference):
            arrays[f"{name}/out{j}"] = out.astype(np.float32)
        measured = {
            "builtin_kernels_1_thread": spread(reference, outputs_of(
                TFLiteModel(name, models_dir, manifest=manifest, xnnpack=False), arrays)),
            "xnnpack_4_threads": spread(reference, outputs_of(
                TFLiteModel(name, models_dir, num_threads=4, manifest=manifest), arrays)),
        }
        tolerance = TOLERANCES[name]
        for how, found in measured.items():
            if (1.0 - found["worst_cosine"]) * MARGIN > 1.0 - tolerance["cosine_min"] or \
                    found["worst_deviation"] * MARGIN > tolerance["max_deviation"]:
                problems.append(f"{name}: {how} {found} leaves less than a {MARGIN}x margin to {tolerance}")
        block["models"][name] = {"model_sha256": entry["sha256"],
                                 "samples": int(arrays[f"{name}/in0"].shape[0]),
                                 **tolerance, "measured": measured}
        print(f"{name}: {measured}")
    if problems:
        raise SystemExit("self-test tolerances too tight:\n  " + "\n  ".join(problems))
    path = models_dir / FILE_NAME
    write_npz(path, arrays)
    block["sha256"] = sha256_of(path)
    block["size_bytes"] = path.stat().st_size
    manifest["selftest"] = block
    tmp = models_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, models_dir / "manifest.json")
    print(f"wrote {path} ({block['size_bytes']} bytes) and the manifest's selftest block")
    return block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="models folder (default: models/)")
    args = parser.parse_args(argv)
    generate(args.models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
