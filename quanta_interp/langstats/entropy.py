"""Conditional entropy H_n of the next token given n previous tokens, and its decay H_n − H_∞ ∝ n^-γ.

Small n: plug-in n-gram estimates with the Miller–Madow correction, flagged unreliable once the
Good–Turing unseen mass (singleton (n+1)-grams / windows) exceeds `max_unseen` — beyond that the plug-in
estimate is biased low by more than the correction can repair. Large n: a trained LM's per-position
validation loss, an upper bound on H_n (see `measure.position_losses`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..fitting import fit_power_law, fit_range_sensitivity
from ..record import Record
from .correlations import as_documents
from .fits import GammaFit

__all__ = ["NgramEntropy", "ngram_entropy", "fit_gamma"]


@dataclass(frozen=True)
class NgramEntropy(Record):
    """H_n for n = 0 … n_max from n-gram counts, as `ngram_entropy` returns it.

    Attributes
    ----------
    n : int ndarray (n_max + 1,)
        Context lengths 0 … n_max.
    H, H_plugin : float64 ndarray (n_max + 1,)
        H_n in nats, with the `correction` and without (plug-in).
    unseen_mass : float64 ndarray (n_max + 1,)
        Good–Turing unseen mass: singleton (n+1)-grams / windows.
    reliable : bool ndarray (n_max + 1,)
        unseen_mass ≤ `max_unseen`.
    n_windows : int ndarray (n_max + 1,)
        (n+1)-gram windows counted.
    correction : str
        "miller-madow" or "none".
    note : str
        What `reliable` means, in words.
    """

    n: np.ndarray
    H: np.ndarray
    H_plugin: np.ndarray
    unseen_mass: np.ndarray
    reliable: np.ndarray
    n_windows: np.ndarray
    correction: str
    note: str


def _entropy_terms(ids: np.ndarray) -> tuple[float, int, int]:
    """Plug-in entropy (nats) of the ids' empirical distribution, number of distinct ids, singletons."""
    counts = np.unique(ids, return_counts=True)[1]
    p = counts / ids.size
    return float(-(p * np.log(p)).sum()), int(counts.size), int((counts == 1).sum())


def ngram_entropy(
    tokens: np.ndarray | Sequence[np.ndarray],
    n_max: int,
    *,
    correction: str = "miller-madow",
    max_unseen: float = 0.05,
) -> NgramEntropy:
    """H_n for n = 0..n_max (nats) from n-gram counts inside documents.

    H_n = H(n+1-gram) − H(n-gram), each plug-in estimate corrected by (K−1)/(2N) for Miller–Madow
    (K distinct values, N windows).

    Parameters
    ----------
    tokens : int ndarray (T,) or list of int ndarray (T_d,)
        A stream or documents of non-negative token ids; n-grams never straddle two documents.
    correction : {"miller-madow", "none"}
    max_unseen : float
        Largest Good–Turing unseen mass (singleton (n+1)-grams / windows) of a reliable order.

    Returns
    -------
    NgramEntropy

    Raises
    ------
    ValueError
        An unknown correction, n_max < 0, no document longer than n_max tokens, no tokens, or a
        document that is not 1-D.
    """
    if correction not in ("miller-madow", "none"):
        raise ValueError(f"correction must be 'miller-madow' or 'none', got {correction!r}")
    if n_max < 0:
        raise ValueError(f"n_max must be ≥ 0, got {n_max}")
    docs = as_documents(tokens)
    x = np.concatenate(docs)
    doc_start = np.repeat(np.cumsum([0] + [d.size for d in docs[:-1]]), [d.size for d in docs])
    pos = np.arange(x.size) - doc_start  # position inside its document
    if n_max >= int(pos.max()) + 1:
        raise ValueError(f"n_max={n_max} needs documents longer than n_max tokens; the longest has {pos.max() + 1}")
    vocab = int(x.max()) + 1
    ctx = np.zeros(x.size, dtype=np.int64)  # id of the n tokens before each position
    rows = []
    for n in range(n_max + 1):
        if n > 0:  # extend every context by one more token to the left (ids re-packed to stay small)
            prev = np.concatenate([[0], x[:-1]]) if n == 1 else np.concatenate([np.zeros(n, np.int64), x[:-n]])
            ctx = np.unique(ctx * vocab + prev, return_inverse=True)[1].astype(np.int64)
        valid = pos >= n
        n_win = int(valid.sum())
        h_joint, k_joint, singles = _entropy_terms(ctx[valid] * vocab + x[valid])
        h_ctx, k_ctx, _ = _entropy_terms(ctx[valid])
        h_plugin = h_joint - h_ctx
        h = h_plugin + ((k_joint - 1) - (k_ctx - 1)) / (2 * n_win) if correction == "miller-madow" else h_plugin
        rows.append((n, h, h_plugin, singles / n_win, n_win))
    table = np.array(rows)
    return NgramEntropy(table[:, 0].astype(int), table[:, 1], table[:, 2], table[:, 3], table[:, 3] <= max_unseen,
                        table[:, 4].astype(int), correction,
                        f"n-gram estimates are reliable only while the unseen mass ≤ {max_unseen}; beyond, they fall "
                        "below the true H_n (too few samples per context)")


