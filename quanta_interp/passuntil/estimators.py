"""Pass-rate estimators for PassUntil runs, with exact / profile-likelihood CIs, and pass@k.

An instance sampled until its r-th pass needed K samples (negative binomial); a run that hit the cap
K_max with fewer than r passes is censored and counts as passes/trials (binomial). Task-level values
are means over instances with a bootstrap CI over instances.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import special, stats
from scipy.optimize import brentq

__all__ = ["PassRates", "TaskPassRate", "estimate_pass_rate", "task_pass_rate", "pass_at_k", "pass_at_k_from_rate",
           "METHODS", "CI_METHODS"]

METHODS = ("mle", "unbiased", "logp")
CI_METHODS = ("exact", "profile")


@dataclass(frozen=True)
class PassRates:
    """Per-instance PassUntil estimates with their confidence intervals, as `estimate_pass_rate` returns them.

    Attributes
    ----------
    estimate : float64 ndarray (n_instances,)
        Pass rate per instance under `method`, in [0, 1].
    lower, upper : float64 ndarray (n_instances,)
        Two-sided CI at `level`: exact (negative binomial / Clopper–Pearson) or profile likelihood.
    log_p : float64 ndarray (n_instances,)
        ψ(r) − ψ(K) = −Σ_{j=r}^{K−1} 1/j; log(passes/trials) when censored, −inf with no pass.
    censored : bool ndarray (n_instances,)
        The cap was hit before the r-th pass (passes < r).
    method, ci : str
        The estimator (one of `METHODS`) and interval (one of `CI_METHODS`) used.
    level : float
        CI coverage, in (0, 1).
    """

    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    log_p: np.ndarray
    censored: np.ndarray
    method: str
    ci: str
    level: float

    def to_dict(self) -> dict:
        """The fields as JSON-ready plain types (arrays as lists)."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}


def _check_counts(passes, samples, r: int) -> tuple[np.ndarray, np.ndarray]:
    if int(r) != r or r < 1:
        raise ValueError(f"r must be an integer ≥ 1 (passes to wait for), got {r}")
    c = np.atleast_1d(np.asarray(passes, dtype=float))
    k = np.atleast_1d(np.asarray(samples, dtype=float))
    if c.shape != k.shape or c.ndim != 1:
        raise ValueError(f"passes and samples must be 1-D and the same length, got {c.shape} and {k.shape}")
    if np.any(k < 1) or np.any(c < 0) or np.any(c > k) or np.any(c > r) or np.any(c != np.round(c)):
        raise ValueError("passes/samples must be integers with 0 ≤ passes ≤ min(r, samples) and samples ≥ 1")
    return c, k


def _exact_ci(c: np.ndarray, k: np.ndarray, r: int, a: float) -> tuple[np.ndarray, np.ndarray]:
    """Negative-binomial exact CI where the r-th pass was seen, Clopper–Pearson where censored."""
    done = c >= r
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(c > 0, stats.beta.ppf(a / 2, np.maximum(c, 1), k - c + 1), 0.0)
        up_nb = np.where(k > r, stats.beta.ppf(1 - a / 2, r, np.maximum(k - r, 1)), 1.0)
        up_cp = np.where(c < k, stats.beta.ppf(1 - a / 2, c + 1, np.maximum(k - c, 1)), 1.0)
    return lo, np.where(done, up_nb, up_cp)


