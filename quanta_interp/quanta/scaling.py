"""Quanta across scale: a learning curve for every quantum and the quantization model's predictions, tested.

Given QDG's quanta (tokens grouped by gradient) and the loss of every clustered token under every member
of an ordered model family (`family.family_stage`), this module measures, without any model:

- per quantum, the mean and interquartile range of its tokens' loss against scale x (non-embedding
  parameters N, or training step), the scale N* at which it is learned (`learning_scale`) with a
  bootstrap CI over its tokens, and the share of monogenic / polygenic tokens (`lm.scaling.TokenClasses`);
- the predictions of the quantization model (Michaud et al. 2023, §2–3): quanta are learned in order of
  decreasing frequency (Spearman ρ between frequency rank and N* > 0); the number of quanta learned grows
  as n(N) ∝ N^b, so that with frequencies p_k ∝ k^−(α+1) the loss scales as N^−α·b (α_N = α when every
  quantum costs the same capacity, b = 1); a monogenic quantum's loss drops as sharply as its tokens'.

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

__all__ = ["learning_scale", "drop_sharpness", "spearman_ci", "Spearman", "quanta_scaling", "nearest_quanta",
           "quantum_centroids", "heldout_quanta_scaling", "selected_quanta_scaling", "planted_family", "PlantedFamily",
           "compare_estimators", "EstimatorComparison",
           "plot_quanta_scaling",
           "CRITERION", "PAPER_CLAIM"]

CRITERION = ("N* = the scale where a curve's loss first falls to the midpoint between its loss under the smallest "
             "member (L_0) and under the QDG model (L_ref), interpolated in log scale; N* = smallest member when "
             "L_0 − L_ref < min_drop (left-censored), ∞ when the midpoint is never reached (right-censored)")
PAPER_CLAIM = ("Michaud et al. 2023: quanta are learned in order of decreasing use frequency, so a quantum's "
               "frequency rank and its learning scale N* are positively rank-correlated; n_learned ∝ N gives "
               "α_N = α (frequencies ∝ k^−(α+1)); monogenic tokens' losses drop sharply at one scale")


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
    ci = _bootstrap_ci(lambda i: spearmanr(ra[i], rb[i]).statistic if np.ptp(ra[i]) > 0 and np.ptp(rb[i]) > 0
                       else None, n, n_boot, seed)
    return Spearman(float(res.statistic), ci, float(res.pvalue), n)


def _bootstrap_ci(stat, n: int, n_boot: int, seed: int) -> list[float] | None:
    """95 % percentile interval of `stat(indices)` over `n_boot` resamples of range(n) with replacement;
    resamples where `stat` returns None are dropped (None when all are)."""
    rng = np.random.default_rng(seed)
    boots = [v for v in (stat(rng.integers(0, n, n)) for _ in range(n_boot)) if v is not None]
    return np.percentile(boots, [2.5, 97.5]).tolist() if boots else None


def _quantile(values: np.ndarray, q) -> list:
    """Quantiles that pick observed values (±inf survive)."""
    return [float(v) for v in np.quantile(values, q, method="inverted_cdf")]


def quanta_scaling(losses: np.ndarray, x, labels: np.ndarray, reference: np.ndarray, *, axis: str = "N",
                   members: list[str] | None = None, rank_slope: float | None = None, alpha_n: float | None = None,
                   alpha_n_source: str | None = None, thresholds: dict | None = None, min_drop: float = 0.1,
                   n_boot: int = 200, seed: int = 0) -> dict:
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
    thresholds : dict or None
        `TokenClasses` arguments; default the paper's (`lm.scaling.PAPER_CLASSES`).
    min_drop : float
        Nats; see `learning_scale`.
    n_boot : int
        Bootstrap resamples: of tokens within a quantum (N* CI) and of quanta (ρ, b and sharpness CIs).

    Returns
    -------
    dict
        `clusters` (per quantum: rank, size, mean/q25/q75 loss per member, n_star with n_star_ci and
        censored, drop, sharpness, token_sharpness, classes), `spearman_rank_n_star`, `n_learned`,
        `sharpness`, `token_classes`, and the settings (`axis`, `x`, `members`, `criterion`, `paper`).
        An infinite N* (right-censored) or CI bound is written as null in JSON.

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
        clusters.append({
            "rank": c + 1, "size": int(len(idx)), "mean": mean.tolist(),
            "q25": np.quantile(Lc, 0.25, axis=0).tolist(), "q75": np.quantile(Lc, 0.75, axis=0).tolist(),
            "reference": float(rc.mean()), "n_star": n_star, "n_star_ci": _quantile(boot, [0.025, 0.975]),
            "censored": censored, "drop": float(mean[0] - rc.mean()), "sharpness": float(sharp),
            "token_sharpness": float(np.nanmedian(ts)) if np.isfinite(ts).any() else float("nan"),
            "classes": {k: int((labs == k).sum()) for k in ("monogenic", "polygenic", "other")}})

    ranks = np.array([c["rank"] for c in clusters], float)
    stars = np.array([c["n_star"] for c in clusters])
    spearman = {**spearman_ci(ranks, stars, n_boot=1000, seed=seed).to_dict(),
                "n_left_censored": sum(c["censored"] == "left" for c in clusters),
                "n_right_censored": sum(c["censored"] == "right" for c in clusters),
                "paper": "ρ > 0: frequent quanta (small rank) are learned at smaller scale"}
    learned = _n_learned(stars, x, axis, rank_slope, alpha_n, alpha_n_source, n_boot=1000, seed=seed)
    sharp = _sharpness(clusters, n_boot=1000, seed=seed)
    return {"axis": axis, "x": x.tolist(), "members": members, "criterion": CRITERION, "min_drop": min_drop,
            "paper": PAPER_CLAIM, "n_tokens": int(len(L)), "n_quanta": len(clusters),
            "spearman_rank_n_star": spearman, "n_learned": learned, "sharpness": sharp,
            "token_classes": {**classes.counts(), "thresholds": thresholds}, "clusters": clusters}


def nearest_quanta(gradients: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The quantum of each gradient: its nearest centroid by cosine similarity.

    Parameters
    ----------
    gradients : float array-like (n_tokens, dim)
        Per-token gradients (any norm; a zero row goes to quantum 0).
    centroids : float array-like (n_quanta, dim)
        One direction per quantum, e.g. the mean unit gradient of its tokens on the half it was clustered on.

    Returns
    -------
    int64 ndarray (n_tokens,)
        Index of the nearest centroid.

    Raises
    ------
    ValueError
        Mismatched dimensions, or no centroid.
    """
    G, C = np.asarray(gradients, float), np.asarray(centroids, float)
    if G.ndim != 2 or C.ndim != 2 or G.shape[1] != C.shape[1] or not len(C):
        raise ValueError(f"gradients (n × dim) and centroids (k × dim) must share dim; got {G.shape} and {C.shape}")
    unit = C / np.maximum(np.linalg.norm(C, axis=1, keepdims=True), 1e-30)
    return np.argmax(G @ unit.T, axis=1).astype(np.int64)


