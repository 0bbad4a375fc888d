"""Width sweeps as resumable `map_runs` sweeps: one run directory per (activation, width), S seeds each."""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path

import numpy as np

from ..config import ParameterError
from ..executors import map_runs
from ..io import RunDir, Sweep, read_json
from .config import RunConfig, SweepConfig
from .experiment import MLP1D, SeedEnsemble, make_grid, seed_network
from .results import PeakReport, PeakSolution, RunResult

__all__ = ["RunResult", "PeakSolution", "PeakReport", "sweep_configs", "train_run", "run_sweep", "load_run",
           "resolve_run", "peak_report", "log_widths"]


def log_widths(max_width: int, n: int) -> list[int]:
    """About `n` log-spaced integer widths from 1 to `max_width` (duplicates removed), increasing.

    Raises
    ------
    ValueError
        max_width < 1 or n < 1.
    """
    if max_width < 1 or n < 1:
        raise ValueError(f"max width and number of widths must be ≥ 1, got {max_width} and {n}")
    return sorted({int(round(v)) for v in np.geomspace(1, max_width, n)})


def sweep_configs(config: SweepConfig) -> list[RunConfig]:
    """One run config per (activation, width); seeds per width = clip(seed_budget / width,
    min_seeds, max_seeds), so narrow nets, whose losses scatter most, get the most seeds.

    Returns
    -------
    list of RunConfig
        `activation`, `width`, `n_seeds` and every training setting of `config` (target, interval,
        optimizer, steps, lr, dtype, n_train, n_test, seed), activation-major, widths increasing.
    """
    widths = config.widths or log_widths(config.max_width, config.n_widths)
    shared = {k: v for k, v in config.to_dict().items()
              if k not in ("widths", "max_width", "n_widths", "activations", "seed_budget", "min_seeds", "max_seeds")}
    return [RunConfig.from_dict({"activation": act, "width": w,
                                 "n_seeds": int(np.clip(config.seed_budget // w, config.min_seeds, config.max_seeds)),
                                 **shared})
            for act in config.activations for w in sorted(set(widths))]


def _ensemble(cfg: RunConfig, device: str = "cpu") -> SeedEnsemble:
    return SeedEnsemble(cfg.width, cfg.n_seeds, activation=cfg.activation, optimizer=cfg.optimizer,
                        adam_steps=cfg.adam_steps, lbfgs_steps=cfg.lbfgs_steps, lr=cfg.lr, dtype=cfg.dtype,
                        seed=cfg.seed, device=device)


def train_run(config: RunConfig, run_dir: RunDir | None, device: str = "cpu") -> RunResult:
    """Train one (activation, width) ensemble; save weights (w, b, v: (S, N); c: (S,)) and per-seed losses.

    Parameters
    ----------
    config : RunConfig
        One entry of `sweep_configs`.
    run_dir : RunDir or None
        Where the weights go (None: not saved).

    Returns
    -------
    RunResult
        Per-seed train and test MSE (in the ensemble's dtype); its `to_dict()` is the run's `result.json`.

    Raises
    ------
    ValueError
        A bad interval, target, grid size, width, activation, optimizer or dtype in `config`.
    """
    x, y = make_grid(config.target, config.interval, config.n_train)
    xt, yt = make_grid(config.target, config.interval, config.n_test, midpoints=True)
    start = time.perf_counter()
    model = _ensemble(config, device).fit(x, y)
    test = model.loss(xt, yt)
    if run_dir is not None:
        run_dir.save_weights(model.params_)
    return RunResult(activation=config.activation, width=config.width, n_seeds=config.n_seeds,
                     train_mse=model.train_loss_, test_mse=test, median_test_mse=float(np.median(test)),
                     seconds=time.perf_counter() - start)


def run_sweep(configs: list[RunConfig], out: str | os.PathLike, *, device: str = "cpu", **executor) -> list[RunResult]:
    """Train every config into the resumable sweep folder `out` (finished runs are skipped);
    `executor` goes to `map_runs` (backend, workers, address, resources).

    Returns
    -------
    list of RunResult
        The `train_run` result of each config, in config order (those of earlier calls read back).
    """
    return [RunResult.from_dict(r) for r in map_runs(partial(train_run, device=device), configs, root=out,
                                                     name="lottery-sweep", desc="lottery widths", **executor)]


def load_run(path: str | os.PathLike, seed_index: int | None = None) -> tuple[MLP1D, RunResult, RunConfig, int]:
    """One network of a finished run (default: the seed with the median test loss), its result and config.

    Returns
    -------
    network : MLP1D
        The chosen seed, in float64.
    result : RunResult
        The run's `result.json`.
    config : RunConfig
        Its `config.json`.
    seed_index : int
        The seed returned.

    Raises
    ------
    FileNotFoundError
        `path` lacks result.json or weights.safetensors.
    ParameterError
        `seed_index` is outside 0 … S − 1.
    """
    path = Path(path)
    if not (path / "result.json").exists() or not (path / "weights.safetensors").exists():
        raise FileNotFoundError(f"{path} is not a finished lottery run (needs result.json and weights.safetensors); "
                                "pass a folder under SWEEP/runs/")
    run = RunDir(path)
    result, config = RunResult.from_dict(run.result()), RunConfig.from_dict(read_json(path / "config.json"))
    weights, losses = run.load_weights(), result.test_mse
    if seed_index is None:
        seed_index = int(np.argsort(losses)[losses.size // 2])
    if not 0 <= seed_index < losses.size:
        raise ParameterError("seed_index", f"must be in 0..{losses.size - 1}, got {seed_index}")
    return seed_network(weights, seed_index, config.activation), result, config, seed_index


def resolve_run(path: str | os.PathLike, *, width: int | None = None, activation: str | None = None) -> Path:
    """A run folder: `path` itself, or in a sweep folder the finished run with this width and activation.

    Parameters
    ----------
    width, activation
        Which run of a sweep folder (default: width 2, silu); ignored when `path` is a run.

    Raises
    ------
    FileNotFoundError
        `path` is neither a run nor a sweep folder, or the matching run has not finished.
    ParameterError
        The sweep has no run with this width and activation.
    """
    path = Path(path)
    if (path / "result.json").exists():
        return path
    sweep = Sweep.open(path, hint="nor a lottery run (no result.json)")
    width = 2 if width is None else width
    activation = activation or "silu"
    configs = [RunConfig.from_dict(c) for c in sweep.configs]
    for i, c in enumerate(configs):
        if c.width == width and c.activation == activation:
            if i not in sweep.pending():
                return sweep.run_dir(i).path
            raise FileNotFoundError(f"the run width={width} activation={activation} in {path} has not finished; "
                                    "rerun `quanta lottery sweep` with the same options to resume it")
    have = sorted({(c.activation, c.width) for c in configs})
    raise ParameterError("width", f"and activation: no run with width={width} activation={activation} in {path}; "
                                  f"have {have}")


def peak_report(run: str | os.PathLike, *, prominence: float = 0.05, n_points: int = 101) -> PeakReport:
    """Peaks of the final train-loss histogram over a run's seeds, with each peak's representative network.

    Parameters
    ----------
    run : path
        A finished run folder (see `resolve_run`).
    prominence : float
        As in `loss_peaks`.
    n_points : int
        Points of the grid on which each representative network is evaluated.

    Returns
    -------
    PeakReport
        The seeds' final train losses, their peaks and one `PeakSolution` per peak on `n_points` points.

    Raises
    ------
    FileNotFoundError
        `run` is not a finished run.
    ValueError
        A non-finite train loss.
    """
    from .analysis import loss_peaks

    _, result, config, _ = load_run(run, 0)
    losses = result.train_mse
    peaks = loss_peaks(np.maximum(losses, np.finfo(float).tiny), prominence=prominence)
    x, y = make_grid(config.target, config.interval, n_points)
    weights, solutions = RunDir(Path(run)).load_weights(), []
    for p in peaks:
        net = seed_network(weights, p["representative"], config.activation)
        solutions.append(PeakSolution(seed=p["representative"], x=x, target=y, prediction=net.predict(x), w=net.w,
                                      b=net.b, v=net.v, c=net.c))
    return PeakReport(activation=config.activation, width=config.width, n_seeds=losses.size, losses=losses,
                      peaks=peaks, solutions=solutions)
