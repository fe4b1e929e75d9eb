"""systemd/avid.service: it parses, it is locked down (exposure <= 2.0), and the stack runs under it.

Needs the ``systemd`` package (systemd-analyze, systemd-sysusers, systemd-tmpfiles) and
``python3-seccomp`` (for tools/run_sandboxed.py), installed by `tools/bootstrap.sh test`; systemd itself
need not be running.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as tfl

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "avid.service"
SYSUSERS = REPO / "systemd" / "avid.sysusers.conf"
TMPFILES = REPO / "systemd" / "avid.tmpfiles.conf"
MDWE_PROBE = REPO / "tests" / "mdwe_probe.py"
SANDBOX = REPO / "tools" / "run_sandboxed.py"
MAX_EXPOSURE = 2.0
EXEC_START = "/opt/avid/venv/bin/avid run --config /etc/avid/config.yaml"


def unit_directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order; repeated keys are kept."""
    section = ""
    directives = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        directives.append((section, key.strip(), value.strip()))
    return directives


def service_values(key: str) -> list[str]:
    return [v for s, k, v in unit_directives(UNIT.read_text()) if s == "Service" and k == key]


def verify_problems(unit_text: str, tmp_path: Path) -> list[str]:
    """Run systemd-analyze verify on a copy whose ExecStart names an executable that exists here.

    verify exits 0 even for unknown keys and unparsable values, so every line naming the unit counts.
    """
    copy = tmp_path / "avid.service"
    copy.write_text(unit_text.replace("ExecStart=/opt/avid/venv/bin/avid", f"ExecStart={sys.executable}")
                    .replace("ExecStopPost=/opt/avid/venv/bin/avid", f"ExecStopPost={sys.executable}"))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)],
                            capture_output=True, text=True, timeout=120)
    lines = (result.stdout + result.stderr).splitlines()
    problems = [line for line in lines if "avid.service" in line]
    if result.returncode != 0:
        problems.append(f"exit status {result.returncode}")
    return problems


def exposure_score(unit_path: Path) -> float:
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit_path)],
                            capture_output=True, text=True, timeout=120)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, f"no exposure line in:\n{result.stdout}\n{result.stderr}"
    return float(match.group(1))


def test_unit_passes_systemd_analyze_verify(tmp_path):
    assert service_values("ExecStart") == [EXEC_START]
    assert verify_problems(UNIT.read_text(), tmp_path) == []


def test_verify_check_catches_a_misspelt_directive(tmp_path):
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    problems = verify_problems(broken, tmp_path)
    assert any("ProtectSytem" in line for line in problems), problems


def test_exposure_score_is_at_most_two():
    score = exposure_score(UNIT)
    print(f"systemd-analyze security exposure of avid.service: {score}")
    assert score <= MAX_EXPOSURE


def test_exposure_check_sees_a_weakened_unit(tmp_path):
    weakened = tmp_path / "avid.service"
    lines = [line for line in UNIT.read_text().splitlines()
             if not line.startswith(("PrivateNetwork=", "IPAddressDeny=", "RestrictAddressFamilies=",
                                     "CapabilityBoundingSet=", "SystemCallFilter=", "ProtectSystem=",
                                     "PrivateUsers="))]
    weakened.write_text("\n".join(lines) + "\n")
    assert exposure_score(weakened) > MAX_EXPOSURE


def test_service_contract():
    assert service_values("Type") == ["notify"]
    assert service_values("NotifyAccess") == ["main"]
    assert service_values("WatchdogSec")
    assert service_values("Restart") == ["on-failure"]
    assert service_values("RestartPreventExitStatus") == ["78"]
    unit = unit_directives(UNIT.read_text())
    assert ("Unit", "StartLimitBurst", "5") in unit
    assert any(s == "Unit" and k == "StartLimitIntervalSec" for s, k, _ in unit)
    assert service_values("User") == ["avid"]
    assert set(" ".join(service_values("SupplementaryGroups")).split()) == {"video", "audio", "gpio"}
    assert service_values("StateDirectory") == ["avid"]
    assert service_values("StateDirectoryMode") == ["0700"]
    assert service_values("RuntimeDirectory") == ["avid"]
    assert service_values("WorkingDirectory") == ["/run/avid"]
    environment = service_values("Environment")
    assert "AVID_STATE_DIR=/var/lib/avid" in environment
    assert "LG_WD=/run/avid" in environment
    assert service_values("UMask") == ["0077"]
    assert service_values("LoadCredential") == ["avid-key:/etc/avid/device.key"]


