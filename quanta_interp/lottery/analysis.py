"""Numbers from finished width sweeps (numpy only; never loads a model): scaling fits and loss peaks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ..fitting import fit_power_law, fit_range_sensitivity

__all__ = ["scaling_table", "fit_scaling", "loss_peaks", "SHARMA_KAPLAN_EXPONENT"]

SHARMA_KAPLAN_EXPONENT = 4.0  # 4/d with input dimension d = 1


def scaling_table(results: Iterable[Mapping], quantiles: tuple[float, ...] = (0.1, 0.25, 0.75, 0.9)) -> dict:
    """Per activation: widths (sorted), median and quantiles of per-seed test MSE, from sweep results.

    Parameters
    ----------
    results : iterable of mappings
        Run results as written by `train_run`: keys `activation`, `width` and `test_mse`
        (float ndarray (S,), MSE of each seed on the test grid).
    quantiles : tuple of float
        Quantiles in [0, 1] of the per-seed losses to tabulate; `plot_scaling` needs 0.25 and 0.75.

    Returns
    -------
    dict
        Activation → {`widths`, `median`, `n_seeds`, `qXX` per quantile (e.g. `q25`)}, each a list with
        one entry per width, in increasing width.
    """
    table: dict[str, dict] = {}
    for r in results:
        losses = np.asarray(r["test_mse"], dtype=float)
        row = table.setdefault(r["activation"], {"widths": [], "median": [], "n_seeds": [],
                                                  **{f"q{int(q * 100):02d}": [] for q in quantiles}})
        row["widths"].append(int(r["width"]))
        row["median"].append(float(np.median(losses)))
        row["n_seeds"].append(int(losses.size))
        for q in quantiles:
            row[f"q{int(q * 100):02d}"].append(float(np.quantile(losses, q)))
    for row in table.values():
        order = np.argsort(row["widths"])
        for k, vals in row.items():
            row[k] = [vals[i] for i in order]
    return table


def fit_scaling(table: Mapping[str, Mapping], *, min_width: int = 2, n_boot: int = 1000, seed: int = 0) -> dict:
    """Power-law fit of median MSE vs width per activation (widths ≥ `min_width`; N = 1 is one neuron
    and cannot bend), with its bootstrap CI, range sensitivity and local slopes between widths.

    The exponent is α in MSE ∝ N^-α, to compare with Sharma & Kaplan's 4/d = 4 and the N^-1 that
    Liu & Tegmark (2023) measure with SiLU.

    Parameters
    ----------
    table : mapping
        The output of `scaling_table`.
    min_width : int
        Smallest width in the fit; widths with a zero median are left out too.
    n_boot : int
        Bootstrap resamples for the 95 % CI of the exponent.

    Returns
    -------
    dict
        Activation → {`widths`, `median`, `exponent`, `exponent_ci` ([lo, hi]), `fit` (a
        `PowerLawFit.to_dict()`), `range_sensitivity`, `local_slopes` (per adjacent pair of widths:
        `widths`, `exponent`)}. `exponent`, `exponent_ci` are None and `fit`, `range_sensitivity`
        absent with fewer than 3 distinct usable widths.
    """
    out = {}
    for act, row in table.items():
        w = np.asarray(row["widths"], dtype=float)
        m = np.asarray(row["median"], dtype=float)
        keep = (w >= min_width) & (m > 0)
        entry: dict = {"widths": row["widths"], "median": row["median"], "exponent": None, "exponent_ci": None}
        if np.unique(w[keep]).size >= 3:
            fit = fit_power_law(w[keep], m[keep], n_boot=n_boot, seed=seed)
            entry.update(exponent=fit.exponent, exponent_ci=list(fit.exponent_ci), fit=fit.to_dict(),
                         range_sensitivity=fit_range_sensitivity(w[keep], m[keep], max_drop=2, seed=seed))
        entry["local_slopes"] = [
            {"widths": [float(a), float(b)], "exponent": float(-np.log(mb / ma) / np.log(b / a))}
            for a, b, ma, mb in zip(w[:-1], w[1:], m[:-1], m[1:], strict=True) if ma > 0 and mb > 0
        ]
        out[act] = entry
    return out


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
