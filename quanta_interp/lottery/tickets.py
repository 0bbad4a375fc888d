"""Open a trained 1 → N → 1 network and measure its lottery tickets.

A ticket is a symmetric pair of neurons (w, b, v) and (−w, b, v): its output is even in x,
2vσ(b) + vσ''(b)w²x² + vσ''''(b)w⁴x⁴/12 + …, a small x² approximator. `dissect` finds the pairs,
fits each ticket alone to the target, and measures whether ticket errors average out like a
central limit theorem (error variance ∝ 1/k over k tickets) or are correlated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..fitting import PowerLawFit, fit_power_law
from .experiment import ACTIVATIONS, MLP1D, activation_fn, check_interval, make_grid

__all__ = ["NeuronCurves", "TicketReport", "dissect", "as_mlp1d", "even_taylor", "find_pairs", "mirror_distances", "neuron_curves",
           "ensemble_variance"]

_MODULE_ACTIVATIONS = {"SiLU": "silu", "ReLU": "relu", "LeakyReLU": "leaky_relu", "Tanh": "tanh"}


def as_mlp1d(model, activation: str | None = None) -> MLP1D:
    """An `MLP1D` from an `MLP1D`, a dict of w, b, v, c, or a torch Linear(1, N) → act → Linear(N, 1) module.

    Parameters
    ----------
    activation : str or None
        One of `ACTIVATIONS`; needed for a dict without an `activation` key and for a module whose
        activation is not exactly one SiLU, ReLU, LeakyReLU or Tanh submodule. Ignored for an `MLP1D`.

    Raises
    ------
    ValueError
        No activation can be determined, `model` is of another type, the module is not 1 → N → 1 with
        an output bias, or the weights are empty or of unequal length.
    """
    if isinstance(model, MLP1D):
        return model
    if isinstance(model, dict) and {"w", "b", "v", "c"} <= set(model):
        activation = activation or model.get("activation")
        if activation is None:
            raise ValueError(f"pass activation= (one of {', '.join(ACTIVATIONS)}) with a dict of weights")
        return MLP1D(model["w"], model["b"], model["v"], float(np.asarray(model["c"]).ravel()[0]), activation)
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be an MLP1D, a dict of w, b, v, c, or a torch module, got {type(model).__name__}")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    acts = [_MODULE_ACTIVATIONS[type(m).__name__] for m in model.modules() if type(m).__name__ in _MODULE_ACTIVATIONS]
    shapes = [(m.in_features, m.out_features) for m in linears]
    if len(linears) != 2 or shapes[0][0] != 1 or shapes[1] != (shapes[0][1], 1) or linears[1].bias is None:
        raise ValueError(f"dissect needs a 1 → N → 1 network (Linear(1, N), activation, Linear(N, 1) with bias); "
                         f"got linear layers {shapes}")
    activation = activation or (acts[0] if len(acts) == 1 else None)
    if activation is None:
        raise ValueError(f"pass activation= (one of {', '.join(ACTIVATIONS)}): the module has activations {acts}")
    bias0 = linears[0].bias if linears[0].bias is not None else torch.zeros(shapes[0][1])
    t = [a.detach().double().cpu().numpy().ravel() for a in (linears[0].weight, bias0, linears[1].weight, linears[1].bias)]
    return MLP1D(t[0], t[1], t[2], float(t[3][0]), activation)


def even_taylor(activation: str, w: np.ndarray, b: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Taylor coefficients [K, 3] of x⁰, x², x⁴ of the pairs v(σ(b + wx) + σ(b − wx)):
    2vσ(b), vσ''(b)w², vσ''''(b)w⁴/12 — derivatives by nested autograd (torch.func).

    The even part of a symmetric pair (w, b, v), (−w, b, v) (Liu & Tegmark 2023): each pair is an x²
    approximator whose x⁴ (and higher) terms are its own error. For ReLU and LeakyReLU, autograd gives
    σ'' = σ'''' = 0 away from the kink, so only the x⁰ term is non-zero.

    Parameters
    ----------
    w, b, v : float ndarray (K,)
        One entry per ticket.

    Returns
    -------
    float64 ndarray (K, 3)

    Raises
    ------
    ValueError
        `activation` is not in `ACTIVATIONS`.
    """
    import torch
    from torch.func import grad, vmap

    f = activation_fn(activation)
    d2 = grad(grad(f))
    d4 = grad(grad(d2))
    bt = torch.as_tensor(np.asarray(b, dtype=float), dtype=torch.float64)
    s0, s2, s4 = f(bt).numpy(), vmap(d2)(bt).numpy(), vmap(d4)(bt).numpy()
    w, v = np.asarray(w, dtype=float), np.asarray(v, dtype=float)
    return np.stack([2 * v * s0, v * s2 * w**2, v * s4 * w**4 / 12], axis=-1)


