"""Loading and running the bundled TFLite models.

Every model is checked before use against ``models/manifest.json``: its sha256 and the shape and
dtype of every input and output tensor. A missing, truncated, corrupt or substituted file raises
:class:`~daemon.errors.ModelError`, so the daemon refuses to start and the door stays locked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.errors import ModelError

log = logging.getLogger(__name__)

def _default_models_dir() -> Path:
    # A source checkout (or editable install) has models/ beside the package; an installed wheel
    # puts them under <prefix>/share/avid/models (setup.py's data_files).
    checkout = Path(__file__).resolve().parent.parent.parent / "models"
    if (checkout / MANIFEST_NAME).is_file():
        return checkout
    return Path(sys.prefix) / "share" / "avid" / "models"


MANIFEST_NAME = "manifest.json"
#: The bundled models, used unless the config names another folder.
DEFAULT_MODELS_DIR = _default_models_dir()
#: The calibration shipped with the models: a door uses it until an installer runs ``avid calibrate``.
SHIPPED_CALIBRATION = DEFAULT_MODELS_DIR / "calibration_default.json"


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise ModelError(
                "no TFLite runtime: install ai-edge-litert (or tflite-runtime as a fallback)"
            ) from exc
    return Interpreter


def _without_delegates(interpreter_class):
    module = __import__(interpreter_class.__module__, fromlist=["OpResolverType"])
    return module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(models_dir: Path = DEFAULT_MODELS_DIR) -> dict:
    """Read and return the models manifest, or raise :class:`ModelError`."""
    path = Path(models_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
        manifest["models"]
    except FileNotFoundError as exc:
        raise ModelError(f"model manifest not found: {path}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"model manifest {path} is not valid: {exc}") from exc
    return manifest


@dataclass(frozen=True)
class TensorSpec:
    """Shape, dtype and (for quantized tensors) scale and zero point of one tensor."""

    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @classmethod
    def from_detail(cls, detail: dict) -> "TensorSpec":
        scale, zero_point = detail.get("quantization", (0.0, 0))
        return cls(tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]).name,
                   float(scale), int(zero_point))

    @classmethod
    def from_manifest(cls, entry: dict) -> "TensorSpec":
        scale, zero_point = entry.get("quantization", (0.0, 0))
        return cls(tuple(int(d) for d in entry["shape"]), str(entry["dtype"]),
                   float(scale), int(zero_point))


class TFLiteModel:
    """One verified TFLite model, ready to run.

    ``run(*arrays)`` takes float inputs and returns float outputs; quantization of int8/uint8 input
    and output tensors is handled here with the tensors' own scale and zero point. ``xnnpack=False``
    runs the built-in kernels without the default XNNPACK delegate.
    """

    def __init__(self, name: str, models_dir: Path = DEFAULT_MODELS_DIR, num_threads: int = 1,
                 manifest: dict | None = None, xnnpack: bool = True):
        self.name = name
        models_dir = Path(models_dir)
        manifest = manifest if manifest is not None else read_manifest(models_dir)
        try:
            entry = manifest["models"][name]
            path = models_dir / entry["file"]
            expected_sha = entry["sha256"]
            expected_inputs = [TensorSpec.from_manifest(t) for t in entry["inputs"]]
            expected_outputs = [TensorSpec.from_manifest(t) for t in entry["outputs"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model {name!r}: manifest entry missing or invalid ({exc})") from exc
        if not path.is_file():
            raise ModelError(f"model {name!r}: file not found: {path}")
        actual_sha = sha256_of(path)
        if actual_sha != expected_sha:
            raise ModelError(
                f"model {name!r}: {path} has sha256 {actual_sha[:12]}..., the manifest expects "
                f"{expected_sha[:12]}... (file truncated, corrupt or replaced; rebuild with "
                "tools/build_models.py or restore it from the release)")
        self.path = path
        self.sha256 = actual_sha
        self.entry = entry
        try:
            interpreter_class = _interpreter_class()
            options = {} if xnnpack else {"experimental_op_resolver_type": _without_delegates(interpreter_class)}
            self._interpreter = interpreter_class(model_path=str(path), num_threads=num_threads, **options)
            self._interpreter.allocate_tensors()
        except ModelError:
            raise
        except Exception as exc:  # the runtimes raise ValueError/RuntimeError on bad flatbuffers
            raise ModelError(f"model {name!r}: {path} cannot be loaded: {exc}") from exc
        self._inputs = self._interpreter.get_input_details()
        self._outputs = self._interpreter.get_output_details()
        self.input_specs = [TensorSpec.from_detail(d) for d in self._inputs]
        self.output_specs = [TensorSpec.from_detail(d) for d in self._outputs]
        self._check_specs("input", expected_inputs, self.input_specs)
        self._check_specs("output", expected_outputs, self.output_specs)
        self._has_variables = bool(entry.get("reset_variables", False))
        log.debug("loaded model %s (%s, sha256 %s)", name, path.name, actual_sha[:12])

    def _check_specs(self, kind: str, expected: list[TensorSpec], actual: list[TensorSpec]):
        if len(expected) != len(actual):
            raise ModelError(f"model {self.name!r}: {len(actual)} {kind} tensors, "
                             f"manifest says {len(expected)}")
        for i, (want, got) in enumerate(zip(expected, actual)):
            if want.shape != got.shape or want.dtype != got.dtype:
                raise ModelError(f"model {self.name!r}: {kind} {i} is {got.dtype}{list(got.shape)}, "
                                 f"manifest says {want.dtype}{list(want.shape)}")

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Run the model on float inputs (one per input tensor) and return float outputs."""
        if len(arrays) != len(self._inputs):
            raise ValueError(f"{self.name}: expected {len(self._inputs)} inputs, got {len(arrays)}")
        if self._has_variables:
            self._interpreter.reset_all_variables()
        for detail, spec, array in zip(self._inputs, self.input_specs, arrays):
            self._interpreter.set_tensor(detail["index"], _to_tensor(np.asarray(array), spec))
        self._interpreter.invoke()
        return [_from_tensor(self._interpreter.get_tensor(d["index"]), spec)
                for d, spec in zip(self._outputs, self.output_specs)]


