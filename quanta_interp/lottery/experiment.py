"""Many seeds of a 1 → N → 1 MLP trained at once on a 1-D target (Liu & Tegmark's y = x² setting).

The S seeds are stacked weights `w, b, v: [S, N]`, `c: [S]`, so one batched matmul evaluates every
network. Losses are summed over seeds, so each seed's gradient is its own; Adam is element-wise and
`batched_lbfgs` keeps per-seed histories and line searches, so the seeds train exactly as if alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "ACTIVATIONS", "TARGETS", "OPTIMIZERS", "MLP1D", "EnsembleParams", "SeedEnsemble", "activation_fn", "make_grid",
    "target_fn", "check_interval", "batched_lbfgs", "forward",
]

ACTIVATIONS = ("silu", "relu", "leaky_relu", "tanh")
OPTIMIZERS = ("adam", "lbfgs", "adam+lbfgs")
DTYPES = ("float32", "float64")
TARGETS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "x^2": np.square,
    "x^4": lambda x: x**4,
    "abs": np.abs,
    "sin": np.sin,
    "exp": np.exp,
}


def activation_fn(name: str):
    """The torch function for an activation name (one of `ACTIVATIONS`; leaky_relu has slope 0.01).

    Raises
    ------
    ValueError
        `name` is not in `ACTIVATIONS`.
    """
    import torch
    import torch.nn.functional as F

    fns = {"silu": F.silu, "relu": F.relu,
           "leaky_relu": lambda z: F.leaky_relu(z, 0.01), "tanh": torch.tanh}
    if name not in fns:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return fns[name]


def target_fn(target: str | Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """A target given by name (one of `TARGETS`) or as a callable on numpy arrays.

    Raises
    ------
    ValueError
        `target` is neither callable nor a key of `TARGETS`.
    """
    if callable(target):
        return target
    if target not in TARGETS:
        raise ValueError(f"target must be a callable or one of {', '.join(TARGETS)}, got {target!r}")
    return TARGETS[target]


def check_interval(interval: tuple[float, float]) -> tuple[float, float]:
    """The input interval as a pair of floats (low, high), validated.

    Raises
    ------
    ValueError
        `low` or `high` is not finite, or low ≥ high.
    """
    lo, hi = (float(v) for v in interval)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"interval must be (low, high) with finite low < high, got {tuple(interval)}")
    return lo, hi


def make_grid(target, interval: tuple[float, float], n: int, *, midpoints: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`n` evenly spaced points on the interval (cell midpoints for a test grid) and the target there.

    Parameters
    ----------
    target : str or callable
        As for `target_fn`.
    midpoints : bool
        Midpoints of `n` equal cells (excludes the ends: a test grid disjoint from the training grid)
        instead of `n` points including both ends.

    Returns
    -------
    x, y : float64 ndarray (n,)

    Raises
    ------
    ValueError
        A bad interval or target, n < 2, a target that changes the shape of x, or a target that is not
        finite somewhere on the grid.
    """
    lo, hi = check_interval(interval)
    if n < 2:
        raise ValueError(f"grid size must be ≥ 2, got {n}")
    x = lo + (np.arange(n) + 0.5) * (hi - lo) / n if midpoints else np.linspace(lo, hi, n)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # non-finite values are refused below
        y = np.asarray(target_fn(target)(x), dtype=float)
    if y.shape != x.shape:
        raise ValueError(f"target must map an array of shape {x.shape} to the same shape, got {y.shape}")
    bad = ~np.isfinite(y)
    if bad.any():
        raise ValueError(f"target returned NaN or inf at x = {x[bad][:3].tolist()} on interval {(lo, hi)}; "
                         "choose an interval where it is finite")
    return x, y


