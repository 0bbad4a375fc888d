"""LLM-free descriptions scored by detection: a planted quantum is named and detected, a random one is not."""

import numpy as np
import pytest

from quanta_interp.describe import describe_tokens, log_unigram
from quanta_interp.quanta.analysis import quantum_descriptions


def _members(pairs):
    return [{"target": t, "tokens": ["ctx", p, t]} for p, t in pairs]


def test_a_planted_quantum_is_named_and_detected_and_a_random_one_is_not():
    rng = np.random.default_rng(0)
    letters = list("bcdefghijklmnop")
    planted = _members([("a", "x")] * 30 + [("b", "x")] * 10)  # "x", mostly after "a"
    noise = [_members([(rng.choice(letters), rng.choice(letters)) for _ in range(60)]) for _ in range(3)]
    d = quantum_descriptions([planted, *noise])
    assert d[0].tokens == ["x"] and d[0].after == ["a"] and d[0].text == "'x' (after 'a')"
    assert d[0].auc == 1.0 and d[0].n_fit == d[0].n_heldout == 20
    # a quantum drawn from the same distribution as the other tokens: detection at chance
    assert [0.3 < x.auc < 0.7 for x in d[1:]] == [True] * 3


def test_descriptions_are_scored_on_held_out_members_only():
    """Every other positive describes, the rest are scored: a token seen only in the held-out half is not named,
    and with fewer than two held-out positives there is no AUC."""
    names = lambda ids: [f"t{i}" for i in ids]  # noqa: E731
    base = np.stack([log_unigram(np.arange(10), 10)] * 2)
    pos = np.array([[1, -1], [2, -1], [1, -1], [2, -1]])  # fit: 1, 1; held out: 2, 2
    d = describe_tokens(pos, np.array([[3, -1], [4, -1]]), base, names)
    assert d.tokens == ["t1"] and d.after == [] and d.auc == 0.5  # held-out 2s score like the negatives
    assert describe_tokens(pos[:3], np.array([[3, -1]]), base, names).auc is None
    # no token seen twice: the line names the most over-represented token that was seen, never an unseen rare one
    rare = np.stack([np.log(np.r_[np.full(9, 0.111), 0.001])] * 2)
    assert describe_tokens(np.array([[1, -1], [5, -1], [2, -1]]), pos, rare, names).tokens in (["t1"], ["t2"])
    with pytest.raises(ValueError, match="need ≥ 1 positive"):
        describe_tokens(np.zeros((0, 2)), pos, base, names)
