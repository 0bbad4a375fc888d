"""Token correlations at lag n: C(n) = P(x_i, x_{i+n}) − P(x_i)P(x_{i+n}), its norms and their decay.

Pairs are counted sparsely (scipy COO → CSR); C(n) is a sparse matrix minus a rank-1 term, so its
operator norm comes from `svds` on a `LinearOperator` and its Frobenius norm from a closed form — the
dense V×V matrix never exists. The sampling noise floor comes from shuffled pairs (independent pairs with
the same marginals), measured at several pair counts to show its ∝ 1/√(pairs) scaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import LinearOperator, svds

from ..fitting import fit_power_law, fit_range_sensitivity
from .fits import BetaFit

__all__ = ["as_documents", "pair_counts", "Correlation", "CorrelationDecay", "fit_beta", "DENSE_MAX_VOCAB"]

DENSE_MAX_VOCAB = 8192  # above this a dense V×V float64 matrix (≥ 0.5 GB) is refused


def as_documents(tokens: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """One token array, or a list of documents (pairs never straddle two documents), as a list of int arrays.

    Returns
    -------
    list of int64 ndarray (T_d,)
        One array per document.

    Raises
    ------
    ValueError
        No tokens at all, or a document that is not 1-D.
    """
    docs = [np.asarray(tokens)] if isinstance(tokens, np.ndarray) and np.ndim(tokens) == 1 else list(tokens)
    docs = [np.asarray(d).astype(np.int64, copy=False) for d in docs]
    if not docs or sum(d.size for d in docs) == 0:
        raise ValueError("tokens must be a non-empty 1-D array or a non-empty list of 1-D arrays")
    if any(d.ndim != 1 for d in docs):
        raise ValueError("tokens must be a 1-D array or a list of 1-D arrays (one per document)")
    return docs


def _longest(tokens: np.ndarray | Sequence[np.ndarray]) -> int:
    if isinstance(tokens, np.ndarray) and tokens.ndim == 2:
        return tokens.shape[1]
    return max(d.size for d in as_documents(tokens))


def _pair_indices(tokens: np.ndarray | Sequence[np.ndarray], lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Stream/documents: every pair (x_i, x_{i+lag}) inside a document. A 2-D array of aligned sequences
    (n, T): one pair per sequence, (x_{T-1-lag}, x_{T-1}) — the last token and its context, as in next-token
    prediction; needed where statistics depend on the position (e.g. the RHM)."""
    if isinstance(tokens, np.ndarray) and tokens.ndim == 2:
        if lag >= tokens.shape[1]:
            raise ValueError(f"lag {lag} must be smaller than the sequence length {tokens.shape[1]}")
        return tokens[:, -1 - lag].astype(np.int64), tokens[:, -1].astype(np.int64)
    docs = as_documents(tokens)
    left = [d[:-lag] for d in docs if d.size > lag]
    right = [d[lag:] for d in docs if d.size > lag]
    if not left:
        raise ValueError(f"lag {lag} is larger than every document (longest: {max(d.size for d in docs)} tokens)")
    return np.concatenate(left), np.concatenate(right)


