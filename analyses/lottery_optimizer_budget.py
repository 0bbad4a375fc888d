"""Is SiLU's MSE ∝ N^-1 a property of the width or of the optimiser budget? y = x², float64, many budgets.

Trains the same SiLU widths with Adam (1000 steps) followed by 0 … 3000 float64 L-BFGS iterations and fits
median test MSE vs width for every budget. If the exponent were the function class's, it would settle as the
budget grows; if it is the optimiser's, every width's loss keeps falling with the budget (a pair of SiLU
neurons approaches x² without bound as w → 0, v → ∞: the "channels to infinity" of the loss landscape) and
the exponent wanders. Writes artifacts/lottery/optimizer_budget.json and optimizer_budget.png/svg; runs are
resumable sweeps under --runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from quanta_interp.config import parse_int_list
from quanta_interp.io import atomic_write_json
from quanta_interp.lottery.analysis import fit_scaling, scaling_table
from quanta_interp.lottery.config import SweepConfig
from quanta_interp.lottery.plots import plot_scaling
from quanta_interp.lottery.runs import run_sweep, sweep_configs

LIU_TEGMARK_EXPONENT = 1.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="artifacts/lottery")
    ap.add_argument("--runs", default="runs/lottery_budget", help="resumable sweep folders (not committed)")
    ap.add_argument("--widths", type=parse_int_list, default=(2, 4, 8, 16, 32, 64, 128))
    ap.add_argument("--lbfgs-budgets", type=parse_int_list, default=(0, 100, 300, 1000, 3000))
    ap.add_argument("--adam-steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=16, help="seeds per width")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    widths = tuple(args.widths)
    start = time.perf_counter()
    results, seconds, budgets = [], {}, {}
    for budget in args.lbfgs_budgets:
        t0 = time.perf_counter()
        cfg = SweepConfig(widths=widths, activations=("silu",), min_seeds=args.seeds, max_seeds=args.seeds,
                          optimizer="adam+lbfgs" if budget else "adam", adam_steps=args.adam_steps,
                          lbfgs_steps=budget)
        label = f"L-BFGS {budget}"
        budgets[label] = budget
        results += [dataclasses.replace(r, activation=label)
                    for r in run_sweep(sweep_configs(cfg), Path(args.runs) / f"lbfgs{budget}", device=args.device)]
        seconds[label] = round(time.perf_counter() - t0, 1)
    table = scaling_table(results)
    fits = fit_scaling(table)
    plot_scaling(table, fits, Path(args.out) / "optimizer_budget")
    summary = {
        "target": "x^2 on [-1, 1]", "activation": "silu", "dtype": "float64", "adam_steps": args.adam_steps,
        "seeds_per_width": args.seeds, "paper_exponent": LIU_TEGMARK_EXPONENT,
        "budgets": {label: {"lbfgs_steps": budgets[label], "exponent": f.exponent,
                            "exponent_ci": f.exponent_ci, "widths": f.widths, "median_test_mse": f.median,
                            "local_slopes": f.local_slopes, "seconds": seconds[label]}
                    for label, f in fits.rows.items()},
        "seconds": round(time.perf_counter() - start, 1),
    }
    atomic_write_json(Path(args.out) / "optimizer_budget.json", summary)
    for label, f in fits.rows.items():
        print(f"{label}: exponent {f.exponent:.2f} {list(f.exponent_ci)}; median MSE "
              + " ".join(f"{m:.1e}" for m in f.median))
    print(f"wrote {args.out}/optimizer_budget.json in {summary['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
