"""Quanta frequencies: cluster sizes by rank, the envelope over many cluster counts, power-law fits.

The quantization model predicts quanta frequencies p_k ∝ k^−(α+1), so the rank-frequency slope of
the clusters should match −(α_N + 1) with α_N the parameter-scaling exponent of the same model
family (the paper: −1.237 measured vs −1.083 predicted on Pythia; −0.92…−1.24 across fit ranges).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..fitting import fit_power_law, fit_range_sensitivity
from ..io import atomic_write_json, atomic_write_text, read_json

__all__ = ["rank_sizes", "envelope", "rank_frequency_fit", "alpha_n_from_artifacts", "write_rank_frequency",
           "plot_rank_frequency", "plot_umap"]

PAPER = {"slope": -1.237, "predicted_slope": -1.083, "alpha_N": 0.083, "range_sensitivity": [-0.92, -1.24],
         "model": "Pythia 19m-2.7b, 10k tokens, 400 clusters"}


def rank_sizes(labels: np.ndarray) -> np.ndarray:
    """Cluster sizes sorted from largest to smallest (index 0 = rank 1)."""
    return np.sort(np.bincount(np.asarray(labels)))[::-1]


def envelope(size_lists: Sequence[np.ndarray]) -> np.ndarray:
    """For each rank, the largest cluster size at that rank over many clusterings (the paper's envelope)."""
    out = np.zeros(max(len(s) for s in size_lists), dtype=np.int64)
    for s in size_lists:
        out[: len(s)] = np.maximum(out[: len(s)], s)
    return out


def _sensitivity_ranges(n: int) -> list[tuple[int, int]]:
    los = [lo for lo in (1, 2, 3, 5, 10) if lo < n]
    his = sorted({max(int(round(n * f)), 1) for f in (0.25, 0.5, 0.75, 1.0)})
    return [(lo, hi) for lo in los for hi in his if hi - lo + 1 >= 4]


def rank_frequency_fit(sizes: np.ndarray, *, total: int | None = None, min_size: int = 2, alpha_n: float | None = None,
                       seed: int = 0) -> dict:
    """Log-log fit of frequency (size / `total` tokens) vs rank over clusters with ≥ `min_size` members:
    slope with CI, a fit-range sensitivity table, and the prediction −(α_N + 1) when `alpha_n` is given."""
    sizes = np.asarray(sizes, dtype=float)
    keep = sizes >= min_size
    rank = np.arange(1, sizes.size + 1, dtype=float)[keep]
    freq = sizes[keep] / (total or sizes.sum())
    result: dict = {"n_ranks_fitted": int(keep.sum()), "min_size": min_size, "alpha_N": alpha_n,
                    "predicted_slope": None if alpha_n is None else -(alpha_n + 1.0), "paper": PAPER}
    if np.unique(rank).size < 3:
        result.update(slope=None, note=f"fewer than 3 clusters with ≥ {min_size} members: no fit")
        return result
    fit = fit_power_law(rank, freq, seed=seed)
    rows = fit_range_sensitivity(rank, freq, ranges=_sensitivity_ranges(int(rank.max())), seed=seed, n_boot=200)
    slopes = [-r["exponent"] for r in rows]
    result.update(slope=-fit.exponent, slope_ci=[-fit.exponent_ci[1], -fit.exponent_ci[0]], r2=fit.r2,
                  fit=fit.to_dict(), range_sensitivity=[{**r, "slope": -r["exponent"]} for r in rows],
                  slope_range=[min(slopes), max(slopes)] if slopes else None)
    return result


def alpha_n_from_artifacts(root: str | Path = "artifacts/lm_scaling") -> float | None:
    """α_N from `artifacts/lm_scaling/summary.json` (written by `analyses/lm_scaling.py`), or None when
    that file is absent."""
    path = Path(root) / "summary.json"
    return float(read_json(path)["alpha_N"]) if path.exists() else None


def write_rank_frequency(out: str | Path, sizes_by_k: dict[int, np.ndarray], fit: dict) -> None:
    """`rank_frequency.csv` (rank, size per k, envelope) and `rank_frequency.json` (sizes and the fit)."""
    out = Path(out)
    env = envelope(list(sizes_by_k.values()))
    ks = sorted(sizes_by_k)
    lines = ["rank," + ",".join(f"k{k}" for k in ks) + ",envelope"]
    for r in range(env.size):
        cells = [str(int(sizes_by_k[k][r])) if r < len(sizes_by_k[k]) else "" for k in ks]
        lines.append(f"{r + 1}," + ",".join(cells) + f",{int(env[r])}")
    atomic_write_text(out / "rank_frequency.csv", "\n".join(lines) + "\n")
    atomic_write_json(out / "rank_frequency.json", {"sizes_by_k": {str(k): sizes_by_k[k] for k in ks},
                                                     "envelope": env, "fit": fit})


def plot_rank_frequency(stem: str | Path, sizes_by_k: dict[int, np.ndarray], fit: dict, *, title: str = "") -> None:
    """Frequency vs rank (log-log): every k faint, the envelope bold, the fitted and predicted slopes."""
    from ..report import new_figure, save_figure

    fig, ax = new_figure()
    ax = ax[0, 0]
    n = sum(int(s.sum()) for s in sizes_by_k.values()) / len(sizes_by_k)
    for s in sizes_by_k.values():
        ax.loglog(np.arange(1, s.size + 1), s / n, color="0.75", lw=0.8)
    env = envelope(list(sizes_by_k.values()))
    ranks = np.arange(1, env.size + 1)
    ax.loglog(ranks[env > 0], env[env > 0] / n, "o-", ms=3, label="envelope over k")
    if fit.get("slope") is not None:
        f = fit["fit"]
        r = np.geomspace(*f["x_range"], 20)
        ax.loglog(r, f["prefactor"] * r ** (-f["exponent"]), "--",
                  label=f"fit slope {fit['slope']:.2f} [{fit['slope_ci'][0]:.2f}, {fit['slope_ci'][1]:.2f}]")
        if fit.get("predicted_slope") is not None:
            ax.loglog(r, f["prefactor"] * r ** fit["predicted_slope"], ":",
                      label=f"predicted −(α_N+1) = {fit['predicted_slope']:.2f}")
    ax.set(xlabel="cluster rank", ylabel="frequency (fraction of tokens)", title=title or "quanta rank-frequency")
    ax.legend(fontsize=8)
    save_figure(fig, stem)


def plot_umap(stem: str | Path, xy: np.ndarray, labels: np.ndarray, *, top: int = 8, title: str = "") -> None:
    """The 2-D UMAP of gradients, the `top` largest clusters coloured, the rest grey."""
    from ..report import new_figure, save_figure

    fig, ax = new_figure(size=(5.0, 4.4))
    ax = ax[0, 0]
    order = np.argsort(-np.bincount(labels))[:top]
    rest = ~np.isin(labels, order)
    ax.scatter(xy[rest, 0], xy[rest, 1], s=4, c="0.8", lw=0)
    for rank, c in enumerate(order):
        sel = labels == c
        ax.scatter(xy[sel, 0], xy[sel, 1], s=6, lw=0, label=f"#{rank + 1} ({sel.sum()})")
    ax.set(title=title or "UMAP of per-token gradients", xticks=[], yticks=[])
    ax.legend(fontsize=7, markerscale=2, loc="best")
    save_figure(fig, stem, formats=("png",))

