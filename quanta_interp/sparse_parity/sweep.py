"""N (width), D (dataset size) and S (steps) sweeps of multitask sparse parity, and their analysis.

A sweep is a resumable `executors.map_runs` folder whose runs are *groups*: one batched training of
several members (widths, seeds or dataset sizes) in one stacked model. Analysis functions read only
result dicts (never models): power-law fits with CIs, learned-subtask counts, learning order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial

import numpy as np
from scipy.stats import spearmanr

from ..config import ParameterError
from ..executors import map_runs
from ..fitting import fit_power_law, fit_range_sensitivity
from .config import MEMBER_KEYS, SparseParityConfig
from .task import LEARNED_BITS
from .training import train_sparse_parity_batched

__all__ = ["KINDS", "run_group", "sweep_configs", "run_sweep", "members", "fit_exponent", "learning_order",
           "steps_to_learn_fit"]

KINDS = ("N", "D", "S")


def run_group(config: dict, run_dir=None, device: str = "cpu") -> dict:
    """`map_runs` worker: train `config["members"]` (dicts of width/seed/n_train) batched on the shared rest."""
    base = {k: v for k, v in config.items() if k != "members"}
    configs = [SparseParityConfig.from_dict({**base, **m}) for m in config["members"]]
    _, results = train_sparse_parity_batched(configs, run_dir, device=device)
    return {"members": results}


def sweep_configs(kind: str, base: SparseParityConfig, values: Sequence[int], seeds: Sequence[int]) -> list[dict]:
    """One group (a JSON-able dict: the shared settings and its `members`) per seed. N: `values` are widths;
    D: dataset sizes n_train (at base width); S: ignored (one member at base width whose logged curve is
    the steps sweep). `base.seed` is replaced by each of `seeds`.

    Raises
    ------
    ParameterError
        An unknown kind, no values (N, D) or no seeds.
    """
    if kind not in KINDS:
        raise ParameterError("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind != "S" and not values:
        raise ParameterError("values", f"must list at least one {'width' if kind == 'N' else 'n_train'} for "
                                       f"kind {kind}")
    if not seeds:
        raise ParameterError("seeds", "must list at least one seed")
    if any(isinstance(v, bool) or int(v) != v or v < 1 for v in values):
        raise ParameterError("values", f"must be positive integers, got {list(values)}")
    key = {"N": "width", "D": "n_train"}.get(kind)
    shared = {k: v for k, v in base.to_dict().items() if k not in MEMBER_KEYS}
    groups = []
    for s in seeds:
        mem = [{"width": base.width, "seed": s, "n_train": base.n_train}] if kind == "S" else \
              [{"width": base.width, "seed": s, "n_train": base.n_train, key: int(v)} for v in values]
        groups.append({**shared, "members": mem})
    return groups


def run_sweep(kind: str, base: SparseParityConfig, values: Sequence[int], seeds: Sequence[int],
              root: str | os.PathLike, *, device: str = "cpu", **executor) -> list[dict]:
    """Run (or resume) a sweep under `root` and return the member results of every group, flattened;
    `executor` goes to `map_runs` (backend, workers, address, resources)."""
    groups = sweep_configs(kind, base, values, seeds)
    results = map_runs(partial(run_group, device=device), groups, root=root, name=f"sparse-parity-{kind}",
                       desc=f"sparse-parity {kind} sweep", **executor)
    return members(results)


def members(group_results: Sequence[dict]) -> list[dict]:
    return [m for g in group_results for m in g["members"]]


def _by_x(results: Sequence[dict], x_of) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean test loss and mean learned count per distinct x, averaged over seeds."""
    xs = sorted({x_of(r) for r in results})
    loss = np.array([np.mean([r["test_loss"] for r in results if x_of(r) == x]) for x in xs])
    learned = np.array([np.mean([r["n_learned"] for r in results if x_of(r) == x]) for x in xs])
    return np.array(xs, dtype=float), loss, learned


def fit_exponent(results: Sequence[dict], kind: str, *, x_range: tuple[float, float] | None = None,
                 n_boot: int = 1000) -> dict:
    """α_N (x = parameters), α_D (x = n_train) or α_S (x = step) of the Zipf-weighted test loss.

    For S the logged curve of each result is used. Returns the fit, its range sensitivity and the points.
    """
    if kind == "S":
        steps = np.array(results[0]["curve"]["step"][1:], dtype=float)
        loss = np.mean([r["curve"]["test_loss"][1:] for r in results], axis=0)
        x, y, learned = steps, loss, None
    else:
        x, y, learned = _by_x(results, (lambda r: r["n_params"]) if kind == "N" else (lambda r: r["config"]["n_train"]))
    fit = fit_power_law(x, y, x_range=x_range, n_boot=n_boot)
    lo, hi = fit.x_range
    inside = (x >= lo) & (x <= hi)
    sens = fit_range_sensitivity(x[inside], y[inside], max_drop=2, n_boot=200)
    return {"fit": fit.to_dict(), "range_sensitivity": sens, "x": x.tolist(), "loss": y.tolist(),
            "n_learned": None if learned is None else learned.tolist()}


def learning_order(result: dict) -> dict:
    """Are subtasks learned in frequency order? Spearman ρ between task rank and steps-to-learn."""
    s = result["steps_to_learn"]
    ids = [i for i, v in enumerate(s) if v is not None]
    rho = float(spearmanr(ids, [s[i] for i in ids]).statistic) if len(ids) >= 3 else float("nan")
    return {"learned_ids": ids, "steps_to_learn": [s[i] for i in ids], "spearman_rank_vs_steps": rho,
            "threshold_bits": LEARNED_BITS}


def steps_to_learn_fit(result: dict, probs: np.ndarray) -> dict | None:
    """Fit steps-to-learn ∝ p_i^-slope over learned subtasks (theory: slope ≈ 1, i.e. log-log slope −1)."""
    s = result["steps_to_learn"]
    ids = [i for i, v in enumerate(s) if v]  # step 0 cannot be on a log axis
    if len({s[i] for i in ids}) < 3:
        return None
    fit = fit_power_law(np.asarray(probs)[ids], [s[i] for i in ids], n_boot=500)
    return {"loglog_slope": -fit.exponent, "slope_ci": [-fit.exponent_ci[1], -fit.exponent_ci[0]],
            "r2": fit.r2, "n_points": fit.n_points}
