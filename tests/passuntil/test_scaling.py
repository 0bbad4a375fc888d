import numpy as np
import pytest
from scipy.special import digamma

from quanta_interp.fitting import fit_power_law
from quanta_interp.passuntil import classify_emergence, fit_emergence_models, fit_task_scaling

N = np.logspace(5, 7.5, 8)


def law(n, c, alpha):
    return np.exp(-c * np.asarray(n, dtype=float) ** -alpha)


def multi_step(n):  # two steps must both succeed: F = logsumexp of two lines (convex)
    return law(n, 3e3, 0.8) * law(n, 30.0, 0.25)


def multi_circuit(n):  # a second, steeper circuit takes over: F = soft-min of two lines (concave)
    g1, g2 = 50.0 * n**-0.2, 5e6 * n**-1.2
    return np.exp(-1 / (1 / g1 + 1 / g2))


def noisy(pu, sd, seed):
    f = np.log(-np.log(pu)) + np.random.default_rng(seed).normal(0, sd, np.shape(pu))
    return np.exp(-np.exp(f))


def test_exact_law_is_recovered_and_extrapolated():
    pu = law(N, 400.0, 0.5)
    fit = fit_task_scaling(N[:-1], pu[:-1], predict_at=[N[-1]], n_boot=200)
    assert fit.alpha == pytest.approx(0.5, abs=1e-9)
    assert fit.c == pytest.approx(400.0, rel=1e-9)
    assert fit.prediction[0] == pytest.approx(pu[-1], rel=1e-9)
    assert fit.predict(N[0]) == pytest.approx(pu[0], rel=1e-9)
    assert fit.r2 == pytest.approx(1.0)


