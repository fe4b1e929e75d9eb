"""Tests of daemon.offline.fitting: linear LLR calibration, fusion and the operating point."""

import json
import math

import numpy as np
import pytest

from daemon.errors import ConfigError
from daemon.fuse.calibration import Calibration
from daemon.offline.fitting import (
    cllr, fit_calibration, fit_operating_point, fuse_llr, logit, threshold_for_fmr,
)
from daemon.offline.metrics import clopper_pearson


def _gaussian_scores(seed, n=20_000):
    """Genuine ~ N(.6, .1), impostor ~ N(.1, .1): equal variances, so the true LLR is linear,
    llr(s) = (mu_g - mu_i) / sigma^2 * s - (mu_g^2 - mu_i^2) / (2 sigma^2) = 50 s - 17.5."""
    rng = np.random.default_rng(seed)
    return rng.normal(0.6, 0.1, n), rng.normal(0.1, 0.1, n)


def test_two_valued_scores_give_the_empirical_llr_exactly_at_any_prior():
    # Genuine: score 0 once, 1 three times; impostor: 0 three times, 1 once. With two distinct
    # scores the line fits both points, so the calibrated LLR must be the empirical one:
    # llr(1) = log((3/4) / (1/4)) = log 3, llr(0) = -log 3, i.e. a = 2 log 3, b = -log 3,
    # whatever the prior used for weighting (the prior only moves the intercept before
    # logit(prior) is taken off again).
    genuine, impostor = [0, 1, 1, 1], [0, 0, 0, 1]
    for prior in (0.01, 0.5, 0.9):
        calibration = fit_calibration(genuine, impostor, prior=prior, l2=0.0)
        assert calibration.a == pytest.approx(2 * math.log(3), abs=1e-8)
        assert calibration.b == pytest.approx(-math.log(3), abs=1e-8)
        assert (calibration.n_genuine, calibration.n_impostor, calibration.prior) == (4, 4, prior)


def test_balanced_prior_recovers_the_true_linear_llr():
    calibration = fit_calibration(*_gaussian_scores(seed=11), prior=0.5)
    # Across seeds the slope's spread is about 1.6 and llr(.35)'s about .06 at this size.
    assert calibration.a == pytest.approx(50, abs=5)
    assert calibration.llr(0.35) == pytest.approx(0.0, abs=0.25)
    assert calibration.llr(0.45) == pytest.approx(5.0, abs=0.6)


def test_low_prior_calibration_is_right_near_its_operating_point():
    # At prior .01 the fit concentrates where the posterior log-odds cross 0, i.e. llr = 4.6
    # (s ~ .44). There it must match the true LLR; forgetting to remove logit(.01) would be off
    # by 4.6.
    calibration = fit_calibration(*_gaussian_scores(seed=12), prior=0.01)
    assert calibration.llr(0.45) == pytest.approx(5.0, abs=0.75)
    assert calibration.llr(0.40) == pytest.approx(2.5, abs=0.75)


def test_calibration_refuses_empty_classes_and_bad_priors():
    with pytest.raises(ValueError, match="no impostor"):
        fit_calibration([0.5], [])
    with pytest.raises(ValueError, match="prior"):
        fit_calibration([0.5], [0.1], prior=1.0)


def test_separable_scores_give_a_finite_steep_calibration():
    calibration = fit_calibration([0.8, 0.9], [0.1, 0.2])
    assert math.isfinite(calibration.a) and calibration.a > 10
    assert calibration.llr(0.85) > 0 > calibration.llr(0.15)


def test_calibration_dict_round_trip_through_json():
    calibration = Calibration(a=12.5, b=-4.25, prior=0.01, n_genuine=300, n_impostor=9000)
    data = json.loads(json.dumps(calibration.to_dict()))
    assert data["fitted_on"] == {"genuine": 300, "impostor": 9000}
    assert Calibration.from_dict(data) == calibration
    assert calibration.llr(0.5) == pytest.approx(2.0)
    assert calibration.score_for_llr(2.0) == pytest.approx(0.5)
    np.testing.assert_allclose(calibration.llr([0.0, 1.0]), [-4.25, 8.25])


@pytest.mark.parametrize("data", [
    {"b": 1.0},
    {"a": "steep", "b": 1.0},
    {"a": 1.0, "b": float("nan")},
    {"a": 1.0, "b": 0.0, "prior": 1.5},
    {"a": 1.0, "b": 0.0, "schema": 99},
    "not a mapping",
])
def test_malformed_calibration_dict_raises_config_error(data):
    with pytest.raises(ConfigError):
        Calibration.from_dict(data)


