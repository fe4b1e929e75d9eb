"""Verification error rates from genuine and impostor scores, and the LFW View-2 protocol.

Conventions used by every function here:

* Scores are similarities: higher means "more likely the same person".
* A trial is **accepted when** ``score >= threshold``. At a threshold ``t``::

      FMR(t)  = #{impostor scores >= t} / N_impostor    (false match rate, P_fa)
      FNMR(t) = #{genuine scores  <  t} / N_genuine     (false non-match rate, P_miss)

* Tied scores are never split by their order in the input: trials with equal scores are accepted or
  rejected together, so the results do not depend on how the inputs are shuffled. Every rate
  reported is one that a real threshold achieves, except the EER, which (as everywhere in the
  literature) is read off a straight line between two achievable operating points.
* Empty score sets, NaN and infinite scores are refused with :class:`ValueError`: an error rate
  over no trials is meaningless and would otherwise surface as a silent 0/0.

Confidence intervals: :func:`clopper_pearson` gives the exact binomial interval of one error rate;
:func:`bootstrap_ci` resamples *subjects* (people), not trials, because trials that share a person
are correlated and resampling them individually gives intervals that are too narrow.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)

#: Number of impostor trials per unit of target FMR needed to claim that FMR (the rule of three:
#: with zero errors in N trials the 95 % upper confidence bound on the rate is about 3/N).
RULE_OF_THREE = 3.0


# --------------------------------------------------------------------------------------------
# Result types (named tuples, so they unpack like the plain tuples of the documented signatures)
# --------------------------------------------------------------------------------------------


class DETCurve(NamedTuple):
    """Every achievable operating point, ordered by increasing threshold."""

    fmr: np.ndarray
    fnmr: np.ndarray
    thresholds: np.ndarray


class EER(NamedTuple):
    """Equal error rate and the (interpolated) threshold where FMR and FNMR cross."""

    eer: float
    threshold: float


class FNMRAtFMR(NamedTuple):
    """FNMR at the smallest threshold whose FMR does not exceed a target."""

    fnmr: float
    threshold: float
    n_impostor: int
    supported: bool


class MinDCF(NamedTuple):
    """Normalised minimum detection cost and the threshold achieving it."""

    min_dcf: float
    threshold: float


class BootstrapCI(NamedTuple):
    """A statistic on the full trial set with its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    n_resamples: int
    n_failed: int


class LFWAccuracy(NamedTuple):
    """LFW View-2 result: mean and sample standard deviation of the per-fold accuracies."""

    mean_accuracy: float
    std: float
    per_fold: np.ndarray


# --------------------------------------------------------------------------------------------
# Input checking
# --------------------------------------------------------------------------------------------


def as_scores(values, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D float64 array; :class:`ValueError` if empty or not finite.

    ``name`` (e.g. "genuine") is used in the error message.
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"no {name} scores: at least one {name} trial is needed")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} scores contain NaN or infinite values")
    return array