def _profile_ci(c: np.ndarray, k: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Likelihood-ratio interval of p^c (1-p)^(k-c): 2·(ℓ(p̂) − ℓ(p)) ≤ χ²₁(level)."""
    cut = stats.chi2.ppf(level, 1) / 2
    lo, up = np.zeros_like(c), np.ones_like(c)
    for i, (ci, ki) in enumerate(zip(c, k, strict=True)):
        p_hat = ci / ki

        def ll(p: float, ci=ci, ki=ki) -> float:
            return special.xlogy(ci, p) + special.xlog1py(ki - ci, -p)

        target = ll(p_hat) - cut
        if ci > 0:
            lo[i] = brentq(lambda p, t=target: ll(p) - t, 1e-300, p_hat)
        if ci < ki:
            up[i] = brentq(lambda p, t=target: ll(p) - t, p_hat, 1 - 1e-16)
    return lo, up


def estimate_pass_rate(passes, samples, *, r: int = 1, method: str = "mle", ci: str = "exact",
                       level: float = 0.95) -> PassRates:
    """Per-instance pass rates from PassUntil counts (`passes` ≤ r seen in `samples` draws).

    PassUntil (Hu et al., ICLR 2024) samples each instance until its r-th pass: K is negative-binomial
    and PU = r/K is its maximum-likelihood estimate. A run capped before the r-th pass is binomial and
    counts as passes/trials (0 then means "below ~3/K_max").

    Parameters
    ----------
    passes : int array-like (n_instances,)
        Passes seen, 0 ≤ passes ≤ min(r, samples); fewer than `r` marks a censored (capped) run.
    samples : int array-like (n_instances,)
        K: draws up to and including the r-th pass, or all draws when censored; ≥ 1.
    r : int
        Passes each instance was sampled until (the paper uses 1 or 2).
    method : {"mle", "unbiased", "logp"}
        "mle" r/K; "unbiased" (r−1)/(K−1), needs r ≥ 2; "logp" exp of the unbiased log-p estimator
        −Σ_{j=r}^{K−1} 1/j. Censored instances get passes/trials under every method.
    ci : {"exact", "profile"}
        "exact": negative-binomial interval where the r-th pass was seen, Clopper–Pearson where censored;
        "profile": likelihood-ratio interval of the binomial likelihood p^c (1−p)^(K−c).
    level : float
        CI coverage, in (0, 1).

    Returns
    -------
    PassRates
        Estimates, CI bounds, `log_p` (always the log-p estimator) and the censored mask, per instance.

    Raises
    ------
    ValueError
        An unknown `method` or `ci`, `level` outside (0, 1), r not an integer ≥ 1, method="unbiased"
        with r < 2, `passes`/`samples` not 1-D of equal length, or counts outside
        0 ≤ passes ≤ min(r, samples), samples ≥ 1 (or not integers).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if ci not in CI_METHODS:
        raise ValueError(f"ci must be one of {', '.join(CI_METHODS)}, got {ci!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if method == "unbiased" and r < 2:
        raise ValueError("method='unbiased' needs r ≥ 2 (it is (r−1)/(K−1)); use method='mle' or 'logp' for r=1")
    c, k = _check_counts(passes, samples, r)
    censored = c < r
    mle = c / k
    with np.errstate(divide="ignore"):
        log_p = np.where(censored, np.log(mle), special.digamma(r) - special.digamma(k))
    if method == "mle":
        est = mle
    elif method == "unbiased":
        est = np.where(censored, mle, (r - 1) / np.maximum(k - 1, 1))
    else:
        est = np.exp(log_p)
    lo, up = _exact_ci(c, k, r, 1 - level) if ci == "exact" else _profile_ci(c, k, level)
    return PassRates(est, lo, up, log_p, censored, method, ci, level)


@dataclass(frozen=True)
class TaskPassRate:
    """Task PU = mean of the instance estimates, with its bootstrap CI, as `task_pass_rate` returns it.

    Attributes
    ----------
    pu : float
        Task PU.
    ci : (float, float)
        [lower, upper] at `level`.
    level : float
        CI coverage.
    method : str
        The per-instance estimator.
    n_instances, n_censored, total_samples : int
        Instances, instances capped before the r-th pass, and the sum of `samples`.
    """

    pu: float
    ci: tuple[float, float]
    level: float
    method: str
    n_instances: int
    n_censored: int
    total_samples: int

    def to_dict(self) -> dict:
        """The fields as a dict for JSON (`ci` as a list)."""
        return {**asdict(self), "ci": list(self.ci)}


def task_pass_rate(passes, samples, *, r: int = 1, method: str = "mle", level: float = 0.95,
                   n_boot: int = 2000, seed: int = 0) -> TaskPassRate:
    """Task PU = mean of instance estimates, with a percentile bootstrap CI over instances.

    With no pass anywhere the estimate is 0 and the upper bound is the mean exact per-instance bound.
    `passes`, `samples`, `r`, `method` and `level` are as for `estimate_pass_rate`.

    Parameters
    ----------
    n_boot : int
        Bootstrap resamples of the instances (≥ 1).
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    TaskPassRate

    Raises
    ------
    ValueError
        As `estimate_pass_rate`.
    """
    rates = estimate_pass_rate(passes, samples, r=r, method=method, level=level)
    est = rates.estimate
    rng = np.random.default_rng(seed)
    boots = est[rng.integers(0, est.size, (n_boot, est.size))].mean(axis=1)
    lo, up = np.percentile(boots, [50 * (1 - level), 50 * (1 + level)])
    if est.mean() == 0:
        up = float(rates.upper.mean())
    return TaskPassRate(pu=float(est.mean()), ci=(float(lo), float(up)), level=level, method=method,
                        n_instances=int(est.size), n_censored=int(rates.censored.sum()),
                        total_samples=int(np.sum(samples)))


def pass_at_k(n, c, k):
    """Unbiased pass@k of Chen et al. (2021) from c passes in n samples: 1 − C(n−c, k)/C(n, k).

    Computed stably as 1 − Π_{i=n−c+1}^{n} (1 − k/i). `n`, `c` and `k` are integers or integer
    array-likes that broadcast together (cast to int64).

    Returns
    -------
    float or float64 ndarray
        pass@k in [0, 1]; a float for scalar inputs, else an array of the broadcast shape.

    Raises
    ------
    ValueError
        Some k < 1, n < k, c < 0 or c > n.
    """
    n_arr, c_arr, k_arr = np.broadcast_arrays(*(np.asarray(v, dtype=np.int64) for v in (n, c, k)))
    if np.any(k_arr < 1) or np.any(n_arr < k_arr) or np.any(c_arr < 0) or np.any(c_arr > n_arr):
        raise ValueError("pass_at_k needs 1 ≤ k ≤ n and 0 ≤ c ≤ n")
    out = np.empty(n_arr.shape, dtype=float)
    for idx in np.ndindex(n_arr.shape):
        ni, ci, ki = int(n_arr[idx]), int(c_arr[idx]), int(k_arr[idx])
        out[idx] = 1.0 if ni - ci < ki else 1.0 - np.prod(1.0 - ki / np.arange(ni - ci + 1, ni + 1))
    return out if out.ndim else float(out)


def pass_at_k_from_rate(p, k):
    """pass@k = 1 − (1 − p)^k for a pass rate p, computed stably for tiny p and large k.

    Returns
    -------
    float or float64 ndarray
        pass@k for `p` and `k` broadcast together; a float for scalar inputs.

    Raises
    ------
    ValueError
        Some p outside [0, 1] or NaN, or k < 1.
    """
    p_arr = np.asarray(p, dtype=float)
    if not np.all((p_arr >= 0) & (p_arr <= 1)) or np.any(np.asarray(k) < 1):  # NaN fails the first
        raise ValueError("pass_at_k_from_rate needs 0 ≤ p ≤ 1 and k ≥ 1")
    out = -np.expm1(np.asarray(k, dtype=float) * np.log1p(-p_arr))
    return out if np.ndim(out) else float(out)
