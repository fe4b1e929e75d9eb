"""Fuzzing the media readers and the enrol/verify commands with generated WAV and image files.

Headers (format, channels, rate, sizes, chunk layout), truncations and flipped bytes go through the
real readers (:func:`read_wav`, :func:`read_image`): the result is a bounded, finite array or a
:class:`MediaError`/`InputFileError`, never another exception. Then through the real commands:
``enrol_from_files`` and ``avid verify`` never raise anything but an AvidError (the CLI turns it
into a message and exit status 1, never a traceback), never enrol a sound that is not speech, and
never accept a stranger's face with the enrolled person's damaged voice, or the reverse.

The reader targets try 200 examples by default; each command example runs the models, so those
try a tenth as many (1000 with ``AVID_FUZZ_EXAMPLES=10000``)::

    AVID_FUZZ_EXAMPLES=10000 pytest tests/test_media_fuzz.py
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from daemon.capture.audio import MAX_WAV_SECONDS, WavError, read_wav
from daemon.errors import AvidError
from daemon.files import MAX_IMAGE_PIXELS, InputFileError, MediaError, read_image
from door_harness import DEMO, clip_frames, door_config, enrol_alice

EXAMPLES = int(os.environ.get("AVID_FUZZ_EXAMPLES", "200"))
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
READERS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=HEALTH)
COMMANDS = settings(max_examples=max(10, EXAMPLES // 10), deadline=None, suppress_health_check=HEALTH)

ALICE_VOICE = (DEMO / "s1_bbaf4p" / "audio_16k.wav").read_bytes()
STRANGER_VOICE = (DEMO / "gridX_brbk7n_brbk7n" / "audio_16k.wav").read_bytes()

# --- generated WAV files ------------------------------------------------------------------------
FORMAT_TAGS = [1, 3, 0xFFFE, 2, 6, 7, 0x55, 0, 0xFFFF]
RATES = [0, 1, 4000, 8000, 11025, 16000, 22050, 44100, 48000, 96000, 192000, 192001, 44056, 2 ** 32 - 1]
BITS = [0, 1, 4, 8, 12, 16, 20, 24, 32, 64, 65535]


@st.composite
def wav_files(draw, audio: st.SearchStrategy | None = None) -> bytes:
    """A RIFF/WAVE file: plausible or broken header fields, chunks in any order, any truncation."""
    if draw(st.booleans()):  # a header that makes sense, so that decoding is reached too
        tag = draw(st.sampled_from([1, 3, 0xFFFE]))
        bits = draw(st.sampled_from([32, 64] if tag == 3 else [8, 16, 24, 32]))
        channels = draw(st.integers(1, 8))
        rate = draw(st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]))
        block = channels * bits // 8
    else:
        tag = draw(st.sampled_from(FORMAT_TAGS) | st.integers(0, 0xFFFF))
        channels = draw(st.sampled_from([0, 1, 2, 6, 33, 65535]) | st.integers(0, 8))
        rate = draw(st.sampled_from(RATES) | st.integers(0, 2 ** 32 - 1))
        bits = draw(st.sampled_from(BITS))
        block = draw(st.sampled_from([channels * bits // 8, 0, 1, 3]) | st.integers(0, 0xFFFF)) & 0xFFFF
    fmt = struct.pack("<HHIIHH", tag, channels & 0xFFFF, rate, (rate * max(block, 1)) & 0xFFFFFFFF, block,
                      bits & 0xFFFF)
    if tag == 0xFFFE or draw(st.booleans()):
        sub = draw(st.sampled_from([3 if bits == 64 else 1, 1, 3, 6]) | st.integers(0, 0xFFFF))
        guid = struct.pack("<H", sub) + draw(st.sampled_from(
            [bytes.fromhex("000000001000800000aa00389b71"), b"\x00" * 14]))
        fmt += struct.pack("<HHI", 22, bits & 0xFFFF, 3) + guid
    fmt = fmt[:draw(st.integers(0, len(fmt)))] if draw(st.integers(0, 19)) == 0 else fmt
    body = draw(audio) if audio is not None else draw(st.binary(max_size=4000))
    declared = draw(st.just(len(body)) | st.sampled_from([0, 1, 2 ** 32 - 1]) | st.integers(0, 2 ** 32 - 1))
    chunks = [b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"\x00" * (len(fmt) & 1)]
    if draw(st.booleans()):
        extra = draw(st.binary(max_size=40))
        chunks.insert(draw(st.integers(0, 1)), b"LIST" + struct.pack("<I", len(extra)) + extra
                      + b"\x00" * (len(extra) & 1))
    data = b"data" + struct.pack("<I", declared) + body
    chunks.insert(draw(st.just(len(chunks)) | st.integers(0, len(chunks))), data)
    payload = b"".join(chunks)
    riff = draw(st.sampled_from([b"RIFF"] * 8 + [b"RF64", b"RIFX"]))
    wave = draw(st.sampled_from([b"WAVE"] * 8 + [b"AVI "]))
    file = riff + struct.pack("<I", (4 + len(payload)) & 0xFFFFFFFF) + wave + payload
    return file[:draw(st.integers(0, len(file)))] if draw(st.integers(0, 9)) == 0 else file


def _flip(data: bytes, draw) -> bytes:
    """``data`` with a few bytes overwritten and maybe cut short."""
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[:draw(st.integers(0, len(data)))]) if draw(st.booleans()) else bytes(data)


@st.composite
def damaged(draw, original: bytes, header_bytes: int = 64) -> bytes:
    """A real file with bytes of its header changed, and maybe truncated."""
    head = bytearray(original[:header_bytes])
    for _ in range(draw(st.integers(1, 4))):
        head[draw(st.integers(0, len(head) - 1))] = draw(st.integers(0, 255))
    rest = original[header_bytes:]
    cut = draw(st.integers(0, len(rest))) if draw(st.booleans()) else len(rest)
    return bytes(head) + rest[:cut]


def _write(folder: Path, data: bytes, name: str) -> Path:
    path = folder / name
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path


def _check_wav(path: Path) -> np.ndarray | None:
    try:
        samples = read_wav(path)
    except WavError as exc:
        assert str(exc).strip()
        event("wav refused")
        return None
    event("wav decoded")
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert samples.size <= MAX_WAV_SECONDS * 16000 + 1
    assert np.isfinite(samples).all()
    assert np.abs(samples).max(initial=0) <= 1.5  # resampling may ring a little past full scale
    return samples


@READERS
@given(wav_files())
def test_generated_wav_headers_give_audio_or_a_wav_error(data):
    with tempfile.TemporaryDirectory() as folder:
        _check_wav(_write(Path(folder), data, "x.wav"))


@READERS
@given(st.data())
def test_damaged_real_wavs_give_audio_or_a_wav_error(data):
    original = data.draw(st.sampled_from([ALICE_VOICE, STRANGER_VOICE]))
    with tempfile.TemporaryDirectory() as folder:
        _check_wav(_write(Path(folder), data.draw(damaged(original)), "x.wav"))


# --- generated images ---------------------------------------------------------------------------
def _encoded(image: np.ndarray, ext: str) -> bytes:
    ok, encoded = cv2.imencode(ext, image)
    assert ok
    return encoded.tobytes()


@st.composite
def image_files(draw) -> bytes:
    """An encoded image (JPEG, PNG or BMP), with its size fields rewritten and bytes damaged."""
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    channels = draw(st.sampled_from([1, 3, 4]))
    image = rng.integers(0, 256, (height, width, channels), np.uint8)
    data = bytearray(_encoded(image if channels != 1 else image[:, :, 0], draw(st.sampled_from([".jpg", ".png", ".bmp"]))))
    if draw(st.booleans()):
        new_w, new_h = (draw(st.sampled_from([0, 1, width, 65535, 20000]) | st.integers(0, 2 ** 31 - 1))
                        for _ in range(2))
        if data[:4] == b"\x89PNG":
            data[16:24] = struct.pack(">II", new_w, new_h)
        elif data[:2] == b"\xff\xd8":
            sof = data.find(b"\xff\xc0")
            if sof > 0:
                data[sof + 5:sof + 9] = struct.pack(">HH", new_h & 0xFFFF, new_w & 0xFFFF)
        else:
            data[18:26] = struct.pack("<ii", new_w & 0x7FFFFFFF, draw(st.sampled_from([1, -1])) * (new_h & 0x7FFFFFF))
    return _flip(bytes(data), draw)


def _check_image(path: Path) -> np.ndarray | None:
    try:
        image = read_image(path)
    except (MediaError, InputFileError) as exc:
        assert str(exc).strip()
        event("image refused")
        return None
    event("image decoded")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] * image.shape[1] <= MAX_IMAGE_PIXELS
    return image


@READERS
@given(image_files() | st.binary(max_size=300))
def test_generated_images_give_pixels_or_a_media_error(data):
    with tempfile.TemporaryDirectory() as folder:
        _check_image(_write(Path(folder), data, "x.img"))


# --- the commands -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def door(pipeline, tmp_path_factory):
    """An enrolled door: alice's templates, a config for verify, two real photos."""
    state = tmp_path_factory.mktemp("door") / "state"
    config = door_config(state)
    enrol_alice(pipeline, config)
    folder = state.parent
    config_path = folder / "config.yaml"
    config_path.write_text(f"state:\n  directory: {state}\n")
    alice_face = _encoded(clip_frames("s1_bbaf2n")[8], ".jpg")
    stranger_face = _encoded(clip_frames("gridX_brbk7n_brbk7n")[8], ".jpg")
    return config_path, alice_face, stranger_face