def test_cllr_reference_points():
    # LLR 0 everywhere says nothing: each term is log2(1 + 1) = 1.
    assert cllr([0.0, 0.0], [0.0]) == pytest.approx(1.0)
    # Confident and right: close to 0; confident and wrong: far above 1.
    assert cllr([30.0], [-30.0]) < 1e-12
    assert cllr([-5.0], [5.0]) > 7


def test_fuse_llr_is_a_weighted_sum():
    assert fuse_llr(2.0, -1.0) == 1.0
    assert fuse_llr(2.0, -1.0, weights=(0.5, 2.0)) == -1.0
    np.testing.assert_allclose(fuse_llr([1.0, 2.0], [3.0, 4.0], (1.0, 0.5)), [2.5, 4.0])


def test_operating_point_on_a_hand_made_set():
    # Impostors .1 .2 .3 .5 .6, target .2: one false match allowed; threshold just above .5,
    # FMR 1/5; genuine .4 .7 .8 .9 -> FNMR 1/4. 5 < 3/.2 impostors: not supported.
    point = fit_operating_point([0.4, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.5, 0.6], 0.2)
    assert point.threshold == np.nextafter(0.5, 1.0)
    assert (point.fmr, point.fnmr) == (0.2, 0.25)
    assert point.fnmr_ci == pytest.approx((0.006309463209709866, 0.8058795503167565))
    assert point.fmr_ci == clopper_pearson(1, 5)
    assert (point.n_genuine, point.n_impostor, point.supported) == (4, 5, False)
    assert point.to_dict()["fnmr_ci"] == list(point.fnmr_ci)


def test_threshold_for_target_fmr_holds_on_held_apart_impostors():
    # Fit on one draw, check on another from the same distribution and against the true tail.
    _, impostor_fit = _gaussian_scores(seed=21)
    _, impostor_check = _gaussian_scores(seed=22)
    target = 1e-3
    threshold = threshold_for_fmr(impostor_fit, target)
    n = impostor_check.size
    # The threshold is an empirical quantile: its true FMR scatters around the target with about
    # sqrt(target / n); the held-apart count adds as much again.
    tolerance = 3 * math.sqrt(2 * target * (1 - target) / n)
    assert np.mean(impostor_check >= threshold) <= target + tolerance
    true_fmr = 0.5 * math.erfc((threshold - 0.1) / (0.1 * math.sqrt(2)))
    assert target / 3 < true_fmr <= target + tolerance


def test_fused_operating_point_from_calibrated_modalities():
    rng = np.random.default_rng(5)
    n = 5_000
    face = Calibration(50.0, -17.5)  # true LLR of N(.6,.1) vs N(.1,.1)
    voice = Calibration(6.4, -1.92)  # true LLR of N(.5,.25) vs N(.1,.25): (.4/.0625) s - .24/.125
    face_genuine, face_impostor = rng.normal(0.6, 0.1, n), rng.normal(0.1, 0.1, 4 * n)
    voice_genuine, voice_impostor = rng.normal(0.5, 0.25, n), rng.normal(0.1, 0.25, 4 * n)
    fitted_face = fit_calibration(face_genuine, face_impostor, prior=0.5)
    fitted_voice = fit_calibration(voice_genuine, voice_impostor, prior=0.5)
    assert fitted_face.a == pytest.approx(face.a, rel=0.1)
    assert fitted_voice.a == pytest.approx(voice.a, rel=0.1)
    assert fitted_voice.b == pytest.approx(voice.b, abs=0.3)
    genuine = fuse_llr(fitted_face.llr(face_genuine), fitted_voice.llr(voice_genuine))
    impostor = fuse_llr(fitted_face.llr(face_impostor), fitted_voice.llr(voice_impostor))
    point = fit_operating_point(genuine, impostor, target_fmr=1e-3)
    assert point.fmr <= 1e-3 and point.supported  # 20000 >= 3 / 1e-3
    assert point.fnmr_ci[0] <= point.fnmr <= point.fnmr_ci[1]
    # Fusion must beat the better single modality at the same FMR.
    face_only = fit_operating_point(fitted_face.llr(face_genuine),
                                    fitted_face.llr(face_impostor), target_fmr=1e-3)
    assert point.fnmr < face_only.fnmr
    assert logit(0.5) == 0.0