def mirror_distances(net: MLP1D) -> np.ndarray:
    """[N, N] relative distance ‖θ_i − mirror(θ_j)‖ / mean(‖θ_i‖, ‖θ_j‖), mirror(w, b, v) = (−w, b, v).

    Returns
    -------
    float64 ndarray (N, N)
        Symmetric; 0 for an exact symmetric pair. The diagonal is 2|w_i| / ‖θ_i‖, not 0.
    """
    theta = np.stack([net.w, net.b, net.v], axis=1)
    dist = np.linalg.norm(theta[:, None, :] - (theta * np.array([-1.0, 1.0, 1.0]))[None, :, :], axis=-1)
    scale = np.linalg.norm(theta, axis=1)
    return dist / np.maximum(0.5 * (scale[:, None] + scale[None, :]), 1e-12)


@dataclass(frozen=True, eq=False)
class NeuronCurves:
    """`neuron_curves`: each neuron of a 1 → N → 1 network over the input interval.

    Attributes
    ----------
    activation_fn : str
        The activation's name (one of `ACTIVATIONS`).
    width : int
    c : float
        Output bias.
    x : float64 ndarray (P,)
        Evenly spaced points of the interval, ends included.
    activation, contribution : float64 ndarray (N, P)
        σ(w_i x + b_i) and v_i σ(w_i x + b_i); the contributions summed over neurons plus `c` are `output`.
    output : float64 ndarray (P,)
    w, b, v : float64 ndarray (N,)
        Input weights, biases and output weights.
    """

    activation_fn: str
    width: int
    c: float
    x: np.ndarray
    activation: np.ndarray
    contribution: np.ndarray
    output: np.ndarray
    w: np.ndarray
    b: np.ndarray
    v: np.ndarray

    def to_dict(self) -> dict:
        """neurons.json: the fields up to `output`, then `neurons` (per neuron: `w`, `b`, `v`)."""
        return {"activation_fn": self.activation_fn, "width": self.width, "c": self.c, "x": self.x,
                "activation": self.activation, "contribution": self.contribution, "output": self.output,
                "neurons": [{"w": float(w), "b": float(b), "v": float(v)}
                            for w, b, v in zip(self.w, self.b, self.v, strict=True)]}


def neuron_curves(model, *, activation: str | None = None, interval: tuple[float, float] = (-1.0, 1.0),
                  n_points: int = 101) -> NeuronCurves:
    """Per neuron over the interval: parameters, activation σ(wx+b) and contribution vσ(wx+b).

    Parameters
    ----------
    model
        Anything `as_mlp1d` accepts.
    n_points : int
        Evenly spaced points on the interval, ends included.

    Returns
    -------
    NeuronCurves
        On `n_points` points.

    Raises
    ------
    ValueError
        `model` cannot be read as a 1 → N → 1 network, or the interval is bad.
    """
    net = as_mlp1d(model, activation)
    lo, hi = check_interval(interval)
    x = np.linspace(lo, hi, n_points)
    act, contrib = net.neuron_outputs(x)
    return NeuronCurves(activation_fn=net.activation, width=net.width, c=net.c, x=x, activation=act,
                        contribution=contrib, output=contrib.sum(0) + net.c, w=net.w, b=net.b, v=net.v)


def find_pairs(net: MLP1D, tol: float = 0.05) -> tuple[list[tuple[int, int]], np.ndarray, list[int]]:
    """Greedy matching of neurons i, j with (w_j, b_j, v_j) ≈ (−w_i, b_i, v_i).

    Distance = ‖(w_i + w_j, b_i − b_j, v_i − v_j)‖ / mean(‖θ_i‖, ‖θ_j‖); pairs closer than `tol`
    are taken, closest first. Returns pairs, their distances and the unpaired neurons.

    Returns
    -------
    pairs : list of (int, int)
        Neuron indices (i < j), closest pair first.
    distances : float64 ndarray (K,)
        Relative distance of each pair.
    unpaired : list of int
        Neurons in no pair, increasing.

    Raises
    ------
    ValueError
        tol ≤ 0.
    """
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    dist = mirror_distances(net)
    iu, ju = np.triu_indices(net.width, k=1)
    order = np.argsort(dist[iu, ju], kind="stable")
    used = np.zeros(net.width, dtype=bool)
    pairs, dists = [], []
    for k in order:
        i, j, d = iu[k], ju[k], dist[iu[k], ju[k]]
        if d > tol:
            break
        if not (used[i] or used[j]):
            used[i] = used[j] = True
            pairs.append((int(i), int(j)))
            dists.append(float(d))
    return pairs, np.asarray(dists), np.flatnonzero(~used).tolist()