@dataclass
class MLP1D:
    """One 1 → N → 1 network f(x) = Σ_i v_i σ(w_i x + b_i) + c, as numpy arrays.

    Parameters
    ----------
    w, b, v : float64 ndarray (N,)
        Input weights, biases and output weights of the hidden neurons (raveled on construction).
    c : float
        Output bias.
    activation : str
        One of `ACTIVATIONS`.

    Raises
    ------
    ValueError
        An unknown activation, or w, b, v empty or of different lengths.
    """

    w: np.ndarray
    b: np.ndarray
    v: np.ndarray
    c: float
    activation: str

    def __post_init__(self) -> None:
        activation_fn(self.activation)
        self.w, self.b, self.v = (np.asarray(a, dtype=float).ravel() for a in (self.w, self.b, self.v))
        if not (self.w.size == self.b.size == self.v.size) or self.w.size == 0:
            raise ValueError(f"w, b, v must be non-empty and of equal length, got {self.w.size}, {self.b.size}, {self.v.size}")
        self.c = float(self.c)

    @property
    def width(self) -> int:
        """The number of hidden neurons N."""
        return int(self.w.size)

    def neuron_outputs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per neuron over the points x: activation σ(w x + b) and contribution v σ(w x + b).

        Parameters
        ----------
        x : float64 ndarray (P,)

        Returns
        -------
        activation, contribution : float64 ndarray (N, P)
        """
        import torch

        z = torch.as_tensor(np.outer(self.w, x) + self.b[:, None], dtype=torch.float64)
        act = activation_fn(self.activation)(z).numpy()
        return act, self.v[:, None] * act

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The network output f(x), float64 ndarray (P,), at the points x (P,)."""
        return self.neuron_outputs(np.asarray(x, dtype=float))[1].sum(0) + self.c


class EnsembleParams(TypedDict):
    """The stacked weights of S seeds of a 1 → N → 1 network, f_s(x) = Σ_i v_si σ(w_si x + b_si) + c_s.

    A name → tensor mapping, not a dataclass: `forward` indexes it, the optimisers iterate its values, and it
    is saved as it is to weights.safetensors (whose tensor names are these keys).

    Keys
    ----
    w, b, v : torch tensor (S, N)
        Input weights, biases and output weights.
    c : torch tensor (S,)
        Output biases.
    """

    w: torch.Tensor
    b: torch.Tensor
    v: torch.Tensor
    c: torch.Tensor


def seed_network(params: dict, i: int, activation: str) -> MLP1D:
    """Seed i of stacked torch weights (w, b, v, c with a leading seed axis) as a standalone float64 network.

    Parameters
    ----------
    params : dict of torch tensors
        w, b, v: (S, N); c: (S,) or (S, 1), any float dtype and device.
    """
    p = {k: t[i].double().cpu().numpy() for k, t in params.items()}
    return MLP1D(p["w"], p["b"], p["v"], float(np.ravel(p["c"])[0]), activation)


def forward(params: EnsembleParams, x, activation: str):
    """Outputs of the S stacked networks `params` at the points x, in one batched evaluation.

    Parameters
    ----------
    params : EnsembleParams
        All of one float dtype and device.
    x : torch tensor (P,)
        Input points, of the same dtype and device as `params`.

    Returns
    -------
    torch tensor (S, P)

    Raises
    ------
    ValueError
        `activation` is not in `ACTIVATIONS`.
    """
    import torch

    h = activation_fn(activation)(torch.addcmul(params["b"][:, None, :], params["w"][:, None, :], x[None, :, None]))
    return (h * params["v"][:, None, :]).sum(-1) + params["c"][:, None]


