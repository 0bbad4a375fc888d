"""Order statistics of learning curves over a model family: where each curve is learned (N*), how sharply it
drops, and Spearman ρ with a bootstrap CI — the measurements `curves.quanta_scaling` builds on.

**N*, the learning scale.** A curve L(x) over the family is compared with L_0, its loss under the
smallest member, and L_ref, its loss under the QDG run's own model. N* is where L first falls to the
midpoint (L_0 + L_ref)/2, interpolated linearly in log x between the two members around the crossing.
When L_0 − L_ref < `min_drop` nats the quantum is already learned by the smallest member (N* = x_0,
left-censored); when L never reaches the midpoint it is not learned within the family (N* = ∞,
right-censored). Both censored kinds keep their order in rank statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["learning_scale", "drop_sharpness", "spearman_ci", "Spearman", "bootstrap_ci", "quantile", "CRITERION"]

CRITERION = ("N* = the scale where a curve's loss first falls to the midpoint between its loss under the smallest "
             "member (L_0) and under the QDG model (L_ref), interpolated in log scale; N* = smallest member when "
             "L_0 − L_ref < min_drop (left-censored), ∞ when the midpoint is never reached (right-censored)")


def learning_scale(losses: np.ndarray, x: np.ndarray, reference: np.ndarray | float | None = None, *,
                   min_drop: float = 0.1) -> np.ndarray:
    """N*, where each loss curve falls halfway from its first member's loss to `reference` (`CRITERION`).

    Parameters
    ----------
    losses : float array-like (n_curves, n_members) or (n_members,)
        Loss in nats under each member, in family order.
    x : float array-like (n_members,)
        Strictly increasing positive scales (N or steps).
    reference : float array-like (n_curves,), float, or None
        L_ref per curve; None takes each curve's loss under the last member.
    min_drop : float
        Nats: a smaller L_0 − L_ref counts as learned already at x[0].

    Returns
    -------
    float64 ndarray (n_curves,) (a scalar array for one curve)
        N* in the units of x: x[0] for left-censored curves, inf for right-censored ones.

    Raises
    ------
    ValueError
        Fewer than 2 members, x not strictly increasing and positive, or shapes that do not match.
    """
    L = np.asarray(losses, float)
    one = L.ndim == 1
    L = np.atleast_2d(L)
    x = np.asarray(x, float)
    if x.ndim != 1 or x.size < 2 or L.shape[1] != x.size or np.any(x <= 0) or np.any(np.diff(x) <= 0):
        raise ValueError(f"losses must be (curves × members) with ≥ 2 members at strictly increasing positive x; got "
                         f"shape {L.shape} and x {x.tolist()}")
    ref = L[:, -1] if reference is None else np.broadcast_to(np.asarray(reference, float), L.shape[:1])
    start = L[:, 0]
    mid = (start + ref) / 2
    below = L <= mid[:, None]
    j = np.argmax(below, axis=1)  # first member at or below the midpoint
    crossed = below.any(axis=1)
    lx = np.log(x)
    jj = np.maximum(j, 1)
    rows = np.arange(len(L))
    hi, lo = L[rows, jj - 1], L[rows, jj]
    t = np.where(hi > lo, (hi - mid) / np.where(hi > lo, hi - lo, 1), 1.0)
    n_star = np.exp(lx[jj - 1] + np.clip(t, 0, 1) * (lx[jj] - lx[jj - 1]))
    n_star = np.where(crossed, n_star, np.inf)
    n_star = np.where(start - ref < min_drop, x[0], n_star)
    return n_star[0] if one else n_star


def drop_sharpness(losses: np.ndarray, x: np.ndarray, *, min_drop: float = 0.1) -> np.ndarray:
    """How sharply each curve drops: the largest fall between adjacent members, as a fraction of the curve's
    whole fall (L_0 − min L), per e-fold of x.

    A step between two adjacent members Δ = ln(x_j / x_{j−1}) apart scores 1/Δ; a straight decline in ln x
    over the family's range R scores 1/R.

    Parameters
    ----------
    losses : float array-like (n_curves, n_members)
        Nats, members in family order.
    x : float array-like (n_members,)
        Strictly increasing positive scales.
    min_drop : float
        Curves falling less than this many nats get NaN.

    Returns
    -------
    float64 ndarray (n_curves,)
        Fraction of the fall per e-fold of scale; NaN for flat curves.
    """
    L = np.atleast_2d(np.asarray(losses, float))
    dlx = np.diff(np.log(np.asarray(x, float)))
    fall = L[:, 0] - L.min(axis=1)
    steps = (L[:, :-1] - L[:, 1:]) / dlx
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(fall >= min_drop, steps.max(axis=1) / fall, np.nan)


@dataclass(frozen=True)
class Spearman:
    """Spearman ρ of paired values with its 95 % bootstrap CI (`spearman_ci`).

    Attributes
    ----------
    rho : float or None
        None with fewer than 3 pairs or a constant side.
    ci : list of float or None
        [low, high] over resampled pairs.
    p : float or None
        scipy's two-sided p-value.
    n : int
        Pairs.
    """

    rho: float | None
    ci: list[float] | None
    p: float | None
    n: int

    def to_dict(self) -> dict:
        """{rho, ci, p, n}."""
        return {"rho": self.rho, "ci": self.ci, "p": self.p, "n": self.n}


def spearman_ci(a, b, *, n_boot: int = 1000, seed: int = 0) -> Spearman:
    """Spearman ρ of paired values with a 95% bootstrap CI over pairs (values may be ±inf; ties allowed).

    Returns
    -------
    Spearman
        rho None when fewer than 3 pairs or a constant side.
    """
    from scipy.stats import rankdata, spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    if n < 3 or np.ptp(rankdata(a)) == 0 or np.ptp(rankdata(b)) == 0:
        return Spearman(None, None, None, n)
    ra, rb = rankdata(a), rankdata(b)  # ranks: infinities keep their order
    res = spearmanr(ra, rb)
    ci = bootstrap_ci(lambda i: spearmanr(ra[i], rb[i]).statistic if np.ptp(ra[i]) > 0 and np.ptp(rb[i]) > 0
                      else None, n, n_boot, seed)
    return Spearman(float(res.statistic), ci, float(res.pvalue), n)


def bootstrap_ci(stat, n: int, n_boot: int, seed: int) -> list[float] | None:
    """95 % percentile interval of `stat(indices)` over `n_boot` resamples of range(n) with replacement.

    Parameters
    ----------
    stat : callable (int64 ndarray (n,)) -> float or None
        The statistic of the resampled items; None drops that resample.
    n, n_boot, seed : int
        Items, resamples, the generator's seed.

    Returns
    -------
    [low, high] (floats) or None
        None when every resample was dropped.
    """
    rng = np.random.default_rng(seed)
    boots = [v for v in (stat(rng.integers(0, n, n)) for _ in range(n_boot)) if v is not None]
    return np.percentile(boots, [2.5, 97.5]).tolist() if boots else None


def quantile(values: np.ndarray, q) -> list[float]:
    """Quantiles `q` (floats in [0, 1]) of `values` that pick observed values, so ±inf survive."""
    return [float(v) for v in np.quantile(values, q, method="inverted_cdf")]
