"""Quanta across scale: a learning curve for every quantum and the quantization model's predictions, tested.

Given QDG's quanta (tokens grouped by gradient) and the loss of every clustered token under every member
of an ordered model family (`family.family_stage`), this module measures, without any model:

- per quantum, the mean and interquartile range of its tokens' loss against scale x (non-embedding
  parameters N, or training step), the scale N* at which it is learned (`learning_scale`) with a
  bootstrap CI over its tokens, and the share of monogenic / polygenic tokens (`lm.scaling.TokenClasses`);
- the predictions of the quantization model (Michaud et al. 2023, §2–3): quanta are learned in order of
  decreasing frequency (Spearman ρ between frequency rank and N* > 0); the number of quanta learned grows
  as n(N) ∝ N^b, so that with frequencies p_k ∝ k^−(α+1) the loss scales as N^−α·b (α_N = α when every
  quantum costs the same capacity, b = 1); a monogenic quantum's loss drops as sharply as its tokens'.

The measurements live in `order` (N*, sharpness, Spearman ρ), the typed result and `quanta_scaling` in
`curves`, the selected and held-out estimators in `estimators`; this module gathers them and draws the figure.
"""

from __future__ import annotations

import numpy as np

from .curves import (
    PAPER_CLAIM,
    ClassCounts,
    LearnedGrowth,
    LearningOrder,
    QuantaScaling,
    QuantumCurve,
    SharpnessRatio,
    quanta_scaling,
)
from .estimators import (
    EstimatorComparison,
    PlantedFamily,
    compare_estimators,
    heldout_quanta_scaling,
    nearest_quanta,
    planted_family,
    quantum_centroids,
    selected_quanta_scaling,
)
from .order import CRITERION, Spearman, drop_sharpness, learning_scale, spearman_ci

__all__ = ["learning_scale", "drop_sharpness", "spearman_ci", "Spearman", "quanta_scaling", "QuantaScaling",
           "QuantumCurve", "LearningOrder", "LearnedGrowth", "SharpnessRatio", "ClassCounts", "nearest_quanta",
           "quantum_centroids", "heldout_quanta_scaling", "selected_quanta_scaling", "planted_family", "PlantedFamily",
           "compare_estimators", "EstimatorComparison",
           "plot_quanta_scaling",
           "CRITERION", "PAPER_CLAIM"]


def plot_quanta_scaling(stem, result: QuantaScaling, *, title: str = "") -> None:
    """Three panels: the largest quanta's mean loss vs scale, N* vs frequency rank (with CIs and ρ), and the
    number of quanta learned vs scale with its power-law fit. Writes `stem`.png and .svg."""
    from ..report import new_figure, save_figure

    x, axis = np.asarray(result.x), result.axis
    label = "non-embedding parameters N" if axis == "N" else "training step"
    fig, ax = new_figure(3, size=(4.4, 4.0))
    a = ax[0, 0]
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    shown = result.clusters[:12]
    for i, c in enumerate(shown):
        a.semilogx(x, c.mean, "o-", ms=2.5, lw=1, color=cmap(i / max(1, len(shown) - 1)), label=f"#{c.rank}")
    a.set(xlabel=label, ylabel="mean loss of the quantum's tokens (nats)", title="the largest quanta")
    a.legend(fontsize=6, ncol=2)
    a = ax[0, 1]
    ranks = np.array([c.rank for c in result.clusters])
    stars = np.array([c.n_star for c in result.clusters])
    ci = np.array([c.n_star_ci for c in result.clusters])
    top = x[-1] * 1.6
    shown_star = np.where(np.isinf(stars), top, stars)
    lo = np.where(np.isinf(ci[:, 0]), top, ci[:, 0])
    hi = np.where(np.isinf(ci[:, 1]), top, ci[:, 1])
    a.errorbar(ranks, shown_star, yerr=[np.maximum(shown_star - lo, 0), np.maximum(hi - shown_star, 0)], fmt="o",
               ms=3, lw=0.6, capsize=0)
    a.set_xscale("log")
    a.set_yscale("log")
    for xm in x:
        a.axhline(xm, color="0.85", lw=0.5, zorder=0)
    s = result.spearman_rank_n_star
    rho = "n/a" if s.rho is None else f"{s.rho:.2f} [{s.ci[0]:.2f}, {s.ci[1]:.2f}]"
    a.set(xlabel="quantum frequency rank", ylabel=f"N* ({label})", title=f"Spearman ρ(rank, N*) = {rho}")
    a = ax[0, 2]
    n = result.n_learned
    counts = np.asarray(n.counts, float)
    a.loglog(x[counts > 0], counts[counts > 0], "o-", ms=3, label="quanta learned")
    if n.b is not None:
        keep = counts > 0
        pre = np.exp(np.mean(np.log(counts[keep]) - n.b * np.log(x[keep])))
        a.loglog(x, pre * x ** n.b, "--", color="C3", label=f"∝ {axis}^{n.b:.2f}")
    a.set(xlabel=label, ylabel="quanta with N* ≤ scale", title="quanta learned vs scale")
    a.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, stem)