def batched_lbfgs(loss_fn, x, *, iters: int, history: int = 10, max_backtracks: int = 25):
    """Minimise `loss_fn(x) -> [S]` for each row of x [S, D] independently with L-BFGS.

    Two-loop recursion with per-row curvature pairs (a pair with sᵀy ≤ 0 is masked out) and a
    per-row backtracking Armijo line search; rows that cannot decrease stay where they are.

    Parameters
    ----------
    loss_fn : callable
        Maps a tensor (S, D) to per-row losses (S,); row s's loss must depend on row s only.
    x : torch tensor (S, D)
        Starting points (not modified).
    iters : int
        L-BFGS iterations (no other stopping rule).
    history : int
        Curvature pairs kept per row.
    max_backtracks : int
        Step halvings tried per iteration before a row gives up its step.

    Returns
    -------
    torch tensor (S, D)
        The final points, detached.
    """
    import torch

    def value_and_grad(z):
        z = z.detach().requires_grad_(True)
        loss = loss_fn(z)
        return loss.detach(), torch.autograd.grad(loss.sum(), z)[0]

    x = x.detach().clone()
    loss, g = value_and_grad(x)
    pairs: list[tuple] = []
    gamma = torch.ones_like(loss)[:, None]
    tiny = torch.finfo(x.dtype).tiny
    for it in range(iters):
        q, alphas = -g, []
        for s, y, rho in reversed(pairs):
            a = rho * (s * q).sum(-1, keepdim=True)
            q = q - a * y
            alphas.append(a)
        q = gamma * q
        for (s, y, rho), a in zip(pairs, reversed(alphas), strict=True):
            q = q + s * (a - rho * (y * q).sum(-1, keepdim=True))
        gd = (g * q).sum(-1, keepdim=True)
        q = torch.where(gd < 0, q, -g)  # fall back to steepest descent where q is no descent direction
        gd = (g * q).sum(-1)
        step = torch.ones_like(loss) if it or pairs else 1.0 / g.norm(dim=-1).clamp_min(1.0)
        accepted = torch.zeros_like(loss, dtype=torch.bool)
        with torch.no_grad():
            for _ in range(max_backtracks):
                trial = loss_fn(x + step[:, None] * q)
                ok = torch.isfinite(trial) & (trial <= loss + 1e-4 * step * gd)
                accepted = accepted | ok
                if bool(accepted.all()):
                    break
                step = torch.where(accepted, step, step * 0.5)
        step = torch.where(accepted, step, torch.zeros_like(step))
        x_new = x + step[:, None] * q
        loss_new, g_new = value_and_grad(x_new)
        s, y = x_new - x, g_new - g
        sy = (s * y).sum(-1, keepdim=True)
        valid = sy > 1e-10 * s.norm(dim=-1, keepdim=True) * y.norm(dim=-1, keepdim=True) + tiny
        rho = torch.where(valid, 1.0 / sy.clamp_min(tiny), torch.zeros_like(sy))
        gamma = torch.where(valid, sy / (y * y).sum(-1, keepdim=True).clamp_min(tiny), gamma)
        pairs = (pairs + [(s, y, rho)])[-history:]
        x, loss, g = x_new, loss_new, g_new
    return x