def _not_speech(seconds: float, kind: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    sounds = [rng.standard_normal(t.size) * 0.3, np.sin(2 * np.pi * 440 * t) * 0.5,
              np.zeros(t.size), np.sign(np.sin(2 * np.pi * 150 * t)) * 0.4,
              np.cumsum(rng.standard_normal(t.size)) / 200]
    return np.clip(sounds[kind], -1, 1)


@st.composite
def non_speech_wavs(draw) -> bytes:
    """A WAV whose audio is noise, a tone, silence, a buzz or a random walk, in any header."""
    samples = _not_speech(draw(st.floats(0.0, 4.0)), draw(st.integers(0, 4)), draw(st.integers(0, 1000)))
    pcm = (samples * 32767).astype("<i2").tobytes()
    return draw(wav_files(audio=st.just(pcm)) | st.just(
        b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
        + b"data" + struct.pack("<I", len(pcm)) + pcm))


@COMMANDS
@given(voice=non_speech_wavs(), face=image_files() | st.none(), data=st.data())
def test_enrolment_never_takes_a_sound_that_is_not_speech(pipeline, door, voice, face, data):
    from daemon.service.enrolment import enrol_from_files

    _, alice_face, _ = door
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        face_path = _write(folder, face if face is not None else alice_face, "face.jpg")
        voice_path = _write(folder, voice, "voice.wav")
        with pytest.raises(AvidError) as refused:
            enrol_from_files(pipeline, [face_path], [voice_path])
        assert "voice.wav" in str(refused.value)
        event("not a voice sample" if "not a voice sample" in str(refused.value) else "voice file refused")


@pytest.fixture
def verify_cli(pipeline, monkeypatch):
    """`avid verify` as the command line runs it, with the session's already loaded models."""
    from daemon import cli
    from daemon.service import door as door_module

    monkeypatch.setattr(door_module, "make_pipeline", lambda config: pipeline)
    monkeypatch.delenv("AVID_STATE_DIR", raising=False)
    return cli.main


@COMMANDS
@given(data=st.data())
def test_verify_never_accepts_damaged_files_of_two_people(door, verify_cli, capsys, data):
    config_path, alice_face, stranger_face = door
    # A chimera: one modality is alice's, the other a stranger's; damage cannot make it a match.
    face, voice = data.draw(st.sampled_from([(stranger_face, ALICE_VOICE), (alice_face, STRANGER_VOICE)]))
    face = data.draw(st.just(face) | st.builds(lambda d: d, image_files()) | damaged(face, 200))
    voice = data.draw(st.just(voice) | damaged(voice) | wav_files())
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        face_path, voice_path = _write(folder, face, "face.jpg"), _write(folder, voice, "voice.wav")
        status = verify_cli(["verify", "--config", str(config_path), "--face", str(face_path),
                             "--voice", str(voice_path), "--json"])
    out = capsys.readouterr().out
    event(f"verify exit {status}")
    assert status in (0, 1)
    if status == 0:
        assert json.loads(out.strip().splitlines()[-1])["decision"] == "deny"