def test_every_service_directive_says_why():
    section, previous, bare = "", "", []
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#") and not previous.startswith("#"):
            bare.append(line)
        previous = line
    assert bare == []


def test_devices_are_allowed_without_private_devices():
    assert service_values("PrivateDevices") in ([], ["no"])
    assert service_values("DevicePolicy") == ["closed"]
    assert sorted(service_values("DeviceAllow")) == [
        "char-alsa rw", "char-gpiochip rw", "char-video4linux rw"]
    assert service_values("RestrictAddressFamilies") == ["AF_UNIX"]
    assert service_values("MemoryDenyWriteExecute") == ["yes"]
    assert service_values("ProtectProc") == ["invisible"]
    # ProcSubset=pid hides /proc/cpuinfo: XNNPACK then fails to start (see the test below).
    assert service_values("ProcSubset") in ([], ["all"])


def test_sysusers_and_tmpfiles_create_the_account_and_private_directories(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    subprocess.run(["systemd-sysusers", f"--root={root}", str(SYSUSERS)], check=True,
                   capture_output=True, timeout=60)
    passwd = (root / "etc" / "passwd").read_text()
    group = (root / "etc" / "group").read_text()
    avid_line = next(line for line in passwd.splitlines() if line.startswith("avid:"))
    _, _, uid, gid, _, home, shell = avid_line.split(":")
    assert (home, shell) == ("/var/lib/avid", "/usr/sbin/nologin")
    for name in ("video", "audio", "gpio"):
        members = next(line for line in group.splitlines() if line.startswith(name + ":"))
        assert "avid" in members.split(":")[3].split(",")

    subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", str(TMPFILES)], check=True,
                   capture_output=True, timeout=60)
    state = (root / "var" / "lib" / "avid").stat()
    assert (oct(state.st_mode & 0o777), state.st_uid, state.st_gid) == ("0o700", int(uid), int(gid))
    config = (root / "etc" / "avid").stat()
    assert (oct(config.st_mode & 0o777), config.st_uid, config.st_gid) == ("0o750", 0, int(gid))


def tiny_conv_model() -> bytes:
    """A one-layer float CONV_2D model (XNNPACK takes it over), built with the TFLite schema."""
    rng = np.random.default_rng(1)
    weights = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)

    def tensor(name: str, shape: tuple[int, ...], buffer: int) -> tfl.TensorT:
        result = tfl.TensorT()
        result.name, result.shape, result.buffer = name, list(shape), buffer
        result.type = tfl.TensorType.FLOAT32
        return result

    buffers = [tfl.BufferT() for _ in range(5)]
    buffers[2].data = list(weights.tobytes())
    buffers[3].data = list(bias.tobytes())
    graph = tfl.SubGraphT()
    graph.tensors = [tensor("input", (1, 16, 16, 3), 1), tensor("filter", weights.shape, 2),
                     tensor("bias", bias.shape, 3), tensor("output", (1, 16, 16, 4), 4)]
    graph.inputs, graph.outputs = [0], [3]
    options = tfl.Conv2DOptionsT()
    options.padding, options.strideW, options.strideH = tfl.Padding.SAME, 1, 1
    options.fusedActivationFunction = tfl.ActivationFunctionType.RELU
    conv = tfl.OperatorT()
    conv.opcodeIndex, conv.inputs, conv.outputs = 0, [0, 1, 2], [3]
    conv.builtinOptionsType, conv.builtinOptions = tfl.BuiltinOptions.Conv2DOptions, options
    graph.operators = [conv]
    code = tfl.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = tfl.BuiltinOperator.CONV_2D
    model = tfl.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [graph], buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_models_and_native_libraries_run_under_memory_deny_write_execute(tmp_path):
    probe_model = tmp_path / "conv.tflite"
    probe_model.write_bytes(tiny_conv_model())
    shipped_models = sorted(str(p) for p in (REPO / "models").glob("*.tflite"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(MDWE_PROBE), "--require-xnnpack", str(probe_model),
                             *shipped_models], capture_output=True, text=True, timeout=300, env=env)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "MDWE-OK"
    for model in [str(probe_model), *shipped_models]:
        assert f"ran {model}:" in result.stdout
    assert "xnnpack=False" not in result.stdout