def _check_rate(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# Operating points
# --------------------------------------------------------------------------------------------


def det_curve(genuine, impostor) -> DETCurve:
    """Return FMR and FNMR at every distinct threshold, in increasing threshold order.

    The thresholds are all distinct scores of either class followed by ``+inf`` (reject
    everything), so the curve runs from (FMR=1, FNMR=0) at the lowest score to (0, 1) at ``+inf``
    and contains every operating point a threshold can achieve on these trials.
    """
    genuine = np.sort(as_scores(genuine, "genuine"))
    impostor = np.sort(as_scores(impostor, "impostor"))
    thresholds = np.append(np.unique(np.concatenate([genuine, impostor])), np.inf)
    fnmr = np.searchsorted(genuine, thresholds, side="left") / genuine.size
    fmr = (impostor.size - np.searchsorted(impostor, thresholds, side="left")) / impostor.size
    return DETCurve(fmr, fnmr, thresholds)


def eer(genuine, impostor) -> EER:
    """Equal error rate by **linear interpolation of the crossing** of FMR and FNMR.

    Along the DET curve, ``FNMR - FMR`` rises strictly from -1 to +1, so it changes sign between
    exactly one pair of consecutive operating points (or is exactly 0 at one of them, in which
    case that point's common rate is returned). Between the two points the rates are interpolated
    linearly; that straight line is what a threshold achieves when the trials at the step are
    accepted at random, so ties are handled exactly rather than split in input order.

    The threshold is interpolated in the same proportion between the two points' thresholds. When
    the crossing lies between the highest score and "reject everything" (``+inf``), the highest
    score is returned.

    This interpolated EER is at least :func:`rocch_eer` (the ROC-convex-hull EER of BOSARIS);
    they agree when the curve is convex near the crossing.
    """
    fmr, fnmr, thresholds = det_curve(genuine, impostor)
    gap = fnmr - fmr
    k = int(np.searchsorted(gap, 0.0, side="right")) - 1  # last point with FNMR <= FMR
    if gap[k] == 0.0:
        return EER(float(fmr[k]), float(thresholds[k]))
    weight = -gap[k] / (gap[k + 1] - gap[k])
    rate = fmr[k] + weight * (fmr[k + 1] - fmr[k])
    if np.isinf(thresholds[k + 1]):
        threshold = thresholds[k]
    else:
        threshold = thresholds[k] + weight * (thresholds[k + 1] - thresholds[k])
    return EER(float(rate), float(threshold))


def rocch_eer(genuine, impostor) -> float:
    """Equal error rate of the ROC convex hull (ROCCH-EER, as in BOSARIS ``rocch2eer``).

    The lower convex hull of the (FMR, FNMR) points is the best error trade-off reachable by
    mixing thresholds at random; its crossing with FMR = FNMR is the ROCCH-EER. It never exceeds
    :func:`eer` and is the EER reported by NIST SRE tooling.
    """
    fmr, fnmr, _ = det_curve(genuine, impostor)
    # Ascending FMR order, from (0, 1) to (1, 0).
    points = np.stack([fmr[::-1], fnmr[::-1]], axis=1)
    hull: list[np.ndarray] = []
    for point in points:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            cross = (x2 - x1) * (point[1] - y1) - (y2 - y1) * (point[0] - x1)
            if cross > 0:  # strictly convex turn: the middle vertex stays on the lower hull
                break
            hull.pop()
        hull.append(point)
    vertices = np.array(hull)
    gap = vertices[:, 1] - vertices[:, 0]  # falls from +1 to -1 along the hull
    k = int(np.searchsorted(-gap, 0.0, side="right")) - 1
    if gap[k] == 0.0:
        return float(vertices[k, 0])
    weight = gap[k] / (gap[k] - gap[k + 1])
    return float(vertices[k, 0] + weight * (vertices[k + 1, 0] - vertices[k, 0]))


def allowed_false_matches(target_fmr: float, n_impostor: int) -> int:
    """Largest number of false matches ``k`` with ``k / n_impostor <= target_fmr``."""
    target_fmr = _check_rate(target_fmr, "target_fmr")
    k = int(math.floor(target_fmr * n_impostor))
    # floor() of a product can be one off in floating point; settle it with the same division the
    # caller would use to check the achieved rate.
    while k + 1 <= n_impostor and (k + 1) / n_impostor <= target_fmr:
        k += 1
    while k > 0 and k / n_impostor > target_fmr:
        k -= 1
    return k


def threshold_for_fmr(impostor, target_fmr: float) -> float:
    """Smallest threshold whose FMR on ``impostor`` is at most ``target_fmr``.

    With ``k`` allowed false matches and ``v`` the (k+1)-th highest impostor score, every
    threshold ``t <= v`` accepts at least ``k + 1`` impostors and every ``t > v`` at most ``k``;
    the smallest float above ``v`` is therefore returned (``numpy.nextafter``), so the rule
    ``score >= threshold`` rejects ``v`` and every impostor tied with it.
    """
    impostor = np.sort(as_scores(impostor, "impostor"))[::-1]
    k = allowed_false_matches(target_fmr, impostor.size)
    return float(np.nextafter(impostor[k], np.inf))


def rule_of_three_supported(n_impostor: int, target_fmr: float) -> bool:
    """Whether ``n_impostor`` trials can support a claim of FMR <= ``target_fmr`` (N >= 3/FMR)."""
    target_fmr = _check_rate(target_fmr, "target_fmr")
    needed = math.ceil(round(RULE_OF_THREE / target_fmr, 9))
    return n_impostor >= needed


def fnmr_at_fmr(genuine, impostor, target_fmr: float) -> FNMRAtFMR:
    """FNMR at the smallest threshold keeping FMR <= ``target_fmr`` (see :func:`threshold_for_fmr`).

    ``supported`` is False when there are fewer than ``3 / target_fmr`` impostor trials: too few
    to show that the FMR really is below the target, whatever the observed count.
    """
    genuine = as_scores(genuine, "genuine")
    impostor = as_scores(impostor, "impostor")
    threshold = threshold_for_fmr(impostor, target_fmr)
    fnmr = np.count_nonzero(genuine < threshold) / genuine.size
    supported = rule_of_three_supported(impostor.size, target_fmr)
    if not supported:
        log.debug("FNMR@FMR=%g rests on %d impostor trials, fewer than 3/FMR",
                  target_fmr, impostor.size)
    return FNMRAtFMR(float(fnmr), threshold, int(impostor.size), supported)


def min_dcf(genuine, impostor, p_target: float = 0.01, c_miss: float = 1.0,
            c_fa: float = 1.0) -> MinDCF:
    """Normalised minimum detection cost function (NIST SRE definition).

    ``DCF(t) = c_miss * p_target * FNMR(t) + c_fa * (1 - p_target) * FMR(t)``, divided by the
    cost of the best trivial system, ``min(c_miss * p_target, c_fa * (1 - p_target))``, so 1.0
    means "no better than always accepting or always rejecting". The minimum is taken over every
    operating point of :func:`det_curve` (both trivial ones included); on equal cost the lowest
    threshold is returned.
    """
    p_target = _check_rate(p_target, "p_target")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"costs must be positive, got c_miss={c_miss!r}, c_fa={c_fa!r}")
    fmr, fnmr, thresholds = det_curve(genuine, impostor)
    cost = c_miss * p_target * fnmr + c_fa * (1.0 - p_target) * fmr
    cost /= min(c_miss * p_target, c_fa * (1.0 - p_target))
    best = int(np.argmin(cost))
    return MinDCF(float(cost[best]), float(thresholds[best]))