def _to_tensor(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if array.shape != spec.shape:
        array = array.reshape(spec.shape)
    if spec.dtype in ("int8", "uint8"):
        info = np.iinfo(spec.dtype)
        q = np.round(array / spec.scale) + spec.zero_point
        return np.clip(q, info.min, info.max).astype(spec.dtype)
    return array.astype(spec.dtype, copy=False)


def _from_tensor(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if spec.dtype in ("int8", "uint8"):
        return (array.astype(np.float32) - spec.zero_point) * np.float32(spec.scale)
    return array.astype(np.float32, copy=True)


_MADV_DONTNEED = 4  # the same on every Linux architecture avid runs on (x86-64, arm64)


def release_model_pages(models_dir: Path = DEFAULT_MODELS_DIR) -> int:
    """Drop this process's resident pages of the .tflite files in ``models_dir``; returns the bytes
    of mapping advised (0 where nothing could be done).

    The runtime maps each model file read-only. XNNPACK copies the weights of the operators it runs
    into its own packed buffers when the model is prepared, after which most mapped pages are never
    read again but stay counted in the daemon's memory (about 8 MB of the four models).
    ``MADV_DONTNEED`` on a read-only file mapping only removes the page-table entries: a page that is
    read again is faulted back from the page cache, so this can cost a page fault, never a wrong
    result. Only read-only mappings are touched; without Linux's /proc or libc, nothing is done.
    """
    import ctypes
    import ctypes.util

    folder = str(Path(models_dir).resolve()) + "/"
    try:
        with open("/proc/self/maps") as maps:
            regions = []
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].startswith(folder) and fields[5].rstrip().endswith(".tflite") \
                        and "w" not in fields[1]:
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    regions.append((start, end))
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError) as exc:
        log.debug("model pages not released: %s", exc)
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for start, end in regions:
        if madvise(start, end - start, _MADV_DONTNEED) == 0:
            released += end - start
        else:
            log.debug("madvise on a model mapping failed: errno %d", ctypes.get_errno())
    return released


#: How embeddings are made from the encoders' outputs; bump it when that changes, so that the
#: door refuses templates made the old way ("re-enrol"). 2: mirror-averaged faces, voice back-end.
#: 3: frequency-warped speech before the speaker encoder (daemon.embed.voice_windows).
EMBEDDING_RECIPE = 3


def models_fingerprint(manifest: dict, names=("face_encoder", "speaker_encoder")) -> str:
    """Return a short hash identifying how template embeddings are made and compared: the
    encoders, the embedding recipe and the voice back-end (``backends`` in the manifest)."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(manifest["models"][name]["sha256"].encode())
    digest.update(f"recipe={EMBEDDING_RECIPE}".encode())
    for name, entry in sorted((manifest.get("backends") or {}).items()):
        digest.update(f"{name}={entry.get('sha256')}".encode())
    return digest.hexdigest()[:16]
