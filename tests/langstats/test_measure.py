import json

import numpy as np
import pytest

from quanta_interp.cli import main
from quanta_interp.langstats.config import MeasureConfig
from quanta_interp.langstats.measure import collapse, fit_alpha_measured
from quanta_interp.langstats.pipeline import measure_report


def test_measured_alpha_from_a_known_data_scaling_law():
    p = np.logspace(4, 7, 7)
    loss = 1.3 + 40.0 * p ** -0.3 * np.exp(np.random.default_rng(0).normal(0, 0.002, p.size))
    free = fit_alpha_measured(p, loss, n_boot=20)
    assert free.alpha_D == pytest.approx(0.3, abs=0.03) and free.H_inf == pytest.approx(1.3, abs=0.03)
    given = fit_alpha_measured(p, loss, h_inf=1.3, n_boot=200)
    assert given.alpha_D == pytest.approx(0.3, abs=0.01)
    assert given.alpha_D_ci[0] < 0.3 < given.alpha_D_ci[1]
    assert {"x_range", "exponent"} <= set(given.sensitivity[0])
    with pytest.raises(ValueError, match="must lie below every loss"):
        fit_alpha_measured(p, loss, h_inf=2.0)


def test_collapse_maps_the_scaling_form_onto_one_curve():
    beta, gamma, h_inf = 0.8, 0.3, 1.0
    p = np.array([1e4, 1e5, 1e6])
    n = np.arange(1, 65)
    x_true = p[:, None] / n[None, :] ** (2 * beta)
    curves = h_inf + n[None, :] ** -gamma * (1 + x_true ** -0.5)  # L_n(P) = H_∞ + n^-γ F(P / n^2β)
    x, y = collapse(p, curves, beta=beta, gamma=gamma, h_inf=h_inf)
    assert np.allclose(y, 1 + x ** -0.5)
    _, wrong = collapse(p, curves, beta=beta, gamma=0.6, h_inf=h_inf)
    assert not np.allclose(wrong, 1 + x ** -0.5)


def test_data_limited_sweep_trains_fits_and_resumes(tmp_cache, tmp_path):
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("abcd efgh"), 30_000))
    (tmp_path / "corpus").mkdir()
    for i in range(4):
        (tmp_path / "corpus" / f"doc{i}.txt").write_text(text[i * 7500:(i + 1) * 7500])
    model = {"n_layers": 1, "d_model": 16, "n_heads": 2, "n_ctx": 8, "batch_size": 4, "lr": 1e-2, "warmup": 1,
             "eval_every": 2, "eval_batches": 1}
    kw = dict(corpus=str(tmp_path / "corpus"), tokenizer="char", model_config=model, min_steps=2, max_steps=2,
              n_val_tokens=500, n_boot=20)
    root = str(tmp_path / "sweep")
    rep = measure_report(MeasureConfig(budgets=(200, 800, 3200, 12800), **kw), root)
    assert rep.P == [200, 800, 3200, 12800] and all(s == 2 for s in rep.steps)
    assert all(len(c) == 7 and np.all(np.isfinite(c)) for c in rep.position_losses)  # n = 1 … n_ctx−1
    assert np.all(np.array(rep.best_val_loss) < np.log(10) + 0.5)  # ≈ uniform over 9 symbols after 2 steps
    assert np.isfinite(rep.fit_free_offset.alpha_D)
    stamp = sorted((tmp_path / "sweep").rglob("result.json"))[0].stat().st_mtime_ns
    again = measure_report(MeasureConfig(budgets=(200, 800, 3200, 12800), **kw), root)  # read back, not retrained
    assert again.best_val_loss == rep.best_val_loss
    assert sorted((tmp_path / "sweep").rglob("result.json"))[0].stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="spanning ≥ 1.5 decades"):
        measure_report(MeasureConfig(budgets=(200, 400, 800, 1600), **kw), root)


def test_cli_rhm_reports_analytic_and_measured_beta(tmp_path, capsys):
    rc = main(["langstats", "rhm", "--v", "8", "--m", "3", "--s", "3", "--L", "4", "--samples", "40000",
               "--out", str(tmp_path)])
    assert rc == 0
    out = json.loads((tmp_path / "rhm.json").read_text())
    assert out["beta_analytic"] == pytest.approx(1.0)
    assert out["beta_fit"]["beta"] == pytest.approx(1.0, abs=0.3)  # one grammar: per-level noise
    assert "analytic beta" in capsys.readouterr().out


def test_cli_refuses_lags_beyond_the_corpus_in_one_line(tmp_cache, tmp_path, capsys):
    (tmp_path / "c.txt").write_text("to be or not to be " * 20)
    rc = main(["langstats", "correlations", "--corpus", str(tmp_path / "c.txt"), "--split", "all",
               "--lags", "1,2,5000", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "lag 5000" in err
