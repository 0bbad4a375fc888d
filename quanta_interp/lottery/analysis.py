"""Numbers from finished width sweeps (numpy only; never loads a model): scaling fits and loss peaks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np

from ..fitting import PowerLawFit, fit_power_law, fit_range_sensitivity

if TYPE_CHECKING:
    from .results import RunResult

__all__ = ["PerActivation", "ScalingRow", "LocalSlope", "ScalingFit", "scaling_table", "fit_scaling", "loss_peaks",
           "SHARMA_KAPLAN_EXPONENT"]

SHARMA_KAPLAN_EXPONENT = 4.0  # 4/d with input dimension d = 1

Row = TypeVar("Row")


@dataclass(frozen=True)
class PerActivation(Generic[Row]):
    """One result per activation (or per sweep label), in the order the sweep results first name them.

    Attributes
    ----------
    rows : dict of str to ScalingRow or ScalingFit
        Activation → its row; a mapping because the activations are the sweep's, not fixed names.
    """

    rows: dict[str, Row]

    def to_dict(self) -> dict:
        """{activation: row.to_dict()}, as scaling.json holds it."""
        return {act: row.to_dict() for act, row in self.rows.items()}


@dataclass(frozen=True)
class ScalingRow:
    """One activation of `scaling_table`: statistics of the per-seed test MSE, one entry per width.

    Attributes
    ----------
    widths : list of int
        Widths N, increasing.
    median : list of float
        Median over seeds of the test MSE (units of the target squared).
    n_seeds : list of int
        Seeds per width.
    quantiles : dict of str to list of float
        "qXX" (e.g. "q25", the 25 % quantile over seeds) → one MSE per width, in the order asked.
    """

    widths: list[int]
    median: list[float]
    n_seeds: list[int]
    quantiles: dict[str, list[float]]

    def to_dict(self) -> dict:
        """`widths`, `median`, `n_seeds`, then each quantile under its "qXX" key."""
        return {"widths": self.widths, "median": self.median, "n_seeds": self.n_seeds, **self.quantiles}


@dataclass(frozen=True)
class LocalSlope:
    """The exponent α between two adjacent widths: −log(MSE_b / MSE_a) / log(b / a).

    Attributes
    ----------
    widths : (float, float)
        The two widths a < b.
    exponent : float
        α in MSE ∝ N^-α over that step.
    """

    widths: tuple[float, float]
    exponent: float

    def to_dict(self) -> dict:
        return {"widths": list(self.widths), "exponent": self.exponent}


@dataclass(frozen=True)
class ScalingFit:
    """One activation of `fit_scaling`: α in MSE ∝ N^-α, to compare with Sharma & Kaplan's 4/d = 4 and the N^-1
    that Liu & Tegmark (2023) measure with SiLU.

    Attributes
    ----------
    widths, median : list
        As in the `ScalingRow` (every width, also those left out of the fit).
    exponent : float or None
        α of the power-law fit; None with fewer than 3 distinct usable widths.
    exponent_ci : (float, float) or None
        Its 95 % bootstrap CI; None without a fit.
    fit : PowerLawFit or None
        The fit itself; None without one.
    range_sensitivity : list of dict or None
        `fit_range_sensitivity` rows (α with up to 2 end points dropped); None without a fit.
    local_slopes : list of LocalSlope
        One per pair of adjacent widths whose medians are both > 0.
    """

    widths: list[int]
    median: list[float]
    exponent: float | None
    exponent_ci: tuple[float, float] | None
    fit: PowerLawFit | None
    range_sensitivity: list[dict] | None
    local_slopes: list[LocalSlope]

    def to_dict(self) -> dict:
        """`widths`, `median`, `exponent`, `exponent_ci`, then `fit` and `range_sensitivity` (only with a fit),
        then `local_slopes`."""
        d = {"widths": self.widths, "median": self.median, "exponent": self.exponent,
             "exponent_ci": None if self.exponent_ci is None else list(self.exponent_ci)}
        if self.fit is not None:
            d.update(fit=self.fit.to_dict(), range_sensitivity=self.range_sensitivity)
        d["local_slopes"] = [s.to_dict() for s in self.local_slopes]
        return d


def scaling_table(results: Iterable[RunResult],
                  quantiles: tuple[float, ...] = (0.1, 0.25, 0.75, 0.9)) -> PerActivation[ScalingRow]:
    """Per activation: widths (sorted), median and quantiles of per-seed test MSE, from sweep results.

    Parameters
    ----------
    results : iterable of RunResult
        `train_run` results (`run_sweep`'s); their `activation`, `width` and `test_mse` are read.
    quantiles : tuple of float
        Quantiles in [0, 1] of the per-seed losses to tabulate; `plot_scaling` needs 0.25 and 0.75.

    Returns
    -------
    PerActivation of ScalingRow
        Activations in the order the results first name them.
    """
    table: dict[str, dict] = {}
    for r in results:
        losses = np.asarray(r.test_mse, dtype=float)
        row = table.setdefault(r.activation, {"widths": [], "median": [], "n_seeds": [],
                                              **{f"q{int(q * 100):02d}": [] for q in quantiles}})
        row["widths"].append(int(r.width))
        row["median"].append(float(np.median(losses)))
        row["n_seeds"].append(int(losses.size))
        for q in quantiles:
            row[f"q{int(q * 100):02d}"].append(float(np.quantile(losses, q)))
    rows = {}
    for act, row in table.items():
        order = np.argsort(row["widths"])
        cols = {k: [vals[i] for i in order] for k, vals in row.items()}
        rows[act] = ScalingRow(cols.pop("widths"), cols.pop("median"), cols.pop("n_seeds"), cols)
    return PerActivation(rows)


def fit_scaling(table: PerActivation[ScalingRow], *, min_width: int = 2, n_boot: int = 1000,
                seed: int = 0) -> PerActivation[ScalingFit]:
    """Power-law fit of median MSE vs width per activation (widths ≥ `min_width`; N = 1 is one neuron
    and cannot bend), with its bootstrap CI, range sensitivity and local slopes between widths.

    The exponent is α in MSE ∝ N^-α, to compare with Sharma & Kaplan's 4/d = 4 and the N^-1 that
    Liu & Tegmark (2023) measure with SiLU.

    Parameters
    ----------
    table : PerActivation of ScalingRow
        The output of `scaling_table`.
    min_width : int
        Smallest width in the fit; widths with a zero median are left out too.
    n_boot : int
        Bootstrap resamples for the 95 % CI of the exponent.

    Returns
    -------
    PerActivation of ScalingFit
        In the table's order; without a fit (fewer than 3 distinct usable widths) `exponent`, `exponent_ci`,
        `fit` and `range_sensitivity` are None.
    """
    out = {}
    for act, row in table.rows.items():
        w = np.asarray(row.widths, dtype=float)
        m = np.asarray(row.median, dtype=float)
        keep = (w >= min_width) & (m > 0)
        fit = fit_power_law(w[keep], m[keep], n_boot=n_boot, seed=seed) if np.unique(w[keep]).size >= 3 else None
        slopes = [LocalSlope((float(a), float(b)), float(-np.log(mb / ma) / np.log(b / a)))
                  for a, b, ma, mb in zip(w[:-1], w[1:], m[:-1], m[1:], strict=True) if ma > 0 and mb > 0]
        out[act] = ScalingFit(
            widths=row.widths, median=row.median, exponent=fit.exponent if fit else None,
            exponent_ci=fit.exponent_ci if fit else None, fit=fit,
            range_sensitivity=fit_range_sensitivity(w[keep], m[keep], max_drop=2, seed=seed) if fit else None,
            local_slopes=slopes)
    return PerActivation(out)


def loss_peaks(losses: np.ndarray, *, prominence: float = 0.05, grid: int = 512, bandwidth: float = 0.1) -> list[dict]:
    """Discrete peaks of the histogram of log10 final losses over seeds.

    A Gaussian KDE (bandwidth in decades) of log10 loss; peaks are local maxima with prominence above
    `prominence` × the highest density; each seed joins the peak of its basin (split at the minima
    between peaks). Per peak: loss at the peak, seeds in it, and the representative (closest) seed.
    At N = 2, Liu & Tegmark (2023) find distinct peaks (distinct algorithms), the lowest being the
    symmetric-pair solution.

    Parameters
    ----------
    losses : float ndarray (S,)
        Final MSE of each seed.
    prominence : float
        Minimum peak prominence, as a fraction of the highest density.
    grid : int
        Points of the log10-loss grid the KDE is evaluated on.
    bandwidth : float
        KDE bandwidth, in decades of loss.

    Returns
    -------
    list of dict
        One per peak, in increasing loss: `loss` (MSE at the peak), `log10_loss`, `count`, `fraction`
        (of seeds), `seeds` (indices into `losses`), `representative` (the seed closest to the peak).
        All losses equal: one peak holding every seed.

    Raises
    ------
    ValueError
        `losses` is not 1-D, has fewer than 2 values, or holds a non-finite or non-positive value.
    """
    from scipy.signal import find_peaks
    from scipy.stats import gaussian_kde

    losses = np.asarray(losses, dtype=float)
    if losses.ndim != 1 or losses.size < 2 or not np.all(np.isfinite(losses)) or np.any(losses <= 0):
        raise ValueError("losses must be a 1-D array of at least 2 finite positive values")
    lg = np.log10(losses)
    if np.ptp(lg) < 1e-12:
        return [{"loss": float(losses[0]), "log10_loss": float(lg[0]), "count": int(losses.size),
                 "fraction": 1.0, "seeds": list(range(losses.size)), "representative": 0}]
    xs = np.linspace(lg.min() - 3 * bandwidth, lg.max() + 3 * bandwidth, grid)
    dens = gaussian_kde(lg, bw_method=bandwidth / lg.std(ddof=1))(xs)
    idx, _ = find_peaks(np.r_[0.0, dens, 0.0], prominence=prominence * dens.max())
    idx = idx - 1
    cuts = [xs[a + int(np.argmin(dens[a:b]))] for a, b in zip(idx[:-1], idx[1:], strict=True)]
    basin = np.searchsorted(cuts, lg)
    peaks = []
    for k, i in enumerate(idx):
        members = np.flatnonzero(basin == k)
        if members.size == 0:
            continue
        rep = int(members[np.argmin(np.abs(lg[members] - xs[i]))])
        peaks.append({"loss": float(10 ** xs[i]), "log10_loss": float(xs[i]), "count": int(members.size),
                      "fraction": float(members.size / losses.size), "seeds": members.tolist(),
                      "representative": rep})
    return peaks
