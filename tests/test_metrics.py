"""Tests of daemon.offline.metrics on small score sets whose answers are worked out by hand."""

import functools
import math
from pathlib import Path

import numpy as np
import pytest

from daemon.offline import metrics
from daemon.offline.metrics import (
    Trials, bootstrap_ci, clopper_pearson, det_curve, eer, fnmr_at_fmr, lfw_accuracy,
    lfw_fold_thresholds, min_dcf, missing_lfw_pairs, parse_lfw_pairs, rocch_eer,
    rule_of_three_supported, threshold_for_fmr,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Set A: 5 genuine, 5 impostor, no ties.
#   t      .1  .2  .3  .35 .4  .6  .65 .7  .8  .9  inf
#   FNMR   0   0   0   0   .2  .2  .4  .4  .6  .8  1      (#genuine < t) / 5
#   FMR    1   .8  .6  .4  .4  .2  .2  0   0   0   0      (#impostor >= t) / 5
# FNMR = FMR = 0.2 exactly at t = 0.6.
GENUINE_A = [0.35, 0.6, 0.7, 0.8, 0.9]
IMPOSTOR_A = [0.1, 0.2, 0.3, 0.4, 0.65]

# Set B: 4 genuine, 5 impostor; the curves cross between two operating points.
#   t      .1  .2  .3  .4  .5   .6   .7   .8  .9   inf
#   FNMR   0   0   0   0   .25  .25  .25  .5  .75  1   (#genuine < t) / 4
#   FMR    1   .8  .6  .4  .4   .2   0    0   0    0   (#impostor >= t) / 5
GENUINE_B = [0.4, 0.7, 0.8, 0.9]
IMPOSTOR_B = [0.1, 0.2, 0.3, 0.5, 0.6]

# Set C: ties straddling the crossing: two genuine and two impostor scores at 0.5.
#   t      .1  .5  .9  inf
#   FNMR   0   0   .5  1
#   FMR    1   .5  0   0
GENUINE_C = [0.5, 0.5, 0.9, 0.9]
IMPOSTOR_C = [0.1, 0.1, 0.5, 0.5]


# --- DET curve and EER ---------------------------------------------------------------------------

def test_det_curve_lists_every_operating_point_in_threshold_order():
    fmr, fnmr, thresholds = det_curve(GENUINE_B, IMPOSTOR_B)
    np.testing.assert_allclose(thresholds, [.1, .2, .3, .4, .5, .6, .7, .8, .9, np.inf])
    np.testing.assert_allclose(fnmr, [0, 0, 0, 0, .25, .25, .25, .5, .75, 1])
    np.testing.assert_allclose(fmr, [1, .8, .6, .4, .4, .2, 0, 0, 0, 0])


def test_eer_exact_when_the_curves_meet_at_an_operating_point():
    # Set A: FNMR = FMR = 0.2 at t = 0.6.
    assert eer(GENUINE_A, IMPOSTOR_A) == (pytest.approx(0.2), pytest.approx(0.6))


def test_eer_interpolates_between_the_two_points_around_the_crossing():
    # Set B: FNMR - FMR is -0.15 at t = .5 and +0.05 at t = .6; the crossing lies 0.15/0.2 = 3/4
    # of the way: EER = .4 + 3/4 * (.2 - .4) = 0.25 (FNMR is .25 all along), t = .5 + .75*.1.
    rate, threshold = eer(GENUINE_B, IMPOSTOR_B)
    assert rate == pytest.approx(0.25)
    assert threshold == pytest.approx(0.575)


def test_rocch_eer_is_the_convex_hull_crossing():
    # Set B: the lower hull runs straight from (FMR, FNMR) = (0, .25) to (.4, 0), i.e.
    # FNMR = .25 - .625 FMR; it meets FNMR = FMR at .25 / 1.625 = 2/13, below the interpolated 0.25.
    assert rocch_eer(GENUINE_B, IMPOSTOR_B) == pytest.approx(2 / 13)
    assert rocch_eer(GENUINE_A, IMPOSTOR_A) == pytest.approx(0.2)


def test_eer_with_ties_splits_the_tied_group_evenly_whatever_the_input_order():
    # Set C: between t=.5 (FNMR 0, FMR .5) and t=.9 (FNMR .5, FMR 0) the crossing is halfway:
    # EER = .25, which is what accepting half of the tied 0.5 trials at random gives. A sort that
    # breaks the tie by input order would give 0 or 0.5 instead.
    expected = (pytest.approx(0.25), pytest.approx(0.7))
    assert eer(GENUINE_C, IMPOSTOR_C) == expected
    assert eer(GENUINE_C[::-1], IMPOSTOR_C[::-1]) == expected
    assert rocch_eer(GENUINE_C, IMPOSTOR_C) == pytest.approx(0.25)


def test_eer_of_separable_and_of_inverted_scores():
    assert eer([0.8, 0.9], [0.1, 0.2]).eer == 0.0
    assert eer([0.1, 0.2], [0.8, 0.9]).eer == 1.0


def test_rocch_eer_never_exceeds_interpolated_eer_on_random_sets():
    rng = np.random.default_rng(7)
    for _ in range(50):
        genuine = np.round(rng.normal(1, 1, rng.integers(1, 30)), 1)
        impostor = np.round(rng.normal(0, 1, rng.integers(1, 30)), 1)
        assert rocch_eer(genuine, impostor) <= eer(genuine, impostor).eer + 1e-12


@pytest.mark.parametrize("function", [det_curve, eer, rocch_eer, min_dcf,
                                      functools.partial(fnmr_at_fmr, target_fmr=0.1)])
def test_degenerate_inputs_raise_value_error(function):
    with pytest.raises(ValueError, match="no impostor scores"):
        function([0.5, 0.6], [])
    with pytest.raises(ValueError, match="no genuine scores"):
        function([], [0.5, 0.6])
    with pytest.raises(ValueError, match="NaN or infinite"):
        function([0.5, float("nan")], [0.1])


# --- FNMR at a target FMR ------------------------------------------------------------------------

def test_fnmr_at_fmr_uses_the_smallest_threshold_meeting_the_target():
    # Set B, target 0.2: 0.2 * 5 = 1 false match allowed; the 2nd highest impostor is 0.5, so the
    # threshold is the float just above 0.5 (FMR = 1/5 from the 0.6 impostor) and FNMR = 1/4.
    fnmr, threshold, n_impostor, supported = fnmr_at_fmr(GENUINE_B, IMPOSTOR_B, 0.2)
    assert threshold == np.nextafter(0.5, 1.0)
    assert fnmr == 0.25
    assert n_impostor == 5
    assert supported is False  # 5 < 3 / 0.2 = 15
    # Target 0.1: no false match allowed, threshold just above 0.6; 0.4 still rejected.
    assert fnmr_at_fmr(GENUINE_B, IMPOSTOR_B, 0.1)[:2] == (0.25, np.nextafter(0.6, 1.0))
    # Target 0.4: two false matches allowed, threshold just above 0.3, every genuine accepted.
    assert fnmr_at_fmr(GENUINE_B, IMPOSTOR_B, 0.4)[:2] == (0.0, np.nextafter(0.3, 1.0))


def test_threshold_for_fmr_rejects_every_impostor_tied_at_the_boundary():
    # One false match allowed out of 4, but three impostors tie at 0.5: accepting any of them
    # accepts all three (FMR .75), so the threshold must lie above 0.5 and FMR drops to 0.
    impostor = [0.5, 0.5, 0.5, 0.1]
    threshold = threshold_for_fmr(impostor, 0.25)
    assert threshold > 0.5 and threshold == np.nextafter(0.5, 1.0)
    assert fnmr_at_fmr([0.5, 0.9], impostor, 0.25).fnmr == 0.5


def test_threshold_for_fmr_holds_fmr_at_or_below_target_on_random_sets():
    rng = np.random.default_rng(3)
    for _ in range(50):
        impostor = np.round(rng.normal(0, 1, rng.integers(1, 200)), 2)
        target = rng.uniform(0.001, 0.5)
        threshold = threshold_for_fmr(impostor, target)
        assert np.mean(impostor >= threshold) <= target
        # ...and nothing lower would do: the highest rejected score would push FMR over.
        rejected = impostor[impostor < threshold]
        if rejected.size:
            assert np.mean(impostor >= rejected.max()) > target


def test_rule_of_three():
    assert rule_of_three_supported(30_000, 1e-4)
    assert not rule_of_three_supported(29_999, 1e-4)
    assert rule_of_three_supported(3_000, 1e-3)
    assert not rule_of_three_supported(2_999, 1e-3)
    assert rule_of_three_supported(100, 0.03)


@pytest.mark.parametrize("target", [0.0, 1.0, -0.1, 2.0])
def test_target_fmr_outside_the_open_unit_interval_is_refused(target):
    with pytest.raises(ValueError, match="target_fmr"):
        fnmr_at_fmr(GENUINE_A, IMPOSTOR_A, target)


# --- minimum DCF ---------------------------------------------------------------------------------

def test_min_dcf_default_prior():
    # p=0.01, costs 1: normalised DCF = (.01 FNMR + .99 FMR) / .01 = FNMR + 99 FMR. Any FMR > 0
    # costs at least 99 * .2; with FMR = 0 the lowest FNMR is .4 at t = .7 (set A).
    assert min_dcf(GENUINE_A, IMPOSTOR_A) == (pytest.approx(0.4), pytest.approx(0.7))


def test_min_dcf_balanced_prior():
    # p=.5, costs 1: normalised DCF = FNMR + FMR; set B table: 1, .8, .6, .4, .65, .45, .25, .5,
    # .75, 1 -> minimum .25 at t = .7.
    assert min_dcf(GENUINE_B, IMPOSTOR_B, p_target=0.5) == (pytest.approx(0.25),
                                                            pytest.approx(0.7))


def test_min_dcf_cheap_false_alarms():
    # p=.5, c_miss=1, c_fa=.2: normaliser min(.5, .1) = .1, DCF = 5 FNMR + FMR; set B:
    # 1, .8, .6, .4, 1.65, 1.45, 1.25, 2.5, 3.75, 5 -> minimum .4 at t = .4.
    result = min_dcf(GENUINE_B, IMPOSTOR_B, p_target=0.5, c_miss=1, c_fa=0.2)
    assert result == (pytest.approx(0.4), pytest.approx(0.4))


def test_min_dcf_never_exceeds_one():
    # The trivial systems are on the curve, so a useless scorer still scores exactly 1.
    assert min_dcf([0.1, 0.2], [0.8, 0.9]).min_dcf == pytest.approx(1.0)


# --- Clopper-Pearson -----------------------------------------------------------------------------

def test_clopper_pearson_closed_forms():
    # k = 0: upper = 1 - (alpha/2)^(1/n); k = n: lower = (alpha/2)^(1/n).
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.025 ** 0.1, rel=1e-12))
    assert clopper_pearson(10, 10) == (pytest.approx(0.025 ** 0.1, rel=1e-12), 1.0)
    # k = 1, n = 4: the lower bound solves 1 - (1-x)^4 = .025.
    assert clopper_pearson(1, 4)[0] == pytest.approx(1 - 0.975 ** 0.25, rel=1e-12)


