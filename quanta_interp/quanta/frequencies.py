"""Quanta frequencies: cluster sizes by rank, the envelope over many cluster counts, power-law fits.

The quantization model predicts quanta frequencies p_k ∝ k^−(α+1), so the rank-frequency slope of
the clusters should match −(α_N + 1) with α_N the parameter-scaling exponent of the same model
family (the paper: −1.237 measured vs −1.083 predicted on Pythia; −0.92…−1.24 across fit ranges).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ParameterError
from ..fitting import PowerLawFit, fit_power_law, fit_range_sensitivity
from ..io import atomic_write_json, atomic_write_text, read_json

__all__ = ["rank_sizes", "envelope", "RankFrequencyFit", "rank_frequency_fit", "alpha_n_from", "write_rank_frequency",
           "plot_rank_frequency"]

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


def _sensitivity_ranges(lo: int, hi: int) -> list[tuple[int, int]]:
    """Sub-ranges of [lo, hi]: the low end moved up (×1, ×2, ×5 or to 10 when lo = 1) and the high end cut
    to ¼, ½, ¾ or all of it, each keeping ≥ 4 ranks."""
    los = sorted({lo, 2 * lo, 5 * lo} | ({2, 3, 5, 10} if lo == 1 else set()))
    his = sorted({max(int(round(lo + (hi - lo) * f)), lo) for f in (0.25, 0.5, 0.75, 1.0)})
    return [(a, b) for a in los for b in his if b - a + 1 >= 4]


@dataclass(frozen=True)
class RankFrequencyFit:
    """A log-log fit of quanta frequency vs rank (`rank_frequency_fit`), JSON via `to_dict`.

    Attributes
    ----------
    n_ranks_fitted : int
        Ranks inside `fit_ranks` with ≥ `min_size` members.
    min_size : int
        Smallest cluster size fitted.
    fit_ranks : (int, int)
        Ranks fitted, inclusive.
    alpha_N, alpha_N_source : float or None, str or None
        The parameter-scaling exponent behind the prediction and where it comes from.
    predicted_slope : float or None
        −(α_N + 1), None without α_N.
    slope : float or None
        The fitted slope (−exponent of `fit`); None when fewer than 3 ranks qualify (`note` says why).
    slope_ci : (float, float) or None
        Its 95 % rank-bootstrap CI.
    r2 : float or None
        r² of the log-log fit.
    fit : fitting.PowerLawFit or None
        The power-law fit itself.
    range_sensitivity : list of dict or None
        The fit over sub-ranges (`fitting.fit_range_sensitivity` rows, `slope` added); None when not asked for.
    slope_range : (float, float) or None
        Min and max slope over `range_sensitivity`.
    slope_interval, slope_median_resampled, slope_interval_covers
        Set by `analysis.cluster_quanta` with resamples: the 95 % interval over resamples
        (`stability.slope_interval`, None when < 2 could be fitted), their median slope and what the interval covers.
    """

    n_ranks_fitted: int
    min_size: int
    fit_ranks: tuple[int, int]
    alpha_N: float | None
    alpha_N_source: str | None
    predicted_slope: float | None
    slope: float | None = None
    note: str | None = None
    slope_ci: tuple[float, float] | None = None
    r2: float | None = None
    fit: PowerLawFit | None = None
    range_sensitivity: list | None = None
    slope_range: tuple[float, float] | None = None
    slope_interval: tuple[float, float] | None = None
    slope_median_resampled: float | None = None
    slope_interval_covers: str | None = None

    def to_dict(self) -> dict:
        """JSON form: the fields in order, the paper's numbers after the prediction; `note` only without a slope,
        the sensitivity only when computed, the resampled interval only when resampled."""
        out = {"n_ranks_fitted": self.n_ranks_fitted, "min_size": self.min_size, "fit_ranks": list(self.fit_ranks),
               "alpha_N": self.alpha_N, "alpha_N_source": self.alpha_N_source,
               "predicted_slope": self.predicted_slope, "paper": PAPER}
        if self.slope is None:
            out.update(slope=None, note=self.note)
        else:
            out.update(slope=self.slope, slope_ci=list(self.slope_ci), r2=self.r2, fit=self.fit.to_dict())
            if self.range_sensitivity is not None:
                out.update(range_sensitivity=self.range_sensitivity,
                           slope_range=None if self.slope_range is None else list(self.slope_range))
        if self.slope_interval_covers is not None:
            out.update(slope_interval=None if self.slope_interval is None else list(self.slope_interval),
                       slope_median_resampled=self.slope_median_resampled,
                       slope_interval_covers=self.slope_interval_covers)
        return out


def rank_frequency_fit(sizes: np.ndarray, *, total: int | None = None, min_size: int = 2,
                       fit_ranks: tuple[int, int] | None = None, alpha_n: float | None = None,
                       alpha_n_source: str | None = None, seed: int = 0, sensitivity: bool = True) -> RankFrequencyFit:
    """Log-log fit of frequency (size / `total` tokens) vs rank, the quantization model's p_k ∝ k^−(α+1).

    Parameters
    ----------
    sizes : int (n_ranks,)
        Cluster sizes by rank (the envelope), largest first.
    fit_ranks : (lo, hi) or None
        Ranks fitted, inclusive (the paper: 100–900 of 10k tokens); None fits every rank. Within them only
        clusters with ≥ `min_size` members count.
    alpha_n, alpha_n_source
        The parameter-scaling exponent of the same model family and where it comes from: the prediction
        −(α_N + 1) is drawn and reported with that label.
    sensitivity : bool
        Also fit the sub-ranges (`range_sensitivity`, `slope_range`); False for the resamples of `stability`.

    Returns
    -------
    RankFrequencyFit
        slope with its bootstrap CI, r², the fitted ranks, a fit-range sensitivity table (`slope_range`:
        min and max over sub-ranges) and the prediction; `slope` None with a `note` when < 3 ranks qualify.
    """
    sizes = np.asarray(sizes, dtype=float)
    rank = np.arange(1, sizes.size + 1)
    lo, hi = fit_ranks or (1, sizes.size)
    keep = (sizes >= min_size) & (rank >= lo) & (rank <= hi)
    freq = sizes[keep] / (total or sizes.sum())
    head = {"n_ranks_fitted": int(keep.sum()), "min_size": min_size, "fit_ranks": (int(lo), int(hi)),
            "alpha_N": alpha_n, "alpha_N_source": alpha_n_source,
            "predicted_slope": None if alpha_n is None else -(alpha_n + 1.0)}
    if keep.sum() < 3:
        return RankFrequencyFit(**head, note=f"fewer than 3 ranks in {lo}–{hi} with ≥ {min_size} members: no fit")
    x = rank[keep].astype(float)
    fit = fit_power_law(x, freq, seed=seed)
    rows, slope_range = None, None
    if sensitivity:
        rows = fit_range_sensitivity(x, freq, ranges=_sensitivity_ranges(int(x.min()), int(x.max())), seed=seed,
                                     n_boot=200)
        slopes = [-r["exponent"] for r in rows]
        rows = [{**r, "slope": -r["exponent"]} for r in rows]
        slope_range = (min(slopes), max(slopes)) if slopes else None
    return RankFrequencyFit(**head, slope=-fit.exponent, slope_ci=(-fit.exponent_ci[1], -fit.exponent_ci[0]),
                            r2=fit.r2, fit=fit, range_sensitivity=rows, slope_range=slope_range)


def alpha_n_from(value: float | str | Path | None) -> tuple[float | None, str]:
    """(α_N, where it comes from) for the predicted slope −(α_N + 1).

    `value` is a number the user gives, the `summary.json` of `quanta lm scaling` (or `analyses/lm_scaling.py`)
    fitted on the same model family, or None (no prediction).

    Raises
    ------
    ParameterError
        The file does not exist or holds no `alpha_N`.
    """
    if value is None:
        return None, "none: pass alpha_n (a number, or the summary.json of `quanta lm scaling` on this model's family)"
    if isinstance(value, (int, float)):
        return float(value), "given"
    path = Path(value)
    if not path.is_file():
        raise ParameterError("alpha_n", f"{value!r} is neither a number nor a summary.json of `quanta lm scaling`")
    data = read_json(path)
    if "alpha_N" not in data:
        raise ParameterError("alpha_n", f"{path} holds no alpha_N; pass the summary.json of `quanta lm scaling`")
    names = [m.get("name", "?") for m in data.get("models", [])]
    family = f"{names[0]} … {names[-1]}, {len(names)} models" if names else "family not recorded"
    return float(data["alpha_N"]), f"fitted on the family in {path} ({family})"


def write_rank_frequency(stem: str | Path, sizes_by_k: dict[int, np.ndarray], fit: RankFrequencyFit) -> None:
    """`stem.csv` (rank, size per k, envelope) and `stem.json` (sizes and the fit)."""
    stem = Path(stem)
    env = envelope(list(sizes_by_k.values()))
    ks = sorted(sizes_by_k)
    lines = ["rank," + ",".join(f"k{k}" for k in ks) + ",envelope"]
    for r in range(env.size):
        cells = [str(int(sizes_by_k[k][r])) if r < len(sizes_by_k[k]) else "" for k in ks]
        lines.append(f"{r + 1}," + ",".join(cells) + f",{int(env[r])}")
    atomic_write_text(stem.with_name(stem.name + ".csv"), "\n".join(lines) + "\n")
    atomic_write_json(stem.with_name(stem.name + ".json"), {"sizes_by_k": {str(k): sizes_by_k[k] for k in ks},
                                                             "envelope": env, "fit": fit})


def plot_rank_frequency(stem: str | Path, sizes_by_k: dict[int, np.ndarray], fit: RankFrequencyFit, *, title: str = "",
                        resampled: Sequence[np.ndarray] | None = None) -> None:
    """Frequency vs rank (log-log): every cluster count faint, the envelope bold, the fitted ranks shaded,
    the fitted slope and, when α_N is known, the predicted −(α_N + 1) labelled with its source. `resampled`
    envelopes (`stability.Stability.envelopes`) are drawn as the band they span, and the slope interval that
    includes them is in the label."""
    from ..report import new_figure, save_figure

    fig, ax = new_figure(size=(6.0, 4.4))
    ax = ax[0, 0]
    n = sum(int(s.sum()) for s in sizes_by_k.values()) / len(sizes_by_k)
    for s in sizes_by_k.values():
        ax.loglog(np.arange(1, s.size + 1), s / n, color="0.8", lw=0.7)
    env = envelope(list(sizes_by_k.values()))
    ranks = np.arange(1, env.size + 1)
    if resampled:
        width = max(len(e) for e in resampled)
        E = np.stack([np.pad(e, (0, width - len(e))) for e in resampled]).astype(float) / n
        r = np.arange(1, width + 1)[E.max(0) > 0]  # ranks some resample fills
        E = np.where(E > 0, E, np.nan)[:, r - 1]
        ax.fill_between(r, np.nanmin(E, 0), np.nanmax(E, 0), color="C1", alpha=0.25, lw=0,
                        label=f"envelopes of {len(resampled)} resamples")
    ax.loglog(ranks[env > 0], env[env > 0] / n, "o-", ms=2.5, lw=1, label=f"envelope over {len(sizes_by_k)} cluster counts")
    lo, hi = fit.fit_ranks
    ax.axvspan(lo, hi, color="C0", alpha=0.07, lw=0, label=f"fitted ranks {lo}–{hi}")
    if fit.slope is not None:
        f = fit.fit
        r = np.geomspace(*f.x_range, 20)
        ax.loglog(r, f.prefactor * r ** (-f.exponent), "--", color="C3",
                  label=f"fit slope {fit.slope:.2f} [{fit.slope_ci[0]:.2f}, {fit.slope_ci[1]:.2f}] (fit)"
                  + (f"\n95 % over resamples [{fit.slope_interval[0]:.2f}, {fit.slope_interval[1]:.2f}]"
                     if fit.slope_interval else ""))
        if fit.predicted_slope is not None:
            at = np.sqrt(r[0] * r[-1])
            pre = f.prefactor * at ** (-f.exponent) / at ** fit.predicted_slope
            ax.loglog(r, pre * r ** fit.predicted_slope, ":", color="k",
                      label=f"predicted −(α_N+1) = {fit.predicted_slope:.2f}")
    ax.set(xlabel="cluster rank", ylabel="frequency (fraction of tokens)", title=title or "quanta rank-frequency")
    ax.legend(fontsize=7)
    if fit.alpha_N_source and fit.predicted_slope is not None:
        fig.text(0.01, 0.005, f"α_N: {fit.alpha_N_source}", fontsize=6, color="0.4")
    save_figure(fig, stem)
