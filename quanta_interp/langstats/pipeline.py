"""Corpus-level reports shared by the CLI and `analyses/langstats_shakespeare.py`: β, γ, prediction, sweep.

Each returns a JSON-able dict; none loads a model except `lm_entropy_report` (which only evaluates one)
and `measure_report` (which trains through the lm layer); none plots.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import MeasureConfig
from .correlations import CorrelationDecay
from .entropy import fit_gamma
from .predict import alpha_d, horizon

__all__ = ["default_lags", "beta_report", "gamma_report", "lm_entropy_report", "prediction", "measure_report"]


def default_lags(max_lag: int, n: int = 20) -> list[int]:
    """About `n` log-spaced integer lags from 1 to `max_lag`."""
    if max_lag < 1:
        raise ValueError(f"max_lag must be ≥ 1, got {max_lag}")
    return np.unique(np.round(np.logspace(0, np.log10(max_lag), n)).astype(int)).tolist()


def beta_report(docs: Sequence[np.ndarray], vocab_size: int, lags: Sequence[int], *, max_pairs: int | None = None,
                floor_factor: float = 2.0, seed: int = 0, progress: bool = True) -> dict:
    """‖C(n)‖ (operator and Frobenius) over lags, the noise floor, and β fits for both norms."""
    est = CorrelationDecay(lags, max_pairs=max_pairs, floor_factor=floor_factor, seed=seed)
    est.fit(docs, vocab_size, progress=progress)
    out = {"spectrum": est.to_dict(), "floor_factor": floor_factor}
    for norm in ("op", "fro"):
        try:
            out[f"beta_{norm}"] = est.fit_beta(norm)
        except ValueError as e:
            out[f"beta_{norm}"] = {"error": str(e)}
    fit = out["beta_op"].get("fit")
    if fit is not None:
        ref = est.floor_scaling_[-1]
        out["floor_const"] = ref["op"] * np.sqrt(ref["n_pairs"])
        out["horizon_at_corpus"] = float(horizon(int(est.n_pairs_[0]), fit.exponent, fit.prefactor,
                                                 out["floor_const"]))
    return out


def gamma_report(losses: np.ndarray, *, n_min: int = 2, seed: int = 0) -> dict:
    """γ from a per-position loss curve H_n (n = 1, 2, …), fitted both ways: with an H_∞ offset and as the
    raw log-log slope (the paper's practical fit)."""
    losses = np.asarray(losses, dtype=float)
    n, rng = np.arange(1, losses.size + 1), (n_min, losses.size)
    return {"n": n, "H": losses, "n_range": list(rng),
            "gamma_offset": fit_gamma(n, losses, offset=True, n_range=rng, seed=seed),
            "gamma_raw": fit_gamma(n, losses, offset=False, n_range=rng, seed=seed)}


def lm_entropy_report(model, val_tokens: np.ndarray, *, n_ctx: int, n_windows: int = 512, n_min: int = 2,
                      seed: int = 0) -> dict:
    """H_n from a trained model's per-position validation loss (an upper bound), and γ fitted both ways."""
    from .measure import position_losses

    losses = position_losses(model, val_tokens, n_ctx=n_ctx, n_windows=n_windows, seed=seed)
    return gamma_report(losses, n_min=n_min, seed=seed)


def prediction(beta: dict, gamma: dict) -> dict:
    """α_D = γ/(2β) from a `beta_report()["beta_op"]` and a `fit_gamma` result."""
    return alpha_d(beta["beta"], beta["beta_ci"], gamma["gamma"], gamma["gamma_ci"])


def measure_report(config: MeasureConfig, root: str, *, executor: dict | None = None) -> dict:
    """Run (or resume) the data-limited sweep under `root` and fit the measured α_D; `executor` goes to
    `map_runs` (backend, workers, address, resources).

    Returns
    -------
    dict
        `P`, `best_val_loss` (nats per token) and `position_losses` (L_n of each run), `steps`, and the fit of
        L(P) − H_∞ ∝ P^−α_D with H_∞ free (`fit_free_offset`) and, when `h_inf` is below every loss, fixed
        (`fit_entropy_offset`).
    """
    from ..executors import map_runs
    from .measure import data_limited_run, fit_alpha_measured, sweep_configs

    seed, n_boot = config.seed, config.n_boot
    runs = map_runs(data_limited_run, sweep_configs(config), root=root, name=f"langstats-{config.tokenizer}",
                    desc=f"data-limited sweep ({config.tokenizer})", **(executor or {}))
    p = [r["P"] for r in runs]
    best = [r["best_val_loss"] for r in runs]
    out = {"P": p, "best_val_loss": best, "position_losses": [r["position_losses"] for r in runs],
           "steps": [r["steps"] for r in runs], "fit_free_offset": fit_alpha_measured(p, best, seed=seed, n_boot=n_boot)}
    if config.h_inf is not None and config.h_inf < min(best):
        out["fit_entropy_offset"] = fit_alpha_measured(p, best, h_inf=config.h_inf, seed=seed, n_boot=n_boot)
    return out