@pytest.mark.parametrize("errors, trials, low, high", [
    # Reference values from scipy.stats.beta.ppf(0.025, k, n-k+1) / ppf(0.975, k+1, n-k).
    (1, 4, 0.006309463209709866, 0.8058795503167565),
    (5, 10, 0.18708602844739855, 0.8129139715526015),
    (3, 30000, 2.0622878887234136e-05, 0.0002922143461382033),
    (120, 1000, 0.10050092374816784, 0.14176686379282544),
])
def test_clopper_pearson_matches_reference(errors, trials, low, high):
    assert clopper_pearson(errors, trials) == (pytest.approx(low, rel=1e-9),
                                               pytest.approx(high, rel=1e-9))


def test_clopper_pearson_refuses_impossible_counts():
    with pytest.raises(ValueError):
        clopper_pearson(5, 4)
    with pytest.raises(ValueError):
        clopper_pearson(0, 0)


# --- subject bootstrap ---------------------------------------------------------------------------

def _trials_by_subject():
    # Subject s has 2 genuine trials and 3 impostor trials; its scores are shifted by s.
    records = []
    for subject in range(8):
        shift = 0.05 * subject
        records += [(0.7 + shift, True, f"s{subject}"), (0.6 + shift, True, f"s{subject}")]
        records += [(0.1 + shift, False, f"s{subject}"), (0.3 + shift, False, f"s{subject}"),
                    (0.5 + shift, False, f"s{subject}")]
    return Trials.from_records(records)