def fit_gamma(
    n: Sequence[float] | np.ndarray,
    h: Sequence[float] | np.ndarray,
    *,
    offset: bool | float = True,
    n_range: tuple[float, float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> GammaFit:
    """Fit H_n ≈ H_∞ + A·n^-γ.

    `offset=True` fits H_∞ too; a float subtracts that H_∞ and fits a pure power law; `offset=False`
    fits the raw log-log slope of H_n (the paper's practical fit, which underestimates γ when H_∞ dominates).
    γ is the entropy exponent of Cagnetta et al. (2026), H_n − H_∞ ∝ n^-γ, that enters α_D = γ/(2β).

    Parameters
    ----------
    n : float ndarray (K,)
        Context lengths; entries ≤ 0 are dropped.
    h : float ndarray (K,)
        H_n at each n, in nats.
    n_range : (float, float) or None
        Inclusive bounds on n for the fit (None: every n > 0).
    n_boot : int
        Bootstrap resamples for the 95 % CI of γ.

    Returns
    -------
    GammaFit
        `fit` (`PowerLawFit`), `gamma`, `gamma_ci` ([lo, hi]), `H_inf` (nats: fitted, given, or None
        for the raw fit), `mode`, `sensitivity` (`fit_range_sensitivity` rows).

    Raises
    ------
    ValueError
        A float `offset` not below every H_n in the fit range, fewer than 3 distinct n in the range
        (4 with `offset=True`), or a non-finite or non-positive value in what is fitted.
    """
    n, h = np.asarray(n, float), np.asarray(h, float)
    keep = n > 0
    n, h = n[keep], h[keep]
    if isinstance(offset, bool):
        y, h_inf = h, None
    else:
        h_inf = float(offset)
        if np.any(h[(n >= (n_range or (0, 0))[0]) & (n <= (n_range or (0, np.inf))[1])] <= h_inf):
            raise ValueError(f"offset={h_inf} must lie below every H_n in the fit range (min {h.min():.4f})")
        y = h - h_inf
    kw = {"offset": offset is True, "n_boot": n_boot, "seed": seed}
    fit = fit_power_law(n, y, x_range=n_range, **kw)
    sub = (n >= fit.x_range[0]) & (n <= fit.x_range[1])
    return GammaFit(fit, fit_range_sensitivity(n[sub], y[sub], **{**kw, "n_boot": min(n_boot, 100)}),
                    fit.offset if offset is True else h_inf,
                    "fit offset" if offset is True else ("raw log-log" if offset is False else "fixed offset"))
