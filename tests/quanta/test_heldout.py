"""Issue 26's held-out validation of QDG's default clustering: the tuning / test split is declared and disjoint,
a tiny draw the default was never tuned on is recovered in seconds, and `recovery` names what split or joined."""

import numpy as np
import pytest

from quanta_interp.config import ParameterError
from quanta_interp.quanta.ground_truth import GroundTruthConfig, ground_truth, recovery
from quanta_interp.sparse_parity import MultitaskSparseParity, SparseParityConfig, train_sparse_parity
from quanta_interp.sparse_parity.split import TEST, TUNING

DEFAULT = "unsigned, ×8, merge, refined (default)"
# Another Zipf exponent, bit subsets and seed than the tuning task and tests/quanta/test_ground_truth.py's TINY;
# 4 subtasks learned in 3000 steps (~13 s on a loaded 2-core machine, ~4 s idle).
HELDOUT = SparseParityConfig(n_tasks=6, n_bits=30, k=2, zipf_exponent=1.6, task_seed=3, width=64, steps=3000,
                             batch_size=500, lr=3e-3, weight_decay=0.3, log_every=500, eval_samples=200, seed=3)


@pytest.fixture(scope="module")
def trained():
    return train_sparse_parity(HELDOUT)


def test_the_split_is_declared_disjoint_and_spans_the_issue():
    def tasks(draws):
        return {(c.n_tasks, c.n_bits, c.k, c.zipf_exponent, c.task_seed) for c, _ in draws}

    assert len(TEST) == 12 and len(tasks(TEST)) == 12 and not tasks(TEST) & tasks(TUNING)
    assert not {c for c, _ in TEST} & {c for c, _ in TUNING}  # no training config is reused either
    test_seeds = [s for _, seeds in TEST for s in seeds]
    assert len(set(test_seeds)) == 12 and not set(test_seeds) & {s for _, seeds in TUNING for s in seeds}
    zipf, n_tasks = [c.zipf_exponent for c, _ in TEST], [c.n_tasks for c, _ in TEST]
    assert min(zipf) == 1.2 and max(zipf) == 2.0 and min(n_tasks) == 16 and max(n_tasks) == 40
    assert {c.weight_decay == 0 for c, _ in TEST} == {True, False} and len({c.width for c, _ in TEST}) == 3
    assert {(c.steps, c.batch_size, c.lr, c.n_bits, c.k) for c, _ in TEST} == {(20_000, 1000, 1e-3, 100, 3)}
    assert TUNING[0][0].seed == 0 and all(c.seed > 0 and c.task_seed == c.seed for c, _ in TEST)


def test_a_tiny_heldout_draw_is_recovered_in_seconds(trained):
    model, result = trained
    assert result["learned"] == [0, 1, 2, 3]
    out = ground_truth(model, MultitaskSparseParity.of(HELDOUT), result["learned"],
                       GroundTruthConfig(n_samples=500, methods=(DEFAULT,), seed=5)).report
    m = out["methods"][DEFAULT]
    assert m["ari"] >= 0.75 and out["fit_ranks"] == [1, 4]  # measured 0.815 (subtask 1's samples split 2 : 1)
    lo, hi = m["fit_at_K"]["slope_ci"]
    assert abs(m["fit_at_K"]["slope"] + 1.6) < 0.15 and lo <= -1.6 <= hi  # measured −1.597
    assert sorted(m["recovery"]["recall"]) == [0, 1, 2, 3] and min(m["recovery"]["recall"].values()) < 1


def test_resampled_interval_of_a_tiny_draw(trained):
    stability = pytest.importorskip("quanta_interp.quanta.stability")
    if not hasattr(stability, "resample_quanta"):
        pytest.skip("stability.resample_quanta (issue 26, points 1-2) has not landed")
    model, result = trained
    out = ground_truth(model, MultitaskSparseParity.of(HELDOUT), result["learned"],
                       GroundTruthConfig(n_samples=500, methods=(DEFAULT,), seed=5, resamples=4)).report
    r = out["methods"][DEFAULT]["resampled"]
    assert r["resamples"] == 4 and len(r["slopes"]) == 4 and 0 < r["ami"] <= 1
    lo, hi = r["slope_interval"]
    assert lo < np.median(r["slopes"]) < hi and len(r["quantum_stability"]) == 4  # one per quantum at K = 4
    assert all(0 <= q <= 1 for q in r["quantum_stability"])


def test_recovery_names_split_subtasks_and_joined_clusters():
    subtask = np.array([0] * 6 + [1] * 4 + [2] * 2)
    labels = np.array([5, 5, 5, 7, 7, 7, 9, 9, 9, 9, 9, 9])  # subtask 0 split in two, 1 and 2 joined
    out = recovery(subtask, labels, [0, 1])
    assert out.recall == {0: 0.5, 1: 1.0} and out.home == {0: 5, 1: 9}
    assert out.purity == [1.0, 1.0, pytest.approx(4 / 6)]
    assert out.mixed == [{"cluster": 9, "size": 6, "subtasks": {1: 0.667, 2: 0.333}}]
    assert list(out.to_dict()) == ["recall", "home", "purity", "mixed"]


def test_one_resample_is_refused_in_one_line():
    with pytest.raises(ParameterError, match="^resamples must be 0 \\(no resampling\\) or at least 2, got 1$"):
        GroundTruthConfig(resamples=1)
    with pytest.raises(ParameterError, match="resamples must be a non-negative integer"):
        GroundTruthConfig(resamples=-2)
