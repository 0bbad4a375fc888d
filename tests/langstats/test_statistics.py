import math

import numpy as np
import pytest

from quanta_interp.langstats.correlations import Correlation, CorrelationDecay, fit_beta, pair_counts
from quanta_interp.langstats.entropy import fit_gamma, ngram_entropy
from quanta_interp.langstats.pipeline import gamma_vs_h_inf
from quanta_interp.langstats.predict import alpha_d, compare_alpha_d, horizon
from quanta_interp.langstats.rhm import RandomHierarchyModel


@pytest.mark.parametrize("v,m,s,L,n", [(8, 3, 3, 4, 60_000), (16, 2, 4, 4, 30_000)])
def test_rhm_correlations_recover_analytic_beta(v, m, s, L, n):
    lags = [s ** k for k in range(L)]
    logs, floors = [], []
    for seed in range(3):  # β is a statement about typical rules: average log-norms over grammars
        rhm = RandomHierarchyModel(v, m, s, L, seed=seed)
        est = CorrelationDecay(lags, n_shuffles=1, seed=seed).fit(rhm.sample(n), v)
        logs.append(np.log(est.op_norm_))
        floors.append(est.floor_op_)
    res = fit_beta(lags, np.exp(np.mean(logs, 0)), np.mean(floors, 0), n_boot=50)
    assert rhm.beta == pytest.approx(math.log(m) / math.log(s))
    assert res.beta == pytest.approx(rhm.beta, abs=0.15)
    assert len(res.lags_used) >= 3


def test_rhm_sequences_follow_the_rules():
    rhm = RandomHierarchyModel(v=5, m=2, s=2, L=3, seed=1)
    x = rhm.sample(200)
    assert x.shape == (200, 8) and x.min() >= 0 and x.max() < 5
    bottom = {tuple(r) for r in rhm.rules_[0].reshape(-1, 2)}
    assert all(tuple(pair) in bottom for pair in x.reshape(-1, 2))  # leaves pair up into level-1 rules
    with pytest.raises(ValueError, match="m must be ≤ v"):
        RandomHierarchyModel(v=3, m=4, s=2, L=2)


def test_sparse_operator_matches_dense_matrix():
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.integers(0, 3, 20_000)) % 40  # a correlated walk on 40 symbols
    counts = pair_counts(x, 3, 40)
    assert counts.sum() == x.size - 3
    c = Correlation.from_counts(counts)
    dense = c.dense()
    assert np.allclose(dense.sum(0), 0) and np.allclose(dense.sum(1), 0)
    assert c.op_norm() == pytest.approx(np.linalg.svd(dense, compute_uv=False)[0], rel=1e-9)
    assert c.fro_norm() == pytest.approx(np.linalg.norm(dense), rel=1e-9)
    with pytest.raises(ValueError, match="over the dense limit"):
        c.dense(max_vocab=10)


def test_pairs_stay_inside_documents_and_bad_input_is_refused():
    docs = [np.array([0, 1, 0, 1]), np.array([2, 3])]
    counts = pair_counts(docs, 1, 4).toarray()
    assert counts.sum() == 4 and counts[1, 2] == 0  # no pair across the document boundary
    with pytest.raises(ValueError, match="max_pairs=10 exceeds"):
        pair_counts(docs, 1, 4, max_pairs=10)
    with pytest.raises(ValueError, match="lag 5 is larger"):
        pair_counts(docs, 5, 4)
    with pytest.raises(ValueError, match="not smaller than the longest document"):
        CorrelationDecay([1, 10]).fit(docs)


def test_noise_floor_scales_as_inverse_sqrt_pairs_and_blocks_the_fit_on_noise():
    x = np.random.default_rng(0).integers(0, 30, 200_000)  # independent tokens: no correlation at all
    est = CorrelationDecay([1, 2, 4, 8, 16], n_shuffles=2).fit(x, 30)
    assert est.floor_exponent("op") == pytest.approx(0.5, abs=0.1)
    assert est.floor_exponent("fro") == pytest.approx(0.5, abs=0.1)
    assert np.all(est.op_norm_ < 2 * est.floor_op_)
    with pytest.raises(ValueError, match="need ≥ 3 to fit β"):
        est.fit_beta()


def test_ngram_entropy_of_a_markov_chain():
    rng = np.random.default_rng(0)
    trans = rng.dirichlet(np.full(4, 0.5), 4)
    x = np.zeros(60_000, dtype=np.int64)
    u = rng.random(x.size)
    cum = trans.cumsum(1)
    for i in range(1, x.size):
        x[i] = np.searchsorted(cum[x[i - 1]], u[i])
    pi = np.linalg.matrix_power(trans, 100)[0]
    h1 = -(pi[:, None] * trans * np.log(trans)).sum()
    res = ngram_entropy(x, 3)
    assert res.H[0] == pytest.approx(-(pi * np.log(pi)).sum(), abs=0.01)
    assert res.H[1] == pytest.approx(h1, abs=0.01)
    assert res.H[3] == pytest.approx(h1, abs=0.02)  # an order-1 chain gains nothing from longer contexts
    assert np.all(res.H >= res.H_plugin) and res.reliable.all()
    short = ngram_entropy(x[:300], 3)
    assert not short.reliable[-1]  # most 4-grams of 300 tokens are seen once
    with pytest.raises(ValueError, match="correction must be"):
        ngram_entropy(x, 2, correction="grassberger")


