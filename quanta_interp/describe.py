"""One-line descriptions of a set of tokens without an LLM, scored by detection — for neurons and quanta alike.

A set of positive tokens (a neuron's top examples, a quantum's members) is described by the tokens and the
preceding tokens most over-represented in it against a base distribution (smoothed log-odds), and the line is
scored as Delphi scores explanations (Paulo et al. 2024, "Automatically interpreting millions of features in
LLMs", detection): the AUC with which the description's own score picks held-out positives from negatives.
Half the positives (every other one) describe, the other half are held out, so the AUC is not the fit's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .record import Record

__all__ = ["Description", "describe_tokens", "log_unigram"]


@dataclass(frozen=True)
class Description(Record):
    """`describe_tokens`' result.

    Attributes
    ----------
    text : str
        The line, e.g. `'\\n' | '.' (after 'ear')`: the most over-represented tokens, then the preceding one.
    tokens, after : list of str
        The tokens named, and the preceding token named ([] when none was seen twice).
    auc : float or None
        Detection AUC of the held-out positives against the negatives (3 decimals); None with < 2 held out.
    n_fit, n_heldout : int
        Positives that described, and that were held out to score it.
    """

    text: str
    tokens: list
    after: list
    auc: float | None
    n_fit: int
    n_heldout: int


def log_unigram(ids: np.ndarray, vocab_size: int, alpha: float = 0.5) -> np.ndarray:
    """Smoothed log unigram probabilities log((c_t + α)/(N + αV)) of the non-negative ids in `ids`.

    Returns
    -------
    float64 ndarray (vocab_size,)
    """
    ids = np.asarray(ids, dtype=np.int64)
    counts = np.bincount(ids[ids >= 0], minlength=vocab_size).astype(float)
    return np.log((counts + alpha) / (counts.sum() + alpha * vocab_size))


def describe_tokens(positives: np.ndarray, negatives: np.ndarray, base: np.ndarray,
                    names: Callable[[Sequence[int]], list[str]], *, alpha: float = 0.5) -> Description:
    """Describe `positives` against `base` and score the description on held-out positives vs `negatives`.

    Each token id t and each preceding token id p of the fit half gets the smoothed log-odds
    log((c_fit + α)/(n_fit + αV)) − base; the line names the three most over-represented tokens seen ≥ 2 times
    (else the top one seen) and the most over-represented preceding token seen ≥ 2 times. A token's detection score
    is lo_token(t) + lo_prev(p) (0 for a missing preceding token).

    Parameters
    ----------
    positives, negatives : int ndarray (n, 2) and (m, 2)
        (token id, preceding token id or −1) per token; positives alternate fit / held out in the given order.
    base : float ndarray (2, V)
        Log-probabilities the log-odds are taken against: row 0 for tokens, row 1 for preceding tokens (e.g.
        `log_unigram` of the corpus twice, or of the clustered tokens and of their preceding tokens).
    names : callable
        Token ids → their texts.
    alpha : float
        Add-α smoothing of the fit half's counts.

    Raises
    ------
    ValueError
        No positives, or arrays of the wrong shape.
    """
    from sklearn.metrics import roc_auc_score

    positives = np.asarray(positives, dtype=np.int64).reshape(-1, 2)
    negatives = np.asarray(negatives, dtype=np.int64).reshape(-1, 2)
    base = np.asarray(base, dtype=float)
    if not len(positives) or base.ndim != 2 or base.shape[0] != 2:
        raise ValueError(f"need ≥ 1 positive and base of shape (2, V), got {len(positives)} and {base.shape}")
    V = base.shape[1]
    fit, held = positives[0::2], positives[1::2]

    lo_t, lo_p = (log_unigram(fit[:, col], V, alpha) - base[col] for col in (0, 1))
    c_t, c_p = (np.bincount(fit[:, col][fit[:, col] >= 0], minlength=V) for col in (0, 1))
    best = [int(i) for i in np.argsort(-lo_t) if c_t[i] >= 2][:3] or [int(np.argmax(np.where(c_t > 0, lo_t, -np.inf)))]
    after = [int(i) for i in np.argsort(-lo_p) if c_p[i] >= 2][:1]
    tokens, after_s = names(best), names(after)
    line = " | ".join(repr(t) for t in tokens) + (f" (after {after_s[0]!r})" if after else "")
    auc = None
    if len(held) >= 2 and len(negatives):
        def score(r):
            return lo_t[r[:, 0]] + np.where(r[:, 1] >= 0, lo_p[np.maximum(r[:, 1], 0)], 0.0)

        auc = round(float(roc_auc_score(np.r_[np.ones(len(held)), np.zeros(len(negatives))],
                                        np.r_[score(held), score(negatives)])), 3)
    return Description(text=line, tokens=tokens, after=after_s, auc=auc, n_fit=len(fit), n_heldout=len(held))
