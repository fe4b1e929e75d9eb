"""Run the daemon's native dependencies under the rule systemd's ``MemoryDenyWriteExecute=yes`` applies.

systemd enforces that directive with a seccomp filter: ``mmap`` with both PROT_WRITE and PROT_EXEC,
``mprotect``/``pkey_mprotect`` adding PROT_EXEC and ``shmat`` with SHM_EXEC fail with EPERM. This
script installs the same filter on itself and checks that it bites; then it imports numpy, OpenCV,
webrtcvad and gpiozero, loads PortAudio through sounddevice, and invokes every model file named on
the command line with the TFLite runtime (XNNPACK delegate included). Exit status 0 and a last line
``MDWE-OK`` mean the daemon's stack runs under the rule.

It also reports whether the XNNPACK delegate took over each model (``--require-xnnpack`` makes a
model left to the slow reference kernels an error, exit status 3).

Usage: python tests/mdwe_probe.py [--require-xnnpack] MODEL.tflite [MODEL.tflite ...]
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import platform
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
PROT_WRITE, PROT_EXEC = 0x2, 0x4
SHM_EXEC = 0o100000

# (audit arch, mmap, mprotect, pkey_mprotect, shmat) per machine.
SYSCALLS = {
    "x86_64": (0xC000003E, 9, 10, 329, 30),
    "aarch64": (0xC00000B7, 222, 226, 288, 196),
}

BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_AND_K = 0x54
BPF_RET_K = 0x06
ARCH_OFFSET, NR_OFFSET, ARG2_OFFSET = 4, 0, 16 + 2 * 8


def _filter_program() -> list[tuple[int, int, int, int]]:
    arch, nr_mmap, nr_mprotect, nr_pkey_mprotect, nr_shmat = SYSCALLS[platform.machine()]
    deny = SECCOMP_RET_ERRNO | errno.EPERM
    # Indices: 0..8 dispatch, 9..11 mmap, 12..14 mprotect, 15..17 shmat, 18 deny, 19 allow.
    return [
        (BPF_LD_W_ABS, 0, 0, ARCH_OFFSET),
        (BPF_JEQ_K, 0, 18, arch),                     # 1: other arch -> allow (20)
        (BPF_LD_W_ABS, 0, 0, NR_OFFSET),
        (BPF_JEQ_K, 5, 0, nr_mmap),                   # 3 -> 9
        (BPF_JEQ_K, 7, 0, nr_mprotect),               # 4 -> 12
        (BPF_JEQ_K, 6, 0, nr_pkey_mprotect),          # 5 -> 12
        (BPF_JEQ_K, 8, 0, nr_shmat),                  # 6 -> 15
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),         # 7
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),         # 8 (unused)
        (BPF_LD_W_ABS, 0, 0, ARG2_OFFSET),            # 9 mmap prot
        (BPF_AND_K, 0, 0, PROT_WRITE | PROT_EXEC),
        (BPF_JEQ_K, 7, 8, PROT_WRITE | PROT_EXEC),    # 11 -> 19 deny / 20 allow
        (BPF_LD_W_ABS, 0, 0, ARG2_OFFSET),            # 12 mprotect prot
        (BPF_AND_K, 0, 0, PROT_EXEC),
        (BPF_JEQ_K, 4, 5, PROT_EXEC),                 # 14 -> 19 / 20
        (BPF_LD_W_ABS, 0, 0, ARG2_OFFSET),            # 15 shmat flags
        (BPF_AND_K, 0, 0, SHM_EXEC),
        (BPF_JEQ_K, 1, 2, SHM_EXEC),                  # 17 -> 19 / 20
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),         # 18 (unused)
        (BPF_RET_K, 0, 0, deny),                      # 19
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),         # 20
    ]


def install_mdwe_filter() -> None:
    """Install systemd's MemoryDenyWriteExecute seccomp rules on this process (and its threads)."""
    program = _filter_program()
    raw = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(raw, len(raw))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(program), ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP failed")


def filter_bites() -> bool:
    """Return True when W+X mmap and mprotect(PROT_EXEC) are refused while plain mappings work."""
    try:
        mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        pass
    else:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = libc.mmap(None, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE,
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if page in (None, ctypes.c_void_p(-1).value):
        return False
    refused = libc.mprotect(page, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_EXEC) != 0
    return refused and ctypes.get_errno() == errno.EPERM


def check_sounddevice() -> None:
    """PortAudio loads and initialises; report whether callback-mode streams could be used.

    cffi's ``ffi.callback()`` needs writable+executable memory, so under MemoryDenyWriteExecute only
    blocking streams (``InputStream()`` without ``callback=``, then ``read()``) work.
    """
    import sounddevice

    sounddevice.query_devices()
    try:
        sounddevice._ffi.callback("PaStreamCallback", lambda *args: 0)
    except MemoryError:
        print("sounddevice callback streams: refused under MDWE (use blocking InputStream.read())")
    else:
        print("sounddevice callback streams: allowed")


def run_models(paths: list[str]) -> bool:
    """Invoke every model once with random inputs; return True if XNNPACK took over each of them."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    all_delegated = True
    for path in paths:
        interpreter = Interpreter(model_path=path, num_threads=2)
        interpreter.allocate_tensors()
        # XNNPACK replaces the nodes it runs by one DELEGATE node.
        delegated = any(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
        all_delegated &= delegated
        for detail in interpreter.get_input_details():
            dtype = detail["dtype"]
            if np.issubdtype(dtype, np.integer):
                info = np.iinfo(dtype)
                data = rng.integers(info.min, info.max, size=detail["shape"], dtype=dtype)
            else:
                data = rng.standard_normal(detail["shape"]).astype(dtype)
            interpreter.set_tensor(detail["index"], data)
        interpreter.invoke()
        outputs = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
        print(f"ran {path}: outputs {[o.shape for o in outputs]} xnnpack={delegated}")
    return all_delegated


def main(args: list[str]) -> int:
    require_xnnpack = "--require-xnnpack" in args
    paths = [arg for arg in args if arg != "--require-xnnpack"]
    install_mdwe_filter()
    if not filter_bites():
        print("the MDWE filter did not refuse a W+X mapping", file=sys.stderr)
        return 2
    import cv2  # noqa: F401  (its import maps its native code)
    import gpiozero  # noqa: F401
    import webrtcvad

    webrtcvad.Vad(2).is_speech(b"\0" * 320, 16000)
    check_sounddevice()
    if not run_models(paths) and require_xnnpack:
        print("XNNPACK did not take over every model (is /proc/cpuinfo hidden?)", file=sys.stderr)
        return 3
    print("MDWE-OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