@dataclass
class TicketReport:
    """What `dissect` measured; arrays are per ticket (pair) in the order of `pairs`.

    Attributes
    ----------
    pairs : list of (int, int)
        The K symmetric pairs (tickets), as from `find_pairs`.
    pair_distance : float64 ndarray (K,)
        Relative mirror distance of each pair.
    unpaired : list of int
        Neurons in no pair.
    taylor : float64 ndarray (K, 3)
        Even Taylor coefficients of x⁰, x², x⁴ of each ticket (`even_taylor`).
    ticket_mse : float64 ndarray (K,)
        MSE of each ticket's standalone least-squares fit a·ticket(x) + c to the target.
    ticket_scale : float64 ndarray (K,)
        The scale a of that fit.
    x : float64 ndarray (P,)
        Points on which errors are measured.
    errors : float64 ndarray (K, P)
        e_i(x) = a_i·ticket_i(x) + c_i − target(x).
    error_corr : float64 ndarray (K, K)
        Correlation of the error curves (NaN from a constant curve set to 0).
    network_mse : float
        MSE of the whole network on `x`.
    variance_k, variance : ndarray (M,)
        Tickets averaged k (int) and the mean square of the averaged error (`ensemble_variance`);
        empty with fewer than 3 tickets.
    variance_fit : PowerLawFit or None
        variance ∝ k^-exponent; exponent 1 is the CLT claim, 0 fully correlated errors.
    """

    activation: str
    width: int
    pairs: list[tuple[int, int]]
    pair_distance: np.ndarray
    unpaired: list[int]
    taylor: np.ndarray  # [K, 3]: coefficients of x⁰, x², x⁴
    ticket_mse: np.ndarray  # standalone fit of the target by a·ticket + c
    ticket_scale: np.ndarray  # a
    x: np.ndarray
    errors: np.ndarray  # [K, P]: e_i(x) = a_i·ticket_i(x) + c_i − target(x)
    error_corr: np.ndarray  # [K, K]
    network_mse: float
    variance_k: np.ndarray = field(default_factory=lambda: np.zeros(0))
    variance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    variance_fit: PowerLawFit | None = None

    @property
    def n_pairs(self) -> int:
        """The number of tickets K."""
        return len(self.pairs)

    @property
    def paired_fraction(self) -> float:
        """Fraction of the N neurons that belong to a ticket."""
        return 2 * self.n_pairs / self.width

    def mean_error_corr(self, absolute: bool = False) -> float | None:
        """Mean off-diagonal correlation of ticket errors (None with fewer than 2 tickets)."""
        k = self.n_pairs
        if k < 2:
            return None
        c = np.abs(self.error_corr) if absolute else self.error_corr
        return float((c.sum() - np.trace(c)) / (k * (k - 1)))

    def to_dict(self, curves: bool = False) -> dict:
        """The report as a JSON-able dict (numpy arrays and `PowerLawFit` left to the JSON writer).

        Adds `n_pairs`, `paired_fraction`, `mean_error_corr`, `mean_abs_error_corr` and
        `variance_exponent` (None without a fit); `x`, `errors` and `error_corr` only with `curves`.
        The Taylor coefficients are under `taylor_x0_x2_x4`.
        """
        d = {
            "activation": self.activation, "width": self.width, "n_pairs": self.n_pairs,
            "paired_fraction": self.paired_fraction, "unpaired": self.unpaired, "pairs": self.pairs,
            "pair_distance": self.pair_distance, "taylor_x0_x2_x4": self.taylor, "ticket_mse": self.ticket_mse,
            "ticket_scale": self.ticket_scale, "network_mse": self.network_mse,
            "mean_error_corr": self.mean_error_corr(), "mean_abs_error_corr": self.mean_error_corr(absolute=True),
            "variance_k": self.variance_k, "variance": self.variance,
            "variance_exponent": self.variance_fit.exponent if self.variance_fit else None,
            "variance_fit": self.variance_fit,
        }
        if curves:
            d.update(x=self.x, errors=self.errors, error_corr=self.error_corr)
        return d