def pair_counts(
    tokens: np.ndarray | Sequence[np.ndarray],
    lag: int,
    vocab_size: int,
    *,
    max_pairs: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> sparse.csr_matrix:
    """Counts of (x_i, x_{i+lag}) as a sparse V×V matrix: all pairs, or `max_pairs` sampled without replacement.

    `shuffle=True` permutes the second tokens among the pairs: independent pairs with the same marginals,
    whose correlation norm is pure sampling noise.

    Parameters
    ----------
    tokens : int ndarray (T,), list of int ndarray (T_d,), or int ndarray (n, T)
        A stream, documents (pairs inside each), or aligned sequences (one pair per row: the token at
        T − 1 − lag and the last token, for position-dependent statistics such as the RHM).
    vocab_size : int
        V; every token id must lie in [0, V).
    seed : int
        Seeds the subsample and the shuffle.

    Returns
    -------
    scipy CSR matrix (V, V), float64
        Row: first token, column: second token; entries sum to the number of pairs.

    Raises
    ------
    ValueError
        lag < 1, a lag no document (or sequence) is longer than, `max_pairs` over the pairs available,
        a token id outside [0, vocab_size), or no tokens.
    """
    if lag < 1:
        raise ValueError(f"lag must be ≥ 1, got {lag}")
    a, b = _pair_indices(tokens, lag)
    rng = np.random.default_rng(seed)
    if max_pairs is not None:
        if max_pairs > a.size:
            raise ValueError(f"max_pairs={max_pairs} exceeds the {a.size} pairs the corpus has at lag {lag}")
        keep = rng.choice(a.size, size=max_pairs, replace=False)
        a, b = a[keep], b[keep]
    if shuffle:
        b = rng.permutation(b)
    if max(a.max(), b.max()) >= vocab_size or min(a.min(), b.min()) < 0:
        raise ValueError(f"token ids must lie in [0, vocab_size={vocab_size}); got ids up to {max(a.max(), b.max())}")
    return sparse.coo_matrix((np.ones(a.size, dtype=np.float64), (a, b)), shape=(vocab_size, vocab_size)).tocsr()


@dataclass
class Correlation:
    """C = joint − p_left p_rightᵀ from a pair-count matrix, kept as sparse + rank-1.

    The correlation matrix C_μν(n) = P(x_i = μ, x_{i+n} = ν) − P(μ)P(ν) of Cagnetta et al. (2026);
    the dense V×V matrix is never built unless `dense()` is asked for.

    Parameters
    ----------
    joint : scipy CSR matrix (V, V), float64
        Empirical joint probabilities of (first, second) token; sums to 1.
    p_left, p_right : float64 ndarray (V,)
        Marginals of the first and the second token (row and column sums of `joint`).
    n_pairs : int
        Pairs counted.
    """

    joint: sparse.csr_matrix
    p_left: np.ndarray
    p_right: np.ndarray
    n_pairs: int

    @classmethod
    def from_counts(cls, counts: sparse.csr_matrix) -> Correlation:
        """From a (V, V) pair-count matrix such as `pair_counts` returns.

        Raises
        ------
        ValueError
            The counts sum to 0 or less.
        """
        n = float(counts.sum())
        if n <= 0:
            raise ValueError("counts: no pairs were counted")
        joint = (counts / n).tocsr()
        return cls(joint, np.asarray(joint.sum(axis=1)).ravel(), np.asarray(joint.sum(axis=0)).ravel(), int(n))

    def operator(self) -> LinearOperator:
        """C as a (V, V) float64 `LinearOperator` (products with the sparse joint minus the rank-1 term)."""
        j, pl, pr = self.joint, self.p_left, self.p_right
        return LinearOperator(j.shape, dtype=np.float64,
                              matmat=lambda x: j @ x - np.outer(pl, pr @ x),
                              rmatmat=lambda x: j.T @ x - np.outer(pr, pl @ x),
                              matvec=lambda x: j @ x.ravel() - pl * (pr @ x.ravel()),
                              rmatvec=lambda x: j.T @ x.ravel() - pr * (pl @ x.ravel()))

    def op_norm(self, seed: int = 0) -> float:
        """Top singular value ‖C‖_op, by ARPACK on the implicit operator; `seed` fixes the start vector.

        ARPACK cannot take a 1 × 1 matrix (k must be < min(V, V)) nor a zero operator (error −9, its start
        vector is in the null space): a vocabulary of one token, or C(n) = 0, has ‖C‖_op = ‖C‖_F, exactly."""
        if min(self.joint.shape) < 2 or self.fro_norm() == 0.0:
            return self.fro_norm()
        v0 = np.random.default_rng(seed).standard_normal(self.joint.shape[1])
        return float(svds(self.operator(), k=1, v0=v0, return_singular_vectors=False)[0])

    def fro_norm(self) -> float:
        """‖J − p qᵀ‖_F² = ‖J‖_F² − 2 pᵀJq + ‖p‖²‖q‖², clipped at 0 against round-off."""
        j, pl, pr = self.joint, self.p_left, self.p_right
        sq = j.multiply(j).sum() - 2.0 * pl @ (j @ pr) + (pl @ pl) * (pr @ pr)
        return float(np.sqrt(max(sq, 0.0)))

    def dense(self, max_vocab: int = DENSE_MAX_VOCAB) -> np.ndarray:
        """The dense matrix, for small vocabularies and for checking the sparse path.

        Returns
        -------
        float64 ndarray (V, V)

        Raises
        ------
        ValueError
            V > max_vocab.
        """
        if self.joint.shape[0] > max_vocab:
            raise ValueError(f"vocabulary {self.joint.shape[0]} is over the dense limit max_vocab={max_vocab}; "
                             "use op_norm()/fro_norm(), which never build the dense matrix")
        return self.joint.toarray() - np.outer(self.p_left, self.p_right)


def fit_beta(
    lags: Sequence[float] | np.ndarray,
    norms: Sequence[float] | np.ndarray,
    floors: Sequence[float] | np.ndarray | float,
    *,
    floor_factor: float = 2.0,
    n_boot: int = 1000,
    seed: int = 0,
) -> BetaFit:
    """Fit ‖C(n)‖ ∝ n^-β on the lags whose norm exceeds `floor_factor` × the noise floor.

    Returns the fit, the lags used and a range-sensitivity table; fewer than 3 usable lags is an error.
    β is the correlation exponent of Cagnetta et al. (2026), ‖C(n)‖_op ∝ n^-β; lags under the
    sampling floor ∝ 1/√P carry only noise.

    Parameters
    ----------
    lags : float ndarray (K,)
    norms : float ndarray (K,)
        ‖C(n)‖ at each lag (operator or Frobenius norm).
    floors : float ndarray (K,) or float
        Noise floor at each lag, in the units of `norms`.

    Returns
    -------
    BetaFit
        `fit` (`PowerLawFit`), `beta`, `beta_ci` ([lo, hi], 95 % bootstrap), `lags_used`, `sensitivity`
        (`fit_range_sensitivity` rows).

    Raises
    ------
    ValueError
        Fewer than 3 lags above the floor, or a non-positive or non-finite lag or norm among them.
    """
    lags, norms = np.asarray(lags, float), np.asarray(norms, float)
    floors = np.broadcast_to(np.asarray(floors, float), lags.shape)
    above = norms > floor_factor * floors
    if above.sum() < 3:
        raise ValueError(f"only {int(above.sum())} lag(s) have a norm above {floor_factor}× the noise floor "
                         f"(lags {lags[above].tolist()}); need ≥ 3 to fit β — use more pairs or smaller lags")
    return BetaFit(fit_power_law(lags[above], norms[above], n_boot=n_boot, seed=seed),
                   fit_range_sensitivity(lags[above], norms[above], n_boot=200, seed=seed), lags[above].tolist())


class CorrelationDecay:
    """Estimator of ‖C(n)‖ over lags, with the shuffled-pair noise floor; `fit_beta()` gives β.

    The floor is measured on shuffled pairs at the smallest lag, at 1/16, 1/4 and all of the fewest
    pairs any lag has, and scaled as 1/√pairs to every lag (Cagnetta et al. 2026: floor ≈ const/√P).

    Parameters
    ----------
    lags : sequence of int
        Lags n ≥ 1 (sorted and deduplicated at `fit`).
    max_pairs : int or None
        Pairs sampled per lag (None: all).
    n_shuffles : int
        Shuffled references averaged per pair count for the floor.
    floor_factor : float
        `fit_beta` uses only lags whose norm exceeds this × the floor.
    seed : int
        Seeds pair sampling, shuffles, ARPACK start vectors and the bootstrap.

    Attributes
    ----------
    lags_ : int64 ndarray (K,)
        The lags, sorted and unique.
    op_norm_, fro_norm_ : float64 ndarray (K,)
        ‖C(n)‖_op and ‖C(n)‖_F at each lag.
    n_pairs_ : int ndarray (K,)
        Pairs counted at each lag.
    floor_op_, floor_fro_ : float64 ndarray (K,)
        Noise floor of each norm at each lag's pair count.
    floor_scaling_ : list of dict
        Per measured pair count, increasing: `n_pairs`, mean shuffled `op` and `fro` norms.
    vocab_size_ : int
    """

    def __init__(self, lags: Sequence[int], *, max_pairs: int | None = None, n_shuffles: int = 3,
                 floor_factor: float = 2.0, seed: int = 0):
        self.lags = lags
        self.max_pairs = max_pairs
        self.n_shuffles = n_shuffles
        self.floor_factor = floor_factor
        self.seed = seed

    def fit(self, tokens: np.ndarray | Sequence[np.ndarray], vocab_size: int | None = None,
            progress: bool = False) -> CorrelationDecay:
        """Measure ‖C(n)‖ at every lag and the noise floor.

        Parameters
        ----------
        tokens : int ndarray (T,), list of int ndarray (T_d,), or int ndarray (n, T)
            As in `pair_counts`.
        vocab_size : int or None
            V (default: largest token id + 1).
        progress : bool
            Show a progress bar over lags.

        Returns
        -------
        CorrelationDecay
            self.

        Raises
        ------
        ValueError
            No lags or a lag < 1, a lag not smaller than the longest document, n_shuffles < 1,
            `max_pairs` over the pairs at some lag, or a token id outside [0, vocab_size).
        """
        docs = tokens if isinstance(tokens, np.ndarray) and tokens.ndim == 2 else as_documents(tokens)
        lags = np.unique(np.asarray(self.lags, dtype=np.int64))
        if lags.size == 0 or lags[0] < 1:
            raise ValueError(f"lags must be positive integers, got {list(self.lags)}")
        longest = _longest(docs)
        if lags[-1] >= longest:
            raise ValueError(f"lag {int(lags[-1])} is not smaller than the longest document ({longest} tokens)")
        if self.n_shuffles < 1:
            raise ValueError(f"n_shuffles must be ≥ 1, got {self.n_shuffles}")
        vocab_size = int(vocab_size or max(int(np.max(d)) for d in docs) + 1)
        from ..io import progress as bar

        ops, fros, npairs = [], [], []
        for lag in bar(lags, desc="correlations", disable=not progress):
            c = Correlation.from_counts(pair_counts(docs, int(lag), vocab_size, max_pairs=self.max_pairs,
                                                    seed=self.seed))
            ops.append(c.op_norm(self.seed))
            fros.append(c.fro_norm())
            npairs.append(c.n_pairs)
        self.lags_, self.op_norm_, self.fro_norm_ = lags, np.array(ops), np.array(fros)
        self.n_pairs_ = np.array(npairs)
        self.vocab_size_ = vocab_size

        ref = int(self.n_pairs_.min())
        rows = []
        for frac in (1 / 16, 1 / 4, 1.0):
            n = max(int(ref * frac), 2)
            for k in range(self.n_shuffles):
                c = Correlation.from_counts(pair_counts(docs, int(lags[0]), vocab_size, max_pairs=n, shuffle=True,
                                                        seed=self.seed + 1000 + k))
                rows.append((n, c.op_norm(self.seed), c.fro_norm()))
        table = np.array(rows)
        self.floor_scaling_ = [{"n_pairs": int(n), "op": float(table[table[:, 0] == n, 1].mean()),
                                "fro": float(table[table[:, 0] == n, 2].mean())} for n in np.unique(table[:, 0])]
        full = self.floor_scaling_[-1]
        self.floor_op_ = full["op"] * np.sqrt(full["n_pairs"] / self.n_pairs_)
        self.floor_fro_ = full["fro"] * np.sqrt(full["n_pairs"] / self.n_pairs_)
        return self

    def floor_exponent(self, norm: str = "op") -> float:
        """Slope of log floor vs log pairs (≈ 0.5 for sampling noise), for norm "op" or "fro".

        Raises
        ------
        ValueError
            Fewer than 3 distinct pair counts in `floor_scaling_` (fewer than 12 pairs at some lag).
        """
        n = [r["n_pairs"] for r in self.floor_scaling_]
        return fit_power_law(n, [r[norm] for r in self.floor_scaling_], n_boot=0).exponent

    def fit_beta(self, norm: str = "op", n_boot: int = 1000) -> BetaFit:
        """β from the fitted norms, as the module's `fit_beta` (norm "op": the paper's ‖C(n)‖_op).

        Raises
        ------
        ValueError
            `norm` is not "op" or "fro", or fewer than 3 lags lie above `floor_factor` × the floor.
        """
        if norm not in ("op", "fro"):
            raise ValueError(f"norm must be 'op' or 'fro', got {norm!r}")
        norms, floors = (self.op_norm_, self.floor_op_) if norm == "op" else (self.fro_norm_, self.floor_fro_)
        return fit_beta(self.lags_, norms, floors, floor_factor=self.floor_factor, n_boot=n_boot, seed=self.seed)

    def to_dict(self) -> dict:
        """The learned attributes under their names without the trailing `_`, plus `floor_exponent_op`.

        Raises
        ------
        ValueError
            As `floor_exponent`.
        """
        return {"lags": self.lags_, "op_norm": self.op_norm_, "fro_norm": self.fro_norm_, "n_pairs": self.n_pairs_,
                "floor_op": self.floor_op_, "floor_fro": self.floor_fro_, "floor_scaling": self.floor_scaling_,
                "floor_exponent_op": self.floor_exponent("op"), "vocab_size": self.vocab_size_}