def test_subject_resampling_keeps_each_subjects_trials_together():
    trials = _trials_by_subject()
    replicate = trials.resample(np.random.default_rng(0), by_subject=True)
    counts = np.bincount(replicate.subject, minlength=8)
    assert np.all(counts % 5 == 0) and counts.sum() == 40
    for subject in np.flatnonzero(counts):
        mine = replicate.subject == subject
        original = trials.scores[trials.subject == subject]
        assert sorted(replicate.scores[mine]) == sorted(np.tile(original, counts[subject] // 5))


def test_bootstrap_is_reproducible_and_brackets_the_estimate():
    trials = _trials_by_subject()
    first = bootstrap_ci(trials, eer, n=200, seed=1)
    assert first == bootstrap_ci(trials, eer, n=200, seed=1)
    assert first.estimate == eer(trials.genuine, trials.impostor).eer
    assert first.low <= first.estimate <= first.high
    assert first.low < first.high
    assert first.n_resamples == 200 and first.n_failed == 0


def test_bootstrap_over_identical_subjects_has_no_spread_but_trial_bootstrap_does():
    # Every subject has the same trials, so any multiset of subjects gives the same EER; drawing
    # trials one by one does not.
    records = [(score, genuine, subject) for subject in range(5)
               for score, genuine in [(0.9, True), (0.4, True), (0.5, False), (0.1, False)]]
    by_subject = bootstrap_ci(records, eer, n=100, seed=0)
    assert by_subject.low == by_subject.high == by_subject.estimate == 0.5
    by_trial = bootstrap_ci(records, eer, by_subject=False, n=100, seed=0)
    assert by_trial.low < by_trial.high


def test_bootstrap_drops_replicates_without_impostors():
    # Only subject "x" has impostor trials; a replicate that never draws it has no impostors.
    records = [(0.9, True, "a"), (0.8, True, "b"), (0.7, True, "c"), (0.2, False, "x")]
    result = bootstrap_ci(records, functools.partial(fnmr_at_fmr, target_fmr=0.5), n=200, seed=0)
    assert result.n_failed > 0
    assert result.n_resamples + result.n_failed == 200


# --- LFW protocol --------------------------------------------------------------------------------

def _synthetic_ten_folds():
    """Fold k: impostors .1, .2, .3+.01k; genuine .5+.01k, .8, .9; plus a genuine at .05 in fold 0
    and an impostor at .95 in fold 5 (errors under any sensible threshold)."""
    scores, labels, folds = [], [], []
    for k in range(10):
        pairs = [(0.1, False), (0.2, False), (0.3 + 0.01 * k, False),
                 (0.5 + 0.01 * k, True), (0.8, True), (0.9, True)]
        if k == 0:
            pairs.append((0.05, True))
        if k == 5:
            pairs.append((0.95, False))
        for score, label in pairs:
            scores.append(score)
            labels.append(label)
            folds.append(k + 1)
    return np.array(scores), np.array(labels), np.array(folds)


def test_lfw_thresholds_are_chosen_on_the_other_folds():
    # Training on every fold but f, the only accuracy-maximising gap lies between the highest
    # regular impostor (.39, or .38 when fold 10 is held out) and the lowest regular genuine
    # (.50, or .51 when fold 1 is held out); the two outliers are errors whatever the threshold.
    # Midpoints: fold 1 -> (.39+.51)/2 = .45, fold 10 -> (.38+.50)/2 = .44, others .445.
    thresholds = lfw_fold_thresholds(*_synthetic_ten_folds())
    expected = {1: 0.45, 10: 0.44} | {k: 0.445 for k in range(2, 10)}
    assert thresholds == pytest.approx(expected)


def test_lfw_accuracy_applies_each_threshold_to_its_held_out_fold():
    # Every held-out fold is classified correctly except the outliers: folds 1 and 6 score 6/7.
    # Mean = (8 + 12/7) / 10; sample std over [1]*8 + [6/7]*2.
    mean, std, per_fold = lfw_accuracy(*_synthetic_ten_folds())
    expected = np.array([6 / 7, 1, 1, 1, 1, 6 / 7, 1, 1, 1, 1])
    np.testing.assert_allclose(per_fold, expected)
    assert mean == pytest.approx((8 + 12 / 7) / 10)
    deviations = expected - expected.mean()
    assert std == pytest.approx(math.sqrt(np.sum(deviations ** 2) / 9))
    assert std == pytest.approx(0.0602339, abs=1e-6)


def test_lfw_needs_two_folds():
    with pytest.raises(ValueError, match="two folds"):
        lfw_accuracy([0.1, 0.9], [False, True], [1, 1])


PAIRS_TEXT = """2\t2
Ann\t1\t2
Bob\t1\t3
Ann\t1\tBob\t2
Cid\t1\tAnn\t2
Bob\t2\t3
Cid\t1\t2
Bob\t1\tCid\t1
Ann\t1\tCid\t2
"""


def _write_pairs(tmp_path, text):
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    return path


def test_parse_lfw_pairs_reads_folds_and_matched_and_mismatched_pairs(tmp_path):
    pairs = parse_lfw_pairs(_write_pairs(tmp_path, PAIRS_TEXT))
    assert len(pairs) == 8
    assert [p.fold for p in pairs] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    assert pairs[2] == metrics.Pair(1, "Ann", 1, "Bob", 2)
    assert pairs[4] == metrics.Pair(2, "Bob", 2, "Bob", 3)
    assert len(missing_lfw_pairs(pairs)) == 8  # nothing resolved without an image folder


def test_parse_lfw_pairs_resolves_both_layouts_and_reports_missing_files(tmp_path):
    images = tmp_path / "lfw"
    for name, index in [("Ann", 1), ("Ann", 2), ("Bob", 1), ("Bob", 2), ("Bob", 3), ("Cid", 1)]:
        (images / name).mkdir(parents=True, exist_ok=True)
        (images / name / f"{index:04d}.jpg").write_bytes(b"")
    (images / "Cid" / "Cid_0002.jpg").write_bytes(b"")  # original LFW naming
    (images / "Bob" / "0003.jpg").unlink()
    pairs = parse_lfw_pairs(_write_pairs(tmp_path, PAIRS_TEXT), image_root=images)
    assert pairs[0].path1 == images / "Ann" / "0001.jpg"
    assert pairs[5].path2 == images / "Cid" / "Cid_0002.jpg"
    missing = missing_lfw_pairs(pairs)
    assert missing == [pairs[1], pairs[4]]  # the two pairs using Bob 3
    assert missing[0].path2 is None


@pytest.mark.parametrize("text, message", [
    ("2\t2\nAnn\t1\t2\n", "found 1 pair lines"),
    ("1\t1\nAnn\t1\tBob\t2\nAnn\t1\t2\n", ":2: expected 'name i j'"),
    ("1\t1\nAnn\t1\t2\nAnn\tx\tBob\t2\n", ":3: expected an integer"),
    ("", "empty"),
])
def test_parse_lfw_pairs_names_the_bad_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        parse_lfw_pairs(_write_pairs(tmp_path, text))


def test_parse_real_lfw_pairs_maps_every_pair_to_a_shared_image():
    path = SHARED_DATA / "lfw_pairs.txt"
    n_folds, per_class = (int(f) for f in path.read_text().split("\n", 1)[0].split())
    pairs = parse_lfw_pairs(path, image_root=SHARED_DATA / "faces" / "lfw")
    assert per_class == 300
    assert len(pairs) == n_folds * 600 == 3000
    assert sum(p.same for p in pairs) == n_folds * 300
    assert sorted({p.fold for p in pairs}) == list(range(1, n_folds + 1))
    assert missing_lfw_pairs(pairs) == []
    assert pairs[0].path1.name == "0001.jpg" and pairs[0].path1.parent.name == pairs[0].name1
