"""Per-person scoring: cosine → calibrated LLR → quality-weighted sum, best first."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.fuse.fusion import FusionParams, cosine, face_cosine, score_candidates
from daemon.fuse.calibration import Calibration
from daemon.state.templates import Person

PARAMS = FusionParams(face=Calibration(a=10.0, b=-5.0), voice=Calibration(a=20.0, b=-12.0))


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, np.float32)
    return vector / np.linalg.norm(vector)


def _basis(dim: int, index: int) -> np.ndarray:
    vector = np.zeros(dim, np.float32)
    vector[index] = 1.0
    return vector


def _person(name: str, face_axis: int | None, voice_axis: int | None) -> Person:
    face = np.stack([_basis(128, face_axis)]) if face_axis is not None else np.zeros((0, 128), np.float32)
    voice = np.stack([_basis(256, voice_axis)]) if voice_axis is not None else np.zeros((0, 256), np.float32)
    return Person(name, face, voice)


def test_cosine_and_mean_of_probes():
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == pytest.approx(0.0)
    assert cosine(np.array([3.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)
    assert cosine(np.zeros(2), np.ones(2)) == 0.0  # no division by zero
    probes = [_basis(128, 0), _basis(128, 1)]
    assert face_cosine(probes, _basis(128, 0)) == pytest.approx(1 / np.sqrt(2))


def test_scores_are_calibrated_weighted_and_sorted():
    people = [_person("ann", 0, 0), _person("bob", 1, 1)]
    face_probe = _unit(np.eye(128, dtype=np.float32)[0] * 0.8 + np.eye(128, dtype=np.float32)[1] * 0.6)
    voice_probe = _basis(256, 1)
    bob, ann = score_candidates(people, [face_probe], voice_probe, PARAMS)
    assert (bob.name, ann.name) == ("bob", "ann")
    assert ann.face_cosine == pytest.approx(0.8) and ann.voice_cosine == pytest.approx(0.0)
    assert ann.face_llr == pytest.approx(10 * 0.8 - 5) and ann.voice_llr == pytest.approx(-12)
    assert ann.fused == pytest.approx(3.0 - 12.0)
    assert bob.fused == pytest.approx((10 * 0.6 - 5) + (20 * 1.0 - 12))


def test_a_short_utterance_counts_less_but_never_below_the_floor():
    people = [_person("ann", 0, 0)]
    full = score_candidates(people, [_basis(128, 0)], _basis(256, 0), PARAMS)[0]
    short = score_candidates(people, [_basis(128, 0)], _basis(256, 0), PARAMS, voice_quality=0.7)[0]
    useless = score_candidates(people, [_basis(128, 0)], _basis(256, 0), PARAMS, voice_quality=-3.0)[0]
    assert full.fused == pytest.approx(5.0 + 8.0)
    assert short.fused == pytest.approx(5.0 + 0.7 * 8.0)
    assert useless.fused == pytest.approx(5.0 + 0.5 * 8.0)
    # The LLRs themselves are not scaled; only their weight in the sum.
    assert useless.voice_llr == full.voice_llr


def test_the_voice_backend_maps_probe_and_template_alike():
    from daemon.embed.voice_backend import VoiceBackend

    people = [_person("ann", 0, 0)]
    # A back-end that removes the second axis: the probe's component there no longer counts.
    projection = np.eye(256)
    projection[1, 1] = 0.0
    backend = VoiceBackend(np.zeros(256), projection)
    params = FusionParams(PARAMS.face, PARAMS.voice, voice_backend=backend)
    probe = _basis(256, 0) + _basis(256, 1)
    [raw] = score_candidates(people, [_basis(128, 0)], probe, PARAMS)
    [mapped] = score_candidates(people, [_basis(128, 0)], probe, params)
    assert raw.voice_cosine == pytest.approx(np.sqrt(0.5))
    assert mapped.voice_cosine == pytest.approx(1.0)


def test_config_weights_apply():
    params = FusionParams(PARAMS.face, PARAMS.voice, face_weight=2.0, voice_weight=0.0)
    [ann] = score_candidates([_person("ann", 0, 0)], [_basis(128, 0)], _basis(256, 0), params)
    assert ann.fused == pytest.approx(2 * 5.0)


def test_a_missing_modality_is_none_not_zero():
    people = [_person("ann", 0, None), _person("bob", 1, 1)]
    ann = {c.name: c for c in score_candidates(people, [_basis(128, 0)], _basis(256, 1), PARAMS)}["ann"]
    assert ann.voice_cosine is None and ann.voice_llr is None
    assert ann.fused == pytest.approx(5.0)
    no_probe = score_candidates(people, [], None, PARAMS)
    assert all(c.face_llr is None and c.voice_llr is None and c.fused == 0.0 for c in no_probe)


def test_nobody_enrolled():
    assert score_candidates([], [_basis(128, 0)], _basis(256, 0), PARAMS) == []
