"""Random Hierarchy Model (Cagnetta et al., PRX 14, 031001, 2024): a synthetic grammar with known β.

Depth L, v symbols per level, each symbol rewritten by one of m random rules into s symbols of the level
below (rules of different symbols never share a right-hand side). Leaves are sequences of s^L tokens whose
correlation at lag n decays as n^-β with β = ln m / ln s — the test case for the estimators.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["RandomHierarchyModel"]


class RandomHierarchyModel:
    """A random hierarchical grammar whose leaf correlations decay with the known exponent β = ln m / ln s.

    Parameters
    ----------
    v : int
        Symbols per level (the leaf vocabulary).
    m : int
        Synonymous rules per symbol.
    s : int
        Branching: symbols each rule produces.
    L : int
        Depth; sequences have s^L leaves.
    seed : int
        Seeds the rules (and, by default, `sample` with seed + 1).

    Attributes
    ----------
    rules_ : list of L int64 ndarray (v, m, s)
        `rules_[l]`: the m right-hand sides of each symbol at level l (0 = just above the leaves); the
        v·m right-hand sides of a level are distinct, so every rule can be parsed back.

    Raises
    ------
    ValueError
        v < 2, m < 1, s < 2 or L < 1 (or not integers), m > v^(s−1), or s^L > 2^24.
    """

    def __init__(self, v: int = 8, m: int = 2, s: int = 2, L: int = 6, seed: int = 0):
        for name, value, low in (("v", v, 2), ("m", m, 1), ("s", s, 2), ("L", L, 1)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
        if m > v ** (s - 1):
            raise ValueError(f"m must be ≤ v^(s-1) = {v ** (s - 1)} so rules stay unambiguous, got m={m}")
        if s ** L > 2 ** 24:
            raise ValueError(f"sequence length s^L = {s ** L} is over the limit 2^24; lower L")
        self.v, self.m, self.s, self.L, self.seed = v, m, s, L, seed
        rng = np.random.default_rng(seed)
        digits = v ** np.arange(s - 1, -1, -1)
        self.rules_ = [(rng.choice(v ** s, size=v * m, replace=False)[:, None] // digits % v).reshape(v, m, s)
                       for _ in range(L)]

    @property
    def beta(self) -> float:
        """The analytic correlation-decay exponent, ln m / ln s."""
        return math.log(self.m) / math.log(self.s)

    @property
    def length(self) -> int:
        """Leaves per sequence, s^L."""
        return self.s ** self.L

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """`n` sequences of s^L leaf tokens in [0, v), shape (n, s^L): root uniform, every rule uniform.

        Parameters
        ----------
        seed : int or None
            Seeds the draws (None: the model's seed + 1, so repeated calls return the same sequences).

        Returns
        -------
        int64 ndarray (n, s^L)

        Raises
        ------
        ValueError
            n < 1.
        """
        if n < 1:
            raise ValueError(f"n must be ≥ 1, got {n}")
        rng = np.random.default_rng(self.seed + 1 if seed is None else seed)
        seq = rng.integers(0, self.v, size=(n, 1))
        for rules in reversed(self.rules_):
            choice = rng.integers(0, self.m, size=seq.shape)
            seq = rules[seq, choice].reshape(n, -1)
        return seq.astype(np.int64)