# --------------------------------------------------------------------------------------------
# Exact binomial confidence interval
# --------------------------------------------------------------------------------------------


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes)."""
    tiny = 1e-300
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 100_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            return result
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b})")


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """``I_x(a, b)``, the CDF at ``x`` of a Beta(a, b) distribution (a, b > 0)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    # The fraction converges fast only on the side of the mean; use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def beta_quantile(q: float, a: float, b: float) -> float:
    """The ``q`` quantile of Beta(a, b), by bisection on :func:`regularized_incomplete_beta`."""
    low, high = 0.0, 1.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if regularized_incomplete_beta(a, b, middle) < q:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def clopper_pearson(errors: int, trials: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided ``1 - alpha`` interval of a binomial error rate.

    ``low = Beta(alpha/2; k, n-k+1)`` and ``high = Beta(1-alpha/2; k+1, n-k)`` quantiles, with
    ``low = 0`` when ``k = 0`` and ``high = 1`` when ``k = n``. The interval is conservative: its
    coverage is at least ``1 - alpha`` for every true rate.
    """
    errors, trials = int(errors), int(trials)
    if trials <= 0 or not 0 <= errors <= trials:
        raise ValueError(f"need 0 <= errors <= trials and trials > 0, got {errors}/{trials}")
    alpha = _check_rate(alpha, "alpha")
    low = 0.0 if errors == 0 else beta_quantile(alpha / 2, errors, trials - errors + 1)
    high = 1.0 if errors == trials else beta_quantile(1 - alpha / 2, errors + 1, trials - errors)
    return low, high


# --------------------------------------------------------------------------------------------
# Trials and the subject bootstrap
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trials:
    """A set of scored trials: score, whether genuine, and the subject each trial belongs to.

    The subject is the person whose resampling carries the trial along, normally the enrolled
    (claimed) identity. ``subject`` holds integer codes; ``subject_names`` maps codes back.
    """

    scores: np.ndarray
    is_genuine: np.ndarray
    subject: np.ndarray
    subject_names: tuple[Hashable, ...]

    @classmethod
    def from_arrays(cls, scores, is_genuine, subject_ids: Sequence[Hashable]) -> "Trials":
        """Build from parallel sequences; subject ids may be any hashable values."""
        scores = np.asarray(scores, dtype=np.float64).ravel()
        is_genuine = np.asarray(is_genuine, dtype=bool).ravel()
        codes: dict[Hashable, int] = {}
        subject = np.fromiter((codes.setdefault(s, len(codes)) for s in subject_ids),
                              dtype=np.int64, count=len(subject_ids))
        if not scores.size == is_genuine.size == subject.size:
            raise ValueError("scores, is_genuine and subject_ids must have the same length")
        return cls(scores, is_genuine, subject, tuple(codes))

    @classmethod
    def from_records(cls, records: Iterable[tuple[float, bool, Hashable]]) -> "Trials":
        """Build from ``(score, is_genuine, subject_id)`` tuples."""
        records = list(records)
        return cls.from_arrays([r[0] for r in records], [r[1] for r in records],
                               [r[2] for r in records])

    def __len__(self) -> int:
        return int(self.scores.size)

    @property
    def genuine(self) -> np.ndarray:
        """Scores of the genuine (same-person) trials."""
        return self.scores[self.is_genuine]

    @property
    def impostor(self) -> np.ndarray:
        """Scores of the impostor (different-person) trials."""
        return self.scores[~self.is_genuine]

    def take(self, index: np.ndarray) -> "Trials":
        """The trials at ``index`` (repeats allowed), keeping subject codes."""
        return Trials(self.scores[index], self.is_genuine[index], self.subject[index],
                      self.subject_names)

    def resample(self, rng: np.random.Generator, by_subject: bool = True) -> "Trials":
        """One bootstrap replicate.

        With ``by_subject``, as many subjects as there are are drawn with replacement and each
        draw brings *all* of that subject's trials (the "subsets bootstrap" of Bolle et al.);
        otherwise trials are drawn individually.
        """
        if not by_subject:
            return self.take(rng.integers(0, len(self), size=len(self)))
        order = np.argsort(self.subject, kind="stable")
        counts = np.bincount(self.subject, minlength=len(self.subject_names))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        drawn = rng.integers(0, counts.size, size=counts.size)
        lengths = counts[drawn]
        # Positions start[d] .. start[d] + count[d] - 1 for every drawn subject d, vectorised.
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return self.take(order[np.repeat(starts[drawn], lengths) + offsets])


def _statistic_value(statistic: Callable, genuine: np.ndarray, impostor: np.ndarray) -> float:
    value = statistic(genuine, impostor)
    return float(value[0]) if isinstance(value, tuple) else float(value)


def bootstrap_ci(trials: Trials | Iterable[tuple[float, bool, Hashable]],
                 statistic: Callable, by_subject: bool = True, n: int = 1000,
                 seed: int | None = 0, alpha: float = 0.05) -> BootstrapCI:
    """Percentile bootstrap interval of ``statistic(genuine, impostor)``.

    ``trials`` is a :class:`Trials` or an iterable of ``(score, is_genuine, subject_id)``.
    ``statistic`` is called with the genuine and impostor score arrays of each replicate; any
    function of this module works directly (a returned tuple contributes its first field, e.g.
    the EER of :func:`eer`), others via ``functools.partial(fnmr_at_fmr, target_fmr=1e-3)``.

    Replicates for which the statistic raises :class:`ValueError` (typically: no impostor trial
    was drawn) are dropped and counted in ``n_failed``.
    """
    if not isinstance(trials, Trials):
        trials = Trials.from_records(trials)
    _check_rate(alpha, "alpha")
    estimate = _statistic_value(statistic, trials.genuine, trials.impostor)
    rng = np.random.default_rng(seed)
    values = []
    failed = 0
    for _ in range(int(n)):
        replicate = trials.resample(rng, by_subject)
        try:
            values.append(_statistic_value(statistic, replicate.genuine, replicate.impostor))
        except ValueError:
            failed += 1
    if not values:
        raise ValueError("every bootstrap replicate failed: too few subjects or trials")
    if failed:
        log.warning("%d of %d bootstrap replicates had no usable trials and were dropped",
                    failed, n)
    low, high = np.quantile(np.array(values), [alpha / 2, 1 - alpha / 2])
    return BootstrapCI(estimate, float(low), float(high), len(values), failed)


# --------------------------------------------------------------------------------------------
# LFW View-2 protocol
# --------------------------------------------------------------------------------------------


def best_accuracy_threshold(scores, labels) -> float:
    """Threshold maximising the accuracy of ``score >= threshold`` as a same-person decision.

    Candidates are ``-inf``, the midpoints between consecutive distinct scores, and ``+inf``:
    accuracy is constant between two consecutive scores, and the midpoint is the choice with the
    widest margin. When several candidates reach the maximum, the lowest one is returned.
    """
    scores = as_scores(scores, "pair")
    labels = np.asarray(labels, dtype=bool).ravel()
    if labels.size != scores.size:
        raise ValueError("scores and labels must have the same length")
    distinct = np.unique(scores)
    candidates = np.concatenate([[-np.inf], distinct[:-1] + np.diff(distinct) / 2, [np.inf]])
    genuine = np.sort(scores[labels])
    impostor = np.sort(scores[~labels])
    correct = (genuine.size - np.searchsorted(genuine, candidates, side="left")
               + np.searchsorted(impostor, candidates, side="left"))
    return float(candidates[int(np.argmax(correct))])


def lfw_fold_thresholds(scores, labels, folds) -> dict:
    """For each fold, the :func:`best_accuracy_threshold` of all *other* folds' pairs."""
    scores = as_scores(scores, "pair")
    labels = np.asarray(labels, dtype=bool).ravel()
    folds = np.asarray(folds).ravel()
    if not scores.size == labels.size == folds.size:
        raise ValueError("scores, labels and folds must have the same length")
    fold_ids = np.unique(folds)
    if fold_ids.size < 2:
        raise ValueError("the LFW protocol needs at least two folds")
    return {fold.item(): best_accuracy_threshold(scores[folds != fold], labels[folds != fold])
            for fold in fold_ids}


def lfw_accuracy(scores, labels, folds) -> LFWAccuracy:
    """Accuracy under the LFW View-2 protocol (leave-one-fold-out threshold selection).

    For every fold the threshold is chosen on the other folds (:func:`lfw_fold_thresholds`) and
    applied to the held-out fold. ``per_fold`` lists the held-out accuracies in sorted fold
    order; ``std`` is their sample standard deviation (ddof=1, as the LFW README defines sigma;
    the standard error of the mean is ``std / sqrt(n_folds)``).
    """
    scores = as_scores(scores, "pair")
    labels = np.asarray(labels, dtype=bool).ravel()
    folds = np.asarray(folds).ravel()
    thresholds = lfw_fold_thresholds(scores, labels, folds)
    per_fold = np.array([np.mean((scores[folds == fold] >= threshold) == labels[folds == fold])
                         for fold, threshold in thresholds.items()])
    return LFWAccuracy(float(per_fold.mean()), float(per_fold.std(ddof=1)), per_fold)


@dataclass(frozen=True)
class Pair:
    """One LFW pair: fold (1-based, as in the LFW README), two images, and where they are.

    ``path1`` / ``path2`` are None until resolved against an image folder, or when missing there.
    """

    fold: int
    name1: str
    index1: int
    name2: str
    index2: int
    path1: Path | None = None
    path2: Path | None = None

    @property
    def same(self) -> bool:
        """True for a matched (same-person) pair."""
        return self.name1 == self.name2

    @property
    def available(self) -> bool:
        """True when both images were found."""
        return self.path1 is not None and self.path2 is not None


def lfw_image_path(image_root: Path, name: str, index: int) -> Path | None:
    """Where image ``index`` of ``name`` is under ``image_root``, or None.

    Two layouts are recognised: ``<name>/<NNNN>.jpg`` (the shared data set) and the original
    LFW ``<name>/<name>_<NNNN>.jpg``.
    """
    folder = Path(image_root) / name
    for candidate in (folder / f"{index:04d}.jpg", folder / f"{name}_{index:04d}.jpg"):
        if candidate.is_file():
            return candidate
    return None


def _int_field(text: str, path: Path, line_number: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{path}:{line_number}: expected an integer, got {text!r}") from None


def parse_lfw_pairs(path, image_root=None) -> list[Pair]:
    """Read an LFW ``pairs.txt``: header ``<folds>\\t<n>``, then per fold n matched lines
    ``name\\ti\\tj`` followed by n mismatched lines ``name1\\ti\\tname2\\tj``.

    A header with one number (``pairsDevTrain.txt``) is read as one fold. With ``image_root``,
    each pair's image paths are resolved by :func:`lfw_image_path` and the number of pairs with a
    missing image is logged; :func:`missing_lfw_pairs` lists them. Malformed files raise
    :class:`ValueError` naming the line.
    """
    path = Path(path)
    lines = [line.split() for line in path.read_text().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ValueError(f"{path}: empty LFW pairs file")
    header = [_int_field(field, path, 1) for field in lines[0]]
    if len(header) == 1:
        header = [1, header[0]]
    if len(header) != 2 or min(header) < 1:
        raise ValueError(f"{path}:1: expected '<folds> <pairs per class>', got {lines[0]}")
    n_folds, per_class = header
    if len(lines) - 1 != n_folds * 2 * per_class:
        raise ValueError(f"{path}: header announces {n_folds} folds x {2 * per_class} pairs, "
                         f"found {len(lines) - 1} pair lines")
    pairs = []
    for offset, fields in enumerate(lines[1:]):
        line_number = offset + 2
        fold, position = divmod(offset, 2 * per_class)
        matched = position < per_class
        if matched and len(fields) == 3:
            name1 = name2 = fields[0]
            index1, index2 = (_int_field(f, path, line_number) for f in fields[1:])
        elif not matched and len(fields) == 4:
            name1, name2 = fields[0], fields[2]
            index1, index2 = (_int_field(f, path, line_number) for f in fields[1::2])
        else:
            expected = "'name i j'" if matched else "'name1 i name2 j'"
            raise ValueError(f"{path}:{line_number}: expected {expected}, got {fields}")
        pairs.append(Pair(fold + 1, name1, index1, name2, index2))
    if image_root is not None:
        pairs = [Pair(p.fold, p.name1, p.index1, p.name2, p.index2,
                      lfw_image_path(image_root, p.name1, p.index1),
                      lfw_image_path(image_root, p.name2, p.index2)) for p in pairs]
        missing = len(missing_lfw_pairs(pairs))
        if missing:
            log.warning("%d of %d LFW pairs have an image missing under %s",
                        missing, len(pairs), image_root)
    return pairs


def missing_lfw_pairs(pairs: Iterable[Pair]) -> list[Pair]:
    """The pairs whose images were not both found (all of them if never resolved)."""
    return [pair for pair in pairs if not pair.available]
