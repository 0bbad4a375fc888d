"""Power-law fits shared by every subpackage: y ≈ prefactor · x^(−exponent) [+ offset].

Exponents in the papers move with the fit range, so every fit carries a bootstrap CI and
`fit_range_sensitivity` shows how much the exponent moves when points are dropped at either end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import least_squares

__all__ = ["PowerLawFit", "fit_power_law", "fit_range_sensitivity", "check_positive"]


@dataclass(frozen=True)
class PowerLawFit:
    """Result of `fit_power_law`; `exponent` is α in y ≈ a·x^-α (+ c).

    One record for every scaling exponent the toolkit fits (α_N, α_D, rank-frequency slopes, ...).

    Attributes
    ----------
    exponent : float
        α; positive when y falls as x grows.
    exponent_ci : (float, float)
        95% pairs-bootstrap interval on α; (nan, nan) when no resample could be fitted.
    prefactor : float
        a, in the units of y.
    offset : float
        c ≥ 0, in the units of y (an irreducible floor); 0.0 for a pure power law.
    x_range : (float, float)
        Smallest and largest x actually fitted.
    r2 : float
        R² of log y (1.0 when every y is equal).
    n_points : int
        Number of points fitted.
    """

    exponent: float
    exponent_ci: tuple[float, float]
    prefactor: float
    offset: float
    x_range: tuple[float, float]
    r2: float
    n_points: int

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        """The fitted curve a·x^-α + c at `x`, to plot it or extrapolate (e.g. to a larger model).

        Returns
        -------
        float64 ndarray, shape of `x` (a numpy scalar for a scalar `x`)
            In the units of y; NaN where x < 0.
        """
        return self.prefactor * np.asarray(x, dtype=float) ** (-self.exponent) + self.offset

    def to_dict(self) -> dict:
        """The fields as a plain JSON-able dict (tuples as lists), for result files."""
        d = asdict(self)
        d["exponent_ci"] = list(self.exponent_ci)
        d["x_range"] = list(self.x_range)
        return d


def check_positive(name: str, values: np.ndarray) -> np.ndarray:
    """Return `values` as a float array, or raise one ValueError naming `name` if any is bad.

    The boundary check of every log-log fit: logs of zero, negative or non-finite values would fail
    far from the caller's mistake.

    Parameters
    ----------
    name : str
        The argument's name, quoted in the error message.

    Returns
    -------
    float64 ndarray (n,)

    Raises
    ------
    ValueError
        `values` is not 1-D, is empty, contains NaN or inf, or has a value ≤ 0.
    """
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf at positions {np.flatnonzero(~np.isfinite(arr)).tolist()[:5]}")
    if np.any(arr <= 0):
        raise ValueError(f"{name} must be > 0 for a log-log fit; non-positive at positions "
                         f"{np.flatnonzero(arr <= 0).tolist()[:5]}")
    return arr


def _fit_pure(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float, float]:
    slope, intercept = np.polyfit(lx, ly, 1)
    return -slope, float(np.exp(intercept)), 0.0


def _fit_offset(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Nonlinear least squares of log y on log(a·x^-α + c), c ∈ [0, min y), from the best of a few starts."""
    lx, ly, ymin = np.log(x), np.log(y), float(y.min())

    def residuals(p: np.ndarray) -> np.ndarray:
        return np.log(np.exp(p[0]) * x ** (-p[1]) + p[2]) - ly

    best = None
    for frac in (0.0, 0.5, 0.9, 0.99):
        c0 = frac * ymin
        alpha0, a0, _ = _fit_pure(lx, np.log(y - c0))
        p0 = np.array([np.log(a0), alpha0, c0])
        p0[1] = float(np.clip(p0[1], -10, 10))
        try:
            res = least_squares(residuals, p0, bounds=([-np.inf, -10, 0], [np.inf, 10, ymin * (1 - 1e-9)]))
        except ValueError:
            continue
        if best is None or res.cost < best.cost:
            best = res
    if best is None:
        raise ValueError("power law with offset could not be fitted to these points")
    return float(best.x[1]), float(np.exp(best.x[0])), float(best.x[2])


