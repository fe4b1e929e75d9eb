"""Fitting score calibrations and thresholds (offline): cosine -> LLR maps, Cllr, the threshold for
a target FMR.

Each modality's raw score ``s`` (a cosine similarity) is mapped to a log-likelihood ratio
``llr = a * s + b`` = log p(s | same person) / p(s | different person), by the *linear
calibration* of Brümmer's FoCal/BOSARIS toolkits: logistic regression whose two classes are
weighted so that the effective prior of a genuine trial is ``prior``, with ``logit(prior)``
subtracted from the fitted log-odds afterwards. Minimising that prior-weighted cross-entropy
makes ``llr`` a proper likelihood ratio (calibrated near the operating point that ``prior``
describes) rather than a posterior at the training set's own class balance.

LLRs of independent modalities add (:func:`fuse_llr`); the door threshold on the fused LLR is
chosen on real impostor trials for a target FMR (:func:`fit_operating_point`), with the exact
binomial interval of the FNMR that threshold gives on the genuine trials.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from daemon.fuse.calibration import Calibration
from daemon.offline.metrics import (
    as_scores, clopper_pearson, rule_of_three_supported, threshold_for_fmr,
)

log = logging.getLogger(__name__)

__all__ = [
    "ThresholdFit", "cllr", "fit_calibration", "fit_operating_point", "fuse_llr",
    "logit", "threshold_for_fmr",
]

def logit(p: float) -> float:
    """``log(p / (1 - p))``."""
    return math.log(p) - math.log1p(-p)


def _softplus(x: np.ndarray) -> np.ndarray:
    """``log(1 + exp(x))`` without overflow."""
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def fit_calibration(genuine, impostor, prior: float = 0.01, l2: float = 1e-6,
                    max_iter: int = 100, tol: float = 1e-10) -> Calibration:
    """Fit ``llr = a * s + b`` by prior-weighted logistic regression (Newton / IRLS).

    Minimises ``prior * mean_g softplus(-(a s + c)) + (1 - prior) * mean_i softplus(a s + c)``
    (plus ``l2 * a**2`` in standardised score units, which only matters when the classes are
    separable and the unpenalised slope would grow without bound), then sets
    ``b = c - logit(prior)``. Scores are standardised internally for conditioning.

    Pass the prior of the operating point the system is tuned for: a low prior (the default
    0.01) fits the line best where few impostors pass, i.e. near a low-FMR threshold.
    """
    genuine = as_scores(genuine, "genuine")
    impostor = as_scores(impostor, "impostor")
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior must lie strictly between 0 and 1, got {prior!r}")
    scores = np.concatenate([genuine, impostor])
    target = np.concatenate([np.ones(genuine.size), np.zeros(impostor.size)])
    weight = np.concatenate([np.full(genuine.size, prior / genuine.size),
                             np.full(impostor.size, (1.0 - prior) / impostor.size)])
    centre, spread = scores.mean(), scores.std()
    spread = spread if spread > 0 else 1.0
    design = np.stack([(scores - centre) / spread, np.ones_like(scores)], axis=1)

    def objective(params: np.ndarray) -> float:
        z = design @ params
        return float(weight @ np.where(target > 0, _softplus(-z), _softplus(z))
                     + l2 * params[0] ** 2)

    params = np.array([0.0, logit(prior)])
    value = objective(params)
    for iteration in range(max_iter):
        z = design @ params
        posterior = _sigmoid(z)
        gradient = design.T @ (weight * (posterior - target)) + np.array([2 * l2 * params[0], 0])
        hessian = (design.T * (weight * posterior * (1 - posterior))) @ design
        hessian[0, 0] += 2 * l2
        step = np.linalg.solve(hessian, gradient)
        # Newton steps on a convex objective may still overshoot far from the optimum: halve
        # the step until the objective does not increase.
        scale = 1.0
        while scale > 1e-10:
            candidate = params - scale * step
            candidate_value = objective(candidate)
            if candidate_value <= value:
                break
            scale /= 2
        params, value = candidate, candidate_value
        if np.max(np.abs(scale * step)) < tol:
            break
    else:
        log.warning("calibration did not converge in %d Newton steps", max_iter)
    slope = params[0] / spread
    offset = params[1] - params[0] * centre / spread - logit(prior)
    log.debug("calibration fitted in %d steps: a=%.6g b=%.6g (prior %g, %d genuine, "
              "%d impostor)", iteration + 1, slope, offset, prior, genuine.size, impostor.size)
    if genuine.min() > impostor.max():
        log.warning("calibration classes are separable; the slope is set by the l2 penalty")
    return Calibration(float(slope), float(offset), float(prior), int(genuine.size),
                       int(impostor.size))


def cllr(genuine_llr, impostor_llr) -> float:
    """Log-likelihood-ratio cost in bits (Brümmer): 0 is perfect, 1 is a system saying nothing.

    ``Cllr = (mean_g log2(1 + e^-llr) + mean_i log2(1 + e^llr)) / 2``; a badly calibrated set of
    LLRs can score above 1.
    """
    genuine_llr = as_scores(genuine_llr, "genuine")
    impostor_llr = as_scores(impostor_llr, "impostor")
    return float((_softplus(-genuine_llr).mean() + _softplus(impostor_llr).mean())
                 / (2 * math.log(2)))


def fuse_llr(face_llr, voice_llr, weights: tuple[float, float] = (1.0, 1.0)):
    """Fused LLR ``weights[0] * face_llr + weights[1] * voice_llr`` (scalars or arrays).

    With weights (1, 1) this is the Bayes combination of two modalities whose scores are
    independent given the identity; weights below 1 discount a modality that is less reliable
    than its calibration claims or correlated with the other.
    """
    face_weight, voice_weight = weights
    fused = (face_weight * np.asarray(face_llr, dtype=np.float64)
             + voice_weight * np.asarray(voice_llr, dtype=np.float64))
    return float(fused) if fused.ndim == 0 else fused


@dataclass(frozen=True)
class ThresholdFit:
    """A threshold chosen for a target FMR, with the error rates it gave on the fitting trials.

    ``fmr`` and ``fnmr`` are the observed rates at ``threshold``; the ``*_ci`` pairs are exact
    Clopper-Pearson ``1 - alpha`` intervals. ``supported`` is False when there were fewer than
    3 / target_fmr impostor trials (rule of three): the FMR claim is then not backed by data.
    """

    threshold: float
    target_fmr: float
    fmr: float
    fmr_ci: tuple[float, float]
    fnmr: float
    fnmr_ci: tuple[float, float]
    n_genuine: int
    n_impostor: int
    supported: bool
    alpha: float = 0.05

    def to_dict(self) -> dict:
        """A JSON/YAML-ready dictionary."""
        return {"threshold": self.threshold, "target_fmr": self.target_fmr, "fmr": self.fmr,
                "fmr_ci": list(self.fmr_ci), "fnmr": self.fnmr, "fnmr_ci": list(self.fnmr_ci),
                "n_genuine": self.n_genuine, "n_impostor": self.n_impostor,
                "supported": self.supported, "alpha": self.alpha}


def fit_operating_point(genuine_fused, impostor_fused, target_fmr: float,
                        alpha: float = 0.05) -> ThresholdFit:
    """Smallest threshold with FMR <= ``target_fmr`` on the impostors, and its FNMR with CI.

    Accept when ``fused score >= threshold`` (see :func:`threshold_for_fmr`).
    """
    genuine = as_scores(genuine_fused, "genuine")
    impostor = as_scores(impostor_fused, "impostor")
    threshold = threshold_for_fmr(impostor, target_fmr)
    false_matches = int(np.count_nonzero(impostor >= threshold))
    false_non_matches = int(np.count_nonzero(genuine < threshold))
    supported = rule_of_three_supported(impostor.size, target_fmr)
    if not supported:
        log.warning("only %d impostor trials: FMR <= %g needs at least %d to be supported",
                    impostor.size, target_fmr, math.ceil(3 / target_fmr))
    return ThresholdFit(
        threshold=threshold, target_fmr=float(target_fmr),
        fmr=false_matches / impostor.size,
        fmr_ci=clopper_pearson(false_matches, impostor.size, alpha),
        fnmr=false_non_matches / genuine.size,
        fnmr_ci=clopper_pearson(false_non_matches, genuine.size, alpha),
        n_genuine=int(genuine.size), n_impostor=int(impostor.size),
        supported=supported, alpha=float(alpha))
