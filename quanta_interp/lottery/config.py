"""`SweepConfig`: a width sweep of y = x² MLPs (Liu & Tegmark 2023), every setting documented and checked once."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config import (
    Config,
    ParameterError,
    check_choice,
    check_finite,
    check_positive_int,
    parse_float_list,
    parse_int_list,
    parse_str_list,
)
from .experiment import ACTIVATIONS, DTYPES, OPTIMIZERS, TARGETS, make_grid

__all__ = ["SweepConfig", "RunConfig", "DTYPES"]



@dataclass(frozen=True)
class SweepConfig(Config):
    """S seeds of a 1 → N → 1 MLP per (activation, width), trained by Adam then L-BFGS in float64 (Adam alone
    plateaus near RMSE 1e-3; quasi-Newton in float64 reaches ~1e-6, Michaud et al. 2022)."""

    widths: tuple[int, ...] | None = field(default=None, metadata={"parse": parse_int_list, "metavar": "A,B,…"})
    """Widths N (default: n_widths log-spaced widths from 1 to max_width)."""
    max_width: int = 256
    """Largest width of the default log-spaced widths."""
    n_widths: int = 9
    """How many log-spaced widths by default."""
    activations: tuple[str, ...] = field(default=ACTIVATIONS, metadata={"parse": parse_str_list})
    """Hidden activations, each a sweep of its own: silu, relu, leaky_relu, tanh."""
    seed_budget: int = 2048
    """Seeds per width = seed_budget / width, clipped to [min_seeds, max_seeds]: narrow nets scatter most."""
    min_seeds: int = 8
    """Fewest seeds per width."""
    max_seeds: int = 64
    """Most seeds per width."""
    target: str = "x^2"
    """The function fitted: x^2, x^4, abs, sin or exp."""
    interval: tuple[float, float] = field(default=(-1.0, 1.0), metadata={"parse": parse_float_list,
                                                                         "metavar": "LOW,HIGH"})
    """The input interval [low, high]."""
    optimizer: str = "adam+lbfgs"
    """adam, lbfgs, or adam then lbfgs."""
    adam_steps: int = 1000
    """Adam steps (cosine decay from lr to lr/100)."""
    lbfgs_steps: int = 100
    """L-BFGS iterations after Adam."""
    lr: float = 1e-2
    """Adam learning rate."""
    dtype: str = "float64"
    """float64 (needed below MSE ~1e-8) or float32."""
    n_train: int = 100
    """Training points, evenly spaced on the interval."""
    n_test: int = 1000
    """Test points (midpoints), where the MSE is measured."""
    seed: int = 0
    """Seeds the initial weights of every seed ensemble."""

    def _checks(self):
        def widths(name, v):
            if v is None:
                return
            if not v or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in v):
                raise ParameterError(name, f"must be positive integers, got {list(v)}")

        def activations(name, v):
            bad = [a for a in v if a not in ACTIVATIONS]
            if not v or bad:
                raise ParameterError(name, f"holds {bad[0] if bad else 'nothing'!r}; each activation must be one of "
                                           f"{', '.join(ACTIVATIONS)}")

        def seeds(name, v):
            check_positive_int(name, v)
            if name == "max_seeds" and self.min_seeds > v:
                raise ParameterError(name, f"must be ≥ min_seeds ({self.min_seeds}), got {v}")

        def interval(name, v):
            if len(v) != 2 or not all(math.isfinite(x) for x in v) or not v[0] < v[1]:
                raise ParameterError(name, f"must be (low, high) with finite low < high, got {tuple(v)}")

        def steps(name, v):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ParameterError(name, f"must be an integer ≥ 0, got {v!r}")

        def grid(name, v):  # a line through the points needs two of them
            check_positive_int(name, v, low=2)

        def finite_target(name, v):  # before the sweep folder opens: exp on (0, 1000) overflows
            try:
                make_grid(self.target, v, self.n_train)
                make_grid(self.target, v, self.n_test, midpoints=True)
            except ValueError as e:
                raise ParameterError(name, f"{tuple(v)}: {e}") from None

        positive = check_positive_int
        return [("widths", widths), ("max_width", positive), ("n_widths", positive), ("activations", activations),
                ("seed_budget", positive), ("min_seeds", seeds), ("max_seeds", seeds),
                ("target", check_choice(TARGETS)), ("interval", interval),
                ("optimizer", check_choice(OPTIMIZERS)), ("adam_steps", steps), ("lbfgs_steps", steps),
                ("lr", lambda n, v: check_finite(n, v, low=0.0, low_open=True)), ("dtype", check_choice(DTYPES)),
                ("n_train", grid), ("n_test", grid), ("interval", finite_target)]


@dataclass(frozen=True)
class RunConfig(Config):
    """One (activation, width) run of a sweep, as `runs.sweep_configs` writes it and a worker rebuilds it
    (`RunConfig.from_dict(config)`); the sweep's `SweepConfig` checked every value already."""

    activation: str
    """Hidden activation."""
    width: int
    """Hidden width N."""
    n_seeds: int
    """Seeds trained together."""
    target: str
    """The function fitted."""
    interval: tuple[float, float]
    """The input interval [low, high]."""
    optimizer: str
    """adam, lbfgs, or adam then lbfgs."""
    adam_steps: int
    """Adam steps."""
    lbfgs_steps: int
    """L-BFGS iterations after Adam."""
    lr: float
    """Adam learning rate."""
    dtype: str
    """float64 or float32."""
    n_train: int
    """Training points."""
    n_test: int
    """Test points (midpoints)."""
    seed: int
    """Seeds the initial weights."""
