"""`quanta bench lottery`: S seeds trained as one stacked model vs a Python loop over S nn.Modules.

Same work on both sides: identical initial weights, Adam with the same cosine schedule, same steps;
the final per-seed losses must agree (they are reported) and the time ratio is the speed-up.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from ..lottery.experiment import SeedEnsemble, make_grid
from .results import BenchResult

__all__ = ["run", "LotteryBench", "LotteryWidthRow"]


def _loop(params: dict, x, y, steps: int, lr: float) -> np.ndarray:
    """Train each seed alone as Linear(1, N) → SiLU → Linear(N, 1) from the given weights."""
    import torch

    losses = []
    for s in range(params["w"].shape[0]):
        n = params["w"].shape[1]
        net = torch.nn.Sequential(torch.nn.Linear(1, n), torch.nn.SiLU(), torch.nn.Linear(n, 1)).double()
        with torch.no_grad():
            net[0].weight.copy_(params["w"][s][:, None])
            net[0].bias.copy_(params["b"][s])
            net[2].weight.copy_(params["v"][s][None, :])
            net[2].bias.copy_(params["c"][s:s + 1])
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 1e-2)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = ((net(x[:, None]).squeeze(-1) - y) ** 2).mean()
            loss.backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            losses.append(float(((net(x[:, None]).squeeze(-1) - y) ** 2).mean()))
    return np.asarray(losses)


@dataclass(frozen=True)
class LotteryWidthRow(BenchResult):
    """One width: vectorised_s and loop_s (wall seconds), speedup (loop / vectorised), max_rel_loss_diff (final
    per-seed losses), median_loss."""

    width: int
    vectorised_s: float
    loop_s: float
    speedup: float
    max_rel_loss_diff: float
    median_loss: float


@dataclass(frozen=True)
class LotteryBench(BenchResult):
    """`SeedEnsemble` vs a loop over seeds: the sizes, dtype, torch threads and one `LotteryWidthRow` per width."""

    seeds: int
    adam_steps: int
    n_train: int
    dtype: str
    threads: int
    rows: list


def run(args: argparse.Namespace) -> LotteryBench:
    """Training S seeds of a 1 → N → 1 SiLU MLP on y = x² as one `SeedEnsemble` vs a loop over S modules.

    256 seeds at widths 2, 8, 32 and 100 Adam steps (64 seeds, widths 2 and 16, 50 steps with
    `args.quick`), float64, 100 points on [−1, 1], lr 1e-2 with the same cosine schedule on both sides.

    Returns
    -------
    LotteryBench
        "seeds", "adam_steps", "n_train", "dtype", "threads" and "rows", one per width: "width",
        "vectorised_s", "loop_s", "speedup" (loop / vectorised), "max_rel_loss_diff" (final per-seed
        losses, which should agree to rounding) and "median_loss". No target is recorded.
    """
    import torch

    seeds, widths, steps = (64, (2, 16), 50) if args.quick else (256, (2, 8, 32), 100)
    lr = 1e-2
    x, y = make_grid("x^2", (-1, 1), 100)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    SeedEnsemble(2, 2, optimizer="adam", adam_steps=5).fit(x, y)  # warm-up: first-call costs are not per-seed work
    _loop(SeedEnsemble(2, 2).init_params(), xt, yt, 5, lr)
    rows = []
    for width in widths:
        ens = SeedEnsemble(width, seeds, activation="silu", optimizer="adam", adam_steps=steps, lr=lr, seed=args.seed)
        t0 = time.perf_counter()
        ens.fit(x, y)
        t_vec = time.perf_counter() - t0
        t0 = time.perf_counter()
        loop_losses = _loop(ens.init_params(), xt, yt, steps, lr)
        t_loop = time.perf_counter() - t0
        rel = np.abs(loop_losses - ens.train_loss_) / np.maximum(loop_losses, 1e-300)
        rows.append(LotteryWidthRow(width=width, vectorised_s=t_vec, loop_s=t_loop, speedup=t_loop / t_vec,
                                    max_rel_loss_diff=float(rel.max()), median_loss=float(np.median(ens.train_loss_))))
    return LotteryBench(seeds=seeds, adam_steps=steps, n_train=x.size, dtype="float64",
                        threads=torch.get_num_threads(), rows=rows)
