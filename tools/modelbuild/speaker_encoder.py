"""Build the ``speaker_encoder`` model: Resemblyzer's GE2E voice encoder as one stateless TFLite file.

Source: ``resemblyzer/pretrained.pt`` inside the PyPI wheel ``Resemblyzer==0.1.4`` (Apache-2.0),
or, with ``--fine-tune DATA_DIR``, those weights fine-tuned first on half of the development
speakers (``tools/modelbuild/speaker_finetune.py``; measured, not shipped: docs/results.md).
The network is a 3-layer LSTM(40 -> 256) whose last hidden state goes through Linear(256) + ReLU
and L2 normalisation. It is rebuilt in TensorFlow as a *wavefront*: one WHILE loop of 162
iterations, iteration ``d`` running frame ``d`` of layer 0, ``d - 1`` of layer 1 and ``d - 2`` of
layer 2 with one shared gate activation and cell update (see :func:`convert_float`). The state
lives in the loop, so the file keeps nothing between calls, and each weight matrix appears once,
so the XNNPACK delegate can run it at a few MB of packed weights. (The previous build unrolled the
480 steps into 5,758 ops: dispatch-bound, and +265 MB under XNNPACK, which packed the weights per
step. TFLite's fused UNIDIRECTIONAL_SEQUENCE_LSTM was measured too: its float kernel is 2x slower
on x86 and its hybrid kernel has one weight scale per gate matrix, so the window cosine to
PyTorch fell to 0.992 with layers 1-2 quantized and to 0.31 with layer 0 too.)

It is converted with ``tf.lite.TFLiteConverter`` and quantized with ``ai-edge-quantizer``: dynamic
range int8 (per-channel int8 weights, activations quantized on the fly) for every FULLY_CONNECTED
op inside the loop and for the output layer. Only layer 0's input product, which sees the raw mel
power, stays float32 (quantizing it, or the whole model, drops the cosine to the original to
0.5-0.8). Layer 0's *recurrent* product is int8 in two terms (:func:`two_term_int8`): the weights
on their own per-channel int8 grid, plus the rounding error quantized again with its own scale.
One int8 term fails the fidelity floor (window cosine min 0.9946 < 0.995); the float matrix, the
one float product in the loop, made the loop's working set 2 MB and cost 1.6x the time per window.

Fidelity is measured against the original PyTorch model run by Resemblyzer itself (librosa mel,
its own ``preprocess_wav``) on real speech from ``../shared/data/voices``: per 1.6 s window (same
librosa mel into both models), per whole utterance (our numpy front end + TFLite against
Resemblyzer's complete pipeline), and quantized against float TFLite. The numpy mel
(:mod:`daemon.embed.mel`) is compared with librosa on the same audio.

The build also writes the references the tests compare with (no audio, only reference outputs):
``tests/data/speaker_reference.npz`` and ``tests/data/mel_reference.npz``.

Needs ``tools/requirements-build-speaker.txt`` (torch, tensorflow-cpu, ai-edge-quantizer, librosa,
webrtcvad-wheels; Resemblyzer itself is downloaded and run from its wheel). Run alone:
``python tools/modelbuild/speaker_encoder.py --out models`` (writes the file and its manifest entry).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import wave
import zipfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.modelbuild.common import download_wheel, tensor_specs, update_manifest  # noqa: E402

log = logging.getLogger(__name__)

NAME = "speaker_encoder"
PACKAGE = "Resemblyzer"
VERSION = "0.1.4"
PATH_IN_PACKAGE = "resemblyzer/pretrained.pt"
OUT_FILE = "speaker_encoder.tflite"
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
WINDOW_FRAMES = 160
N_MELS = 40
N_LAYERS = 3
HIDDEN = 256
#: Pre-activation that shuts an input gate (sigmoid -> 0) on the diagonals before a layer starts.
SHUT_GATE = -1e4
#: Regex on FULLY_CONNECTED output tensor names (inside the loop body the converter names them
#: ``lstm1_1/MatMul...`` and the like): everything except LSTM layer 0 is quantized.
QUANTIZED_OPS_REGEX = r"(^|/)(lstm1|lstm2|head)(_\d+)?/"
#: Layer 0's recurrent product quantized too (``--layer0-recurrent two_term`` or ``int8``); only
#: layer 0's input product, which sees the raw mel power with its huge dynamic range, and the
#: gate arithmetic stay float. The residual term of ``two_term`` is named ``lstm0/residual/...``.
QUANTIZED_OPS_REGEX_WITH_LAYER0_RECURRENT = r"(^|/)(lstm0|lstm1|lstm2|head)(_\d+)?/"
#: How layer 0's recurrent product is stored (``--layer0-recurrent``): ``two_term`` (shipped) is
#: two int8 matrices (:func:`two_term_int8`), ``int8`` one (faster, under the fidelity floor),
#: ``float`` the float32 matrix of the builds before 2026-12-04 (1.6x slower per window).
LAYER0_RECURRENT_CHOICES = ("two_term", "int8", "float")
#: Fidelity set: per source, at most this many speakers and utterances per speaker.
FIDELITY_SOURCES = {
    "librispeech_test-other": (5, 6), "vctk": (2, 5), "speechocean762": (20, 1),
    "sdap_voice_actors": (3, 3), "cmu_arctic": (2, 3), "vcc2016": (2, 3), "emodb_2s": (5, 2),
    "urdu_talkshow": (7, 1), "an4": (6, 1), "librispeech_train-clean-100_singletons": (10, 1),
}
#: The tests' fixed LibriSpeech set (4 utterances of each of the 5 test-other speakers) plus a few
#: other sources; the tests read the audio from ../shared/data at test time.
TEST_UTTERANCES_PER_LIBRI_SPEAKER = 4
TEST_EXTRA_SOURCES = {"vctk": 2, "speechocean762": 2, "an4": 1}
TEST_WINDOWS = 4
MEL_TEST_FILE = "voices/vctk/p225/p225_003.wav"
SPEAKER_REFERENCE = REPO_ROOT / "tests" / "data" / "speaker_reference.npz"
MEL_REFERENCE = REPO_ROOT / "tests" / "data" / "mel_reference.npz"


def fetch_wheel(work_dir: Path, package: str = PACKAGE, version: str = VERSION) -> Path:
    """Download a wheel with pip (no dependencies) into ``work_dir``; return its extracted folder.

    The extracted folder is put on ``sys.path`` so that the reference runs the wheel's own code
    (``import resemblyzer``) without installing it (its ``webrtcvad`` dependency needs a compiler;
    ``webrtcvad-wheels`` provides the same module).
    """
    wheels = [download_wheel(work_dir, package, version)]
    extracted = Path(work_dir) / "extracted"
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extractall(extracted)
    if str(extracted) not in sys.path:
        sys.path.insert(0, str(extracted))
    return extracted




def load_weights(checkpoint: Path) -> dict[str, np.ndarray]:
    """Return the encoder's float32 weights from Resemblyzer's checkpoint (``model_state``)."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model_state"]
    return {k: v.detach().numpy().astype(np.float32) for k, v in state.items()
            if k.startswith(("lstm.", "linear."))}