def ensemble_variance(errors: np.ndarray, n_subsets: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """For log-spaced k: the mean over random k-subsets of tickets of the mean square of their averaged
    error curve. Independent errors give ∝ 1/k (the CLT claim); identical errors give a flat curve.

    Parameters
    ----------
    errors : float ndarray (K, P)
        Error curve of each ticket.
    n_subsets : int
        Random k-subsets (without replacement) drawn per k.

    Returns
    -------
    k : int ndarray (M,)
        Up to 12 distinct log-spaced values in 1 … K.
    variance : float64 ndarray (M,)
        Mean square of the averaged error (units of the target squared).
    """
    rng = np.random.default_rng(seed)
    errors = np.asarray(errors, dtype=float)
    n = errors.shape[0]
    ks = np.unique(np.round(np.geomspace(1, n, min(n, 12))).astype(int))
    var = []
    for k in ks:
        idx = np.stack([rng.choice(n, size=k, replace=False) for _ in range(n_subsets)])
        var.append(float(np.mean(errors[idx].mean(1) ** 2)))
    return ks, np.asarray(var)


def dissect(model, *, activation: str | None = None, target="x^2", interval: tuple[float, float] = (-1.0, 1.0),
            tol: float = 0.05, n_points: int = 256, n_subsets: int = 64, seed: int = 0) -> TicketReport:
    """Dissect a trained 1 → N → 1 network into symmetric-pair tickets and test the CLT claim on them.

    Each pair (i, j) found by `find_pairs` becomes one ticket with the averaged parameters
    ((w_i − w_j)/2, (b_i + b_j)/2, (v_i + v_j)/2), whose even function v(σ(b + wx) + σ(b − wx)) is fitted
    alone to the target. Liu & Tegmark (2023) claim ticket errors are independent, so averaging k tickets
    cuts the error variance ∝ 1/k; they later called this questionable, and follow-up work found the
    errors correlated near ±1. The report measures the correlation instead of assuming it.

    Parameters
    ----------
    model
        Anything `as_mlp1d` accepts.
    target : str or callable
        As for `target_fn`.
    tol : float
        Largest relative mirror distance of a pair (`find_pairs`).
    n_points : int
        Evenly spaced points on the interval, ends included, where errors are measured.
    n_subsets : int
        Random subsets per k in `ensemble_variance`.
    seed : int
        Seeds the subsets and the bootstrap of the variance fit.

    Returns
    -------
    TicketReport
        With `variance_k`, `variance` from 3 tickets on, and `variance_fit` when every variance is > 0.

    Raises
    ------
    ValueError
        `model` cannot be read as a 1 → N → 1 network, a bad target or interval, n_points < 2, or tol ≤ 0.
    """
    net = as_mlp1d(model, activation)
    x, y = make_grid(target, interval, n_points)
    pairs, dists, unpaired = find_pairs(net, tol)
    i = np.array([p[0] for p in pairs], dtype=int)
    j = np.array([p[1] for p in pairs], dtype=int)
    w, b, v = (net.w[i] - net.w[j]) / 2, (net.b[i] + net.b[j]) / 2, (net.v[i] + net.v[j]) / 2
    ticket = MLP1D(w, b, v, 0.0, net.activation) if pairs else None
    k = len(pairs)
    errors, scale, mse = np.zeros((k, x.size)), np.zeros(k), np.zeros(k)
    if ticket is not None:
        _, contrib = ticket.neuron_outputs(x)
        mirror = MLP1D(-w, b, v, 0.0, net.activation).neuron_outputs(x)[1]
        curves = contrib + mirror  # [K, P]: each ticket's even function
        for t in range(k):
            design = np.stack([curves[t], np.ones_like(x)], axis=1)
            coef = np.linalg.lstsq(design, y, rcond=None)[0]
            errors[t] = design @ coef - y
            scale[t], mse[t] = coef[0], float(np.mean(errors[t] ** 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(errors) if k >= 2 else np.ones((k, k))
    corr = np.nan_to_num(np.atleast_2d(corr)) if k else np.zeros((0, 0))
    report = TicketReport(
        activation=net.activation, width=net.width, pairs=pairs, pair_distance=dists, unpaired=unpaired,
        taylor=even_taylor(net.activation, w, b, v) if k else np.zeros((0, 3)), ticket_mse=mse,
        ticket_scale=scale, x=x, errors=errors, error_corr=corr,
        network_mse=float(np.mean((net.predict(x) - y) ** 2)),
    )
    if k >= 3:
        report.variance_k, report.variance = ensemble_variance(errors, n_subsets, seed)
        if np.all(report.variance > 0) and np.unique(report.variance_k).size >= 3:
            report.variance_fit = fit_power_law(report.variance_k, report.variance, n_boot=200, seed=seed)
    return report
