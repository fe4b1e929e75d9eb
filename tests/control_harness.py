"""Helpers for the control-socket tests: replay media on one timeline, a short socket folder that
other users can traverse, and clients running as another user."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import cv2
import numpy as np

from daemon.capture.audio import room_tone, to_pcm16
from door_harness import DEMO, FPS, clip_audio, clip_frames

ROOT = Path(__file__).resolve().parent.parent


def build_replay(folder: Path, segments: list) -> tuple[Path, Path]:
    """A video and a WAV in step: each segment is a GRID clip name or seconds of empty scene."""
    rng = np.random.default_rng(5)
    shape = clip_frames("s1_bbaf2n")[0].shape
    background = clip_audio("s1_bbaf2n")
    video_path, wav_path = folder / "door.avi", folder / "door.wav"
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (shape[1], shape[0]))
    sound = []
    for segment in segments:
        if isinstance(segment, str):
            frames, audio = clip_frames(segment), clip_audio(segment)
        else:
            # Sensor-like noise: a constant frame would be taken for a frozen camera.
            frames = [rng.integers(60, 68, size=shape, dtype=np.uint8) for _ in range(int(segment * FPS))]
            audio = room_tone(background, int(segment * 16000))
        for frame in frames:
            writer.write(frame)
        sound.append(audio)
    writer.release()
    with wave.open(str(wav_path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(to_pcm16(np.concatenate(sound)))
    return video_path, wav_path


def replay_door_config(folder: Path, socket_path: Path, video: Path, wav: Path, more: str = "") -> Path:
    """``folder/config.yaml`` for a real ``avid run`` on a replay (mock relay, a 2 s unlock, a short
    cool-down) with its control socket at ``socket_path``; ``more`` is YAML appended as it is. The
    door is initialised (a device key) with nobody enrolled."""
    from daemon.state.keys import create_device_key

    create_device_key(folder / "state" / "device.key")
    config = folder / "config.yaml"
    config.write_text(f"""
state:
  directory: {folder / 'state'}
camera:
  backend: replay
  path: {video}
microphone:
  backend: replay
  paths: [{wav}]
lock:
  pin_factory: mock
  unlock_seconds: 2
attempt:
  cooldown_seconds: 1.0
control:
  socket_path: {socket_path}
""" + more)
    return config


def enrolment_files(folder: Path, clips=("s1_bbaf2n", "s1_bbaf3s")) -> tuple[list[Path], list[Path]]:
    """Face photos and voice clips of GRID speaker s1 ("alice"), as the demo enrols her."""
    faces = []
    for clip in clips:
        path = folder / f"{clip}.png"
        cv2.imwrite(str(path), clip_frames(clip)[8])
        faces.append(path)
    return faces, [DEMO / clip / "audio_16k.wav" for clip in clips]


class SocketFolder:
    """A short folder under /tmp that any user may traverse (not list): AF_UNIX paths are short,
    and a client running as another user must reach the socket to be refused by the daemon."""

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="avidctl-", dir="/tmp"))
        os.chmod(self.path, 0o711)
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def status_as(socket_path: Path, uid: int, gid: int, groups: list[int] = (), timeout: float = 30) -> dict:
    """Ask for the status from a process running as ``uid``/``gid`` with supplementary ``groups``
    (the kernel records exactly these for SO_PEERCRED / SO_PEERGROUPS). Needs root.

    A forked child, not a new interpreter: the venv's interpreter may sit in root's home, which
    other users cannot enter. The child only uses the already imported client.
    """
    from daemon.control.client import ControlClient
    from daemon.control.protocol import ControlError

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to the user, ask, report, exit without cleanup
        try:
            os.close(read_end)
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            try:
                answer = {"ok": True, "result": ControlClient(socket_path, timeout=10).status()}
            except ControlError as exc:
                answer = {"ok": False, "code": exc.code, "message": str(exc)}
            os.write(write_end, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 0.5)
            if ready:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))


def avid(*args: str, config: Path, timeout: float = 120, **popen) -> subprocess.CompletedProcess:
    """Run ``python -m daemon ARGS --config CONFIG`` as the installer would run ``avid``."""
    env = {k: v for k, v in os.environ.items() if k != "AVID_STATE_DIR"}
    return subprocess.run([sys.executable, "-m", "daemon", *args, "--config", str(config)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, **popen)
