"""Figures for multitask sparse parity, drawn from result dicts only (no models)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.ticker import NullFormatter

from ..report import new_figure, save_figure

__all__ = ["plot_scaling", "plot_heatmap", "plot_learning_order"]


def plot_scaling(fits: dict[str, dict], stem: str | os.PathLike, *, xlabel: str, title: str = "") -> None:
    """Loss vs x with the fitted power law, one line per label, and learned-subtask counts beside it.

    Parameters
    ----------
    fits : dict label → dict
        `ExponentFit.to_dict()` (fit.json's entries): "x", "loss" (bits), "fit" (a `PowerLawFit.to_dict()`, drawn
        over its x_range without offset), "n_learned" (None for an S sweep: no right-panel line) and, optionally,
        "late_slope" with "max_late_slope" (as `fit_exponent` sets them): points still falling faster than
        that are drawn hollow (not fitted).
    stem : str or PathLike
        Output path without extension; `stem.png` and `stem.svg` are written.
    xlabel : str
        The x axis: parameters, training samples D or steps.
    """
    fig, axes = new_figure(2, 1)
    for label, f in fits.items():
        x, y = np.array(f["x"]), np.array(f["loss"])
        limit = f.get("max_late_slope")
        late = np.array(f["late_slope"], dtype=float) if limit is not None and f.get("late_slope") else None
        open_ = late > limit if late is not None else np.zeros(x.size, dtype=bool)
        line, = axes[0, 0].loglog(x[~open_], y[~open_], "o", label=f"{label}: α={f['fit']['exponent']:.2f}")
        if open_.any():
            axes[0, 0].loglog(x[open_], y[open_], "o", mfc="none", color=line.get_color(),
                              label=f"{label}: not converged in steps")
        lo, hi = f["fit"]["x_range"]
        xx = np.geomspace(lo, hi, 50)
        axes[0, 0].loglog(xx, f["fit"]["prefactor"] * xx ** -f["fit"]["exponent"], "-", color=line.get_color())
        if f.get("n_learned") is not None:
            axes[0, 1].semilogx(x, f["n_learned"], "o-", color=line.get_color(), label=label)
    axes[0, 0].set(xlabel=xlabel, ylabel="test loss (bits)", title=title)
    for ax in axes[0]:
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0, 1].set(xlabel=xlabel, ylabel="subtasks learned (< 0.1 bits)")
    axes[0, 0].legend(fontsize=8)
    if axes[0, 1].lines:
        axes[0, 1].legend(fontsize=8)
    save_figure(fig, stem)


def plot_heatmap(matrix: Sequence[Sequence[float]], stem: str | os.PathLike, *, xlabels: Sequence, xlabel: str,
                 ylabel: str = "subtask (by frequency rank)", title: str = "", cbar: str = "loss (bits)",
                 vmax: float | None = 1.0) -> None:
    """A subtask × x heatmap (emergence vs width or steps; ablation increase per neuron).

    Parameters
    ----------
    matrix : nested sequence (n_rows, n_cols) of float
        Row i is subtask i (frequency rank, drawn bottom up), column j is `xlabels[j]`.
    stem : str or PathLike
        Output path without extension; `stem.png` and `stem.svg` are written.
    xlabels : sequence, length n_cols
        Tick labels; at most 8 are shown.
    vmax : float or None
        Top of the colour scale (the bottom is 0); None scales to the data.
    """
    m = np.asarray(matrix, dtype=float)
    fig, axes = new_figure(1, 1, size=(6.0, 4.2))
    ax = axes[0, 0]
    im = ax.imshow(m, aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
    ticks = np.unique(np.linspace(0, m.shape[1] - 1, min(8, m.shape[1])).astype(int))
    ax.set_xticks(ticks, [str(xlabels[i]) for i in ticks], rotation=45)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(False)
    fig.colorbar(im, ax=ax, label=cbar)
    save_figure(fig, stem)


def plot_learning_order(probs: Sequence[float], steps: Sequence[int | None], stem: str | os.PathLike, *,
                        slope: float | None = None, title: str = "") -> None:
    """Steps-to-learn vs subtask frequency (theory: slope −1 on log-log axes).

    Parameters
    ----------
    probs : sequence of float, length n_tasks
        Subtask frequencies p_i.
    steps : sequence of int or None, length n_tasks
        First evaluation step below 0.1 bits (`steps_to_learn`); None and 0 are not drawn.
    stem : str or PathLike
        Output path without extension; `stem.png` and `stem.svg` are written.
    slope : float or None
        The fitted log-log slope (`steps_to_learn_fit(...).loglog_slope`), shown in the title; `title` is only
        shown with it.
    """
    p = np.asarray(probs, dtype=float)
    ok = np.array([s is not None and s > 0 for s in steps])
    fig, axes = new_figure(1, 1)
    ax = axes[0, 0]
    ax.loglog(p[ok], np.array([s for s in steps if s], dtype=float), "o")
    if slope is not None:
        ax.set_title(f"{title} log-log slope {slope:.2f} (theory −1)")
    ax.set(xlabel="subtask frequency p_i", ylabel="steps to reach 0.1 bits")
    save_figure(fig, stem)
