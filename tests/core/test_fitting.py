import numpy as np
import pytest

from quanta_interp.fitting import fit_power_law, fit_range_sensitivity


@pytest.mark.parametrize("alpha", [0.083, 0.5, 1.0, 2.0])
def test_pure_power_law_recovered_exactly_without_noise(alpha):
    x = np.logspace(0, 3, 12)
    fit = fit_power_law(x, 3.0 * x ** -alpha, n_boot=50)
    assert fit.exponent == pytest.approx(alpha, abs=1e-9)
    assert fit.prefactor == pytest.approx(3.0, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.n_points == 12


def test_noisy_fit_ci_covers_truth_in_most_seeds():
    alpha, covered = 0.7, 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        x = np.logspace(1, 4, 15)
        y = 2.0 * x ** -alpha * np.exp(rng.normal(0, 0.1, x.size))
        fit = fit_power_law(x, y, n_boot=300, seed=seed)
        assert abs(fit.exponent - alpha) < 0.1
        covered += fit.exponent_ci[0] <= alpha <= fit.exponent_ci[1]
    assert covered >= 32  # nominal 95%; the pairs bootstrap is a bit narrow at 15 points


def test_offset_fit_recovers_exponent_and_offset():
    x = np.logspace(0, 4, 20)
    rng = np.random.default_rng(1)
    y = (5.0 * x ** -0.6 + 0.3) * np.exp(rng.normal(0, 0.01, x.size))
    fit = fit_power_law(x, y, offset=True, n_boot=200)
    assert fit.exponent == pytest.approx(0.6, abs=0.05)
    assert fit.offset == pytest.approx(0.3, abs=0.03)
    assert fit.exponent_ci[0] < 0.6 < fit.exponent_ci[1]
    naive = fit_power_law(x, y, n_boot=10)
    assert naive.exponent < 0.4  # ignoring the floor flattens the curve: the reason offsets exist


def test_x_range_and_range_sensitivity():
    x = np.logspace(0, 3, 10)
    y = np.where(x < 10, x ** -2.0, 10.0 ** -1.0 * x ** -1.0)  # slope changes at x = 10
    upper = fit_power_law(x, y, x_range=(10, 1000), n_boot=10)
    assert upper.exponent == pytest.approx(1.0, abs=1e-9)
    assert upper.x_range[0] >= 10
    rows = fit_range_sensitivity(x, y, max_drop=3)
    exps = [r["exponent"] for r in rows]
    assert len(rows) == 16 and max(exps) - min(exps) > 0.3
    assert {"x_range", "n_points", "exponent", "exponent_ci", "r2"} <= set(rows[0])


@pytest.mark.parametrize("bad", [[1.0, np.nan, 2.0, 3.0], [1.0, -1.0, 2.0, 3.0], [1.0, 0.0, 2.0, 3.0]])
def test_bad_values_rejected_with_one_message(bad):
    with pytest.raises(ValueError, match="y "):
        fit_power_law([1, 2, 3, 4], bad)


def test_too_few_points_rejected():
    with pytest.raises(ValueError, match="at least 3 distinct"):
        fit_power_law([1, 1, 2], [1, 1, 0.5])


def test_range_sensitivity_with_repeated_x_drops_whole_sizes():
    sizes = np.array([10.0, 20.0, 40.0, 80.0, 160.0])
    x = np.repeat(sizes, 3)  # three seeds per size
    y = 5.0 * x ** -0.7 * np.tile([0.99, 1.0, 1.01], sizes.size)
    rows = fit_range_sensitivity(x, y, max_drop=2, n_boot=50)
    assert [r["x_range"] for r in rows][:3] == [[10.0, 160.0], [10.0, 80.0], [10.0, 40.0]]
    assert len(rows) == 6 and all(r["n_points"] % 3 == 0 and r["n_points"] >= 9 for r in rows)
    assert all(abs(r["exponent"] - 0.7) < 0.01 for r in rows)
