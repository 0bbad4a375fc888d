"""The prediction: α_D = γ/(2β) with a propagated CI, and the data horizon n*(P) ∝ P^(1/(2β)).

A lag n is resolved once its correlation ‖C(n)‖ = A·n^-β rises above the sampling noise c/√P, so
n*(P) = (A√P/c)^(1/β); the loss then follows the entropy at that horizon, L(P) − H_∞ ∝ n*^-γ ∝ P^-γ/(2β).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..record import Record

__all__ = ["AlphaDPrediction", "alpha_d", "horizon", "AlphaDComparison", "compare_alpha_d"]

_Z95 = 1.959963984540054


def _sigma(value: float, ci: Sequence[float]) -> float:
    """A normal σ from a 95% CI (half its width); 0 when the CI is missing or degenerate."""
    lo, hi = (float(c) if c is not None else np.nan for c in ci)
    width = hi - lo
    return float(width / (2 * _Z95)) if np.isfinite(width) and width > 0 else 0.0


@dataclass(frozen=True)
class AlphaDPrediction(Record):
    """The predicted α_D = γ/(2β) of Cagnetta et al. (2026), as `alpha_d` returns it.

    Attributes
    ----------
    alpha_D : float
        γ/(2β), dimensionless.
    alpha_D_ci : list of float
        [lo, hi], the 2.5 and 97.5 percentiles of the Monte Carlo ratio.
    beta, gamma : float
        The exponents it was computed from.
    """

    alpha_D: float
    alpha_D_ci: list[float]
    beta: float
    gamma: float


def alpha_d(beta: float, beta_ci: Sequence[float], gamma: float, gamma_ci: Sequence[float], *,
            n_samples: int = 100_000, seed: int = 0) -> AlphaDPrediction:
    """α_D = γ/(2β); the 95% CI propagates both CIs as independent normals by Monte Carlo
    (the ratio's distribution is skewed when β is uncertain, which the delta method would hide).

    Cagnetta et al. (2026): β from ‖C(n)‖_op ∝ n^-β, γ from H_n − H_∞ ∝ n^-γ.

    Parameters
    ----------
    beta_ci, gamma_ci : (float, float)
        95 % CIs; σ = half-width / 1.96. A missing (None, NaN) or empty CI counts as exact.
    n_samples : int
        Monte Carlo draws; draws with β ≤ 0 are dropped.

    Returns
    -------
    AlphaDPrediction

    Raises
    ------
    ValueError
        beta or gamma is not a positive finite number.
    """
    if not (np.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a positive number, got {beta}")
    if not (np.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a positive number, got {gamma}")
    rng = np.random.default_rng(seed)
    b = beta + _sigma(beta, beta_ci) * rng.standard_normal(n_samples)
    g = gamma + _sigma(gamma, gamma_ci) * rng.standard_normal(n_samples)
    ratio = g[b > 0] / (2 * b[b > 0])
    lo, hi = np.percentile(ratio, [2.5, 97.5])
    return AlphaDPrediction(gamma / (2 * beta), [float(lo), float(hi)], beta, gamma)


def horizon(n_pairs: float | np.ndarray, beta: float, prefactor: float, floor_const: float) -> np.ndarray:
    """n*(P): the largest lag whose correlation A·n^-β exceeds the noise floor c/√P.

    n*(P) = (A√P/c)^(1/β) ∝ P^(1/(2β)) (Cagnetta et al. 2026).

    Parameters
    ----------
    n_pairs : float or float ndarray
        P, token pairs sampled.
    prefactor : float
        A in ‖C(n)‖ = A·n^-β.
    floor_const : float
        c in the floor c/√P, in the units of ‖C(n)‖.

    Returns
    -------
    float64 ndarray, shape of `n_pairs`
        n*, a real-valued lag.

    Raises
    ------
    ValueError
        Any P, β, A or c is not positive.
    """
    p = np.asarray(n_pairs, dtype=float)
    if np.any(p <= 0) or beta <= 0 or prefactor <= 0 or floor_const <= 0:
        raise ValueError("n_pairs, beta, prefactor and floor_const must all be positive")
    return (prefactor * np.sqrt(p) / floor_const) ** (1.0 / beta)


@dataclass(frozen=True)
class AlphaDComparison:
    """Predicted vs measured α_D against a tolerance, decided only when both intervals can decide it.

    Attributes
    ----------
    verdict : str
        "met" (|predicted − measured| ≤ tolerance), "missed", or "undetermined" (no prediction, or an
        interval wider than the tolerance: then neither outcome is shown).
    difference : float or None
        predicted − measured (None without a prediction).
    tolerance : float
        The largest |difference| that counts as agreement.
    predicted_width, measured_width : float or None
        Widths (hi − lo) of the two 95 % intervals; each must be < `tolerance` for a verdict.
    narrowing_needed : float or None
        How many times the wider interval must shrink to fall below the tolerance (1 when decided).
    reason : str
        Why this verdict, in words.
    """

    verdict: str
    difference: float | None
    tolerance: float
    predicted_width: float | None
    measured_width: float | None
    narrowing_needed: float | None
    reason: str

    def to_dict(self) -> dict:
        """The fields as a dict, for JSON."""
        return asdict(self)


def compare_alpha_d(predicted: float | None, predicted_ci: Sequence[float] | None, measured: float,
                    measured_ci: Sequence[float], *, tolerance: float = 0.05) -> AlphaDComparison:
    """Compare α_D = γ/(2β) with the measured exponent only where both 95 % intervals are narrower than
    `tolerance`; otherwise the comparison is "undetermined" (an interval that wide admits both outcomes).

    Parameters
    ----------
    predicted, predicted_ci : float and (float, float), or None
        The prediction and its interval; None when there is no prediction (γ ≤ 0).
    measured, measured_ci : float and (float, float)
        The measured exponent and its interval.
    tolerance : float
        Agreement threshold on |predicted − measured| (the issue's 0.05), > 0.

    Returns
    -------
    AlphaDComparison

    Raises
    ------
    ValueError
        `tolerance` not positive, or a non-finite measured value or interval.
    """
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    if not (np.isfinite(measured) and np.all(np.isfinite(measured_ci))):
        raise ValueError(f"measured α_D and its interval must be finite, got {measured} {list(measured_ci)}")
    m_width = float(measured_ci[1] - measured_ci[0])
    if predicted is None or predicted_ci is None:
        return AlphaDComparison("undetermined", None, tolerance, None, m_width, None,
                                "no prediction (γ ≤ 0 at this scale)")
    p_width = float(predicted_ci[1] - predicted_ci[0])
    diff = float(predicted - measured)
    widest = max(p_width, m_width)
    if widest >= tolerance:
        wide = [name for name, w in (("predicted", p_width), ("measured", m_width)) if w >= tolerance]
        return AlphaDComparison("undetermined", diff, tolerance, p_width, m_width, widest / tolerance,
                                f"the {' and '.join(wide)} interval{'s are' if len(wide) > 1 else ' is'} wider than "
                                f"the tolerance {tolerance:g} (widths {p_width:.3g} / {m_width:.3g})")
    verdict = "met" if abs(diff) <= tolerance else "missed"
    return AlphaDComparison(verdict, diff, tolerance, p_width, m_width, 1.0,
                            f"|predicted − measured| = {abs(diff):.3g} {'≤' if verdict == 'met' else '>'} {tolerance:g}")
