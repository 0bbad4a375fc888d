"""N (width), D (dataset size) and S (steps) sweeps of multitask sparse parity, and their analysis.

A sweep is a resumable `executors.map_runs` folder whose runs are *groups*: one batched training of
several members (widths, seeds or dataset sizes) in one stacked model. Analysis functions read only
result dicts (never models): power-law fits with CIs, learned-subtask counts, learning order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from ..config import ParameterError
from ..executors import map_runs
from ..fitting import PowerLawFit, fit_power_law, fit_range_sensitivity
from .config import KINDS, MEMBER_KEYS, SparseParityConfig
from .task import LEARNED_BITS
from .training import train_sparse_parity_batched

__all__ = ["KINDS", "SweepGroup", "GroupResult", "run_group", "sweep_configs", "run_sweep", "members", "late_slope",
           "ExponentFit", "fit_exponent", "fit_sweeps", "SweepFits", "finite_task_exponent", "LearningOrder",
           "learning_order", "StepsToLearnFit", "steps_to_learn_fit"]

LOSSES = ("final", "best")


@dataclass(frozen=True)
class SweepGroup:
    """One group of a sweep (`sweep_configs`): members trained batched in one stacked model, alike but for
    `MEMBER_KEYS` (width, seed, n_train). Each member is a validated `SparseParityConfig`.

    Attributes
    ----------
    members : tuple of SparseParityConfig
        In training order.
    """

    members: tuple[SparseParityConfig, ...]

    def to_dict(self) -> dict:
        """The group as its sweep folder stores it: the shared `SparseParityConfig` fields, then "members"
        (width, seed, n_train of each)."""
        shared = {k: v for k, v in self.members[0].to_dict().items() if k not in MEMBER_KEYS}
        return {**shared, "members": [{k: getattr(m, k) for k in MEMBER_KEYS} for m in self.members]}


@dataclass(frozen=True)
class GroupResult:
    """What `run_group` trained: `members`, one `train_sparse_parity_batched` result dict per member, in order
    (the run's `result.json` via `to_dict`)."""

    members: list

    def to_dict(self) -> dict:
        return {"members": self.members}


def run_group(group: SweepGroup, run_dir=None, device: str = "cpu") -> GroupResult:
    """`map_runs` worker: train the members of `group` batched.

    Parameters
    ----------
    group : SweepGroup
        One group of `sweep_configs`.
    run_dir : io.RunDir or None
        Receives each member's metrics rows.
    device : str
        Torch device, e.g. "cuda".
    """
    _, results = train_sparse_parity_batched(list(group.members), run_dir, device=device)
    return GroupResult(results)


def sweep_configs(kind: str, base: SparseParityConfig, values: Sequence[int], seeds: Sequence[int]) -> list[SweepGroup]:
    """One group per seed. N: `values` are widths; D: dataset sizes n_train (at base width); S: ignored (one
    member at base width whose logged curve is the steps sweep). `base.seed` is replaced by each of `seeds`.

    Raises
    ------
    ParameterError
        An unknown kind, no values (N, D), no seeds, or a value that is not a positive integer (checked
        for S too); a member that is not a valid `SparseParityConfig`.
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
    changes = [{}] if kind == "S" else [{key: int(v)} for v in values]
    return [SweepGroup(tuple(base.replace(seed=s, **c) for c in changes)) for s in seeds]


def run_sweep(kind: str, base: SparseParityConfig, values: Sequence[int], seeds: Sequence[int],
              root: str | os.PathLike, *, device: str = "cpu", **executor) -> list[dict]:
    """Run (or resume) a sweep under `root` and return the member results of every group, flattened;
    `executor` goes to `map_runs` (backend, workers, address, resources).

    Parameters
    ----------
    kind, base, values, seeds
        As in `sweep_configs`.
    root : str or PathLike
        The sweep folder, named "sparse-parity-<kind>" in its manifest; finished groups are not redone.
    device : str
        Torch device of each group's training, e.g. "cuda".

    Returns
    -------
    list of dict
        `train_sparse_parity_batched` result dicts, seed by seed, members in `values` order.

    Raises
    ------
    ParameterError
        As `sweep_configs`.
    ValueError
        `root` holds a different sweep; an unknown backend or an unusable Ray cluster.
    RuntimeError
        Ray only: some groups still failed after their retries.
    """
    groups = sweep_configs(kind, base, values, seeds)
    results = map_runs(partial(run_group, device=device), groups, root=root, name=f"sparse-parity-{kind}",
                       desc=f"sparse-parity {kind} sweep", **executor)
    return members(results)


def members(group_results: Sequence[dict]) -> list[dict]:
    """The member results of `run_group` outputs ({"members": [...]}), flattened in order."""
    return [m for g in group_results for m in g["members"]]


def late_slope(result: dict, fraction: float = 0.5) -> float:
    """How fast a member's test loss still falls at the end of training: −d log L / d log step.

    A least-squares slope in log-log over the evaluations in the last `fraction` of the steps (step 0
    excluded). 0 means converged in steps; 0.1 means the loss still falls 7 % per doubling of steps. The
    quantization model's α_N assumes every subtask a width can hold has been learned (Michaud et al. 2023,
    §3), so a member still falling is step-limited, not width-limited.

    Parameters
    ----------
    result : dict
        One `train_sparse_parity_batched` result (its "curve": "step", "test_loss" in bits).
    fraction : float
        Share of the final steps in (0, 1].

    Returns
    -------
    float
        The slope; NaN with fewer than 2 evaluations in the window or a non-positive loss there.
    """
    step = np.asarray(result["curve"]["step"], dtype=float)
    loss = np.asarray(result["curve"]["test_loss"], dtype=float)
    keep = (step > 0) & (step >= step.max() * (1 - fraction))
    if keep.sum() < 2 or np.any(loss[keep] <= 0):
        return float("nan")
    return float(-np.polyfit(np.log(step[keep]), np.log(loss[keep]), 1)[0])


def _loss(r: dict, loss: str) -> float:
    """The final test loss, or the lowest logged one ("best": early stopping)."""
    return float(r["test_loss"]) if loss == "final" else float(min(r["curve"]["test_loss"]))


def _by_x(results: Sequence[dict], x_of, loss: str = "final") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean test loss ("final" or "best") and mean learned count per distinct x, averaged over seeds."""
    xs = sorted({x_of(r) for r in results})
    y = np.array([np.mean([_loss(r, loss) for r in results if x_of(r) == x]) for x in xs])
    learned = np.array([np.mean([r["n_learned"] for r in results if x_of(r) == x]) for x in xs])
    return np.array(xs, dtype=float), y, learned