def fit_power_law(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    offset: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    x_range: tuple[float, float] | None = None,
) -> PowerLawFit:
    """Fit y ≈ a·x^-α (+ c ≥ 0) in log space, with a 95% pairs-bootstrap CI on α.

    `x_range=(lo, hi)` keeps only points with lo ≤ x ≤ hi. Pure power laws are log-log least squares;
    with `offset=True` the fit is nonlinear least squares of log y.

    Parameters
    ----------
    x, y : float sequence or ndarray (n,)
        Positive and finite, any units (e.g. non-embedding parameters N and loss in nats).
    offset : bool
        Also fit a constant floor c in [0, min y), e.g. the entropy H_∞ in L − H_∞ ∝ P^-α_D
        (Cagnetta et al. 2026); α is then bounded to [−10, 10].
    n_boot : int
        Bootstrap resamples of the (x, y) pairs; resamples with too few distinct x, or whose fit
        fails, are skipped.
    seed : int
        Seeds the bootstrap.
    x_range : (float, float) or None
        Inclusive bounds on x; None fits every point.

    Returns
    -------
    PowerLawFit

    Raises
    ------
    ValueError
        x or y is not 1-D, positive and finite; they differ in length; fewer than 3 distinct x values
        (4 with `offset`) lie inside `x_range`; or the offset fit fails from every starting point.
    """
    xa, ya = check_positive("x", x), check_positive("y", y)
    if xa.shape != ya.shape:
        raise ValueError(f"x and y must have the same length, got {xa.size} and {ya.size}")
    if x_range is not None:
        keep = (xa >= x_range[0]) & (xa <= x_range[1])
        xa, ya = xa[keep], ya[keep]
    need = 4 if offset else 3
    if np.unique(xa).size < need:
        raise ValueError(f"need at least {need} distinct x values to fit (offset={offset}), got {np.unique(xa).size}"
                         + (f" inside x_range={x_range}" if x_range else ""))

    def fit(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float]:
        return _fit_offset(xs, ys) if offset else _fit_pure(np.log(xs), np.log(ys))

    exponent, prefactor, off = fit(xa, ya)
    pred = np.log(prefactor * xa ** (-exponent) + off)
    ly = np.log(ya)
    ss_tot = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 - float(np.sum((ly - pred) ** 2)) / ss_tot if ss_tot > 0 else 1.0

    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, xa.size, xa.size)
        if np.unique(xa[idx]).size < need:
            continue
        try:
            boots.append(fit(xa[idx], ya[idx])[0])
        except ValueError:
            continue
    ci = tuple(float(v) for v in np.percentile(boots, [2.5, 97.5])) if boots else (float("nan"), float("nan"))
    return PowerLawFit(
        exponent=float(exponent), exponent_ci=ci, prefactor=float(prefactor), offset=float(off),
        x_range=(float(xa.min()), float(xa.max())), r2=float(r2), n_points=int(xa.size),
    )


def fit_range_sensitivity(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    ranges: Sequence[tuple[float, float]] | None = None,
    *,
    max_drop: int = 2,
    **fit_kwargs,
) -> list[dict]:
    """Exponents fitted on sub-ranges of x: the given `ranges`, or every way of dropping up to
    `max_drop` distinct x values from each end that leaves at least 3 (4 with offset) distinct values
    (repeated x, e.g. several seeds per size, are kept or dropped together).

    The papers' exponents move with the fit range (the QDG rank-frequency slope spans −0.92 … −1.24 in
    Michaud et al. 2023; the measured α_D drifts with the points fitted in Cagnetta et al. 2026), so
    results report this table rather than one number.

    Parameters
    ----------
    x, y : float sequence or ndarray (n,)
        As in `fit_power_law`.
    ranges : sequence of (float, float) or None
        Inclusive (lo, hi) bounds on x, one fit each; None builds them from `max_drop`.
    max_drop : int
        Most distinct x values dropped from each end when `ranges` is None.
    **fit_kwargs
        Passed to `fit_power_law` (`offset`, `seed`, `n_boot`, which defaults to 200 here).

    Returns
    -------
    list of dict
        One row per range, in order: "x_range" ([lo, hi] actually fitted), "n_points", "exponent",
        "exponent_ci" ([lo, hi]) and "r2".

    Raises
    ------
    ValueError
        As `fit_power_law`, for x, y or any one given range: a range with fewer than 3 distinct x values
        (4 with offset) is not skipped.
    """
    xa = np.unique(check_positive("x", x))
    if ranges is None:
        need = 4 if fit_kwargs.get("offset") else 3
        ranges = [(xa[lo], xa[xa.size - 1 - hi]) for lo in range(max_drop + 1) for hi in range(max_drop + 1)
                  if xa.size - lo - hi >= need]
    fit_kwargs.setdefault("n_boot", 200)
    rows = []
    for lo, hi in ranges:
        f = fit_power_law(x, y, x_range=(float(lo), float(hi)), **fit_kwargs)
        rows.append({"x_range": list(f.x_range), "n_points": f.n_points, "exponent": f.exponent,
                     "exponent_ci": list(f.exponent_ci), "r2": f.r2})
    return rows
