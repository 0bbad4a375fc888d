"""Task scaling law PU(N) = exp(−c·N^−α), emergence classes, multi-step / multiple-circuits fits.

Everything works on F(N) = log(−log PU) against x = log N, where the law is a line F = log c − α·x.
`pu` is either task-level (one value per model) or a matrix models × instances; with instances, the task
PU is the instance mean and the fits' CIs are bootstraps over instances (paired across models). A size may
repeat (seeds); `classify_emergence` needs it to, since it weighs curvature against seed-to-seed noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
from scipy import stats
from scipy.optimize import least_squares

__all__ = ["TaskScalingFit", "EmergenceTest", "EmergenceModels", "fit_task_scaling", "classify_emergence", "fit_emergence_models",
           "emergence_curve", "check_pu"]


def check_pu(N, pu, *, min_sizes: int = 3, distinct: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validate sizes and PU values for log(−log PU): N > 0 (distinct unless `distinct=False`), PU in (0, 1]
    (instances may be 0).

    Parameters
    ----------
    N : float array-like (n_models,)
        Model sizes (parameters); any order. With `distinct=False` a size may repeat: one row per trained
        model, the repeats being seeds of that size.
    pu : float array-like (n_models,) or (n_models, n_instances)
        Task PU per model, or per-instance PU; instance values may be 0 as long as each row's mean is > 0.
    min_sizes : int
        Fewest distinct sizes accepted.
    distinct : bool
        Refuse repeated sizes.

    Returns
    -------
    (float64 ndarray (n_sizes,), float64 ndarray)
        N and pu as arrays, unchanged.

    Raises
    ------
    ValueError
        N not 1-D or with fewer than `min_sizes` distinct sizes, non-finite, ≤ 0 or (with `distinct`)
        repeated; `pu` not 1-D/2-D with one row per size; PU non-finite or outside [0, 1], or a task-level
        PU of 0.
    """
    n = np.asarray(N, dtype=float)
    p = np.asarray(pu, dtype=float)
    if n.ndim != 1 or np.unique(n).size < min_sizes:
        raise ValueError(f"N must list at least {min_sizes} model sizes, got {np.unique(n).size}")
    if np.any(~np.isfinite(n)) or np.any(n <= 0) or (distinct and np.unique(n).size != n.size):
        raise ValueError("N must be distinct positive model sizes" if distinct else "N must be positive model sizes")
    if p.ndim not in (1, 2) or p.shape[0] != n.size:
        raise ValueError(f"pu must have one row per size ({n.size}), got shape {p.shape}")
    task = p if p.ndim == 1 else p.mean(axis=1)
    if np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p > 1) or np.any(task <= 0):
        raise ValueError("pu must lie in (0, 1] (task level; single instances may be 0) for log(−log PU)")
    return n, p