@dataclass(frozen=True)
class SweepFits:
    """What `fit_sweeps` wrote: `fits` ("KIND FOLDER" → {"kind", `ExponentFit.to_dict()`'s keys, "theory":
    `task.predictions`}) as `path` (fit.json) holds it, and the figures beside it."""

    fits: dict
    path: Path

    def to_dict(self) -> dict:
        return self.fits


def fit_sweeps(sweeps: Sequence[str | os.PathLike], out: str | os.PathLike, *,
               max_late_slope: float | None = None) -> SweepFits:
    """Fit α of every finished sweep folder (`fit_exponent` of its members, beside the theory's exponents) and
    write `out/fit.json` and one figure per kind (`loss_vs_N`, `loss_vs_D`, `loss_vs_S`).

    Raises
    ------
    ParameterError
        `max_late_slope` is not a finite number.
    ValueError
        A folder is not a sweep, or has no finished run yet.
    """
    from ..config import check_finite
    from ..io import Sweep, atomic_write_json
    from .figures import plot_scaling
    from .task import predictions

    out, fits = Path(out), {}
    if max_late_slope is not None:
        check_finite("max_late_slope", max_late_slope)
    for folder in sweeps:
        sweep = Sweep.open(folder, hint="run `quanta sparse-parity sweep`")
        kind = sweep.name.removeprefix("sparse-parity-")
        results = [r for r in sweep.results() if r is not None]
        if not results:
            raise ValueError(f"{folder} has no finished runs yet; run the sweep first")
        res = members(results)
        z = res[0]["config"]["zipf_exponent"]
        fits[f"{kind} {folder}"] = {"kind": kind, **fit_exponent(res, kind, max_late_slope=max_late_slope).to_dict(),
                                    "theory": predictions(z).to_dict()}
    path = atomic_write_json(out / "fit.json", fits)
    for kind in sorted({f["kind"] for f in fits.values()}):
        plot_scaling({k: f for k, f in fits.items() if f["kind"] == kind}, out / f"loss_vs_{kind}",
                     xlabel={"N": "parameters", "D": "training samples D", "S": "steps"}[kind])
    return SweepFits(fits, path)


@dataclass(frozen=True)
class ExponentFit:
    """α_N, α_D or α_S of one sweep (`fit_exponent`); `to_dict()` is its entry in fit.json.

    Attributes
    ----------
    fit : fitting.PowerLawFit
        loss ≈ a·x^-α.
    range_sensitivity : list of dict
        `fit_range_sensitivity` rows, up to 2 points dropped at either end of the fitted range.
    x, loss : list of float
        Each distinct x and its mean test loss (bits).
    fitted : list of bool
        Per x, whether the fit used it.
    n_learned : list of float or None
        Mean learned subtasks per x (None for S).
    late_slope : list of float or None
        Per x, the largest `late_slope` over seeds (None for S).
    loss_kind : str
        "final" or "best".
    max_late_slope : float or None
        The filter applied (None for S or when none was asked for).
    """

    fit: PowerLawFit
    range_sensitivity: list
    x: list
    loss: list
    fitted: list
    n_learned: list | None
    late_slope: list | None
    loss_kind: str
    max_late_slope: float | None

    def to_dict(self) -> dict:
        return {"fit": self.fit.to_dict(), "range_sensitivity": self.range_sensitivity, "x": self.x,
                "loss": self.loss, "fitted": self.fitted, "n_learned": self.n_learned,
                "late_slope": self.late_slope, "loss_kind": self.loss_kind, "max_late_slope": self.max_late_slope}