def test_fit_gamma_with_and_without_offset():
    n = np.unique(np.logspace(0, 2.3, 30).astype(int))
    h = 1.1 + 2.0 * n ** -0.4
    with_off = fit_gamma(n, h, offset=True, n_boot=10)
    assert with_off.gamma == pytest.approx(0.4, abs=0.02) and with_off.H_inf == pytest.approx(1.1, abs=0.02)
    assert fit_gamma(n, h, offset=1.1, n_boot=20).gamma == pytest.approx(0.4, abs=1e-9)
    raw = fit_gamma(n, h, offset=False, n_boot=20)
    assert raw.gamma < 0.25  # the raw log-log slope of H_n mixes in H_∞ and reads low
    with pytest.raises(ValueError, match="must lie below every H_n"):
        fit_gamma(n, h, offset=2.0)


def test_alpha_d_prediction_and_horizon():
    paper = alpha_d(0.88, [0.76, 1.0], 0.325, [0.32, 0.33])
    assert paper.alpha_D == pytest.approx(0.1847, abs=1e-4)  # TinyStories: 0.185 ± 0.013
    lo, hi = paper.alpha_D_ci
    assert lo < 0.1847 < hi and hi - lo == pytest.approx(2 * 1.96 * 0.013, abs=0.006)  # the paper quotes ±1σ
    exact = alpha_d(0.88, [0.88, 0.88], 0.325, [0.325, 0.325])
    assert exact.alpha_D_ci == pytest.approx([exact.alpha_D] * 2)
    # A n^-β = c/√P at n*: quadrupling P multiplies n* by 4^(1/(2β)).
    n1, n4 = horizon([1e6, 4e6], 0.5, 0.02, 0.3)
    assert 0.02 * n1 ** -0.5 == pytest.approx(0.3 / 1e3)
    assert n4 / n1 == pytest.approx(4.0)
    with pytest.raises(ValueError, match="beta must be a positive"):
        alpha_d(0.0, [0, 0], 0.3, [0.3, 0.3])


def test_gamma_vs_h_inf_shows_how_much_of_gamma_the_offset_sets():
    n = np.arange(1, 64)
    h = 1.1 + 2.0 * n ** -0.4
    rows = gamma_vs_h_inf(h, extra=[1.1])
    raw = fit_gamma(n, h, offset=False, n_range=(2, 63), n_boot=10)
    assert rows[0]["fraction"] == 0 and rows[0]["gamma"] == pytest.approx(raw.gamma, rel=1e-9)
    true = next(r for r in rows if r["H_inf"] == 1.1)
    assert true["gamma"] == pytest.approx(0.4, abs=1e-9) and true["r2"] == pytest.approx(1.0)
    gammas = [r["gamma"] for r in rows]
    assert gammas == sorted(gammas) and gammas[0] < 0.2  # γ grows with the H_∞ assumed: it is set by H_∞


def test_alpha_d_is_compared_only_when_both_intervals_can_decide():
    wide = compare_alpha_d(0.161, [0.002, 0.332], 0.227, [0.07, 0.72])  # the char run of 2026-11-29
    assert wide.verdict == "undetermined" and wide.narrowing_needed == pytest.approx(0.65 / 0.05)
    assert "predicted and measured intervals are wider than the tolerance 0.05" in wide.reason
    assert compare_alpha_d(0.20, [0.19, 0.21], 0.22, [0.21, 0.23]).verdict == "met"
    assert compare_alpha_d(0.20, [0.19, 0.21], 0.30, [0.29, 0.31]).verdict == "missed"
    one = compare_alpha_d(0.20, [0.19, 0.21], 0.30, [0.20, 0.40])  # a miss the wide interval cannot show
    assert one.verdict == "undetermined" and one.reason.startswith("the measured interval is wider")
    assert compare_alpha_d(None, None, 0.19, [0.09, 0.56]).verdict == "undetermined"
    with pytest.raises(ValueError, match="tolerance must be > 0"):
        compare_alpha_d(0.2, [0.1, 0.3], 0.2, [0.1, 0.3], tolerance=0)


def test_beta_report_keeps_an_unfitted_norm_as_none_with_its_reason():
    from quanta_interp.langstats.pipeline import beta_report

    docs = [np.random.default_rng(0).integers(0, 4, 20_000)]  # independent tokens: no lag clears the floor
    rep = beta_report(docs, 4, [1, 2, 4, 8], seed=0, progress=False)
    assert rep.beta_op is None and rep.floor_const is None and "floor" in rep.errors["op"]
    assert rep.to_dict()["beta_op"] == {"error": rep.errors["op"]} and "floor_const" not in rep.to_dict()
    with pytest.raises(ValueError, match="floor"):
        rep.require("op")
