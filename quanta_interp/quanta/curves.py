"""Per-quantum learning curves over a model family and the quantization model's predictions tested on them
(`quanta_scaling`, Michaud et al. 2023 §2–3), as a typed result whose `to_dict()` is `quanta_scaling.json`.

The measurements (N*, sharpness, ρ and bootstrap CIs) are `order`'s; the estimators that choose which tokens
to measure (selected vs held-out) are `estimators`'.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from .order import CRITERION, Spearman, bootstrap_ci, drop_sharpness, learning_scale, quantile, spearman_ci

__all__ = ["quanta_scaling", "QuantaScaling", "QuantumCurve", "LearningOrder", "LearnedGrowth", "SharpnessRatio",
           "ClassCounts", "PAPER_CLAIM"]

PAPER_CLAIM = ("Michaud et al. 2023: quanta are learned in order of decreasing use frequency, so a quantum's "
               "frequency rank and its learning scale N* are positively rank-correlated; n_learned ∝ N gives "
               "α_N = α (frequencies ∝ k^−(α+1)); monogenic tokens' losses drop sharply at one scale")
_ORDER_CLAIM = "ρ > 0: frequent quanta (small rank) are learned at smaller scale"
_GROWTH_MODEL = ("n_learned ∝ N^b; with frequencies ∝ k^−(α+1), L ∝ N^−α·b, so α_N = α·b (b = 1: equal cost per "
                 "quantum)")
_SHARPNESS_UNIT = "fraction of the curve's fall per e-fold of scale, at its steepest step"


@dataclass(frozen=True)
class QuantumCurve:
    """One quantum across the family (an entry of `QuantaScaling.clusters`).

    Attributes
    ----------
    rank : int
        Frequency rank, 1 = the largest quantum.
    size : int
        Tokens.
    mean, q25, q75 : list of float (n_members,)
        Mean and quartiles of its tokens' loss (nats) under each member.
    reference : float
        Mean L_ref of its tokens (nats; `order.CRITERION`).
    n_star : float
        Learning scale N* in the units of x (x_0 left-censored, inf right-censored; null in JSON).
    n_star_ci : list of float
        [2.5 %, 97.5 %] of N* over its tokens resampled (±inf possible).
    censored : "left", "right" or None
    drop : float
        L_0 − L_ref, nats.
    sharpness, token_sharpness : float
        `order.drop_sharpness` of the mean curve, and the median over its tokens' curves (NaN when flat).
    classes : dict str → int
        Its tokens per `lm.scaling.TokenClasses` label: monogenic, polygenic, other.
    """

    rank: int
    size: int
    mean: list[float]
    q25: list[float]
    q75: list[float]
    reference: float
    n_star: float
    n_star_ci: list[float]
    censored: str | None
    drop: float
    sharpness: float
    token_sharpness: float
    classes: dict[str, int]

    def to_dict(self) -> dict:
        """The fields in order (the `clusters` entries of quanta_scaling.json)."""
        return asdict(self)


@dataclass(frozen=True)
class LearningOrder(Spearman):
    """The first prediction: Spearman ρ(frequency rank, N*) over the quanta, with the censored counts.

    Attributes
    ----------
    rho, ci, p, n
        As `order.Spearman` (n: quanta).
    n_left_censored, n_right_censored : int
        Quanta learned by the smallest member, and not learned within the family.
    """

    n_left_censored: int
    n_right_censored: int

    def to_dict(self) -> dict:
        """{rho, ci, p, n, n_left_censored, n_right_censored, paper} (paper: the claim tested)."""
        return {**super().to_dict(), "n_left_censored": self.n_left_censored,
                "n_right_censored": self.n_right_censored, "paper": _ORDER_CLAIM}


@dataclass(frozen=True)
class LearnedGrowth:
    """The second prediction: quanta learned by each member, n(x) ∝ x^b, and the α_N it implies.

    Attributes
    ----------
    x : list of float (n_members,)
        Member scales.
    counts : list of int (n_members,)
        Quanta with N* ≤ x.
    b : float or None
        Log-log slope of counts vs x over members with a count (None with < 3 such or constant counts).
    b_ci : list of float or None
        95 % bootstrap CI of b over resampled quanta.
    alpha : float or None
        α = −rank_slope − 1 of the QDG rank-frequency fit (axis "N" and a slope only).
    implied_alpha_N, implied_alpha_N_ci : float or None, list of float or None
        α·b and its CI (α·b_ci, sorted).
    measured_alpha_N : float or None
        α_N measured on the family, given for comparison; `alpha_N_source` names it.
    """

    x: list[float]
    counts: list[int]
    b: float | None
    b_ci: list[float] | None
    alpha: float | None
    implied_alpha_N: float | None
    implied_alpha_N_ci: list[float] | None
    measured_alpha_N: float | None
    alpha_N_source: str | None

    def to_dict(self) -> dict:
        """The fields in order, then `model` (the relation tested)."""
        return {**asdict(self), "model": _GROWTH_MODEL}


@dataclass(frozen=True)
class SharpnessRatio:
    """The third prediction: each quantum's sharpness over the median of its tokens' (1 when they drop together).

    Attributes
    ----------
    n : int
        Quanta with both sharpnesses finite.
    quanta_median, tokens_median : float or None
        Medians of the quanta's and of their tokens' sharpness (fraction of the fall per e-fold); None when n = 0.
    median_ratio : float or None
    ci : list of float or None
        95 % bootstrap CI of the median ratio over resampled quanta.
    """

    n: int
    quanta_median: float | None = None
    tokens_median: float | None = None
    median_ratio: float | None = None
    ci: list[float] | None = None

    def to_dict(self) -> dict:
        """{n, median_ratio, ci} when n = 0, else the fields in order and the `unit`."""
        if not self.n:
            return {"n": 0, "median_ratio": None, "ci": None}
        return {**asdict(self), "unit": _SHARPNESS_UNIT}


@dataclass(frozen=True)
class ClassCounts:
    """Tokens per monogenic / polygenic / other class (`lm.scaling.TokenClasses`) and the thresholds used.

    Attributes
    ----------
    monogenic, polygenic, other : int
    thresholds : dict str → float
        `TokenClasses` keyword arguments (high, low, slope, r2).
    """

    monogenic: int
    polygenic: int
    other: int
    thresholds: dict[str, float]

    def to_dict(self) -> dict:
        """The fields in order."""
        return asdict(self)


@dataclass(frozen=True)
class QuantaScaling:
    """`quanta_scaling`'s result: every quantum's curve and the three predictions tested.

    Attributes
    ----------
    axis : "N" or "step"
    x : list of float (n_members,)
        Member scales (non-embedding parameters, or training steps).
    members : list of str or None
        Member names, in family order.
    min_drop : float
        Nats (`order.learning_scale`).
    n_tokens : int
        Tokens measured.
    spearman_rank_n_star : LearningOrder
    n_learned : LearnedGrowth
    sharpness : SharpnessRatio
    token_classes : ClassCounts
    clusters : list of QuantumCurve
        Non-empty quanta by rank.
    estimator : str or None
        Which tokens were measured, when not QDG's own (`estimators.heldout_quanta_scaling`).
    learned_loss : float or None
        Nats: the fixed reference of the held-out estimator.
    """

    axis: str
    x: list[float]
    members: list[str] | None
    min_drop: float
    n_tokens: int
    spearman_rank_n_star: LearningOrder
    n_learned: LearnedGrowth
    sharpness: SharpnessRatio
    token_classes: ClassCounts
    clusters: list[QuantumCurve]
    estimator: str | None = None
    learned_loss: float | None = None

    @property
    def n_quanta(self) -> int:
        """Non-empty quanta."""
        return len(self.clusters)

    def to_dict(self) -> dict:
        """quanta_scaling.json: the settings (with `criterion` and `paper`), the predictions, the quanta, and
        `estimator` / `learned_loss` when set. An infinite N* or CI bound becomes null in JSON."""
        return {"axis": self.axis, "x": self.x, "members": self.members, "criterion": CRITERION,
                "min_drop": self.min_drop, "paper": PAPER_CLAIM, "n_tokens": self.n_tokens, "n_quanta": self.n_quanta,
                "spearman_rank_n_star": self.spearman_rank_n_star.to_dict(), "n_learned": self.n_learned.to_dict(),
                "sharpness": self.sharpness.to_dict(), "token_classes": self.token_classes.to_dict(),
                "clusters": [c.to_dict() for c in self.clusters],
                **({} if self.estimator is None else {"estimator": self.estimator, "learned_loss": self.learned_loss})}


def quanta_scaling(losses: np.ndarray, x, labels: np.ndarray, reference: np.ndarray, *, axis: str = "N",
                   members: list[str] | None = None, rank_slope: float | None = None, alpha_n: float | None = None,
                   alpha_n_source: str | None = None, thresholds: Mapping[str, float] | None = None,
                   min_drop: float = 0.1, n_boot: int = 200, seed: int = 0) -> QuantaScaling:
    """Per-quantum learning curves and the quantization model's three predictions, with bootstrap CIs.

    Parameters
    ----------
    losses : float array-like (n_tokens, n_members)
        Loss in nats of each clustered token under each member, in family order.
    x : float array-like (n_members,)
        Each member's scale: non-embedding parameters (`axis` "N") or training step ("step").
    labels : int array-like (n_tokens,)
        Quantum of each token as its frequency rank − 1 (0 = the largest cluster).
    reference : float array-like (n_tokens,)
        Each token's loss under the QDG model (L_ref of `CRITERION`).
    rank_slope : float or None
        The QDG rank-frequency slope −(α+1); with it and `axis` "N" the implied α_N = α·b is reported.
    alpha_n, alpha_n_source
        α_N measured on the family (e.g. `quanta lm scaling`), for comparison.
    thresholds : mapping or None
        `TokenClasses` arguments; default the paper's (`lm.scaling.PAPER_CLASSES`).
    min_drop : float
        Nats; see `learning_scale`.
    n_boot : int
        Bootstrap resamples of tokens within a quantum (N* CI); ρ, b and sharpness CIs resample the quanta 1000 times.

    Returns
    -------
    QuantaScaling

    Raises
    ------
    ValueError
        Fewer than 3 members, x not increasing, or shapes that do not match.
    """
    from ..lm.scaling import PAPER_CLASSES, TokenClasses

    L = np.asarray(losses, float)
    x = np.asarray(x, float)
    labels = np.asarray(labels)
    ref = np.asarray(reference, float)
    if L.ndim != 2 or L.shape[1] != x.size or x.size < 3 or len(labels) != len(L) or len(ref) != len(L):
        raise ValueError(f"losses must be (tokens × members) with ≥ 3 members and one label and reference per token; "
                         f"got {L.shape}, {x.size} scales, {len(labels)} labels, {len(ref)} references")
    thresholds = thresholds or PAPER_CLASSES
    classes = TokenClasses(**thresholds).fit(L, x)
    token_sharp = drop_sharpness(L, x, min_drop=min_drop)
    rng = np.random.default_rng(seed)
    clusters = []
    for c in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == c)
        if not len(idx):
            continue
        Lc, rc = L[idx], ref[idx]
        mean = Lc.mean(0)
        n_star = float(learning_scale(mean, x, rc.mean(), min_drop=min_drop))
        boot = np.empty(n_boot)
        for b in range(n_boot):
            i = rng.integers(0, len(idx), len(idx))
            boot[b] = learning_scale(Lc[i].mean(0), x, rc[i].mean(), min_drop=min_drop)
        censored = "left" if mean[0] - rc.mean() < min_drop else ("right" if np.isinf(n_star) else None)
        sharp = drop_sharpness(mean[None], x, min_drop=min_drop)[0]
        ts = token_sharp[idx]
        labs = classes.labels_[idx]
        clusters.append(QuantumCurve(
            rank=c + 1, size=int(len(idx)), mean=mean.tolist(), q25=np.quantile(Lc, 0.25, axis=0).tolist(),
            q75=np.quantile(Lc, 0.75, axis=0).tolist(), reference=float(rc.mean()), n_star=n_star,
            n_star_ci=quantile(boot, [0.025, 0.975]), censored=censored, drop=float(mean[0] - rc.mean()),
            sharpness=float(sharp),
            token_sharpness=float(np.nanmedian(ts)) if np.isfinite(ts).any() else float("nan"),
            classes={k: int((labs == k).sum()) for k in ("monogenic", "polygenic", "other")}))

    ranks = np.array([c.rank for c in clusters], float)
    stars = np.array([c.n_star for c in clusters])
    rho = spearman_ci(ranks, stars, n_boot=1000, seed=seed)
    order = LearningOrder(rho.rho, rho.ci, rho.p, rho.n,
                          n_left_censored=sum(c.censored == "left" for c in clusters),
                          n_right_censored=sum(c.censored == "right" for c in clusters))
    return QuantaScaling(
        axis=axis, x=x.tolist(), members=members, min_drop=min_drop, n_tokens=int(len(L)),
        spearman_rank_n_star=order,
        n_learned=_n_learned(stars, x, axis, rank_slope, alpha_n, alpha_n_source, n_boot=1000, seed=seed),
        sharpness=_sharpness(clusters, n_boot=1000, seed=seed),
        token_classes=ClassCounts(**classes.counts(), thresholds=thresholds), clusters=clusters)


def _fit_growth(stars: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float | None]:
    counts = (stars[:, None] <= x[None, :]).sum(0)
    keep = counts > 0
    if keep.sum() < 3 or np.ptp(counts[keep]) == 0:
        return counts, None
    return counts, float(np.polyfit(np.log(x[keep]), np.log(counts[keep]), 1)[0])


def _n_learned(stars, x, axis, rank_slope, alpha_n, alpha_n_source, *, n_boot, seed) -> LearnedGrowth:
    """Quanta learned by each member, n(x) ∝ x^b fitted in log-log, b's CI over resampled quanta."""
    counts, b = _fit_growth(stars, x)
    b_ci = bootstrap_ci(lambda i: _fit_growth(stars[i], x)[1], len(stars), n_boot, seed)
    b_ci = b_ci if b is not None else None
    alpha = implied = implied_ci = None
    if axis == "N" and rank_slope is not None and b is not None:
        alpha = -rank_slope - 1
        implied = alpha * b
        implied_ci = sorted(alpha * v for v in b_ci) if b_ci else None
    return LearnedGrowth(x.tolist(), counts.tolist(), b, b_ci, alpha, implied, implied_ci, alpha_n, alpha_n_source)


def _sharpness(clusters: list[QuantumCurve], *, n_boot, seed) -> SharpnessRatio:
    """Each quantum's sharpness over the median of its tokens' (1 when its tokens drop together)."""
    pairs = np.array([(c.sharpness, c.token_sharpness) for c in clusters], float).reshape(-1, 2)
    pairs = pairs[np.isfinite(pairs).all(1)]
    if not len(pairs):
        return SharpnessRatio(0)
    ratio = pairs[:, 0] / pairs[:, 1]
    return SharpnessRatio(int(len(pairs)), float(np.median(pairs[:, 0])), float(np.median(pairs[:, 1])),
                          float(np.median(ratio)), bootstrap_ci(lambda i: np.median(ratio[i]), len(ratio), n_boot, seed))