def fit_exponent(results: Sequence[dict], kind: str, *, x_range: tuple[float, float] | None = None,
                 loss: str = "final", max_late_slope: float | None = None, n_boot: int = 1000) -> ExponentFit:
    """α_N (x = parameters), α_D (x = n_train) or α_S (x = step) of the Zipf-weighted test loss.

    For S the logged curve of each result is used. Returns the fit, its range sensitivity and the points.
    Theory (Michaud et al. 2023): α_N = α and α_D = α_S = α/(α + 1), see `task.predictions`.

    Parameters
    ----------
    results : sequence of dict
        Member results of one sweep (`train_sparse_parity_batched`); losses are averaged over seeds at
        each x. For S, every curve must share the same evaluation steps; step 0 is dropped.
    kind : {"N", "D", "S"}
        N fits against `n_params`, S against the step; any other value fits against `config["n_train"]`.
    x_range : (float, float) or None
        Inclusive bounds on x for the fit; None fits every point.
    loss : {"final", "best"}
        N and D: each member's final test loss, or its lowest logged one ("best": early stopping, as the
        paper's data-limited sweep trains each D to early-stopping convergence).
    max_late_slope : float or None
        N and D: leave out members whose `late_slope` exceeds this (not converged in steps); None keeps all.
    n_boot : int
        Bootstrap resamples for the CI on α.

    Returns
    -------
    ExponentFit

    Raises
    ------
    ValueError
        Fewer than 3 distinct x values in `x_range`, a loss that is not positive and finite, or an unknown `loss`.
    ParameterError
        `max_late_slope` leaves fewer than 3 points.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    slopes = None
    if kind == "S":
        x = np.array(results[0]["curve"]["step"][1:], dtype=float)
        y, learned = np.mean([r["curve"]["test_loss"][1:] for r in results], axis=0), None
    else:
        x_of = (lambda r: r["n_params"]) if kind == "N" else (lambda r: r["config"]["n_train"])
        x, y, learned = _by_x(results, x_of, loss)
        slopes = np.array([max((late_slope(r) if "curve" in r else np.nan for r in results if x_of(r) == xv),
                               key=lambda v: -np.inf if np.isnan(v) else v) for xv in x])
    use = np.ones(x.size, dtype=bool) if max_late_slope is None or slopes is None else slopes <= max_late_slope
    if x.size < 3:
        what = {"N": "widths", "D": "dataset sizes", "S": "logged steps"}.get(kind, "x values")
        raise ValueError(f"the sweep has {x.size} distinct {what}; a power-law fit needs ≥ 3: sweep more values")
    if use.sum() < 3:
        raise ParameterError("max_late_slope", f"leaves only {int(use.sum())} of {x.size} points converged in steps "
                                               f"(late slope ≤ {max_late_slope}); train longer, or raise or leave "
                                               "out max_late_slope")
    fit = fit_power_law(x[use], y[use], x_range=x_range, n_boot=n_boot)
    lo, hi = fit.x_range
    inside = use & (x >= lo) & (x <= hi)
    sens = fit_range_sensitivity(x[inside], y[inside], max_drop=2, n_boot=200)
    return ExponentFit(fit=fit, range_sensitivity=sens, x=x.tolist(), loss=y.tolist(), fitted=inside.tolist(),
                       n_learned=None if learned is None else learned.tolist(),
                       late_slope=None if slopes is None else slopes.tolist(), loss_kind=loss,
                       max_late_slope=None if slopes is None else max_late_slope)


def finite_task_exponent(probs, n_learned, x) -> float:
    """The quantization model's exponent for a task with finitely many subtasks, over the measured points.

    With the n most frequent subtasks learned, the loss is proportional to the unlearned mass
    T(n) = Σ_{k>n} p_k (Michaud et al. 2023, §3: L_n ∝ Σ_{k=n+1}^{n_tasks} p_k). For infinitely many subtasks
    T(n) ∝ n^-α and α_N = α when n ∝ N; with n_tasks subtasks T(n) falls faster as n nears n_tasks, so a
    measured α_N above α can be the truncation, not a failure of the theory. Returns −slope of log T(n_i)
    vs log x_i by least squares.

    Parameters
    ----------
    probs : float ndarray (n_tasks,)
        Subtask frequencies, most frequent first (`MultitaskSparseParity.probs`).
    n_learned : sequence of float
        Learned subtasks at each point (means over seeds are rounded).
    x : sequence of float
        Parameters (or samples) at each point, positive.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Fewer than 2 points, lengths that differ, or every subtask learned at some point (T = 0).
    """
    p = np.asarray(probs, dtype=float)
    n = np.rint(np.asarray(n_learned, dtype=float)).astype(int)
    x = np.asarray(x, dtype=float)
    if n.size < 2 or n.shape != x.shape:
        raise ValueError(f"need ≥ 2 points of equal length, got {n.size} learned counts and {x.size} x values")
    tail = np.array([p[k:].sum() for k in n])
    if np.any(tail <= 0):
        raise ValueError("every subtask is learned at some point: the unlearned mass is 0")
    return float(-np.polyfit(np.log(x), np.log(tail), 1)[0])


@dataclass(frozen=True)
class LearningOrder:
    """Whether subtasks were learned in frequency order (`learning_order`).

    Attributes
    ----------
    learned_ids : list of int
        Subtasks that ever reached `threshold_bits`, by task rank (0 most frequent).
    steps_to_learn : list of int
        Their first evaluation step below the threshold.
    spearman_rank_vs_steps : float
        Spearman ρ between task rank and steps-to-learn; NaN with fewer than 3 learned.
    threshold_bits : float
        The learned threshold, 0.1 bits.
    """

    learned_ids: list
    steps_to_learn: list
    spearman_rank_vs_steps: float
    threshold_bits: float

    def to_dict(self) -> dict:
        return asdict(self)


def learning_order(result: dict) -> LearningOrder:
    """Are subtasks learned in frequency order? Spearman ρ between task rank and steps-to-learn.

    The quantization model predicts quanta are learned in order of frequency, so ρ > 0 (rank 0 first).

    Parameters
    ----------
    result : dict
        One `train_sparse_parity_batched` result (its "steps_to_learn").
    """
    s = result["steps_to_learn"]
    ids = [i for i, v in enumerate(s) if v is not None]
    rho = float(spearmanr(ids, [s[i] for i in ids]).statistic) if len(ids) >= 3 else float("nan")
    return LearningOrder(learned_ids=ids, steps_to_learn=[s[i] for i in ids], spearman_rank_vs_steps=rho,
                         threshold_bits=LEARNED_BITS)


@dataclass(frozen=True)
class StepsToLearnFit:
    """Steps-to-learn ∝ p_i^slope over learned subtasks (`steps_to_learn_fit`; theory: slope −1).

    Attributes
    ----------
    loglog_slope : float
        Slope of log steps-to-learn vs log p_i.
    slope_ci : (float, float)
        Its 95 % bootstrap CI.
    r2 : float
        r² of the log-log fit.
    n_points : int
        Subtasks fitted.
    n_censored : int
        Learned subtasks left out: learned by the first evaluation after step 0 (left-censored).
    """

    loglog_slope: float
    slope_ci: tuple[float, float]
    r2: float
    n_points: int
    n_censored: int

    def to_dict(self) -> dict:
        return asdict(self)


def steps_to_learn_fit(result: dict, probs: np.ndarray) -> StepsToLearnFit | None:
    """Fit steps-to-learn ∝ p_i^-slope over learned subtasks (theory: slope ≈ 1, i.e. log-log slope −1).

    Subtasks already learned at the first evaluation after step 0 are left out: their steps-to-learn is only
    known to be at most that step (left-censored), and keeping them at it flattens the slope (Zipf 1.5, 80k
    steps: −0.72 with them, −1.00 without).

    Parameters
    ----------
    result : dict
        One `train_sparse_parity_batched` result ("steps_to_learn"; "curve" gives the evaluation steps, without
        it only subtasks learned at step 0 are left out).
    probs : float ndarray (n_tasks,)
        Subtask frequencies p_i (`MultitaskSparseParity.probs`).

    Returns
    -------
    StepsToLearnFit or None
        None when fewer than 3 distinct step counts remain.
    """
    s = result["steps_to_learn"]
    evals = [t for t in result.get("curve", {}).get("step", []) if t > 0]
    first = min(evals) if evals else 0
    learned = [i for i, v in enumerate(s) if v is not None]
    ids = [i for i in learned if s[i] > first]
    if len({s[i] for i in ids}) < 3:
        return None
    fit = fit_power_law(np.asarray(probs)[ids], [s[i] for i in ids], n_boot=500)
    return StepsToLearnFit(loglog_slope=-fit.exponent, slope_ci=(-fit.exponent_ci[1], -fit.exponent_ci[0]),
                           r2=fit.r2, n_points=fit.n_points, n_censored=len(learned) - len(ids))
