"""Figures for evaluation reports: DET curves and score histograms.

matplotlib is a tools-only dependency (``tools/requirements-tools.txt``): it is imported inside the
plotting functions, so importing this module (e.g. for :func:`probit`) needs only numpy. Figures
are drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas, so no display and no
global pyplot state are involved.
"""

from __future__ import annotations

import logging
from pathlib import Path
from statistics import NormalDist

import numpy as np

log = logging.getLogger(__name__)

#: Error rates marked on DET axes, from the NIST SP 800-63B FMR bound (1e-4) to chance (0.5).
DET_TICKS = (1e-4, 1e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
DET_LIMITS = (5e-5, 0.5)

_STANDARD_NORMAL = NormalDist()


def probit(rates) -> np.ndarray:
    """Standard normal deviate of each rate (the DET axis scale), rates clipped to (1e-12, 1-1e-12).

    On probit axes the DET curve of two Gaussian score distributions is a straight line.
    """
    clipped = np.clip(np.asarray(rates, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.vectorize(_STANDARD_NORMAL.inv_cdf, otypes=[np.float64])(clipped)


def _tick_label(rate: float) -> str:
    percent = rate * 100
    return f"{percent:g}%"


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def det_plot(curves: dict, path, scale: str = "probit", operating_points: dict | None = None,
             title: str | None = None) -> Path:
    """Draw DET curves (FNMR against FMR) and save them to ``path``.

    ``curves`` maps a legend name to ``(fmr, fnmr)`` arrays, e.g. the first two fields of
    :func:`daemon.offline.metrics.det_curve`. ``scale`` is ``"probit"`` (normal-deviate axes, the
    usual DET paper) or ``"log"``. ``operating_points`` optionally maps a name to one
    ``(fmr, fnmr)`` point to mark (e.g. the chosen threshold). Ticks run from 1e-4 to 0.5.
    """
    if scale not in ("probit", "log"):
        raise ValueError(f"scale must be 'probit' or 'log', got {scale!r}")
    figure = _new_figure(6.0, 6.0)
    axes = figure.add_subplot()
    low, high = DET_LIMITS

    def transform(rates):
        rates = np.asarray(rates, dtype=np.float64)
        if scale == "probit":
            return probit(rates)
        return np.clip(rates, low / 10, 1.0)

    for name, (fmr, fnmr) in curves.items():
        axes.plot(transform(fmr), transform(fnmr), label=name, linewidth=1.5)
    for name, (fmr, fnmr) in (operating_points or {}).items():
        axes.plot(transform([fmr]), transform([fnmr]), marker="o", linestyle="none", label=name)

    ticks = [t for t in DET_TICKS if low <= t <= high]
    if scale == "log":
        axes.set_xscale("log")
        axes.set_yscale("log")
    axes.set_xticks(transform(ticks), [_tick_label(t) for t in ticks])
    axes.set_yticks(transform(ticks), [_tick_label(t) for t in ticks])
    axes.minorticks_off()
    axes.set_xlim(*transform([low, high]))
    axes.set_ylim(*transform([low, high]))
    axes.plot(transform([low, high]), transform([low, high]), color="0.7", linewidth=0.8,
              linestyle=":", label="FMR = FNMR")
    axes.set_xlabel("false match rate (FMR)")
    axes.set_ylabel("false non-match rate (FNMR)")
    axes.grid(True, color="0.9")
    axes.legend(loc="upper right", fontsize="small")
    if title:
        axes.set_title(title)
    path = Path(path)
    figure.savefig(path, dpi=150)
    log.info("wrote DET plot %s", path)
    return path


def score_histograms(scores: dict, path, thresholds: dict | None = None, bins: int = 50,
                     title: str | None = None) -> Path:
    """Genuine and impostor score histograms, one panel per entry, saved to ``path``.

    ``scores`` maps a panel name (e.g. "face", "voice", "fused") to ``(genuine, impostor)``
    score arrays; ``thresholds`` optionally maps a panel name to a threshold drawn as a vertical
    line. Each class is normalised to unit area, so a class with few trials stays visible next to
    a large one; the legend gives the trial counts.
    """
    if not scores:
        raise ValueError("no score sets to plot")
    figure = _new_figure(5.0 * len(scores), 3.6)
    panels = figure.subplots(1, len(scores), squeeze=False)[0]
    for axes, (name, (genuine, impostor)) in zip(panels, scores.items()):
        genuine = np.asarray(genuine, dtype=np.float64).ravel()
        impostor = np.asarray(impostor, dtype=np.float64).ravel()
        edges = np.histogram_bin_edges(np.concatenate([genuine, impostor]), bins=bins)
        axes.hist(impostor, bins=edges, density=True, alpha=0.55, color="tab:red",
                  label=f"impostor (n={impostor.size})")
        axes.hist(genuine, bins=edges, density=True, alpha=0.55, color="tab:blue",
                  label=f"genuine (n={genuine.size})")
        if thresholds and name in thresholds:
            axes.axvline(thresholds[name], color="black", linestyle="--", linewidth=1,
                         label=f"threshold {thresholds[name]:.4g}")
        axes.set_title(name)
        axes.set_xlabel("score")
        axes.set_ylabel("density")
        axes.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    path = Path(path)
    figure.savefig(path, dpi=150)
    log.info("wrote score histograms %s", path)
    return path
