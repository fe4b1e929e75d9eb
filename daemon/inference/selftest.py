"""The start-up self-test: every model must reproduce its bundled reference outputs on this CPU.

A new CPU or runtime can compute wrong numbers without any error: under QEMU's ``max`` CPU, which
advertises SME, XNNPACK's int8 kernels return face embeddings that make different people 0.99997
alike. A door that then accepts or rejects at random is worse than one that refuses to start, so
before the daemon, enrolment or ``avid verify`` use the models, :func:`run_selftest` runs each
model on small bundled inputs (GRID frames and speech, CC BY 4.0) and compares its outputs with
the outputs recorded when the references were generated (``tools/modelbuild/selftest_refs.py``).

The references live beside the manifest: ``models/selftest.npz`` (inputs and outputs) and the
``selftest`` block of ``models/manifest.json`` (its sha256, the model file each reference was
made with, and the tolerances). For every model and sample:

- *cosine*: the cosine similarity of each output (flattened) with its reference, for outputs of
  two or more values;
- *deviation*: ``max |output - reference| / max |reference|`` over each output.

The model passes when its worst cosine is at least ``cosine_min`` and its worst deviation at most
``max_deviation``. The tolerances allow the difference between XNNPACK and the reference kernels
and between thread counts (measured by the generator) and fail on garbage.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daemon.inference.tflite import DEFAULT_MODELS_DIR, TFLiteModel, read_manifest, sha256_of
from daemon.errors import ModelSelfTestError

log = logging.getLogger(__name__)

#: ARM ``CPU part`` numbers of the cores in Raspberry Pis (and a few neighbours).
ARM_CPU_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
                 "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
                 "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd41": "Cortex-A78"}


@dataclass(frozen=True)
class ModelCheck:
    """The self-test result of one model."""

    name: str
    samples: int
    worst_cosine: float
    worst_deviation: float
    cosine_min: float
    max_deviation: float
    milliseconds: float

    @property
    def passed(self) -> bool:
        """True when both measures are within tolerance (NaN never is)."""
        return bool(self.worst_cosine >= self.cosine_min and self.worst_deviation <= self.max_deviation)

    def line(self) -> str:
        """One line for the report."""
        verdict = "ok" if self.passed else "REFUSED"
        return (f"{self.name}: {verdict} (worst cosine {self.worst_cosine:.6f}, tolerance "
                f">= {self.cosine_min}; worst deviation {self.worst_deviation:.4f}, tolerance "
                f"<= {self.max_deviation}; {self.samples} sample(s), {self.milliseconds:.0f} ms)")


@dataclass
class SelfTestReport:
    """What :func:`run_selftest` found: one :class:`ModelCheck` per model, the CPU and the runtime."""

    cpu: str
    runtime: str
    num_threads: int
    checks: list[ModelCheck] = field(default_factory=list)
    milliseconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True when every model passed."""
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[ModelCheck]:
        """The models that did not pass."""
        return [check for check in self.checks if not check.passed]

    def text(self) -> str:
        """The report as printed by ``avid self-test``."""
        lines = [f"model self-test on {self.cpu}, runtime {self.runtime}, {self.num_threads} thread(s):"]
        lines += ["  " + check.line() for check in self.checks]
        verdict = "passed" if self.passed else "FAILED: avid will not start (the door stays locked)"
        lines.append(f"self-test {verdict} in {self.milliseconds:.0f} ms")
        return "\n".join(lines)


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The machine and CPU model: ``platform.machine()`` plus /proc/cpuinfo's model name, or the
    board model and ARM ``CPU part`` on ARM (whose cpuinfo has no model name)."""
    fields: dict[str, str] = {}
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() not in fields:
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    parts = [platform.machine() or "unknown machine"]
    if "model name" in fields:
        parts.append(fields["model name"])
    if "Model" in fields:
        parts.append(fields["Model"])
    if "CPU part" in fields:
        part = fields["CPU part"].lower()
        parts.append(f"CPU part {part}" + (f" ({ARM_CPU_PARTS[part]})" if part in ARM_CPU_PARTS else ""))
    return ", ".join(parts)


def runtime_description() -> str:
    """The TFLite runtime package and version that runs the models."""
    for package in ("ai-edge-litert", "tflite-runtime"):
        try:
            return f"{package} {importlib.metadata.version(package)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "no TFLite runtime package found"


def compare(outputs: list[np.ndarray], references: list[np.ndarray]) -> tuple[float, float]:
    """Return ``(worst cosine, worst deviation)`` of outputs against their references.

    The cosine covers outputs of two or more values (1.0 when there is none); the deviation is
    ``max |output - reference| / max |reference|``. NaN or infinite outputs give NaN and infinity,
    which no tolerance accepts.
    """
    worst_cosine, worst_deviation = 1.0, 0.0
    for out, ref in zip(outputs, references):
        out = np.asarray(out, np.float64).ravel()
        ref = np.asarray(ref, np.float64).ravel()
        if out.shape != ref.shape or not np.all(np.isfinite(out)):
            return float("nan"), float("inf")
        scale = float(np.max(np.abs(ref))) or 1.0
        worst_deviation = max(worst_deviation, float(np.max(np.abs(out - ref))) / scale)
        if ref.size >= 2:
            denominator = float(np.linalg.norm(out) * np.linalg.norm(ref))
            cosine = float(out @ ref) / denominator if denominator > 0 else float("nan")
            worst_cosine = cosine if np.isnan(cosine) else min(worst_cosine, cosine)
    return worst_cosine, worst_deviation


def load_references(models_dir: Path, manifest: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """Return the manifest's ``selftest`` block and the arrays of its verified reference file."""
    block = manifest.get("selftest")
    if not isinstance(block, dict) or "file" not in block or "sha256" not in block:
        raise ModelSelfTestError(
            f"{Path(models_dir) / 'manifest.json'} has no 'selftest' block: the models cannot be "
            "checked on this CPU (generate it with tools/modelbuild/selftest_refs.py)")
    path = Path(models_dir) / block["file"]
    if not path.is_file():
        raise ModelSelfTestError(f"self-test reference file not found: {path}")
    actual = sha256_of(path)
    if actual != block["sha256"]:
        raise ModelSelfTestError(
            f"self-test reference file {path} has sha256 {actual[:12]}..., the manifest expects "
            f"{block['sha256'][:12]}... (corrupt or replaced; regenerate with "
            "tools/modelbuild/selftest_refs.py)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise ModelSelfTestError(f"self-test reference file {path} cannot be read: {exc}") from exc
    return block, arrays


def reference_inputs(arrays: dict[str, np.ndarray], name: str, n_inputs: int) -> list[np.ndarray]:
    """The float model inputs of one model: stored arrays (uint8 images where possible, to keep the
    file small) times their stored scale plus offset."""
    inputs = []
    for k in range(n_inputs):
        stored = arrays[f"{name}/in{k}"]
        scale = np.float32(arrays[f"{name}/in{k}_scale"])
        offset = np.float32(arrays[f"{name}/in{k}_offset"])
        inputs.append(stored.astype(np.float32) * scale + offset)
    return inputs


def check_model(model: TFLiteModel, arrays: dict[str, np.ndarray], tolerance: dict) -> ModelCheck:
    """Run one loaded model on its reference inputs and compare with its reference outputs."""
    t0 = time.perf_counter()
    name = model.name
    try:
        inputs = reference_inputs(arrays, name, len(model.input_specs))
        references = [arrays[f"{name}/out{j}"] for j in range(len(model.output_specs))]
        cosine_min, max_deviation = float(tolerance["cosine_min"]), float(tolerance["max_deviation"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelSelfTestError(f"model {name!r}: self-test references incomplete ({exc})") from exc
    samples = inputs[0].shape[0]
    worst_cosine, worst_deviation = 1.0, 0.0
    for i in range(samples):
        outputs = model.run(*(x[i:i + 1] for x in inputs))
        cosine, deviation = compare(outputs, [r[i:i + 1] for r in references])
        worst_cosine = cosine if np.isnan(cosine) else min(worst_cosine, cosine)
        worst_deviation = max(worst_deviation, deviation) if not np.isnan(deviation) else float("inf")
    return ModelCheck(name, samples, worst_cosine, worst_deviation, cosine_min, max_deviation,
                      (time.perf_counter() - t0) * 1000.0)


def run_selftest(models_dir: Path | None = None, num_threads: int = 1,
                 models: Mapping[str, TFLiteModel] | None = None) -> SelfTestReport:
    """Check every model of the manifest against its bundled reference outputs.

    Loads each model as the daemon does (sha256 and tensors verified, XNNPACK, ``num_threads``),
    runs it on the reference inputs and compares. Loading dominates the cost; pass the models the
    daemon has already loaded as ``models`` to check those very interpreters and pay only for the
    runs (tens of milliseconds).

    :param models_dir: the folder of the models and manifest (default: the bundled models).
    :param num_threads: threads per model, as in the config's ``models.num_threads``.
    :param models: already loaded models by manifest name (from ``models_dir``); the others are
        loaded here.
    :returns: the :class:`SelfTestReport` of a pass.
    :raises ModelSelfTestError: when a model's outputs are outside tolerance, or the references
        are missing, corrupt or were made for another model file; the message names each failing
        model, its worst cosine and deviation, the tolerances, the CPU and the runtime, and the
        exception's ``report`` attribute holds the full report (None when no model was run).
    :raises ModelError: when a model file itself is missing or does not match the manifest.
    """
    t0 = time.perf_counter()
    models_dir = Path(models_dir or DEFAULT_MODELS_DIR)
    manifest = read_manifest(models_dir)
    report = SelfTestReport(cpu_description(), runtime_description(), num_threads)
    block, arrays = load_references(models_dir, manifest)
    references = block.get("models", {})
    for name, entry in manifest["models"].items():
        reference = references.get(name)
        if not isinstance(reference, dict):
            raise ModelSelfTestError(f"model {name!r} has no self-test reference in the manifest "
                                     "(regenerate with tools/modelbuild/selftest_refs.py)")
        if reference.get("model_sha256") != entry.get("sha256"):
            raise ModelSelfTestError(
                f"model {name!r}: the self-test references were made with another model file "
                f"(sha256 {str(reference.get('model_sha256'))[:12]}..., the manifest's is "
                f"{str(entry.get('sha256'))[:12]}...); regenerate with tools/modelbuild/selftest_refs.py")
        model = (models or {}).get(name)
        if model is None or model.sha256 != entry.get("sha256"):
            model = TFLiteModel(name, models_dir, num_threads=num_threads, manifest=manifest)
        report.checks.append(check_model(model, arrays, reference))
    report.milliseconds = (time.perf_counter() - t0) * 1000.0
    if not report.passed:
        failures = "; ".join(
            f"model {c.name!r} worst cosine {c.worst_cosine:.6f} (tolerance >= {c.cosine_min}), "
            f"worst deviation {c.worst_deviation:.4f} (tolerance <= {c.max_deviation})"
            for c in report.failed)
        error = ModelSelfTestError(
            f"model self-test failed: {failures}; CPU: {report.cpu}; runtime: {report.runtime}, "
            f"{num_threads} thread(s). The models compute wrong outputs on this CPU/runtime: avid "
            "refuses to start and the door stays locked")
        error.report = report
        raise error
    log.info("model self-test passed in %.0f ms (%s; %s)", report.milliseconds, report.cpu, report.runtime)
    return report


def command(config, args) -> int:
    """``avid self-test``: print the report; exit status 0 when every model passed, else 1."""
    models_dir = config.models.directory or DEFAULT_MODELS_DIR
    try:
        report = run_selftest(models_dir, config.models.num_threads)
    except ModelSelfTestError as exc:
        report = getattr(exc, "report", None)
        if report is not None:
            print(report.text())
        print(f"error: {exc}")
        return 1
    print(report.text())
    return 0