def torch_encoder(checkpoint: Path):
    """Resemblyzer's own ``VoiceEncoder`` (PyTorch, CPU) loaded from ``checkpoint``."""
    from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False, weights_fpath=checkpoint)


def _gates_ifog(matrix: np.ndarray) -> np.ndarray:
    """Reorder PyTorch's gate blocks (input, forget, cell, output) along axis 0 to i, f, o, g."""
    gate_i, gate_f, gate_g, gate_o = np.split(matrix, 4, axis=0)
    return np.concatenate([gate_i, gate_f, gate_o, gate_g], axis=0)


def diagonal_biases(weights: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Return the constant per-diagonal gate biases of layers 1.. and their start-up correction.

    Layer ``l`` runs frame ``d - l`` on diagonal ``d``, so on the first ``l`` diagonals it has no
    frame yet: its input gate is shut there (pre-activation -1e4, sigmoid exactly 0), which keeps
    its state at the zeros PyTorch starts from. Returns ``(biases, start)``: ``biases`` is
    ``(N_LAYERS - 1, 1024)`` (layers 1.., i-f-o-g order) and ``start`` is
    ``(N_LAYERS - 1, N_LAYERS - 1, 1024)``, added on diagonals ``0 .. N_LAYERS - 2``.
    """
    biases = np.stack([_gates_ifog(weights[f"lstm.bias_ih_l{layer}"]
                                   + weights[f"lstm.bias_hh_l{layer}"])
                       for layer in range(1, N_LAYERS)]).astype(np.float32)
    start = np.zeros((N_LAYERS - 1, N_LAYERS - 1, 4 * HIDDEN), np.float32)
    for diagonal in range(N_LAYERS - 1):
        start[diagonal, diagonal:, :HIDDEN] = SHUT_GATE
    return biases, start


def int8_grid(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` (inputs x channels) rounded onto its per-channel symmetric int8 grid.

    The grid is the quantizer's own (scale = max |w| / 127 per output channel), so the quantizer
    stores these values without loss: :func:`head_is_lossless` checks that in the built file.
    """
    scale = np.abs(matrix).max(axis=0, keepdims=True) / 127.0
    return (np.round(matrix / np.where(scale > 0, scale, 1.0)) * scale).astype(np.float32)


def two_term_int8(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a weight matrix into ``(head, residual)`` with ``head + residual == matrix``.

    ``head`` is ``matrix`` on its int8 grid (stored exactly); ``residual`` is the rounding error,
    at most half a step per weight, which the quantizer puts on a grid of its own about 254x finer.
    The product ``x @ head + x @ residual`` then carries ~15-bit weights for two int8 matrices
    (512 KB, half the float matrix), and each term still gets XNNPACK's int8 kernels.
    """
    head = int8_grid(matrix)
    return head, (matrix - head).astype(np.float32)


def convert_float(weights: dict[str, np.ndarray], path: Path, layer0_recurrent: str = "two_term") -> None:
    """Write the float32 TFLite encoder: a wavefront over the 3 LSTM layers in one WHILE loop.

    Iteration ``d`` (a *diagonal*) runs frame ``d`` of layer 0, frame ``d - 1`` of layer 1 and
    frame ``d - 2`` of layer 2, which depend only on the previous iteration, so the three layers
    share one gate activation and cell update per iteration: 162 iterations of ~25 ops instead of
    480 unrolled steps (5,758 ops). The loop body holds each weight matrix once, so XNNPACK packs
    it once (the unrolled graph had it packed per step: +265 MB). Layer 0's input product, which
    sees the raw mel power, is one float matrix product over all 160 frames before the loop. The
    state lives in the loop, so the file keeps nothing between calls. With ``layer0_recurrent ==
    "two_term"`` layer 0's recurrent product is written as the two products of
    :func:`two_term_int8` (equal in float to the one product, to rounding).
    """
    import tensorflow as tf

    if layer0_recurrent not in LAYER0_RECURRENT_CHOICES:
        raise ValueError(f"layer0_recurrent must be one of {LAYER0_RECURRENT_CHOICES}")

    diagonals = WINDOW_FRAMES + N_LAYERS - 1
    w_ih = [tf.constant(_gates_ifog(weights[f"lstm.weight_ih_l{layer}"]).T)
            for layer in range(N_LAYERS)]
    w_hh = [tf.constant(_gates_ifog(weights[f"lstm.weight_hh_l{layer}"]).T)
            for layer in range(N_LAYERS)]
    bias_0 = tf.constant(_gates_ifog(weights["lstm.bias_ih_l0"] + weights["lstm.bias_hh_l0"]))
    biases, start = diagonal_biases(weights)
    head_0, residual_0 = two_term_int8(_gates_ifog(weights["lstm.weight_hh_l0"]).T)

    def diagonal(step, gate_bias, h0, h1, h2, cell):
        # the name scopes are what the quantization recipe selects ops by; the input and the
        # recurrent products stay separate ops so each gets its own per-channel weight scales
        with tf.name_scope("lstm0"):
            if layer0_recurrent == "two_term":
                gates_0 = tf.matmul(h0, tf.constant(head_0))
                with tf.name_scope("residual"):
                    gates_0 = gates_0 + tf.matmul(h0, tf.constant(residual_0))
            else:
                gates_0 = tf.matmul(h0, w_hh[0])
        with tf.name_scope("lstm1"):
            gates_1 = tf.matmul(h0, w_ih[1]) + tf.matmul(h1, w_hh[1])
        with tf.name_scope("lstm2"):
            gates_2 = tf.matmul(h1, w_ih[2]) + tf.matmul(h2, w_hh[2])
        gates = tf.concat([gates_0, gates_1, gates_2], 0) + tf.gather(gate_bias, step)
        sigmoid_part, tanh_part = tf.split(gates, [3 * HIDDEN, HIDDEN], axis=1)
        gate_i, gate_f, gate_o = tf.split(tf.sigmoid(sigmoid_part), 3, axis=1)
        cell = gate_f * cell + gate_i * tf.tanh(tanh_part)
        h0, h1, h2 = tf.split(gate_o * tf.tanh(cell), N_LAYERS, axis=0)
        return step + 1, gate_bias, h0, h1, h2, cell

    @tf.function(input_signature=[tf.TensorSpec([1, WINDOW_FRAMES, N_MELS], tf.float32,
                                                name="mel")])
    def encoder(mel):
        with tf.name_scope("lstm0_input"):
            input_gates = tf.matmul(tf.reshape(mel, [WINDOW_FRAMES, N_MELS]), w_ih[0]) + bias_0
        # (diagonals, layers, 4 * HIDDEN): layer 0's input gates, the constant biases of the
        # others, and the shut input gates of the layers that have not started
        gate_bias = tf.concat([
            tf.pad(input_gates, [[0, N_LAYERS - 1], [0, 0]])[:, None, :],
            tf.tile(tf.constant(biases)[None], [diagonals, 1, 1])
            + tf.pad(tf.constant(start), [[0, diagonals - (N_LAYERS - 1)], [0, 0], [0, 0]]),
        ], axis=1)
        zeros = tf.zeros([1, HIDDEN])
        _, _, _, _, hidden, _ = tf.while_loop(
            lambda step, *_: step < diagonals, diagonal,
            [tf.constant(0), gate_bias, zeros, zeros, zeros, tf.zeros([N_LAYERS, HIDDEN])])
        with tf.name_scope("head"):
            raw = tf.nn.relu(tf.matmul(hidden, tf.constant(weights["linear.weight"].T))
                             + tf.constant(weights["linear.bias"]))
            embedding = raw / tf.norm(raw, axis=1, keepdims=True)
        return tf.identity(embedding, name="embedding")

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [encoder.get_concrete_function()], encoder)
    path.write_bytes(converter.convert())


def quantize(float_path: Path, out_path: Path, regex: str = QUANTIZED_OPS_REGEX) -> None:
    """Dynamic-range int8 for LSTM layers 1-2 and the output layer; LSTM layer 0 stays float.

    ``regex`` selects the FULLY_CONNECTED ops to quantize by their output tensor names.
    """
    import ai_edge_quantizer
    from ai_edge_quantizer import qtyping

    quantizer = ai_edge_quantizer.Quantizer(str(float_path))
    quantizer.add_dynamic_config(regex=regex,
                                 operation_name=qtyping.TFLOperationName.FULLY_CONNECTED,
                                 num_bits=8)
    result = quantizer.quantize(enable_progress_report=False, enable_progress_bar=False)
    out_path.write_bytes(bytes(result.quantized_model))




def head_is_lossless(path: Path, weights: dict[str, np.ndarray]) -> bool:
    """Whether the built file stores layer 0's recurrent head term exactly (see :func:`int8_grid`).

    Finds the int8 ``lstm0`` matrix that is not the residual and compares its dequantized values
    with :func:`two_term_int8`'s head. A quantizer that chose another scale would make the head
    carry a second rounding error as large as the one the residual corrects.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    head = two_term_int8(_gates_ifog(weights["lstm.weight_hh_l0"]).T)[0].T  # (channels, inputs)
    model = flatbuffer_utils.read_model(str(path))
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            if ("lstm0/" not in name or "residual" in name or tensor.quantization is None
                    or tensor.quantization.scale is None or list(tensor.shape) != list(head.shape)):
                continue
            data = bytes(model.buffers[tensor.buffer].data)
            if len(data) != head.size:  # an int8 weight matrix, not a float activation
                continue
            stored = (np.frombuffer(data, np.int8).reshape(head.shape).astype(np.float32)
                      * np.asarray(tensor.quantization.scale, np.float32)[:, None])
            return bool(np.abs(stored - head).max() <= 1e-6 * np.abs(head).max())
    raise RuntimeError(f"{path}: no int8 head term of layer 0's recurrent product")


def count_ops(path: Path) -> dict[str, dict[str, int]]:
    """Return how many ops of each type each subgraph of the TFLite file has, by subgraph name."""
    from collections import Counter

    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model(str(path))
    kinds = [names[max(code.builtinCode, code.deprecatedBuiltinCode)]
             for code in model.operatorCodes]
    return {(subgraph.name or b"main").decode(): dict(Counter(
                kinds[op.opcodeIndex] for op in subgraph.operators).most_common())
            for subgraph in model.subgraphs}


def read_wav(path: Path) -> np.ndarray:
    """Read a 16 kHz mono PCM16 WAV as float32 in [-1, 1) (librosa's scaling: / 32768)."""
    with wave.open(str(path), "rb") as handle:
        if handle.getframerate() != 16000 or handle.getnchannels() != 1 \
                or handle.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16 kHz mono PCM16")
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def fidelity_utterances(data_dir: Path = DATA_DIR) -> list[str]:
    """Return the fidelity utterances (paths relative to the data folder), in a fixed order."""
    keys = []
    for source, (n_speakers, n_utterances) in FIDELITY_SOURCES.items():
        speakers = sorted(p for p in (data_dir / "voices" / source).iterdir() if p.is_dir())
        for speaker in speakers[:n_speakers]:
            files = sorted(speaker.glob("*.wav"))[:n_utterances]
            keys += [str(f.relative_to(data_dir)) for f in files]
    return keys


def test_utterances(data_dir: Path = DATA_DIR) -> list[str]:
    """Return the tests' fixed utterances: LibriSpeech test-other first, then a few others."""
    keys = []
    libri = data_dir / "voices" / "librispeech_test-other"
    for speaker in sorted(p for p in libri.iterdir() if p.is_dir()):
        files = sorted(speaker.glob("*.wav"))[:TEST_UTTERANCES_PER_LIBRI_SPEAKER]
        keys += [str(f.relative_to(data_dir)) for f in files]
    for source, n_speakers in TEST_EXTRA_SOURCES.items():
        speakers = sorted(p for p in (data_dir / "voices" / source).iterdir() if p.is_dir())
        for speaker in speakers[:n_speakers]:
            keys.append(str(sorted(speaker.glob("*.wav"))[0].relative_to(data_dir)))
    return keys


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _summary(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"n": int(values.size), "cosine_mean": round(float(values.mean()), 6),
            "cosine_min": round(float(values.min()), 6)}


class _Interpreter:
    """A bare TFLite interpreter on one file (for the float model, which has no manifest entry)."""

    def __init__(self, path: Path, num_threads: int = 1):
        from daemon.inference.tflite import _interpreter_class

        self._interpreter = _interpreter_class()(model_path=str(path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]

    def embed_window(self, window: np.ndarray) -> np.ndarray:
        self._interpreter.set_tensor(self._input, np.asarray(window, np.float32)[None])
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)[0].copy()


def measure_latency(embed_window, window: np.ndarray, repeats: int = 200) -> dict:
    """Median and 95th-percentile milliseconds of one window embedding (after warm-up).

    ``cpu_median_ms`` is the same calls in thread CPU time, which a busy build machine disturbs
    less than wall time.
    """
    for _ in range(5):
        embed_window(window)
    times, cpu_times = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.thread_time()
        embed_window(window)
        cpu_times.append((time.thread_time() - start_cpu) * 1000.0)
        times.append((time.perf_counter() - start) * 1000.0)
    return {"threads": 1, "median_ms": round(float(np.median(times)), 3),
            "p95_ms": round(float(np.percentile(times, 95)), 3),
            "cpu_median_ms": round(float(np.median(cpu_times)), 3), "n": repeats}


def resemblyzer_reference(encoder, path: Path) -> dict:
    """Resemblyzer's whole pipeline on one file: preprocessed wav, librosa mel windows, embeddings."""
    import torch
    from resemblyzer import preprocess_wav
    from resemblyzer.audio import wav_to_mel_spectrogram

    wav = preprocess_wav(path)
    embedding, partials, wav_slices = encoder.embed_utterance(wav, return_partials=True)
    padded = np.pad(wav, (0, max(0, wav_slices[-1].stop - len(wav))))
    frames = wav_to_mel_spectrogram(padded)
    windows = np.stack([frames[s.start // 160:s.start // 160 + WINDOW_FRAMES]
                        for s in wav_slices])
    with torch.no_grad():
        check = encoder(torch.from_numpy(windows)).numpy()
    if not np.allclose(check, partials, atol=1e-5):
        raise RuntimeError(f"{path}: could not reproduce Resemblyzer's partial windows")
    return {"wav": wav, "windows": windows, "partials": partials, "embedding": embedding}


def build(out_dir: Path, work_dir: Path, layer0_recurrent: str = "two_term",
          write_references: bool = True, fine_tuned: Path | None = None) -> dict:
    """Convert, quantize and measure the speaker encoder; return its manifest entry.

    Writes ``out_dir/speaker_encoder.tflite`` and the tests' reference files.
    ``layer0_recurrent`` chooses how layer 0's recurrent weights are stored (see
    :data:`LAYER0_RECURRENT_CHOICES`). ``write_references=False`` leaves tests/data alone.
    ``fine_tuned``: a folder written by ``tools/modelbuild/speaker_finetune.py``; its checkpoint
    replaces the wheel's weights (the reference is the same PyTorch code loading that checkpoint)
    and its recipe, with the speakers trained on, goes into the entry as ``fine_tuned``.
    """
    import librosa

    from daemon.embed import mel as numpy_mel
    from daemon.inference.tflite import TFLiteModel, sha256_of
    from daemon.embed.speaker_encoder import SpeakerEncoder

    out_dir, work_dir = Path(out_dir), Path(work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    pretrained = fetch_wheel(work_dir) / PATH_IN_PACKAGE
    recipe = None
    checkpoint = pretrained
    if fine_tuned is not None:
        from tools.modelbuild.speaker_finetune import CHECKPOINT_NAME, RECIPE_NAME

        checkpoint = Path(fine_tuned) / CHECKPOINT_NAME
        recipe = json.loads((Path(fine_tuned) / RECIPE_NAME).read_text())
        if recipe["checkpoint_sha256"] != sha256_of(checkpoint):
            raise SystemExit(f"{checkpoint} does not match its recipe's sha256")
        if recipe["from"]["sha256"] != sha256_of(pretrained):
            raise SystemExit(f"{checkpoint} was not fine-tuned from {PACKAGE} {VERSION}'s weights")
    weights = load_weights(checkpoint)
    float_path = work_dir / "speaker_encoder_float.tflite"
    target = out_dir / OUT_FILE
    log.info("converting %s (sha256 %s)", checkpoint, sha256_of(checkpoint)[:12])
    convert_float(weights, float_path, layer0_recurrent)
    quantize(float_path, target, QUANTIZED_OPS_REGEX
             if layer0_recurrent == "float" else QUANTIZED_OPS_REGEX_WITH_LAYER0_RECURRENT)
    if layer0_recurrent == "two_term" and not head_is_lossless(target, weights):
        raise SystemExit(f"{target}: the quantizer did not store layer 0's recurrent head term "
                         "exactly (its int8 scales changed?): two_term_int8 needs its grid")
    inputs, outputs = tensor_specs(target)
    entry = {
        "file": OUT_FILE, "sha256": sha256_of(target), "size_bytes": target.stat().st_size,
        "licence": "Apache-2.0",
        "role": "GE2E speaker encoder (Resemblyzer): one 1.6 s window of 160 linear-power mel "
                "frames -> 256-d L2-normalised embedding; utterance = L2-normalised mean of windows",
        "source": {"package": PACKAGE, "version": VERSION, "path_in_package": PATH_IN_PACKAGE,
                   "sha256": sha256_of(pretrained)},
        "quantization": {
            "two_term": "dynamic-range int8 except LSTM layer 0's input product: per-channel int8 "
                        "weights, activations quantized at run time, for every FULLY_CONNECTED op "
                        "of the loop and the output Linear (ai-edge-quantizer 0.10.0); layer 0's "
                        "recurrent product in two int8 terms (the weights on their int8 grid, "
                        "stored exactly, plus the rounding error on a 254x finer grid); layer 0's "
                        "input product float32",
            "int8": "dynamic-range int8 except LSTM layer 0's input product: per-channel int8 "
                    "weights, activations quantized at run time, for the FULLY_CONNECTED ops of "
                    "LSTM layer 0's recurrent product, layers 1-2 and the output Linear "
                    "(ai-edge-quantizer 0.10.0); layer 0's input product float32",
            "float": "dynamic-range int8 except LSTM layer 0: per-channel int8 weights, "
                     "activations quantized at run time, for the FULLY_CONNECTED ops of LSTM "
                     "layers 1-2 and the output Linear (ai-edge-quantizer 0.10.0); LSTM layer 0 "
                     "float32",
        }[layer0_recurrent]
        + ". The 3 LSTM layers run as a wavefront in one WHILE loop (162 iterations, state "
          "inside the loop): stateless, run with XNNPACK",
        "inputs": inputs, "outputs": outputs, "reset_variables": False,
        "ops": count_ops(target),
    }
    if recipe is not None:
        entry["role"] += "; fine-tuned on half of the development speakers (fine_tuned)"
        entry["fine_tuned"] = recipe
        entry["licence"] = ("Apache-2.0 (Resemblyzer's weights), fine-tuned on speech under CC BY 4.0 "
                            "(LibriSpeech, VCTK, speechocean762, SDAP), ODC-By (VCC 2016) and BSD-style "
                            "notices (CMU ARCTIC, AN4): credit those corpora (fine_tuned.data)")
    manifest = {"schema": 1, "models": {NAME: entry}}
    TFLiteModel(NAME, out_dir, manifest=manifest)
    ours = SpeakerEncoder(out_dir, num_threads=1, manifest=manifest)
    float_model = _Interpreter(float_path)
    reference_encoder = torch_encoder(checkpoint)

    keys = fidelity_utterances()
    window_q, window_f, q_vs_f, utterance_cos, mel_errors = [], [], [], [], []
    preprocess_matches = 0
    references = {}
    for key in keys:
        reference = resemblyzer_reference(reference_encoder, DATA_DIR / key)
        references[key] = reference
        quantized = ours.embed_windows(reference["windows"])
        floats = np.stack([float_model.embed_window(w) for w in reference["windows"]])
        window_q += list(_cosines(quantized, reference["partials"]))
        window_f += list(_cosines(floats, reference["partials"]))
        q_vs_f += list(_cosines(quantized, floats))
        raw = read_wav(DATA_DIR / key)
        preprocess_matches += int(np.array_equal(numpy_mel.preprocess_wav(raw), reference["wav"]))
        embedding = ours.embed_utterance(raw)
        utterance_cos.append(float(_cosines(embedding, reference["embedding"])))
        librosa_mel = reference["windows"].reshape(-1, N_MELS)
        numpy_windows = ours.utterance_windows(reference["wav"]).reshape(-1, N_MELS)
        mel_errors.append(float(np.abs(numpy_windows - librosa_mel).max() / librosa_mel.max()))
    worst = keys[int(np.argmin(utterance_cos))]
    entry["fidelity"] = {
        "reference": f"Resemblyzer {VERSION} VoiceEncoder (PyTorch, CPU) with its own "
                     f"preprocess_wav and librosa {librosa.__version__} mel"
                     + (", loading the fine-tuned checkpoint" if recipe is not None else ""),
        "data": "../shared/data/voices: " + ", ".join(
            f"{s} ({n}x{m})" for s, (n, m) in FIDELITY_SOURCES.items()),
        "n": len(window_q), "cosine_mean": _summary(window_q)["cosine_mean"],
        "cosine_min": _summary(window_q)["cosine_min"],
        "windows_quantized_vs_pytorch": _summary(window_q),
        "windows_float_tflite_vs_pytorch": _summary(window_f),
        "windows_quantized_vs_float_tflite": _summary(q_vs_f),
        "utterances_numpy_front_end_quantized_vs_resemblyzer": {
            **_summary(utterance_cos), "worst": worst},
        "numpy_mel_vs_librosa_max_relative_error": float(f"{max(mel_errors):.3g}"),
        "numpy_preprocess_identical_to_resemblyzer": f"{preprocess_matches}/{len(keys)}",
        "latency_per_window_1_thread": measure_latency(
            ours.embed_window, references[keys[0]]["windows"][0]),
        "latency_per_window_1_thread_float_tflite": measure_latency(
            float_model.embed_window, references[keys[0]]["windows"][0]),
        "size_bytes": entry["size_bytes"], "float_size_bytes": float_path.stat().st_size,
        "measured_on": "x86-64 build machine (Pi numbers will be higher)",
    }
    if write_references:
        write_test_references(reference_encoder, references)
    log.info("speaker_encoder: %s", json.dumps(entry["fidelity"]))
    return entry


def write_test_references(reference_encoder, cached: dict) -> None:
    """Store PyTorch/librosa reference outputs (no audio) for tests/test_*.py."""
    import librosa
    from resemblyzer import preprocess_wav

    from daemon.inference.tflite import sha256_of

    keys = test_utterances()
    references = [cached.get(k) or resemblyzer_reference(reference_encoder, DATA_DIR / k)
                  for k in keys]
    # the first window of one utterance per LibriSpeech speaker
    window_sources = references[::TEST_UTTERANCES_PER_LIBRI_SPEAKER][:TEST_WINDOWS]
    windows = np.concatenate([r["windows"][:1] for r in window_sources])
    SPEAKER_REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        SPEAKER_REFERENCE,
        paths=np.array(keys), file_sha256=np.array([sha256_of(DATA_DIR / k) for k in keys]),
        speakers=np.array([k.split("/")[1] + "/" + k.split("/")[2] for k in keys]),
        utterance_embeddings=np.stack([r["embedding"] for r in references]).astype(np.float32),
        preprocessed_lengths=np.array([len(r["wav"]) for r in references]),
        window_mels=windows.astype(np.float32),
        window_embeddings=np.concatenate(
            [r["partials"][:1] for r in window_sources]).astype(np.float32),
        reference=np.array(f"Resemblyzer {VERSION} PyTorch, librosa {librosa.__version__}"))
    raw = read_wav(DATA_DIR / MEL_TEST_FILE)
    preprocessed = preprocess_wav(DATA_DIR / MEL_TEST_FILE)
    np.savez_compressed(
        MEL_REFERENCE,
        path=np.array(MEL_TEST_FILE), file_sha256=np.array(sha256_of(DATA_DIR / MEL_TEST_FILE)),
        raw_mel_1s=librosa.feature.melspectrogram(
            y=raw[:16000], sr=16000, n_fft=400, hop_length=160, n_mels=40
        ).astype(np.float32).T,
        preprocessed_length=np.array(len(preprocessed)),
        preprocessed_mel_3s=librosa.feature.melspectrogram(
            y=preprocessed[:48000], sr=16000, n_fft=400, hop_length=160, n_mels=40
        ).astype(np.float32).T,
        mel_filterbank=librosa.filters.mel(sr=16000, n_fft=400, n_mels=40).astype(np.float32),
        reference=np.array(f"librosa {librosa.__version__} feature.melspectrogram via "
                           f"Resemblyzer {VERSION} preprocess_wav"))


def main(argv=None) -> int:
    """Command line: build into ``--out`` and update its manifest.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--layer0-recurrent", choices=LAYER0_RECURRENT_CHOICES, default="two_term",
                        help="how LSTM layer 0's recurrent weights are stored: two int8 terms "
                             "(shipped), one int8 term (under the fidelity floor) or float32")
    parser.add_argument("--no-test-references", action="store_true",
                        help="do not rewrite tests/data/{speaker,mel}_reference.npz")
    parser.add_argument("--fine-tune", type=Path, default=None, metavar="DATA_DIR",
                        help="first fine-tune the weights on half of DATA_DIR's speakers "
                             "(tools/modelbuild/speaker_finetune.py), then convert those")
    parser.add_argument("--fine-tune-steps", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="build_speaker_encoder"))
    fine_tuned = None
    if args.fine_tune is not None:
        from tools.modelbuild import speaker_finetune

        fine_tuned = work / "fine_tuned"
        speaker_finetune.run(args.fine_tune, fine_tuned, args.fine_tune_steps or speaker_finetune.DEFAULT_STEPS,
                             seed=1, work_dir=work)
    built = build(args.out, work, layer0_recurrent=args.layer0_recurrent,
                  write_references=not args.no_test_references, fine_tuned=fine_tuned)
    update_manifest(args.out, NAME, built)
    print(json.dumps(built["fidelity"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
