"""The check: train LMs on P tokens for P over decades, fit L(P) − H_∞ ∝ P^-α_D, collapse the curves.

`data_limited_run` is one sweep point (module-level, so `executors.map_runs` can run it in processes and
resume it); `position_losses` gives L_n, the validation loss at context length n, from any bridge model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..fitting import fit_power_law, fit_range_sensitivity
from ..io import RunDir
from ..record import Record
from .config import BudgetRunConfig, MeasureConfig
from .fits import AlphaFit

__all__ = ["position_losses", "BudgetRun", "data_limited_run", "sweep_configs", "fit_alpha_measured", "collapse"]


def position_losses(model, tokens: np.ndarray, *, n_ctx: int, n_windows: int = 1024, batch_size: int = 64,
                    seed: int = 0, progress: bool = False) -> np.ndarray:
    """Mean next-token loss (nats) at each position of `n_windows` random windows of `n_ctx` tokens.

    Entry k is the loss of predicting a token from the k+1 tokens before it (L_n, n = k+1 ≤ n_ctx−1).
    The artifacts were made when `lm.train` left context n_ctx unsupervised; it now trains it, so windows of
    n_ctx + 1 tokens could also measure L_{n_ctx}.

    Parameters
    ----------
    model
        A bridge model (`lm.load(...).bridge`) with `cfg.n_ctx` ≥ n_ctx; set to eval mode here.
    tokens : int ndarray (T,)
        A validation stream; windows start at random offsets (drawn with replacement from `seed`).
    progress : bool
        Show a progress bar over the windows.

    Returns
    -------
    float32 ndarray (n_ctx − 1,)
        L_n for n = 1 … n_ctx − 1, in nats; an upper bound on H_n.

    Raises
    ------
    ValueError
        tokens has at most n_ctx tokens, n_ctx exceeds the model's context, batch_size < 1, or a token id
        lies outside the model's vocabulary.
    """
    from ..lm import token_losses

    tokens = np.asarray(tokens)
    if tokens.size < n_ctx + 1:
        raise ValueError(f"tokens: need more than n_ctx = {n_ctx} tokens for one window, got {tokens.size}")
    starts = np.random.default_rng(seed).integers(0, tokens.size - n_ctx, size=n_windows)
    windows = np.stack([tokens[s: s + n_ctx] for s in starts]).astype(np.int64)
    model.eval()
    return token_losses(model, windows, context=n_ctx, batch_size=batch_size, progress=progress)[:, 1:].mean(0)


def sweep_configs(config: MeasureConfig) -> list[dict]:
    """One JSON-able run config per data budget P; steps grow with P (≈ `epochs` passes, clipped) so every
    run can overfit and the best validation loss marks the data-limited optimum.

    Returns
    -------
    list of dict
        Per budget, in `config.budgets` order: `P` (training tokens), `source`, `tokenizer`, `seed`,
        `n_val_tokens`, `model` (`lm.TrainConfig` settings including `steps`).
    """
    model = config.train_settings()
    per_step = model["batch_size"] * model["n_ctx"]
    return [{"P": int(p), "source": config.corpus, "tokenizer": config.tokenizer, "seed": config.seed,
             "n_val_tokens": config.n_val_tokens,
             "model": {**model, "steps": int(np.clip(config.epochs * p / per_step, config.min_steps,
                                                     config.max_steps))}}
            for p in config.budgets]


@dataclass(frozen=True)
class BudgetRun(Record):
    """One point of the data-limited sweep, as `data_limited_run` returns it; `to_dict()` is the run's
    `result.json`, and `from_dict` rebuilds it from there (a resumed sweep reads it back).

    Attributes
    ----------
    P : int
        Training tokens.
    best_val_loss : float
        Best validation loss over training, nats per token.
    position_losses : list of float (n_ctx − 1,)
        L_n for n = 1 … n_ctx − 1 of the final model, nats.
    final_val_loss : float
        Validation loss at the last step, nats per token.
    steps : int
        Optimiser steps.
    """

    P: int
    best_val_loss: float
    position_losses: list[float]
    final_val_loss: float
    steps: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BudgetRun:
        """From `to_dict()` output (a `map_runs` result)."""
        return cls(**data)


def data_limited_run(config: Mapping, run_dir: RunDir | None) -> BudgetRun:
    """Train on the first P training tokens; return the best validation loss and the per-position losses.

    Parameters
    ----------
    config : mapping
        One entry of `sweep_configs` (rebuilt as a `BudgetRunConfig` here, at the worker's boundary).
    run_dir : RunDir
        Where the LM is trained (under `lm/`); given by `map_runs` with a root.

    Returns
    -------
    BudgetRun
        Its `to_dict()` is the run's `result.json`.

    Raises
    ------
    ValueError
        run_dir is None, or P exceeds the corpus's training tokens.
    ParameterError
        `config` has keys that are not `BudgetRunConfig` fields.
    """
    from .. import lm
    from ..corpora import load_corpus

    if run_dir is None:
        raise ValueError("data_limited_run needs a run folder (map_runs(..., root=...)) to keep the weights")
    cfg = BudgetRunConfig.from_dict(dict(config))
    corpus = load_corpus(cfg.source, cfg.tokenizer, seed=cfg.seed)
    train = corpus.stream("train")
    if cfg.P > train.size:
        raise ValueError(f"P={cfg.P} exceeds the {train.size} training tokens of {cfg.source}")
    val = corpus.stream("val")[: cfg.n_val_tokens]
    model_cfg = lm.TrainConfig(**{**cfg.model, "d_vocab": corpus.vocab_size, "seed": cfg.seed})
    lm_dir = run_dir.path / "lm"  # lm.train writes its own result.json; the sweep's marks the point done
    result = lm.train(model_cfg, train[: cfg.P], val_tokens=val, tokenizer=corpus.tokenizer,
                      run_dir=lm_dir, progress=False)
    model = lm.load(str(lm_dir), device=model_cfg.device).bridge
    losses = position_losses(model, val, n_ctx=model_cfg.n_ctx, seed=cfg.seed)
    return BudgetRun(cfg.P, float(result.best_val_loss), losses.tolist(), float(result.val_loss), model_cfg.steps)


def fit_alpha_measured(budgets: Sequence[float], losses: Sequence[float], *, h_inf: float | None = None,
                       n_boot: int = 1000, seed: int = 0) -> AlphaFit:
    """α_D from L(P) − H_∞ ∝ P^-α_D: with `h_inf` given (from the entropy fit) a pure power law of
    L − H_∞; without, H_∞ is fitted as an offset. Carries the range-sensitivity table.

    The measured counterpart of Cagnetta et al.'s (2026) predicted α_D = γ/(2β); the table shows how it
    drifts with the points fitted.

    Parameters
    ----------
    budgets : float ndarray (K,)
        Training tokens P of each run.
    losses : float ndarray (K,)
        Best validation loss of each run, nats per token.
    h_inf : float or None
        H_∞ in nats (None: fitted).

    Returns
    -------
    AlphaFit
        `fit` (`PowerLawFit`), `alpha_D`, `alpha_D_ci` ([lo, hi]), `H_inf` (nats, given or fitted),
        `sensitivity` (exponents with up to one point dropped from each end).

    Raises
    ------
    ValueError
        `h_inf` not below every loss, fewer than 3 distinct budgets (4 when H_∞ is fitted), or a
        non-finite or non-positive budget or loss.
    """
    p, loss = np.asarray(budgets, float), np.asarray(losses, float)
    if h_inf is not None and np.any(loss <= h_inf):
        raise ValueError(f"h_inf={h_inf:.4f} must lie below every loss (min {loss.min():.4f}); fit it instead")
    y = loss - h_inf if h_inf is not None else loss
    kw = {"offset": h_inf is None, "n_boot": n_boot, "seed": seed}
    fit = fit_power_law(p, y, **kw)
    return AlphaFit(fit, fit_range_sensitivity(p, y, max_drop=1, **{**kw, "n_boot": min(n_boot, 100)}),
                    h_inf if h_inf is not None else fit.offset)


def collapse(budgets: Sequence[float], position_loss: np.ndarray, *, beta: float, gamma: float,
             h_inf: float) -> tuple[np.ndarray, np.ndarray]:
    """Collapse coordinates: x = P / n^(2β), y = n^γ (L_n(P) − H_∞), for a (n_budgets, K) loss array.

    Cagnetta et al. (2026): with the right β and γ the per-position curves of every budget fall on one.

    Parameters
    ----------
    budgets : float ndarray (n_budgets,)
        Training tokens P of each run.
    position_loss : float ndarray (n_budgets, K)
        L_n in nats; column k is n = k + 1 (rows of `position_losses`, K = n_ctx − 1).
    h_inf : float
        H_∞ in nats.

    Returns
    -------
    x, y : float64 ndarray (n_budgets, K)
    """
    curves = np.asarray(position_loss, float)
    n = np.arange(1, curves.shape[1] + 1, dtype=float)
    x = np.asarray(budgets, float)[:, None] / n[None, :] ** (2 * beta)
    y = n[None, :] ** gamma * (curves - h_inf)
    return x, y
