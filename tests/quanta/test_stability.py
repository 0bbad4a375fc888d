"""Resampled stability of QDG's quanta: Jaccard stability, AMI, the slope interval, bad input."""

import numpy as np
import pytest

from quanta_interp.config import ParameterError
from quanta_interp.quanta import QDGConfig
from quanta_interp.quanta.analysis import cluster_quanta
from quanta_interp.quanta.config import ClusteringConfig
from quanta_interp.quanta.frequencies import RankFrequencyFit
from quanta_interp.quanta.stability import (
    Stability,
    jaccard_stability,
    resample_quanta,
    slope_interval,
)

COUNTS, RANKS = [3, 6, 9, 12], (1, 8)


def planted(noise: np.ndarray, seed: int = 0, k: int = 9, d: int = 64):
    """Zipf-sized clusters around random centres, cluster c with noise[c] × N(0, 1) per coordinate."""
    rng = np.random.default_rng(seed)
    sizes = np.maximum((240 * np.arange(1, k + 1) ** -1.2 / (np.arange(1, k + 1) ** -1.2).sum()).astype(int), 6)
    truth = np.repeat(np.arange(k), sizes)
    G = rng.standard_normal((k, d))[truth] + noise[truth, None] * rng.standard_normal((len(truth), d))
    return G.astype(np.float32), truth


def analyse(G, resamples=6, seed=0):
    return cluster_quanta(G, ClusteringConfig(9, affinity="angular", over_cluster=1, refine=0), counts=COUNTS,
                          fit_ranks=RANKS, resamples=resamples, seed=seed, show_progress=False)


def test_jaccard_stability_by_hand():
    reference = np.array([0, 0, 0, 1, 1, 1])
    # resample 1 draws rows 0, 0, 1, 3, 4, 5 and splits nothing; resample 2 joins row 2 with cluster 1
    rows = [np.array([0, 0, 1, 3, 4, 5]), np.array([0, 1, 2, 3, 4, 5])]
    labels = [np.array([5, 5, 5, 7, 7, 7]), np.array([0, 0, 1, 1, 1, 1])]
    # cluster 0: 1 then 2/3 (best match {0, 1}); cluster 1: 1 then 3/4
    np.testing.assert_allclose(jaccard_stability(reference, rows, labels), [(1 + 2 / 3) / 2, (1 + 3 / 4) / 2])
    # a reference cluster that no resample drew has no stability (NaN), and does not break the others
    stab = jaccard_stability(np.append(reference, 2), rows, labels)
    np.testing.assert_allclose(stab[:2], [(1 + 2 / 3) / 2, (1 + 3 / 4) / 2])
    assert np.isnan(stab[2])


def test_clean_clusters_are_stable_and_noisy_ones_are_not():
    clean = analyse(planted(np.full(9, 0.2))[0])
    assert clean.stability.quantum_stability.min() > 0.95
    assert clean.stability.ami.min() > 0.95
    noisy = analyse(planted(np.full(9, 2.5))[0])  # the planted clusters drown in noise
    assert np.median(noisy.stability.quantum_stability) < 0.6
    assert noisy.stability.ami.mean() < 0.8


def test_interval_contains_the_fit_and_is_wider_than_the_rank_bootstrap():
    for noise in (0.2, 2.5):  # a clean clustering and one whose resamples disagree (AMI 0.55)
        q = analyse(planted(np.full(9, noise))[0])
        lo, hi = q.fit.slope_interval
        assert lo <= q.fit.slope <= hi
        assert hi - lo > q.fit.slope_ci[1] - q.fit.slope_ci[0]
        assert np.nanstd(q.stability.slopes) > 0.01  # the resamples' slopes do vary


def _fit(slope: float | None, ci: tuple[float, float] = (-1.05, -0.95)) -> RankFrequencyFit:
    return RankFrequencyFit(3, 2, (1, 3), None, None, None, slope=slope, slope_ci=ci)


def test_counting_noise_enters_centred():
    fit = _fit(-1.0)
    st = Stability(rows=[], labels=[], fits=[fit, _fit(-1.1)], counted_slopes=[-1.3, -1.2], envelopes=[],
                   quantum_stability=np.ones(1), ami=np.ones(2), subsamples=[], partitions=[])
    # counting noise −0.3 and −0.1: its mean −0.2 is removed, its spread kept
    assert [f.slope for f in st.interval_fits()] == pytest.approx([-1.1, -1.0])
    summary = st.to_dict()  # summary.json's "stability"
    assert summary["slopes"] == [-1.0, -1.1] and summary["counted_slopes"] == [-1.3, -1.2]
    assert summary["n_stable_quanta"] == 1 and summary["n_dissolving_quanta"] == 0


def test_interval_widens_with_the_resamples_spread():
    fit = _fit(-1.0)
    tight = slope_interval([fit] + [_fit(-1.0 + d) for d in (-0.02, 0.02)])
    loose = slope_interval([fit] + [_fit(-1.0 + d) for d in (-0.3, 0.3)])
    assert loose[1] - loose[0] > 3 * (tight[1] - tight[0])


def test_slope_interval_mixes_the_fits():
    fits = [_fit(-1.0, (-1.1, -0.9)), _fit(-2.0, (-2.1, -1.9))]
    lo, hi = slope_interval(fits)
    assert -2.2 < lo < -2.0 and -1.0 < hi < -0.8
    assert slope_interval(fits[:1]) is None and slope_interval([_fit(None)] * 3) is None


def test_bad_resamples_are_refused_before_any_clustering():
    with pytest.raises(ParameterError, match="resamples"):
        QDGConfig.build(resamples=1)
    with pytest.raises(ParameterError, match="resamples"):
        QDGConfig.build(resamples=10_000)
    G, truth = planted(np.full(9, 0.2))
    with pytest.raises(ParameterError, match="resamples"):
        resample_quanta(G, ClusteringConfig(9, over_cluster=1, refine=0), counts=COUNTS, fit_ranks=RANKS, resamples=1,
                        reference=truth)


def test_perturbation_is_rounding_sized_and_its_bad_scale_refused():
    from quanta_interp.quanta.stability import FLOAT32_ROUNDING, perturb

    G = np.random.default_rng(0).standard_normal((50, 40)).astype(np.float32)
    P = perturb(G)
    rel = np.abs(P.astype(np.float64) / G - 1)
    assert P.dtype == np.float32 and 0.3 < (P != G).mean() < 0.9  # about half the numbers move by an ulp or so
    assert rel.max() < 20 * FLOAT32_ROUNDING
    np.testing.assert_array_equal(perturb(G, seed=3), perturb(G, seed=3))
    for bad in (0, -1e-7, float("nan"), True):
        with pytest.raises(ParameterError, match="perturbation must be a positive number"):
            perturb(G, bad)
