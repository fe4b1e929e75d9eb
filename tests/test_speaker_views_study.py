"""tools/speaker_views_study.py: how views are combined and what they cost in frames."""

import numpy as np

from daemon.embed.voice_windows import VoiceWindows
from daemon.offline.dataset import VoiceUnit
from daemon.offline.embeddings import Embeddings, VoiceSegment
from tools.speaker_views_study import combined, frames_read


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def embeddings():
    voices = {"a.wav": VoiceSegment(3.0, {"full": unit([1, 0, 0]), "3s": unit([1, 1, 0])}),
              "b.wav": VoiceSegment(0.0, {"full": None, "3s": None})}
    units = [VoiceUnit("a.wav", "src", "s1", 3.0, True), VoiceUnit("b.wav", "src", "s2", 0.0, False)]
    return Embeddings({}, voices, units)


def test_views_are_averaged_as_unit_vectors_for_every_cut():
    emb = embeddings()
    views = {("a.wav", "full", "forward"): unit([0, 1, 0]), ("a.wav", "3s", "forward"): unit([0, 0, 1])}
    both = combined(emb, views, ("windows", "forward"))
    np.testing.assert_allclose(both.voice("a.wav"), unit([1, 1, 0]), atol=1e-6)
    np.testing.assert_allclose(both.voice("a.wav", "3s"), unit(unit([1, 1, 0]) + unit([0, 0, 1])), atol=1e-6)
    only = combined(emb, views, ("windows",))
    np.testing.assert_allclose(only.voice("a.wav"), emb.voice("a.wav"), atol=1e-6)
    assert both.units is emb.units


def test_a_missing_view_or_unit_without_speech_gives_no_embedding():
    emb = embeddings()
    views = {("a.wav", "full", "forward"): unit([0, 1, 0])}
    with_reversed = combined(emb, views, ("windows", "forward", "reversed"))
    assert with_reversed.voice("a.wav") is None
    assert combined(emb, views, ("windows", "forward")).voice("b.wav") is None


def test_frames_read_counts_the_door_windows_and_one_whole_pass():
    voiced = np.random.default_rng(0).normal(0, 0.1, 3 * 16000).astype(np.float32)
    windows = VoiceWindows(6.0)
    n_windows = len(windows.add(voiced) + windows.finish())
    frames = frames_read({"a": voiced, "silent": np.zeros(0, np.float32)}, 6.0)
    assert frames == {"windows": 160.0 * n_windows, "one_whole_pass": 301.0}


def test_the_shipped_model_views_are_speaker_embeddings_of_their_own():
    from pathlib import Path

    from daemon.capture.audio import read_wav
    from daemon.detect.vad import voiced_audio
    from daemon.embed.speaker_encoder import EMBEDDING_SIZE
    from daemon.embed.voice_windows import STEP_SAMPLES
    from daemon.pipeline import Pipeline
    from tools.speaker_views_study import window_views

    demo = Path(__file__).resolve().parents[1] / "daemon" / "demo_data"
    pipeline = Pipeline()

    def voiced(*clips):  # GRID sentences are short: two of one speaker make one utterance
        return np.concatenate([piece for clip in clips for piece in
                               voiced_audio(read_wav(demo / clip / "audio_16k.wav"), pipeline.vad.segmenter())])

    same_a, same_b = voiced("s1_bbaf2n", "s1_bbaf4p"), voiced("s1_bbaf3s", "s1_bbaf5a")
    other = voiced("gridX_lwbsza_lwbsza")
    views = {name: window_views(pipeline, v) for name, v in
             (("a", same_a), ("b", same_b), ("other", other))}
    for found in views.values():
        assert set(found) == {"reversed windows", "half-step windows"}
        for vector in found.values():
            assert vector.shape == (EMBEDDING_SIZE,) and abs(np.linalg.norm(vector) - 1) < 1e-5
    door = pipeline.embed_voiced(same_a)
    # read backwards, the windows are another view, not the door's embedding again
    assert float(door @ views["a"]["reversed windows"]) < 0.999
    # and each view still tells the speakers apart: the same speaker's other sentence is closer
    for name in ("reversed windows", "half-step windows"):
        assert float(views["a"][name] @ views["b"][name]) > float(views["a"][name] @ views["other"][name])
    # too short for a window between the door's own: no half-step view
    short = same_a[:STEP_SAMPLES // 2 + 16000 - 1]
    assert set(window_views(pipeline, short)) == {"reversed windows"}