def quantum_centroids(gradients: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each quantum's direction: the mean unit gradient of its tokens (the centroids `nearest_quanta` uses).

    Parameters
    ----------
    gradients : float array-like (n_tokens, dim)
    labels : int array-like (n_tokens,)
        Quantum 0 … k−1 of each token; every quantum must hold a token.

    Returns
    -------
    float64 ndarray (k, dim)

    Raises
    ------
    ValueError
        A quantum without tokens, or mismatched lengths.
    """
    G, labels = np.asarray(gradients, float), np.asarray(labels)
    counts = np.bincount(labels)
    if len(labels) != len(G) or np.any(counts == 0):
        raise ValueError(f"need one label per gradient and tokens in every quantum; got {len(labels)} labels for "
                         f"{len(G)} gradients, empty quanta {np.flatnonzero(counts == 0).tolist()}")
    unit = G / np.maximum(np.linalg.norm(G, axis=1, keepdims=True), 1e-30)
    sums = np.zeros((len(counts), G.shape[1]))
    np.add.at(sums, labels, unit)
    return sums / counts[:, None]


def heldout_quanta_scaling(losses: np.ndarray, x, gradients: np.ndarray, centroids: np.ndarray, *,
                           learned_loss: float = 0.1, **kw) -> dict:
    """Quanta across scale measured on tokens no family member selected (the unbiased estimator).

    `quanta_scaling` on QDG's own tokens inherits their selection: they were chosen because the QDG model (the
    family's top) predicts them with loss < threshold, so every quantum is learned at the top by construction
    and its N* is pulled below the top. Here the quanta are only *defined* elsewhere (`centroids`, from
    clustering one half of the corpus); the curves are measured on held-out tokens chosen without any loss —
    every token of the other half, each assigned to its nearest centroid (`nearest_quanta`) — ranked by
    their held-out counts, and a quantum is learned where its mean loss falls halfway from its loss under the
    smallest member to the fixed level `learned_loss`, which a quantum the top member has not learned never
    reaches (right-censored).

    Parameters
    ----------
    losses : float array-like (n_tokens, n_members)
        Nats, each held-out token under each member, in family order.
    x : float array-like (n_members,)
        Scales (N or steps), strictly increasing.
    gradients : float array-like (n_tokens, dim)
        Each held-out token's gradient (same model and sketch as the centroids).
    centroids : float array-like (n_quanta, dim)
    learned_loss : float
        Nats: the loss of a learned token (QDG's loss_threshold by default), the reference of `CRITERION`.
    **kw
        Other `quanta_scaling` arguments (members, rank_slope, alpha_n, thresholds, min_drop, n_boot, seed).

    Returns
    -------
    dict
        `quanta_scaling`'s result (ranks are held-out frequency ranks) with `estimator` and `learned_loss`.

    Raises
    ------
    ValueError
        As `quanta_scaling` and `nearest_quanta`.
    """
    quantum = nearest_quanta(gradients, centroids)
    counts = np.bincount(quantum, minlength=len(centroids))
    rank_of = np.empty(len(counts), np.int64)
    rank_of[np.argsort(-counts, kind="stable")] = np.arange(len(counts))
    result = quanta_scaling(losses, x, rank_of[quantum], np.full(len(quantum), float(learned_loss)), **kw)
    return {**result, "estimator": "held-out tokens assigned to the nearest quantum centroid; reference a fixed "
                                   "learned loss", "learned_loss": float(learned_loss)}


def selected_quanta_scaling(losses: np.ndarray, x, labels: np.ndarray, *, threshold: float = 0.1, **kw) -> dict:
    """The selected estimator, as QDG runs it: curves measured on the tokens the top member predicts with loss
    < `threshold`, ranked by their counts there, with each token's loss under the top member as reference.
    Kept to show its bias beside `heldout_quanta_scaling` (on a family whose truth is known, `planted_family`).

    Parameters
    ----------
    losses : float array-like (n_tokens, n_members)
        Nats, every token under every member, the top member last.
    x : float array-like (n_members,)
    labels : int array-like (n_tokens,)
        Each token's quantum (any ids).
    **kw
        Other `quanta_scaling` arguments.

    Returns
    -------
    dict
        `quanta_scaling`'s result on the selected tokens.
    """
    L, labels = np.asarray(losses, float), np.asarray(labels)
    sel = L[:, -1] < threshold
    counts = np.bincount(labels[sel], minlength=int(labels.max()) + 1)
    rank_of = np.empty(len(counts), np.int64)
    rank_of[np.argsort(-counts, kind="stable")] = np.arange(len(counts))
    return quanta_scaling(L[sel], x, rank_of[labels[sel]], L[sel, -1], **kw)


@dataclass(frozen=True)
class PlantedFamily:
    """A synthetic family whose quanta have known learning scales (`planted_family`).

    Attributes
    ----------
    x : float64 ndarray (n_members,)
        Member scales N.
    losses : float64 ndarray (n_tokens, n_members)
        Nats.
    gradients : float64 ndarray (n_tokens, dim)
    labels : int64 ndarray (n_tokens,)
        True quantum of each token; quantum k has frequency rank k + 1.
    n_star : float64 ndarray (n_quanta,)
        Planted learning scales.
    rho : float
        Spearman ρ(frequency rank, N*) as an estimator over this family sees it (N* below the smallest member
        at x_0, beyond the largest ∞): what an unbiased estimator should recover.
    """

    x: np.ndarray
    losses: np.ndarray
    gradients: np.ndarray
    labels: np.ndarray
    n_star: np.ndarray
    rho: float


def planted_family(seed: int = 0, *, n_quanta: int = 120, n_tokens: int = 30000, dim: int = 48,
                   members: int = 7) -> PlantedFamily:
    """A synthetic family with a planted ρ(rank, N*), to test estimators of quanta across scale.

    Quantum k (0-based) has frequency ∝ (k + 1)^−1.3 (Michaud et al. 2023's Zipf form) and learning scale
    ln N*_k = ln 200 + 1.6·ln(k + 1) + N(0, 1.2²), so that over half the quanta are learned beyond the largest
    of `members` sizes 10³…10⁵. A token's loss is 3 / (1 + e^((ln N − ln N*_k − ε)/0.35)) + 0.02 + |N(0, 0.04²)|
    nats, its own scale scattered by ε ~ N(0, 0.5²); its gradient is the quantum's unit direction plus
    N(0, 0.6²/dim) noise.
    """
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e3, 1e5, members)
    k = np.arange(1, n_quanta + 1)
    ln_star = np.log(200.0) + 1.6 * np.log(k) + rng.normal(0, 1.2, n_quanta)
    labels = rng.choice(n_quanta, n_tokens, p=k**-1.3 / np.sum(k**-1.3))
    mu = rng.normal(size=(n_quanta, dim))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    grads = mu[labels] + rng.normal(0, 0.6 / np.sqrt(dim), (n_tokens, dim))
    z = (np.log(x)[None, :] - (ln_star[labels] + rng.normal(0, 0.5, n_tokens))[:, None]) / 0.35
    losses = 3.0 / (1 + np.exp(z)) + 0.02 + np.abs(rng.normal(0, 0.04, (n_tokens, x.size)))
    star = np.exp(ln_star)
    rho = spearman_ci(k, np.where(star > x[-1], np.inf, np.maximum(star, x[0])), n_boot=2).rho
    return PlantedFamily(x, losses, grads, labels.astype(np.int64), star, float(rho))


@dataclass(frozen=True)
class EstimatorComparison:
    """`compare_estimators`'s result: the planted ρ beside each estimator's `spearman_rank_n_star` entry.

    Attributes
    ----------
    planted : float
        `PlantedFamily.rho`.
    selected, heldout : dict
        rho, ci, p, n, n_left_censored, n_right_censored (and the paper's claim), as `quanta_scaling` writes them.
    assigned_correctly : float
        Share of held-out tokens whose nearest centroid is their true quantum.
    """

    planted: float
    selected: dict
    heldout: dict
    assigned_correctly: float

    def to_dict(self) -> dict:
        """{planted, selected, heldout, assigned_correctly}."""
        return {"planted": self.planted, "selected": self.selected, "heldout": self.heldout,
                "assigned_correctly": self.assigned_correctly}


def compare_estimators(family: PlantedFamily, *, threshold: float = 0.1, n_boot: int = 200,
                       seed: int = 0) -> EstimatorComparison:
    """The selected and the held-out estimator side by side on a family whose ρ is known.

    The selected one runs on every token (`selected_quanta_scaling`, the true quanta as labels: only the
    selection is tested, not a clustering); the held-out one defines the quanta on a random half
    (`quantum_centroids` of its true labels) and measures the other half (`heldout_quanta_scaling`,
    `learned_loss` = `threshold`).
    """
    labels, grads = family.labels, family.gradients
    old = selected_quanta_scaling(family.losses, family.x, labels, threshold=threshold, n_boot=n_boot, seed=seed)
    half = np.random.default_rng([seed, 2]).random(len(labels)) < 0.5
    centroids = quantum_centroids(grads[half], labels[half])
    new = heldout_quanta_scaling(family.losses[~half], family.x, grads[~half], centroids, learned_loss=threshold,
                                 n_boot=n_boot, seed=seed)
    return EstimatorComparison(family.rho, old["spearman_rank_n_star"], new["spearman_rank_n_star"],
                               float(np.mean(nearest_quanta(grads[~half], centroids) == labels[~half])))


def _fit_growth(stars: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float | None]:
    counts = (stars[:, None] <= x[None, :]).sum(0)
    keep = counts > 0
    if keep.sum() < 3 or np.ptp(counts[keep]) == 0:
        return counts, None
    return counts, float(np.polyfit(np.log(x[keep]), np.log(counts[keep]), 1)[0])


def _n_learned(stars, x, axis, rank_slope, alpha_n, alpha_n_source, *, n_boot, seed) -> dict:
    """Quanta learned by each member, n(x) ∝ x^b fitted in log-log, b's CI over resampled quanta."""
    counts, b = _fit_growth(stars, x)
    b_ci = _bootstrap_ci(lambda i: _fit_growth(stars[i], x)[1], len(stars), n_boot, seed)
    out = {"x": x.tolist(), "counts": counts.tolist(), "b": b, "b_ci": b_ci if b is not None else None,
           "alpha": None, "implied_alpha_N": None, "implied_alpha_N_ci": None,
           "measured_alpha_N": alpha_n, "alpha_N_source": alpha_n_source,
           "model": "n_learned ∝ N^b; with frequencies ∝ k^−(α+1), L ∝ N^−α·b, so α_N = α·b (b = 1: equal cost per quantum)"}
    if axis == "N" and rank_slope is not None and b is not None:
        alpha = -rank_slope - 1
        out.update(alpha=alpha, implied_alpha_N=alpha * b,
                   implied_alpha_N_ci=sorted(alpha * v for v in out["b_ci"]) if out["b_ci"] else None)
    return out


def _sharpness(clusters: list[dict], *, n_boot, seed) -> dict:
    """Each quantum's sharpness over the median of its tokens' (1 when its tokens drop together)."""
    pairs = np.array([(c["sharpness"], c["token_sharpness"]) for c in clusters], float).reshape(-1, 2)
    pairs = pairs[np.isfinite(pairs).all(1)]
    if not len(pairs):
        return {"n": 0, "median_ratio": None, "ci": None}
    ratio = pairs[:, 0] / pairs[:, 1]
    return {"n": int(len(pairs)), "quanta_median": float(np.median(pairs[:, 0])),
            "tokens_median": float(np.median(pairs[:, 1])), "median_ratio": float(np.median(ratio)),
            "ci": _bootstrap_ci(lambda i: np.median(ratio[i]), len(ratio), n_boot, seed),
            "unit": "fraction of the curve's fall per e-fold of scale, at its steepest step"}


def plot_quanta_scaling(stem, result: dict, *, title: str = "") -> None:
    """Three panels: the largest quanta's mean loss vs scale, N* vs frequency rank (with CIs and ρ), and the
    number of quanta learned vs scale with its power-law fit. Writes `stem`.png and .svg."""
    from ..report import new_figure, save_figure

    x, axis = np.asarray(result["x"]), result["axis"]
    label = "non-embedding parameters N" if axis == "N" else "training step"
    fig, ax = new_figure(3, size=(4.4, 4.0))
    a = ax[0, 0]
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    shown = result["clusters"][:12]
    for i, c in enumerate(shown):
        a.semilogx(x, c["mean"], "o-", ms=2.5, lw=1, color=cmap(i / max(1, len(shown) - 1)), label=f"#{c['rank']}")
    a.set(xlabel=label, ylabel="mean loss of the quantum's tokens (nats)", title="the largest quanta")
    a.legend(fontsize=6, ncol=2)
    a = ax[0, 1]
    ranks = np.array([c["rank"] for c in result["clusters"]])
    stars = np.array([c["n_star"] for c in result["clusters"]])
    ci = np.array([c["n_star_ci"] for c in result["clusters"]])
    top = x[-1] * 1.6
    shown_star = np.where(np.isinf(stars), top, stars)
    lo = np.where(np.isinf(ci[:, 0]), top, ci[:, 0])
    hi = np.where(np.isinf(ci[:, 1]), top, ci[:, 1])
    a.errorbar(ranks, shown_star, yerr=[np.maximum(shown_star - lo, 0), np.maximum(hi - shown_star, 0)], fmt="o",
               ms=3, lw=0.6, capsize=0)
    a.set_xscale("log")
    a.set_yscale("log")
    for xm in x:
        a.axhline(xm, color="0.85", lw=0.5, zorder=0)
    s = result["spearman_rank_n_star"]
    rho = "n/a" if s["rho"] is None else f"{s['rho']:.2f} [{s['ci'][0]:.2f}, {s['ci'][1]:.2f}]"
    a.set(xlabel="quantum frequency rank", ylabel=f"N* ({label})", title=f"Spearman ρ(rank, N*) = {rho}")
    a = ax[0, 2]
    n = result["n_learned"]
    counts = np.asarray(n["counts"], float)
    a.loglog(x[counts > 0], counts[counts > 0], "o-", ms=3, label="quanta learned")
    if n["b"] is not None:
        keep = counts > 0
        pre = np.exp(np.mean(np.log(counts[keep]) - n["b"] * np.log(x[keep])))
        a.loglog(x, pre * x ** n["b"], "--", color="C3", label=f"∝ {axis}^{n['b']:.2f}")
    a.set(xlabel=label, ylabel="quanta with N* ≤ scale", title="quanta learned vs scale")
    a.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, stem)
