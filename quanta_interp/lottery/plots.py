"""Figures for the lottery-ticket analysis, drawn from JSON-able numbers only (no model code here)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..report import new_figure, save_figure
from .analysis import SHARMA_KAPLAN_EXPONENT, PerActivation, ScalingFit, ScalingRow

if TYPE_CHECKING:
    from .results import PeakSolution
    from .tickets import NeuronCurves

__all__ = ["plot_scaling", "plot_peaks", "plot_tickets", "plot_neurons"]


def plot_scaling(table: PerActivation[ScalingRow], fits: PerActivation[ScalingFit], stem: str | os.PathLike) -> list:
    """Median test MSE vs width per activation (band: 25–75 % of seeds), fitted lines and the 4/d line.

    Reference lines: Sharma & Kaplan's N^-4 (4/d, d = 1) and Liu & Tegmark's (2023) N^-1, both
    anchored at the first activation's smallest width ≥ 2.

    Parameters
    ----------
    table : PerActivation of ScalingRow
        `scaling_table` output; needs the `q25` and `q75` quantiles.
    fits : PerActivation of ScalingFit
        `fit_scaling` output.
    stem : path
        Output path without suffix.

    Returns
    -------
    list of Path
        The written `stem.png` and `stem.svg`.
    """
    fig, axes = new_figure(1, 1, size=(6.0, 4.4))
    ax = axes[0, 0]
    for act, row in table.rows.items():
        w, m = np.asarray(row.widths, float), np.asarray(row.median, float)
        fit = fits.rows.get(act)
        label = act if fit is None or fit.exponent is None else (
            f"{act}: α = {fit.exponent:.2f} [{fit.exponent_ci[0]:.2f}, {fit.exponent_ci[1]:.2f}]")
        line, = ax.loglog(w, m, "o-", ms=3, label=label)
        ax.fill_between(w, row.quantiles["q25"], row.quantiles["q75"], color=line.get_color(), alpha=0.15, lw=0)
        if fit is not None and fit.fit is not None:
            xs = np.geomspace(*fit.fit.x_range, 50)
            ax.loglog(xs, fit.fit.prefactor * xs ** (-fit.fit.exponent), ":", color=line.get_color(), lw=1)
    row = next(iter(table.rows.values()))  # reference lines start at the first activation's smallest width ≥ 2
    w, m = np.asarray(row.widths, float), np.asarray(row.median, float)
    if (w >= 2).any():
        w0, m0 = w[w >= 2][0], m[w >= 2][0]
        xs = np.geomspace(w0, max(max(r.widths) for r in table.rows.values()), 50)
        ax.loglog(xs, m0 * (xs / w0) ** -SHARMA_KAPLAN_EXPONENT, "k--", lw=1, label="Sharma–Kaplan N⁻⁴")
        ax.loglog(xs, m0 * (xs / w0) ** -1.0, color="grey", ls="-.", lw=1, label="N⁻¹ (Liu & Tegmark)")
    ax.set(xlabel="width N", ylabel="test MSE (median over seeds)", title="y = x²: loss vs width")
    ax.set_ylim(bottom=max(ax.get_ylim()[0], 1e-16))
    ax.legend(fontsize=7)
    return save_figure(fig, stem)


def plot_peaks(losses: Sequence[float], peaks: Sequence[Mapping], solutions: Sequence[PeakSolution],
               stem: str | os.PathLike, width: int = 2) -> list:
    """Histogram of log10 final losses with the found peaks, and each peak's representative solution.

    Parameters
    ----------
    losses : sequence of float (S,)
        Final train MSE of each seed (all > 0).
    peaks, solutions : sequences of mappings and of PeakSolution
        `peaks` and `solutions` of `peak_report`, one solution per peak.
    width : int
        Network width, for the title.

    Returns
    -------
    list of Path
        The written `stem.png` and `stem.svg`.
    """
    fig, axes = new_figure(2, 1, size=(5.0, 3.8))
    lg = np.log10(np.asarray(losses, dtype=float))
    axes[0, 0].hist(lg, bins=60, color="#0072B2")
    for p in peaks:
        axes[0, 0].axvline(p["log10_loss"], color="#D55E00", ls="--", lw=1)
    axes[0, 0].set(xlabel="log10 final train MSE", ylabel="seeds", title=f"N = {width}: {len(peaks)} peaks")
    for p, sol in zip(peaks, solutions, strict=True):
        err = np.asarray(sol.prediction, float) - np.asarray(sol.target, float)
        axes[0, 1].plot(sol.x, err, label=f"peak {p['loss']:.1e} ({p['count']} seeds)")
    axes[0, 1].set_yscale("symlog", linthresh=1e-5)
    axes[0, 1].set(xlabel="x", ylabel="f(x) − target(x)", title="representative network per peak: error")
    axes[0, 1].legend(fontsize=7)
    return save_figure(fig, stem)


def plot_tickets(report: Mapping, stem: str | os.PathLike) -> list:
    """Ticket Taylor coefficients (x², x⁴), the ticket error correlation matrix and the variance-vs-k test.

    The last panel is the CLT test of Liu & Tegmark (2023): error variance of k averaged tickets against
    the 1/k of independent errors.

    Parameters
    ----------
    report : mapping
        `TicketReport.to_dict(curves=True)` (plain `to_dict()` draws no correlation matrix).

    Returns
    -------
    list of Path
        The written `stem.png` and `stem.svg`.
    """
    fig, axes = new_figure(3, 1, size=(4.2, 3.6))
    tay = np.asarray(report["taylor_x0_x2_x4"], dtype=float).reshape(-1, 3)
    axes[0, 0].scatter(tay[:, 1], tay[:, 2], s=10) if tay.size else None
    axes[0, 0].set(xlabel="x² coefficient  vσ''(b)w²", ylabel="x⁴ coefficient  vσ''''(b)w⁴/12",
                   title=f"{report['n_pairs']} tickets of N = {report['width']}")
    corr = np.asarray(report.get("error_corr", []), dtype=float)
    if corr.size:
        im = axes[0, 1].imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
        fig.colorbar(im, ax=axes[0, 1], shrink=0.8)
    axes[0, 1].set(title=f"ticket error corr. (mean {report['mean_error_corr'] or 0:.2f}, "
                         f"|·| {report['mean_abs_error_corr'] or 0:.2f})", xlabel="ticket", ylabel="ticket")
    axes[0, 1].grid(False)
    k, var = np.asarray(report["variance_k"], float), np.asarray(report["variance"], float)
    if k.size:
        axes[0, 2].loglog(k, var, "o-", ms=3, label="measured")
        axes[0, 2].loglog(k, var[0] / k, "k--", lw=1, label="1/k (independent)")
        axes[0, 2].legend(fontsize=7)
    exp = report.get("variance_exponent")
    axes[0, 2].set(xlabel="tickets averaged k", ylabel="error variance",
                   title="CLT test" + (f": slope {exp:.2f}" if exp is not None else ""))
    return save_figure(fig, stem)


def plot_neurons(curves: NeuronCurves, stem: str | os.PathLike, max_neurons: int = 36) -> list:
    """Grid of per-neuron activation σ(wx+b) and contribution vσ(wx+b) over the input interval.

    Parameters
    ----------
    curves : NeuronCurves
        `neuron_curves` output.
    max_neurons : int
        Panels drawn at most (the first neurons).

    Returns
    -------
    list of Path
        The written `stem.png` and `stem.svg`.
    """
    x = np.asarray(curves.x, float)
    act, contrib = np.asarray(curves.activation, float), np.asarray(curves.contribution, float)
    n = min(act.shape[0], max_neurons)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = new_figure(cols, rows, size=(1.8, 1.5))
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.axis("off")
            continue
        ax.plot(x, act[i], lw=1, color="#0072B2")
        ax.plot(x, contrib[i], lw=1, color="#D55E00")
        ax.set_title(f"#{i} w={curves.w[i]:.2f} b={curves.b[i]:.2f} v={curves.v[i]:.2f}", fontsize=5)
        ax.tick_params(labelsize=4)
    fig.suptitle("blue: σ(wx+b), orange: vσ(wx+b)", fontsize=7)
    return save_figure(fig, stem)
