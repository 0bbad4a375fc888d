"""Which tokens measure quanta across scale: the selected estimator QDG runs (its own tokens, biased by their
selection) and the held-out one (tokens no family member chose, assigned to the nearest quantum), and a
synthetic family with planted learning scales that tells them apart (`compare_estimators`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .curves import LearningOrder, QuantaScaling, quanta_scaling
from .order import spearman_ci

__all__ = ["nearest_quanta", "quantum_centroids", "heldout_quanta_scaling", "selected_quanta_scaling",
           "planted_family", "PlantedFamily", "compare_estimators", "EstimatorComparison"]


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
                           learned_loss: float = 0.1, **kw) -> QuantaScaling:
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
    QuantaScaling
        `quanta_scaling`'s result (ranks are held-out frequency ranks) with `estimator` and `learned_loss` set.

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
    return replace(result, estimator="held-out tokens assigned to the nearest quantum centroid; reference a fixed "
                                     "learned loss", learned_loss=float(learned_loss))


def selected_quanta_scaling(losses: np.ndarray, x, labels: np.ndarray, *, threshold: float = 0.1,
                            **kw) -> QuantaScaling:
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
    QuantaScaling
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
    selected, heldout : LearningOrder
        Each estimator's `QuantaScaling.spearman_rank_n_star`.
    assigned_correctly : float
        Share of held-out tokens whose nearest centroid is their true quantum.
    """

    planted: float
    selected: LearningOrder
    heldout: LearningOrder
    assigned_correctly: float

    def to_dict(self) -> dict:
        """{planted, selected, heldout, assigned_correctly}."""
        return {"planted": self.planted, "selected": self.selected.to_dict(), "heldout": self.heldout.to_dict(),
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
    return EstimatorComparison(family.rho, old.spearman_rank_n_star, new.spearman_rank_n_star,
                               float(np.mean(nearest_quanta(grads[~half], centroids) == labels[~half])))
