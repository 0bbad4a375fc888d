"""Corpus-level reports shared by the CLI and `analyses/langstats_shakespeare.py`: β, γ, prediction, sweep.

Each returns a typed result whose `to_dict()` is the JSON written; none loads a model except
`lm_entropy_report` (which only evaluates one) and `measure_report` (which trains through the lm layer);
none plots.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..record import Record, optional
from .config import MeasureConfig
from .correlations import CorrelationDecay
from .entropy import fit_gamma
from .fits import AlphaFit, BetaFit, GammaFit
from .predict import AlphaDPrediction, alpha_d, horizon

__all__ = ["default_lags", "BetaReport", "beta_report", "GammaReport", "gamma_report", "gamma_vs_h_inf",
           "lm_entropy_report", "prediction", "MeasureReport", "measure_report"]


def default_lags(max_lag: int, n: int = 20) -> list[int]:
    """About `n` log-spaced integer lags from 1 to `max_lag`, increasing and unique.

    Raises
    ------
    ValueError
        max_lag < 1.
    """
    if max_lag < 1:
        raise ValueError(f"max_lag must be ≥ 1, got {max_lag}")
    return np.unique(np.round(np.logspace(0, np.log10(max_lag), n)).astype(int)).tolist()


@dataclass(frozen=True)
class BetaReport:
    """‖C(n)‖ over lags, the noise floor, and β fitted on each norm, as `beta_report` returns it.

    Attributes
    ----------
    spectrum : dict
        `CorrelationDecay.to_dict()`: the norms, floors and lags.
    floor_factor : float
        Lags fitted only where the norm exceeds this × the floor.
    beta_op, beta_fro : BetaFit or None
        `fit_beta` results for the operator and Frobenius norms; None where too few lags clear the floor.
    errors : dict
        Norm ("op", "fro") → why it was not fitted, for each None above.
    floor_const : float or None
        c in the floor c/√P (operator norm), when `beta_op` is fitted.
    horizon_at_corpus : float or None
        n* at the pairs counted at the smallest lag, when `beta_op` is fitted.
    """

    spectrum: dict
    floor_factor: float
    beta_op: BetaFit | None
    beta_fro: BetaFit | None
    errors: dict
    floor_const: float | None = None
    horizon_at_corpus: float | None = None

    def require(self, norm: str = "op") -> BetaFit:
        """The `fit_beta` result of `norm` ("op" or "fro"); ValueError with the reason when it was not fitted."""
        fit = self.beta_op if norm == "op" else self.beta_fro
        if fit is None:
            raise ValueError(self.errors[norm])
        return fit

    def to_dict(self) -> dict:
        """The JSON of `correlations.json`: an unfitted norm as {`error`: reason}; `floor_const` and
        `horizon_at_corpus` only when `beta_op` is fitted."""
        out = {"spectrum": self.spectrum, "floor_factor": self.floor_factor}
        for norm, fit in (("op", self.beta_op), ("fro", self.beta_fro)):
            out[f"beta_{norm}"] = fit.to_dict() if fit is not None else {"error": self.errors[norm]}
        if self.beta_op is not None:
            out["floor_const"], out["horizon_at_corpus"] = self.floor_const, self.horizon_at_corpus
        return out


def beta_report(docs: Sequence[np.ndarray], vocab_size: int, lags: Sequence[int], *, max_pairs: int | None = None,
                floor_factor: float = 2.0, seed: int = 0, progress: bool = True) -> BetaReport:
    """‖C(n)‖ (operator and Frobenius) over lags, the noise floor, and β fits for both norms.

    Parameters
    ----------
    docs : sequence of int ndarray (T_d,)
        Token ids in [0, vocab_size), one array per document.
    lags, max_pairs, floor_factor, seed
        As for `CorrelationDecay`.

    Returns
    -------
    BetaReport
        A norm whose lags do not clear the floor often enough is None there, with its reason in `errors`.

    Raises
    ------
    ValueError
        Bad lags or tokens (see `CorrelationDecay.fit`), fewer than 12 pairs at some lag, or a fitted
        β ≤ 0 (from `horizon`).
    """
    est = CorrelationDecay(lags, max_pairs=max_pairs, floor_factor=floor_factor, seed=seed)
    est.fit(docs, vocab_size, progress=progress)
    fits, errors = {}, {}
    for norm in ("op", "fro"):
        try:
            fits[norm] = est.fit_beta(norm)
        except ValueError as e:
            fits[norm], errors[norm] = None, str(e)
    floor_const = horizon_n = None
    if fits["op"] is not None:
        fit, ref = fits["op"].fit, est.floor_scaling_[-1]
        floor_const = ref["op"] * np.sqrt(ref["n_pairs"])
        horizon_n = float(horizon(int(est.n_pairs_[0]), fit.exponent, fit.prefactor, floor_const))
    return BetaReport(est.to_dict(), floor_factor, fits["op"], fits["fro"], errors, floor_const, horizon_n)


H_INF_FRACTIONS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99)
"""H_∞ values tried by `gamma_vs_h_inf`, as fractions of the smallest H_n fitted."""


@dataclass(frozen=True)
class GammaReport(Record):
    """γ fitted both ways on a per-position loss curve, as `gamma_report` returns it.

    Attributes
    ----------
    n : int ndarray (K,)
        Context lengths 1 … K.
    H : float64 ndarray (K,)
        H_n (or its upper bound L_n) in nats.
    n_range : list of int
        [n_min, K], the n fitted.
    gamma_offset, gamma_raw : GammaFit
        With H_∞ fitted, and the raw log-log slope (the paper's practical fit).
    """

    n: np.ndarray
    H: np.ndarray
    n_range: list[int]
    gamma_offset: GammaFit
    gamma_raw: GammaFit


def gamma_report(losses: np.ndarray, *, n_min: int = 2, seed: int = 0, progress: bool = False) -> GammaReport:
    """γ from a per-position loss curve H_n (n = 1, 2, …), fitted both ways: with an H_∞ offset and as the
    raw log-log slope (the paper's practical fit).

    Parameters
    ----------
    losses : float ndarray (K,)
        H_n (or its upper bound L_n) in nats for n = 1 … K.
    n_min : int
        Smallest n fitted.
    progress : bool
        Say on stderr when each fit starts (the offset fit's 1000 bootstrap refits take minutes on a CPU).

    Returns
    -------
    GammaReport
        `gamma_vs_h_inf` tells how much of γ the choice of H_∞ sets.

    Raises
    ------
    ValueError
        Fewer than 4 distinct n in [n_min, K], or a non-finite or non-positive loss there.
    """
    losses = np.asarray(losses, dtype=float)
    n, rng = np.arange(1, losses.size + 1), (n_min, losses.size)
    fits = {}
    for key, offset, what in (("gamma_offset", True, "with H_∞ free: 1000 bootstrap refits, minutes on a CPU"),
                              ("gamma_raw", False, "raw log-log: seconds")):
        t0 = time.perf_counter()
        if progress:
            print(f"fitting γ {what} …", file=sys.stderr, flush=True)
        fits[key] = fit_gamma(n, losses, offset=offset, n_range=rng, seed=seed)
        if progress:
            print(f"  done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return GammaReport(n, losses, list(rng), **fits)


def gamma_vs_h_inf(losses: np.ndarray, *, extra: Sequence[float] = (), n_min: int = 2, seed: int = 0) -> list[dict]:
    """γ of H_n − H_∞ ∝ n^-γ with H_∞ held fixed at each of `H_INF_FRACTIONS` of the smallest H_n fitted
    (0: the raw log-log fit) and at each `extra` value (e.g. the fitted H_∞, whose row reproduces the
    offset fit's γ and R²): how much of γ the choice of H_∞ sets. Pure power-law fits, seconds.

    Parameters
    ----------
    losses : float ndarray (K,)
        H_n in nats for n = 1 … K.
    extra : sequence of float
        More H_∞ values (nats), each below every H_n fitted.
    n_min : int
        Smallest n fitted.

    Returns
    -------
    list of dict
        Rows {`H_inf` (nats), `fraction` (of the smallest H_n), `gamma`, `gamma_ci` (95 %, 200 bootstrap
        resamples), `r2` (of log(H_n − H_∞))}, by increasing H_∞.

    Raises
    ------
    ValueError
        As `fit_gamma` (an `extra` H_∞ not below every H_n, too few points).
    """
    losses = np.asarray(losses, dtype=float)
    n, rng = np.arange(1, losses.size + 1), (n_min, losses.size)
    floor = float(losses[n_min - 1:].min())
    rows = []
    for h_inf in sorted({*(f * floor for f in H_INF_FRACTIONS), *map(float, extra)}):
        fit = fit_gamma(n, losses, offset=h_inf, n_range=rng, n_boot=200, seed=seed).fit
        rows.append({"H_inf": h_inf, "fraction": h_inf / floor, "gamma": fit.exponent,
                     "gamma_ci": list(fit.exponent_ci), "r2": fit.r2})
    return rows


def lm_entropy_report(model, val_tokens: np.ndarray, *, n_ctx: int, n_windows: int = 512, n_min: int = 2,
                      seed: int = 0, progress: bool = False) -> GammaReport:
    """H_n from a trained model's per-position validation loss (an upper bound), and γ fitted both ways.

    Parameters
    ----------
    model
        A bridge model, as for `position_losses`.
    val_tokens : int ndarray (T,)
        A validation token stream, tokenized with the model's own tokenizer (`lm.losses.model_corpus`).
    progress : bool
        Show the forward passes and the fits on stderr.

    Returns
    -------
    GammaReport
        H_n for n = 1 … n_ctx − 1.

    Raises
    ------
    ValueError
        As `position_losses` and `gamma_report`.
    """
    from .measure import position_losses

    losses = position_losses(model, val_tokens, n_ctx=n_ctx, n_windows=n_windows, seed=seed, progress=progress)
    return gamma_report(losses, n_min=n_min, seed=seed, progress=progress)


def prediction(beta: BetaFit, gamma: GammaFit) -> AlphaDPrediction:
    """α_D = γ/(2β) from a `beta_report().require("op")` and a `fit_gamma` result, as `alpha_d`.

    Raises
    ------
    ValueError
        β or γ is not positive.
    """
    return alpha_d(beta.beta, beta.beta_ci, gamma.gamma, gamma.gamma_ci)


def _check_budgets(config: MeasureConfig) -> None:
    """Every budget fits the corpus's training tokens and a window, and 'val' holds a window: checked before the
    sweep folder opens (each run would otherwise fail in turn, after the smaller ones trained)."""
    from ..config import ParameterError
    from ..corpora import load_corpus
    from ..lm.training import split_tokens

    corpus = load_corpus(config.corpus, config.tokenizer, seed=config.seed)
    need = config.train_settings()["n_ctx"] + 1
    n_train = split_tokens(corpus, config.corpus, "train", need).size
    split_tokens(corpus, config.corpus, "val", need)
    if max(config.budgets) > n_train or min(config.budgets) < need:
        raise ParameterError("budgets", f"must lie between one window (n_ctx + 1 = {need}) and the {n_train} "
                                        f"training tokens of corpus {config.corpus!r}, got {list(config.budgets)}")


@dataclass(frozen=True)
class MeasureReport(Record):
    """The data-limited sweep and its measured α_D, as `measure_report` returns it (lists in budget order).

    Attributes
    ----------
    P : list of int
        Training tokens of each run.
    best_val_loss : list of float
        Best validation loss of each run, nats per token.
    position_losses : list of list of float
        L_n (n = 1 … n_ctx − 1, nats) of each run's final model.
    steps : list of int
        Optimiser steps of each run.
    fit_free_offset : AlphaFit
        L(P) − H_∞ ∝ P^−α_D with H_∞ fitted.
    fit_entropy_offset : AlphaFit or None
        The same with H_∞ fixed (`MeasureConfig.h_inf`); None when it is not given or not below every loss,
        and then absent from `to_dict()` (as from the JSON before).
    """

    P: list[int]
    best_val_loss: list[float]
    position_losses: list[list[float]]
    steps: list[int]
    fit_free_offset: AlphaFit
    fit_entropy_offset: AlphaFit | None = optional()


def measure_report(config: MeasureConfig, root: str, *, executor: dict | None = None) -> MeasureReport:
    """Run (or resume) the data-limited sweep under `root` and fit the measured α_D; `executor` goes to
    `map_runs` (backend, workers, address, resources).

    Parameters
    ----------
    root : str
        The resumable sweep folder.

    Returns
    -------
    MeasureReport

    Raises
    ------
    ParameterError
        A budget over the corpus's training tokens or under one window, or a split without one window.
    ValueError
        An unknown backend, or fewer than 4 distinct budgets for the free-offset fit.
    """
    from ..executors import map_runs
    from .measure import BudgetRun, data_limited_run, fit_alpha_measured, sweep_configs

    _check_budgets(config)
    seed, n_boot = config.seed, config.n_boot
    done = map_runs(data_limited_run, sweep_configs(config), root=root, name=f"langstats-{config.tokenizer}",
                    desc=f"data-limited sweep ({config.tokenizer})", **(executor or {}))
    runs = [BudgetRun.from_dict(r) for r in done]  # JSON from map_runs, rebuilt at the boundary
    p, best = [r.P for r in runs], [r.best_val_loss for r in runs]
    free = fit_alpha_measured(p, best, seed=seed, n_boot=n_boot)
    fixed = (fit_alpha_measured(p, best, h_inf=config.h_inf, seed=seed, n_boot=n_boot)
             if config.h_inf is not None and config.h_inf < min(best) else None)
    return MeasureReport(p, best, [r.position_losses for r in runs], [r.steps for r in runs], free, fixed)