def instance_table(seed: int, n_inst: int = 300, spread: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Instances with their own c_i, PU from 1e-3 to 0.6; each measured PU is a PassUntil estimate
    (r=2) of the truth: the unbiased (r−1)/(K−1), or exp of the unbiased log-p for per-instance fits."""
    rng = np.random.default_rng(seed)
    c = np.exp(rng.normal(np.log(2000.0), spread, n_inst))
    truth = law(N[:, None], c[None, :], 0.5)
    k = rng.geometric(np.maximum(truth, 1e-12), (2, *truth.shape)).sum(0)  # draws until the 2nd pass
    return truth, 1.0 / (k - 1), np.exp(digamma(2) - digamma(k))


def test_held_out_prediction_from_measured_instances_lies_in_its_bootstrap_ci():
    hits, errors = 0, []
    for seed in range(10):
        truth, pu, _ = instance_table(seed)
        fit = fit_task_scaling(N[:-1], pu[:-1], predict_at=[N[-1]], n_boot=200, seed=seed)
        lo, hi = fit.prediction_ci[0]
        hits += lo <= truth[-1].mean() <= hi
        errors.append(abs(fit.prediction[0] / truth[-1].mean() - 1))
        assert 0.4 < fit.alpha < 0.6 and fit.alpha_ci[0] < fit.alpha < fit.alpha_ci[1]
    assert hits >= 8 and np.median(errors) < 0.05
    # −log PU = c·N^−α is a power law: the core fit of −log PU gives the same α and c
    core = fit_power_law(N[:-1], -np.log(pu[:-1].mean(axis=1)), n_boot=10)
    assert (fit.alpha, fit.c) == pytest.approx((core.exponent, core.prefactor), rel=1e-9)


def test_per_instance_fit_removes_the_bias_of_mixing_instances():
    truth, _, _ = instance_table(0, spread=1.0)  # every instance follows the law, with its own c_i
    k = np.full(truth.shape, 10.0**7)  # counts this large pin each instance's p: the lines are the truth's
    task = fit_task_scaling(N[:-1], truth[:-1], predict_at=[N[-1]], n_boot=50)
    inst = fit_task_scaling(N[:-1], truth[:-1], predict_at=[N[-1]], per_instance=True, passes=(truth * k)[:-1],
                            samples=k[:-1], n_boot=50)
    assert inst.prediction[0] == pytest.approx(truth[-1].mean(), rel=1e-3)
    assert task.prediction[0] < 0.98 * truth[-1].mean()  # the mean of the laws is not itself a law
    with pytest.raises(ValueError, match="per_instance"):
        fit_task_scaling(N, truth, per_instance=True)


def test_per_instance_fit_keeps_instances_that_passed_every_sample():
    """Instance laws (α = 2) rising from PU 0.05 to 0.98: at the sizes below the held-out one most instances
    pass all r = 3 samples (estimate 1, F = −∞). Dropping those points, as the least-squares fit on the
    estimates did, fits each line to the lower sizes only and predicted 0.92 here; the likelihood of the
    counts keeps them."""
    rng = np.random.default_rng(0)
    n = np.logspace(3, 4.2, 7)
    c = np.exp(rng.normal(np.log(4e6), 0.5, 300))
    truth = law(n[:, None], c[None, :], 2.0)
    k = rng.negative_binomial(3, truth) + 3  # samples until the 3rd pass
    fit = fit_task_scaling(n[:-1], (2 / (k - 1))[:-1], predict_at=[n[-1]], per_instance=True,
                           passes=np.full(k.shape, 3)[:-1], samples=k[:-1], n_boot=100)
    assert np.mean(k[-2] == 3) > 0.8  # the case: most instances passed every sample below the held-out size
    assert fit.prediction[0] == pytest.approx(truth[-1].mean(), abs=0.01)


def seeded(pu_fn, sd, seed, seeds=3):
    """Task PU of `seeds` models per size: the law plus model-level noise in F."""
    return np.repeat(N, seeds), noisy(np.repeat(pu_fn(N), seeds), sd, seed)


def test_emergence_classes_of_synthetic_laws_against_seed_noise():
    n, pu = seeded(lambda m: law(m, 400.0, 0.5), 0.02, 2)
    linear = classify_emergence(n, pu)
    assert linear.label == "linear" and linear.aicc_prefers == "linear" and linear.min_seeds == 3
    convex = classify_emergence(*seeded(multi_step, 0.02, 1))
    concave = classify_emergence(*seeded(multi_circuit, 0.02, 2))
    assert (convex.label, concave.label) == ("convex", "concave")
    assert convex.p_value < 0.05 and convex.curvature > 0 > concave.curvature
    assert convex.f_statistic == pytest.approx((convex.curvature / convex.curvature_se) ** 2, rel=1e-6)
    assert convex.to_dict()["class"] == "convex"
    linear_hits = sum(classify_emergence(*seeded(lambda m: law(m, 400.0, 0.5), 0.05, s)).label == "linear"
                      for s in range(40))
    assert linear_hits >= 34  # the test's false-positive rate is about its 5% significance


def test_emergence_refuses_one_seed_per_size():
    with pytest.raises(ValueError, match=r"needs at least 2 models \(seeds\) per size .* N = 100000 has 1"):
        classify_emergence(N, law(N, 400.0, 0.5))


def test_aic_picks_the_generating_model():
    assert fit_emergence_models(N, noisy(multi_step(N), 0.01, 3)).best == "multi_step"
    assert fit_emergence_models(N, noisy(multi_circuit(N), 0.01, 4)).best == "multi_circuit"
    lin = fit_emergence_models(N, noisy(law(N, 400.0, 0.5), 0.05, 5))
    assert lin.best == "linear" and lin.models["linear"]["k"] == 2 and lin.to_dict()["criterion"] == "aicc"


@pytest.mark.parametrize("n,pu,match", [
    ([1e5, 1e6], [0.1, 0.2], "at least 3"),
    ([1e5, 1e6, 1e7], [0.1, 0.0, 0.3], r"\(0, 1\]"),
    ([1e5, 1e6, 1e7], [0.1, 1.5, 0.3], r"\(0, 1\]"),
    ([1e5, 1e5, 1e7], [0.1, 0.2, 0.3], "at least 3 model sizes, got 2"),  # seeds repeat a size; 2 sizes
])
def test_bad_fit_input_raises_one_line(n, pu, match):
    with pytest.raises(ValueError, match=match):
        fit_task_scaling(n, pu)