def _F(pu: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(-np.log(pu))


def _lines(x: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares (intercept, slope) of every column of F on x, skipping non-finite entries;
    `ok` marks columns with at least two finite points."""
    m = np.isfinite(f)
    fz = np.where(m, f, 0.0)
    n, sx, sxx = m.sum(0), (m * x[:, None]).sum(0), (m * x[:, None] ** 2).sum(0)
    sy, sxy = fz.sum(0), (fz * x[:, None]).sum(0)
    ok = n >= 2
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(ok, (n * sxy - sx * sy) / (n * sxx - sx**2), 0.0)
        intercept = np.where(ok, (sy - slope * sx) / np.maximum(n, 1), 0.0)
    return intercept, slope, ok


def _line(x: np.ndarray, f: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line, ignoring non-finite F (PU = 1)."""
    a, s, ok = _lines(x, f[:, None])
    if not ok[0]:
        raise ValueError("need at least two sizes with PU < 1 to fit log(−log PU)")
    return float(a[0]), float(s[0])


def _law(a: float, slope: float, x: np.ndarray) -> np.ndarray:
    return np.exp(-np.exp(a + slope * x))


def _instance_lines(x: np.ndarray, passes: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-instance (intercept, slope) of F = log(−log p) against x = log N, by maximum likelihood of the
    PassUntil counts.

    Rows are models (x repeats for seeds of one size), columns instances. The log-likelihood kernel
    c·log p + (K − c)·log(1 − p), p = exp(−exp(a + s·x)), is that of sampling until r passes (negative
    binomial) and of a capped run (binomial) alike, so an instance that passed every sample at some size
    (estimate 1, F = −∞) still pulls its line down there instead of being dropped — dropping those points
    fits each line to the sizes below a jump only and extrapolates the slow pre-jump trend.
    """
    from scipy.optimize import minimize

    mean = float(x.mean())
    xc = x - mean
    a_out, s_out = np.empty(passes.shape[1]), np.empty(passes.shape[1])
    for i in range(passes.shape[1]):
        c, k = passes[:, i].astype(float), samples[:, i].astype(float)

        def nll(theta, c=c, k=k):
            u = np.exp(np.clip(theta[0] + theta[1] * xc, -50, 50))  # −log p
            value = -np.sum(-c * u + (k - c) * np.log(-np.expm1(-u)))
            with np.errstate(over="ignore"):  # u/expm1(u) → 0 where p → 0
                d_eta = c * u - (k - c) * u / np.expm1(u)
            return value, np.array([d_eta.sum(), (d_eta * xc).sum()])

        f0 = _F(np.clip((c + 0.5) / (k + 1), 1e-12, 1 - 1e-12))
        start = np.polyfit(xc, f0, 1)[::-1] if np.unique(xc).size > 1 else np.array([f0.mean(), 0.0])
        fit = minimize(nll, start, jac=True, method="L-BFGS-B", bounds=[(-50, 50), (-50, 50)])
        a_out[i], s_out[i] = fit.x[0] - fit.x[1] * mean, fit.x[1]
    return a_out, s_out


@dataclass(frozen=True)
class TaskScalingFit:
    """PU(N) = exp(−c·N^−α) fitted on the task mean; `prediction` at `predict_at` with a bootstrap CI.

    Attributes
    ----------
    alpha : float
        α, minus the slope of log(−log PU) against log N on the task mean.
    alpha_ci : (float, float)
        Bootstrap CI of α at `level` (NaN when no resample could be fitted).
    c : float
        c = exp(intercept) of the task-mean line.
    r2 : float
        R² of that line in F = log(−log PU), over sizes with PU < 1.
    N : tuple of float
        Sizes fitted.
    per_instance : bool
        Whether `prediction` is the mean of per-instance curves (fitted to the counts by maximum
        likelihood) rather than the task-mean law.
    predict_at, prediction : tuple of float
        Sizes asked for and the predicted task PU at each.
    prediction_ci : tuple of (float, float)
        Bootstrap CI of each prediction at `level`.
    level : float
        CI coverage.
    """

    alpha: float
    alpha_ci: tuple[float, float]
    c: float
    r2: float
    N: tuple[float, ...]
    per_instance: bool
    predict_at: tuple[float, ...]
    prediction: tuple[float, ...]
    prediction_ci: tuple[tuple[float, float], ...]
    level: float

    def predict(self, N) -> np.ndarray:
        """PU at sizes `N` from the task-mean law exp(−c·N^−α) (never the per-instance mean); shape of N."""
        return np.exp(-self.c * np.asarray(N, dtype=float) ** (-self.alpha))

    def to_dict(self) -> dict:
        """The fields as a dict (tuples kept), for JSON."""
        return asdict(self)


def _resamples(p: np.ndarray, x: np.ndarray, n_boot: int, rng: np.random.Generator):
    """Bootstrap PU tables with their instance indices: instances resampled (2-D), or F residuals
    resampled (1-D; indices None)."""
    if p.ndim == 2:
        for _ in range(n_boot):
            idx = rng.integers(0, p.shape[1], p.shape[1])
            yield p[:, idx], idx
        return
    f = _F(p)
    a, s = _line(x, f)
    fit = a + s * x
    resid = (f - fit) * np.sqrt(x.size / max(x.size - 2, 1))
    for _ in range(n_boot):
        yield np.exp(-np.exp(fit + rng.choice(resid, x.size))), None


def fit_task_scaling(N, pu, *, predict_at=None, per_instance: bool = False, passes=None, samples=None,
                     n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> TaskScalingFit:
    """Fit log(−log PU) = log c − α log N and predict PU at `predict_at` (e.g. a held-out size).

    `per_instance=True` fits one line per instance to its PassUntil counts (`passes`, `samples`) by
    maximum likelihood and predicts the mean of the instance curves, as the paper does: it removes the
    bias of mixing instances of different difficulty. α, c and R² stay those of the task-mean line. Its
    prediction CI resamples the fitted instance curves, so it holds the spread of instances, not each
    line's own fitting error (small where an instance has many samples, large where it passed at once).

    Parameters
    ----------
    N : float array-like (n_models,)
        Model sizes (non-embedding parameters), > 0; a size may repeat (seeds: one row per model).
    pu : float array-like (n_models,) or (n_models, n_instances)
        Task PU per model, or per-instance PU (task PU = row mean).
    predict_at : float array-like or None
        Sizes to predict PU at (> 0).
    per_instance : bool
        Predict from per-instance maximum-likelihood lines (needs `passes` and `samples`).
    passes, samples : int array-like (n_models, n_instances) or None
        PassUntil counts per model and instance (passes seen, samples drawn), for `per_instance`.
    n_boot : int
        Bootstrap resamples: over instances (paired across sizes) for a 2-D `pu`, over residuals in
        log(−log PU) for a 1-D one.
    level : float
        Coverage of the α and prediction CIs, in (0, 1).

    Returns
    -------
    TaskScalingFit

    Raises
    ------
    ValueError
        Invalid N or pu (see `check_pu`; ≥ 3 distinct sizes), a `predict_at` size that is not positive and
        finite, `per_instance` without `passes` and `samples` of `pu`'s 2-D shape (or with passes > samples),
        fewer than two sizes with task PU < 1, or `level` outside [0, 1] (not checked up front: numpy's
        percentile raises it).
    """
    n, p = check_pu(N, pu, distinct=False)
    lines = None
    if per_instance:
        if passes is None or samples is None or p.ndim != 2:
            raise ValueError("per_instance=True needs pu as a models × instances matrix and its passes and samples")
        c, k = np.asarray(passes, dtype=float), np.asarray(samples, dtype=float)
        if c.shape != p.shape or k.shape != p.shape or np.any(c < 0) or np.any(c > k):
            raise ValueError(f"passes and samples must have pu's shape {p.shape}, with 0 ≤ passes ≤ samples")
        lines = _instance_lines(np.log(n), c, k)
    x = np.log(n)
    at = np.atleast_1d(np.asarray(predict_at if predict_at is not None else [], dtype=float))
    if not np.all(np.isfinite(at) & (at > 0)):
        raise ValueError(f"predict_at must be positive finite model sizes, got {at.tolist()}")
    x_new = np.log(at)
    task = p if p.ndim == 1 else p.mean(axis=1)
    a, slope = _line(x, _F(task))
    f = _F(task)
    ok = np.isfinite(f)
    ss_tot = float(np.sum((f[ok] - f[ok].mean()) ** 2))
    r2 = 1 - float(np.sum((f[ok] - a - slope * x[ok]) ** 2)) / ss_tot if ss_tot > 0 else 1.0

    def predict(table: np.ndarray, idx) -> np.ndarray:
        if lines is None:
            a_t, s_t = _line(x, _F(table if table.ndim == 1 else table.mean(axis=1)))
            return _law(a_t, s_t, x_new)
        a_i, s_i = (lines[0], lines[1]) if idx is None else (lines[0][idx], lines[1][idx])
        return _law(a_i[None, :], s_i[None, :], x_new[:, None]).mean(axis=1)

    rng = np.random.default_rng(seed)
    alphas, preds = [], []
    for pb, idx in _resamples(p, x, n_boot, rng):
        tb = pb if pb.ndim == 1 else pb.mean(axis=1)
        if np.any(tb <= 0) or np.sum(tb < 1) < 2:
            continue
        alphas.append(-_line(x, _F(tb))[1])
        preds.append(predict(pb, idx))
    q = [50 * (1 - level), 50 * (1 + level)]
    alpha_ci = tuple(float(v) for v in np.percentile(alphas, q)) if alphas else (np.nan, np.nan)
    pred_ci = np.percentile(np.array(preds), q, axis=0).T if preds and x_new.size else np.empty((0, 2))
    return TaskScalingFit(
        alpha=-slope, alpha_ci=alpha_ci, c=float(np.exp(a)), r2=r2, N=tuple(n.tolist()),
        per_instance=per_instance, predict_at=tuple(np.exp(x_new).tolist()),
        prediction=tuple(predict(p, None).tolist()),
        prediction_ci=tuple((float(lo), float(hi)) for lo, hi in pred_ci), level=level,
    )


def _polyfit(xc: np.ndarray, f: np.ndarray, degree: int) -> tuple[np.ndarray, float, np.ndarray]:
    """OLS of F on powers 0 … `degree` of centred log N: (coefficients, residual sum of squares, design matrix)."""
    X = np.vander(xc, degree + 1, increasing=True)
    coef, *_ = np.linalg.lstsq(X, f, rcond=None)
    return coef, max(float(np.sum((f - X @ coef) ** 2)), 1e-300), X


def _aic(rss: float, n: int, k: int) -> tuple[float, float]:
    """(AIC, small-sample AICc) of a least-squares fit with k parameters to n points; AICc NaN when n ≤ k + 1."""
    aic = n * np.log(rss / n) + 2 * k
    return aic, aic + 2 * k * (k + 1) / (n - k - 1) if n > k + 1 else float("nan")


@dataclass(frozen=True)
class EmergenceTest:
    """Linear vs quadratic law of F = log(−log PU) in log N, weighed against model-level noise (seeds).

    Attributes
    ----------
    label : str
        "linear" (plain scaling), "convex" (sub-scaling) or "concave" (accelerated emergence); JSON key `class`.
    curvature : float
        Quadratic coefficient of F on centred log N (> 0 convex, < 0 concave).
    curvature_se : float
        Its OLS standard error from the residuals of every model (seed-to-seed noise plus lack of fit).
    f_statistic : float
        (RSS_linear − RSS_quadratic) / (RSS_quadratic / (n_models − 3)): the likelihood-ratio test of the
        nested Gaussian models in its exact form (= t² of the quadratic coefficient).
    p_value : float
        P(F(1, n_models − 3) ≥ f_statistic).
    significance : float
        Level below which the quadratic law is accepted.
    aicc_linear, aicc_quadratic : float
        Small-sample AIC of each law over the models (parameters: coefficients plus the noise variance).
    aicc_prefers : str
        "linear" or "quadratic", the law with the lower AICc.
    n_sizes, n_models, min_seeds : int
        Distinct sizes, models fitted, and the fewest models (seeds) at any size.
    test : str
        The test, in words.
    """

    label: str
    curvature: float
    curvature_se: float
    f_statistic: float
    p_value: float
    significance: float
    aicc_linear: float
    aicc_quadratic: float
    aicc_prefers: str
    n_sizes: int
    n_models: int
    min_seeds: int
    test: str

    def to_dict(self) -> dict:
        """The fields as a dict for JSON, `label` under the key `class`."""
        d = asdict(self)
        return {"class": d.pop("label"), **d}


def classify_emergence(N, pu, *, significance: float = 0.05) -> EmergenceTest:
    """"linear" (plain scaling), "convex" (sub-scaling) or "concave" (accelerated emergence), against seeds.

    PassUntil (Hu et al., ICLR 2024): F = log(−log PU) linear in log N is plain scaling, convex is
    sub-scaling, concave is accelerated emergence. The quadratic law is tested against the linear one by
    the F-test of the nested least-squares fits over every trained model, so the curvature is weighed
    against the spread between seeds of one size (model-level noise), not against the sampling noise of
    instances; AICc of both laws is reported beside it.

    Parameters
    ----------
    N : float array-like (n_models,)
        Model size of each trained model; every size must appear at least twice (seeds).
    pu : float array-like (n_models,) or (n_models, n_instances)
        Task PU per model, or per-instance PU (reduced to the row mean).
    significance : float
        Test level, in (0, 1).

    Returns
    -------
    EmergenceTest

    Raises
    ------
    ValueError
        `significance` outside (0, 1); invalid N or pu (see `check_pu`; ≥ 3 sizes); a size with a single
        model ("one seed per size": the test needs model-level noise); a task PU of 1 for some model.
    """
    if not 0 < significance < 1:
        raise ValueError(f"significance must be in (0, 1), got {significance}")
    n, p = check_pu(N, pu, min_sizes=3, distinct=False)
    sizes, counts = np.unique(n, return_counts=True)
    if counts.min() < 2:
        raise ValueError(f"classify_emergence needs at least 2 models (seeds) per size to weigh the curvature "
                         f"against model-level noise; N = {sizes[np.argmin(counts)]:g} has 1 (train more seeds per size)")
    task = p if p.ndim == 1 else p.mean(axis=1)
    if np.any(task >= 1):
        raise ValueError("classify_emergence needs task PU < 1 for every model (log(−log 1) is −inf)")
    x, f = np.log(n), _F(task)
    xc = x - x.mean()
    (_, rss_linear, _), (coef, rss_quadratic, X) = _polyfit(xc, f, 1), _polyfit(xc, f, 2)
    rss = [rss_linear, rss_quadratic]
    dof = n.size - 3  # > 0: at least 3 sizes × 2 seeds
    q, se = float(coef[2]), float(np.sqrt(rss_quadratic / dof * np.linalg.inv(X.T @ X)[2, 2]))
    f_stat = (rss[0] - rss[1]) / (rss[1] / dof)
    p_value = float(stats.f.sf(f_stat, 1, dof))
    aicc = [_aic(r, n.size, k)[1] for r, k in zip(rss, (3, 4), strict=True)]  # k counts the noise variance too
    label = "linear" if p_value >= significance else ("convex" if q > 0 else "concave")
    return EmergenceTest(
        label=label, curvature=q, curvature_se=se, f_statistic=float(f_stat), p_value=p_value,
        significance=significance, aicc_linear=float(aicc[0]), aicc_quadratic=float(aicc[1]),
        aicc_prefers="linear" if aicc[0] <= aicc[1] else "quadratic", n_sizes=int(sizes.size),
        n_models=int(n.size), min_seeds=int(counts.min()),
        test="F-test (likelihood ratio of nested least squares) of the quadratic vs the linear law in log N "
             "over every model: residuals are seed-to-seed noise plus lack of fit")


def _two_line_model(kind: str):
    """F for two components: multi-step = logsumexp (convex), multiple circuits = soft-min (concave)."""
    sign = 1.0 if kind == "multi_step" else -1.0

    def f(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        a1, s1, a2, s2 = theta
        return sign * np.logaddexp(sign * (a1 + s1 * x), sign * (a2 + s2 * x))

    return f


def emergence_curve(name: str, params, x: np.ndarray) -> np.ndarray:
    """F = log(−log PU) at log-sizes `x` for a model fitted by `fit_emergence_models` (its name and params).

    Parameters
    ----------
    name : {"linear", "multi_step", "multi_circuit"}
        The model; any name other than "linear" and "multi_step" is evaluated as "multi_circuit".
    params : float array-like
        Its `params`: (intercept, slope) for "linear", (a1, s1, a2, s2) for the two-component models.
    x : float ndarray
        log N.

    Returns
    -------
    float64 ndarray, shape of `x`
    """
    th = np.asarray(params, dtype=float)
    return th[0] + th[1] * x if name == "linear" else _two_line_model(name)(th, x)


@dataclass(frozen=True)
class EmergenceModels:
    """The linear, multi-step and multiple-circuit laws of F = log(−log PU) fitted to one PU per size.

    Attributes
    ----------
    models : dict
        "linear", "multi_step", "multi_circuit" → {`params` (for `emergence_curve`), `rss`, `k`
        (parameters), `aic`, `aicc` (NaN when n ≤ k + 1)}.
    best : str
        The model with the lowest `criterion`.
    criterion : str
        "aicc" from 6 sizes on, "aic" with 5.
    best_aic : str
        The model with the lowest plain AIC.
    n_sizes : int
        Sizes fitted.
    """

    models: dict
    best: str
    criterion: str
    best_aic: str
    n_sizes: int

    def to_dict(self) -> dict:
        """The fields as a dict, for JSON."""
        return asdict(self)


def fit_emergence_models(N, pu) -> EmergenceModels:
    """Fit linear, multi-step (PU = Π_j exp(−c_j N^−α_j)) and soft two-circuit models; compare AIC.

    The circuits' soft maximum is −log PU = (Σ_i (c_i N^−α_i)^−1)^−1, a soft minimum of their −log PU.
    Residuals are in F = log(−log PU); AIC = n·log(RSS/n) + 2k; the best model is chosen by the
    small-sample AICc from 6 sizes on (plain AIC with 5). Needs ≥ 5 sizes. A 2-D `pu` is reduced to
    its task mean first. Hypotheses of PassUntil (Hu et al., ICLR 2024): multi-step makes F convex,
    multiple circuits make it concave.

    Returns
    -------
    EmergenceModels

    Raises
    ------
    ValueError
        Invalid N or pu (see `check_pu`; ≥ 5 sizes), or a task PU of 1 at some size.
    """
    n, p = check_pu(N, pu, min_sizes=5)
    x = np.log(n)
    f = _F(p if p.ndim == 1 else p.mean(axis=1))
    if not np.all(np.isfinite(f)):
        raise ValueError("fit_emergence_models needs task PU < 1 at every size")
    a, s = _line(x, f)
    models = {"linear": (partial(emergence_curve, "linear"), [np.array([a, s])])}
    half = x.size // 2
    lo, hi = _line(x[: half + 1], f[: half + 1]), _line(x[half:], f[half:])
    for kind in ("multi_step", "multi_circuit"):
        starts = [np.array([*lo, *hi]), np.array([a + 1, s * 2, a - 1, s / 2]), np.array([a, s - 0.5, a, s + 0.5])]
        models[kind] = (_two_line_model(kind), starts)
    out = {}
    for name, (fn, starts) in models.items():
        best = min((least_squares(lambda th, fn=fn: fn(th, x) - f, th0) for th0 in starts), key=lambda r: r.cost)
        rss = max(2 * float(best.cost), 1e-300)
        k = best.x.size
        aic, aicc = _aic(rss, x.size, k)
        out[name] = {"params": best.x.tolist(), "rss": rss, "k": k, "aic": aic, "aicc": aicc}
    crit = "aicc" if x.size >= 6 else "aic"
    return EmergenceModels(models=out, best=min(out, key=lambda m: out[m][crit]), criterion=crit,
                           best_aic=min(out, key=lambda m: out[m]["aic"]), n_sizes=int(n.size))
