import numpy as np
import pytest
import torch

from quanta_interp.lottery import (
    MLP1D,
    SeedEnsemble,
    batched_lbfgs,
    dissect,
    ensemble_variance,
    even_taylor,
    fit_scaling,
    loss_peaks,
    make_grid,
    neuron_curves,
    scaling_table,
)
from quanta_interp.lottery.experiment import activation_fn
from quanta_interp.lottery.results import RunResult


@pytest.mark.parametrize("activation", ["silu", "tanh"])
def test_even_taylor_matches_finite_differences(activation):
    rng = np.random.default_rng(1)
    w, b, v = rng.uniform(-1.5, 1.5, 5), rng.uniform(-1.5, 1.5, 5), rng.uniform(-1, 1, 5)
    f = activation_fn(activation)

    def pair(x: float) -> np.ndarray:  # v(σ(b + wx) + σ(b − wx))
        z, wx = torch.as_tensor(b), torch.as_tensor(w * x)
        return v * (f(z + wx) + f(z - wx)).numpy()

    h = 0.005
    g = [pair(k * h) for k in (-2, -1, 0, 1, 2)]
    d2 = (-g[0] + 16 * g[1] - 30 * g[2] + 16 * g[3] - g[4]) / (12 * h**2)
    d4 = (g[0] - 4 * g[1] + 6 * g[2] - 4 * g[3] + g[4]) / h**4
    coef = even_taylor(activation, w, b, v)
    np.testing.assert_allclose(coef[:, 0], g[2], rtol=1e-12)
    np.testing.assert_allclose(coef[:, 1], d2 / 2, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(coef[:, 2], d4 / 24, rtol=5e-4, atol=1e-6)


def test_batched_lbfgs_rows_are_independent_and_converge():
    def rosenbrock(z):
        return (1 - z[:, 0]) ** 2 + 100 * (z[:, 1] - z[:, 0] ** 2) ** 2

    x0 = torch.tensor([[-1.2, 1.0], [0.5, -0.5], [2.0, 2.0]], dtype=torch.float64)
    together = batched_lbfgs(rosenbrock, x0, iters=80)
    alone = torch.cat([batched_lbfgs(rosenbrock, x0[i:i + 1], iters=80) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-10)
    torch.testing.assert_close(together, torch.ones_like(x0), rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def trained_n2():
    x, y = make_grid("x^2", (-1, 1), 100)
    return SeedEnsemble(2, 32, activation="silu", adam_steps=300, lbfgs_steps=300, seed=0).fit(x, y)


def test_dissect_finds_the_symmetric_ticket_in_trained_n2_networks(trained_n2):
    good = [int(i) for i in np.argsort(trained_n2.train_loss_) if trained_n2.train_loss_[i] < 1e-6]
    reports = {i: dissect(trained_n2.network(i)) for i in good}
    paired = [i for i, r in reports.items() if r.n_pairs == 1]
    assert len(good) >= 3 and paired, "some good N = 2 solutions must be a symmetric pair"
    report = reports[paired[0]]
    assert report.unpaired == [] and report.pair_distance[0] < 0.05
    # one ticket carries the whole fit: its x² coefficient is the target's 1, its standalone error is tiny
    assert report.taylor[0, 1] == pytest.approx(1.0, abs=0.05)
    assert report.ticket_mse[0] < 1e-5 and report.network_mse < 1e-6
    # a torch module with the same weights gives the same report
    net = trained_n2.network(paired[0])
    module = torch.nn.Sequential(torch.nn.Linear(1, 2), torch.nn.SiLU(), torch.nn.Linear(2, 1)).double()
    with torch.no_grad():
        module[0].weight.copy_(torch.as_tensor(net.w)[:, None])
        module[0].bias.copy_(torch.as_tensor(net.b))
        module[2].weight.copy_(torch.as_tensor(net.v)[None, :])
        module[2].bias.fill_(net.c)
    assert dissect(module).pairs == report.pairs


def test_dissect_finds_no_pairs_in_a_random_network():
    p = SeedEnsemble(8, 1, seed=3).init_params()
    report = dissect({k: t[0].numpy() for k, t in p.items()}, activation="silu")
    assert report.n_pairs == 0 and len(report.unpaired) == 8 and report.mean_error_corr() is None


def test_ticket_errors_of_silu_pairs_are_correlated_not_clt():
    # exact symmetric pairs with varied (w, b, v): every ticket's error after its best fit is the x⁴ shape
    rng = np.random.default_rng(0)
    k = 24
    w, b, v = rng.uniform(0.3, 1.5, k), rng.uniform(-1, 1, k), rng.uniform(0.2, 1, k)
    net = MLP1D(np.r_[w, -w], np.r_[b, b], np.r_[v, v], 0.0, "silu")
    report = dissect(net, tol=1e-6)
    assert report.n_pairs == k
    assert report.mean_error_corr(absolute=True) > 0.95
    assert report.variance_fit is not None and report.variance_fit.exponent < 0.3


def test_ensemble_variance_is_one_over_k_for_independent_errors():
    errors = np.random.default_rng(0).normal(size=(200, 300))
    k, var = ensemble_variance(errors, n_subsets=64)
    slope = -np.polyfit(np.log(k), np.log(var), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.1)
    k, var = ensemble_variance(np.tile(errors[:1], (50, 1)))
    np.testing.assert_allclose(var, var[0], rtol=1e-12)


def test_scaling_fit_recovers_a_known_exponent():
    rng = np.random.default_rng(0)
    def run(act: str, n: int, mse: np.ndarray) -> RunResult:
        return RunResult(act, n, mse.size, train_mse=mse, test_mse=mse, median_test_mse=float(np.median(mse)),
                         seconds=0.0)

    results = [run(act, n, c * n ** -alpha * rng.lognormal(0, 0.3, 50))
               for act, alpha, c in (("silu", 1.0, 1e-2), ("relu", 4.0, 1.0)) for n in (2, 4, 8, 16, 32, 64, 128)]
    table = scaling_table(results)
    assert table.rows["silu"].widths == [2, 4, 8, 16, 32, 64, 128] and len(table.rows["relu"].quantiles["q75"]) == 7
    fits = fit_scaling(table, n_boot=200)
    for act, alpha in (("silu", 1.0), ("relu", 4.0)):
        lo, hi = fits.rows[act].exponent_ci
        assert fits.rows[act].exponent == pytest.approx(alpha, abs=0.1) and lo <= alpha + 0.05 and hi >= alpha - 0.05
        assert len(fits.rows[act].local_slopes) == 6 and len(fits.rows[act].range_sensitivity) == 9


def test_loss_peaks_finds_discrete_modes():
    rng = np.random.default_rng(0)
    centres, counts = (-8, -5, -1.2), (30, 100, 50)
    lg = np.concatenate([rng.normal(c, 0.05, n) for c, n in zip(centres, counts, strict=True)])
    peaks = loss_peaks(10**lg)
    assert [p["count"] for p in peaks] == list(counts)
    np.testing.assert_allclose([p["log10_loss"] for p in peaks], centres, atol=0.1)
    for p, c in zip(peaks, centres, strict=True):
        assert abs(lg[p["representative"]] - c) < 0.1


def test_neuron_curves_add_up_to_the_network():
    net = MLP1D([0.5, -1.0, 2.0], [0.1, 0.2, -0.3], [1.0, -0.5, 0.25], 0.7, "tanh")
    curves = neuron_curves(net, n_points=33)
    assert curves.activation.shape == (3, 33) and len(curves.to_dict()["neurons"]) == 3
    np.testing.assert_allclose(curves.contribution.sum(0) + 0.7, net.predict(curves.x), rtol=1e-12)
    np.testing.assert_allclose(curves.activation[1], np.tanh(-curves.x + 0.2), rtol=1e-12)


@pytest.mark.parametrize("make, message", [
    (lambda: SeedEnsemble(0, 4).fit(*make_grid("x^2", (-1, 1), 10)), "width must be a positive integer"),
    (lambda: SeedEnsemble(4, 2, activation="swish").init_params(), "activation must be one of"),
    (lambda: make_grid("x^2", (1.0, -1.0), 10), "interval must be"),
    (lambda: make_grid(np.log, (-1.0, 1.0), 10), "target returned NaN"),
    (lambda: dissect(torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.SiLU(), torch.nn.Linear(4, 1))),
     "dissect needs a 1 → N → 1 network"),
    (lambda: dissect(torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.Tanh(), torch.nn.Linear(4, 4),
                                         torch.nn.Tanh(), torch.nn.Linear(4, 1))), "dissect needs a 1 → N → 1"),
])
def test_bad_input_is_one_clear_error(make, message):
    with np.errstate(invalid="ignore"), pytest.raises(ValueError, match=message) as e:
        make()
    assert "\n" not in str(e.value)
