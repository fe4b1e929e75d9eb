"""Capture backends keyed by type: each built from its own config model through one registry."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from daemon.capture.audio import read_wav
from daemon.capture.base import Source
from daemon.capture.media_clock import MediaClock
from daemon.capture.opencv_camera import OpenCVCamera
from daemon.capture.replay_audio import ReplayAudio
from daemon.capture.replay_frames import ReplayFrames
from daemon.capture.sources import AUDIO_SOURCES, FRAME_SOURCES, open_audio_source, open_frame_source
from daemon.config import Config, backend_models, parse_config
from daemon.errors import ConfigError, SourceError

DEMO = Path(__file__).resolve().parents[1] / "daemon" / "demo_data"
VIDEO = DEMO / "s1_bbaf2n" / "video.mpg"          # GRID: 3 s at 25 fps
WAV = DEMO / "s1_bbaf2n" / "audio_16k.wav"


def _drain(source) -> list:
    items = []
    with source:
        while (item := source.read(5.0)) is not None:
            items.append(item)
    return items


@pytest.mark.parametrize("section, registry", [("camera", FRAME_SOURCES), ("microphone", AUDIO_SOURCES)])
def test_every_backend_of_the_config_has_a_source_and_no_other(section, registry):
    models = backend_models(Config.model_fields[section].annotation)
    assert sorted(models) == sorted(registry)
    for name, source in registry.items():
        assert callable(getattr(source, "from_config", None)), name
        assert all(callable(getattr(source, method, None)) for method in ("start", "read", "close"))


def test_replay_camera_is_built_from_its_own_settings():
    config = parse_config(f"camera:\n  backend: replay\n  path: {VIDEO}\n  fps: 10\n  realtime: false\n")
    source = open_frame_source(config.camera, gap_seconds=0.5)
    assert isinstance(source, ReplayFrames) and isinstance(source, Source)
    assert len(_drain(source)) == 5 + 30 + 5  # 0.5 s gaps and 3 s of video at 10 fps


def test_opencv_camera_is_built_from_its_own_settings():
    config = parse_config("camera:\n  device: /dev/avid-test-no-such-camera\n")
    source = open_frame_source(config.camera, gap_seconds=2.5, durations=[3.0])  # replay hints: ignored
    assert isinstance(source, OpenCVCamera)
    with source, pytest.raises(SourceError, match="avid-test-no-such-camera"):
        source.read(5.0)


def test_replay_microphone_is_built_from_its_own_settings():
    config = parse_config(f"microphone:\n  backend: replay\n  paths: [{WAV}]\n  block_ms: 20\n"
                          "  realtime: false\n  gap_seconds: 1.0\n")
    source = open_audio_source(config.microphone)
    assert isinstance(source, ReplayAudio)
    blocks = [item.data for item in _drain(source)]
    assert {block.size for block in blocks} == {320}
    assert len(blocks) == (16000 + read_wav(WAV).size + 16000) // 320
    assert np.all(np.isfinite(np.concatenate(blocks)))


@pytest.mark.parametrize("open_source, section", [(open_frame_source, "camera"),
                                                  (open_audio_source, "microphone")])
def test_live_devices_refuse_a_media_clock(open_source, section):
    with pytest.raises(ConfigError, match="real time"):
        open_source(getattr(Config(), section), clock=MediaClock())


def test_a_backend_missing_from_the_registry_is_a_config_error():
    with pytest.raises(ConfigError, match="picamera2"):
        open_frame_source(types.SimpleNamespace(backend="picamera2"))


def test_the_old_import_paths_still_work():
    from daemon.capture import audio, frames

    assert audio.ReplayAudio is ReplayAudio and audio.open_audio_source is open_audio_source
    assert frames.ReplayFrames is ReplayFrames and frames.open_frame_source is open_frame_source
    assert callable(audio.read_wav) and callable(audio.wav_seconds) and callable(audio.resample)