class SeedEnsemble:
    """`n_seeds` independent 1 → `width` → 1 MLPs trained together (scikit-learn style).

    `fit(x, y)` trains on the points by full-batch MSE. Init is PyTorch's `nn.Linear` default; Adam's
    learning rate decays cosine-wise from `lr` to `lr·1e-2`; `optimizer="adam+lbfgs"` polishes Adam's
    result with L-BFGS (Adam alone plateaus far above what float64 L-BFGS reaches; Michaud et al. 2022).

    Parameters
    ----------
    width : int
        Hidden neurons N per network.
    n_seeds : int
        Networks S, each from its own initialisation.
    optimizer : {"adam", "lbfgs", "adam+lbfgs"}
    adam_steps, lbfgs_steps : int
        Iterations of each optimizer (0 skips it).
    dtype : {"float32", "float64"}
    seed : int
        Seeds the initialisation of all S networks.

    Attributes
    ----------
    params_ : EnsembleParams
        In `dtype` on `device`.
    train_loss_ : ndarray (S,)
        Final training MSE of each seed, in `dtype`.

    Raises
    ------
    ValueError
        At `fit` / `init_params`: width or n_seeds not a positive integer, or an unknown activation,
        optimizer or dtype.
    """

    def __init__(self, width: int, n_seeds: int = 1, *, activation: str = "silu", optimizer: str = "adam+lbfgs",
                 adam_steps: int = 2000, lbfgs_steps: int = 200, lr: float = 1e-2, dtype: str = "float64",
                 seed: int = 0, device: str = "cpu"):
        self.width, self.n_seeds, self.activation, self.optimizer = width, n_seeds, activation, optimizer
        self.adam_steps, self.lbfgs_steps, self.lr, self.dtype = adam_steps, lbfgs_steps, lr, dtype
        self.seed, self.device = seed, device

    def _validate(self) -> None:
        for name in ("width", "n_seeds"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        activation_fn(self.activation)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")

    def init_params(self) -> EnsembleParams:
        """PyTorch-default init of S networks: w, b ~ U(−1, 1) (fan-in 1), v, c ~ U(−1/√N, 1/√N).

        Returns
        -------
        EnsembleParams
            In `dtype` on `device`, drawn in float64 from `seed`.

        Raises
        ------
        ValueError
            A bad setting (see the class).
        """
        import torch

        self._validate()
        gen = torch.Generator().manual_seed(int(self.seed))
        dt = getattr(torch, self.dtype)
        s, n, k = self.n_seeds, self.width, 1.0 / math.sqrt(self.width)

        def uniform(shape, bound):
            return ((torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound).to(dt).to(self.device)

        return EnsembleParams(w=uniform((s, n), 1.0), b=uniform((s, n), 1.0), v=uniform((s, n), k),
                              c=uniform((s,), k))

    def fit(self, x: np.ndarray, y: np.ndarray) -> SeedEnsemble:
        """Train every seed on the points (x, y) by MSE; sets `params_` and `train_loss_`.

        Parameters
        ----------
        x, y : float ndarray (P,)
            Training inputs and targets.

        Returns
        -------
        SeedEnsemble
            self.

        Raises
        ------
        ValueError
            A bad setting (see the class), x not 1-D, y of another shape, or y not finite.
        """
        import torch

        self._validate()
        params = self.init_params()
        dt = params["w"].dtype
        xt = torch.as_tensor(np.asarray(x, dtype=float), dtype=dt, device=self.device)
        yt = torch.as_tensor(np.asarray(y, dtype=float), dtype=dt, device=self.device)
        if xt.ndim != 1 or xt.shape != yt.shape or not bool(torch.isfinite(yt).all()):
            raise ValueError(f"x and y must be finite 1-D arrays of equal length, got shapes {tuple(xt.shape)}, {tuple(yt.shape)}")

        def losses(p: dict):
            return ((forward(p, xt, self.activation) - yt) ** 2).mean(-1)

        if "adam" in self.optimizer and self.adam_steps > 0:
            leaves = [t.requires_grad_(True) for t in params.values()]
            opt = torch.optim.Adam(leaves, lr=self.lr)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.adam_steps, eta_min=self.lr * 1e-2)
            for _ in range(self.adam_steps):
                opt.zero_grad(set_to_none=True)
                losses(params).sum().backward()
                opt.step()
                sched.step()
            params = {k: t.detach() for k, t in params.items()}
        if "lbfgs" in self.optimizer and self.lbfgs_steps > 0:
            n = self.width
            flat = torch.cat([params["w"], params["b"], params["v"], params["c"][:, None]], dim=1)

            def unflat(z):
                return {"w": z[:, :n], "b": z[:, n:2 * n], "v": z[:, 2 * n:3 * n], "c": z[:, 3 * n]}

            params = unflat(batched_lbfgs(lambda z: losses(unflat(z)), flat, iters=self.lbfgs_steps))
        self.params_ = {k: t.detach().contiguous() for k, t in params.items()}
        self.train_loss_ = losses(self.params_).cpu().numpy()
        return self

    def loss(self, x: np.ndarray, y: np.ndarray, *, chunk: int = 2**22) -> np.ndarray:
        """Per-seed MSE at the points (x, y), evaluated in chunks of seeds to bound memory.

        Parameters
        ----------
        x, y : float ndarray (P,)
        chunk : int
            Approximate number of hidden activations (seeds × P × N) held at once.

        Returns
        -------
        ndarray (S,)
            MSE of each seed, in `dtype`.
        """
        import torch

        p = self.params_
        xt = torch.as_tensor(np.asarray(x, dtype=float), dtype=p["w"].dtype, device=self.device)
        yt = torch.as_tensor(np.asarray(y, dtype=float), dtype=p["w"].dtype, device=self.device)
        step = max(1, chunk // (xt.numel() * self.width))
        out = []
        with torch.no_grad():
            for i in range(0, self.n_seeds, step):
                sub = {k: t[i:i + step] for k, t in p.items()}
                out.append(((forward(sub, xt, self.activation) - yt) ** 2).mean(-1))
        return torch.cat(out).cpu().numpy()

    def network(self, i: int) -> MLP1D:
        """Seed i as a standalone numpy network, for `dissect` and neuron plots."""
        return seed_network(self.params_, i, self.activation)