def run_sandboxed(*command: str) -> subprocess.CompletedProcess:
    """Run a command under the unit's SystemCallFilter and MDWE rules (tools/run_sandboxed.py)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(["/usr/bin/python3", str(SANDBOX), "--", *command], capture_output=True,
                          text=True, timeout=300, env=env, cwd=REPO)


def test_unit_syscall_filter_refuses_privileged_calls():
    snippet = ("import errno, os\n"
               "for call in (lambda: os.setpriority(os.PRIO_PROCESS, 0, 1), lambda: os.chown('.', 0, 0)):\n"
               "    try:\n"
               "        call()\n"
               "    except PermissionError:\n"
               "        print('EPERM')\n")
    result = run_sandboxed(sys.executable, "-c", snippet)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["EPERM", "EPERM"]


def test_models_run_under_the_units_syscall_filter(tmp_path):
    probe_model = tmp_path / "conv.tflite"
    probe_model.write_bytes(tiny_conv_model())
    shipped_models = sorted(str(p) for p in (REPO / "models").glob("*.tflite"))
    result = run_sandboxed(sys.executable, str(MDWE_PROBE), "--require-xnnpack", str(probe_model),
                           *shipped_models)
    print(result.stderr.splitlines()[0] if result.stderr else "")
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "MDWE-OK"
    assert "system calls allowed" in result.stderr


def test_xnnpack_needs_proc_cpuinfo_so_procsubset_pid_is_off(tmp_path):
    """Under a /proc mounted as ProcSubset=pid mounts it, TFLite runs the models without XNNPACK."""
    probe_model = tmp_path / "conv.tflite"
    probe_model.write_bytes(tiny_conv_model())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    hidden = subprocess.run(
        ["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "sh", "-c",
         'mount -t proc -o subset=pid proc /proc && exec "$@"', "sh",
         sys.executable, str(MDWE_PROBE), "--require-xnnpack", str(probe_model)],
        capture_output=True, text=True, timeout=300, env=env)
    assert hidden.returncode == 3, hidden.stdout + hidden.stderr
    assert "xnnpack=False" in hidden.stdout


def test_exec_stop_post_relocks_with_the_same_config():
    """ExecStopPost runs after the service's processes are gone, however they ended (SIGKILL, the
    OOM killer, a crash): the relay pin is driven to its locked level by a command that only does
    that, reading the same config as ExecStart."""
    assert service_values("ExecStopPost") == [EXEC_START.replace(" run ", " relock ")]


def test_relock_runs_under_the_units_sandbox(tmp_path):
    """`avid relock` as ExecStopPost runs it: under the unit's system call filter and MDWE rules,
    with a GPIO line (tests/gpio_line.py) that a killed daemon left energised."""
    config = tmp_path / "config.yaml"
    config.write_text("lock:\n  pin_factory: mock\n  relay_pin: 17\n")
    (tmp_path / "GPIO17").write_text("1\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(AVID_TEST_GPIO_DIR=str(tmp_path), SERVICE_RESULT="signal", EXIT_STATUS="KILL")
    result = subprocess.run(["/usr/bin/python3", str(SANDBOX), "--", sys.executable,
                             str(REPO / "tests" / "gpio_line.py"), "relock", "--config", str(config)],
                            capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "system calls allowed" in result.stderr
    assert "GPIO17 de-energised after the service ended (signal, status KILL)" in result.stdout
    assert (tmp_path / "GPIO17").read_text().split()[-1] == "0"
