"""Liu & Tegmark's y = x² experiment: MSE vs width per activation, N = 2 loss peaks, ticket dissection.

Writes artifacts/lottery/: summary.json (per activation exponent, CI, widths, median losses; the
dissection of the widest SiLU network; the N = 2 peaks), scaling.*, peaks_n2.*, tickets.*, neurons.*.
CPU scale by default (widths 1…256, ≤ 64 seeds); `--paper-scale` runs 1000 seeds per width up to N = 1024
(use `--device cuda`). Runs are resumable sweeps under --runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from quanta_interp.io import atomic_write_json
from quanta_interp.lottery.analysis import SHARMA_KAPLAN_EXPONENT, fit_scaling, scaling_table
from quanta_interp.lottery.config import SweepConfig
from quanta_interp.lottery.experiment import SeedEnsemble, seed_network
from quanta_interp.lottery.plots import plot_neurons, plot_peaks, plot_scaling, plot_tickets
from quanta_interp.lottery.runs import (
    load_run,
    log_widths,
    peak_report,
    resolve_run,
    run_sweep,
    sweep_configs,
)
from quanta_interp.lottery.tickets import dissect, find_pairs, mirror_distances, neuron_curves

SCALES = {
    "cpu": {"max_width": 256, "n_widths": 9, "seed_budget": 2048, "min_seeds": 8, "max_seeds": 64, "peak_seeds": 256},
    "paper": {"max_width": 1024, "n_widths": 11, "seed_budget": 10**9, "min_seeds": 1000, "max_seeds": 1000,
              "peak_seeds": 1000},
}
STRICT_TOL, LOOSE_TOL = 0.05, 0.25


def pairing_vs_random(net, seed: int, tols=(0.02, STRICT_TOL, 0.1, LOOSE_TOL)) -> dict:
    """Paired fraction and median nearest-mirror distance of a trained net beside an untrained one of the same
    width (PyTorch init): the null a pairing claim has to beat."""
    rand = seed_network(SeedEnsemble(net.width, 1, seed=seed + 12345).init_params(), 0, net.activation)
    out = {}
    for name, n in (("trained", net), ("random_init", rand)):
        d = mirror_distances(n)
        np.fill_diagonal(d, np.inf)
        out[name] = {"median_nearest_mirror_distance": float(np.median(d.min(1))),
                     "paired_fraction": {str(t): 2 * len(find_pairs(n, t)[0]) / n.width for t in tols}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="artifacts/lottery")
    ap.add_argument("--runs", default="runs/lottery_x2", help="resumable sweep folders (large; not committed)")
    ap.add_argument("--paper-scale", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--optimizer", default="adam+lbfgs")
    ap.add_argument("--adam-steps", type=int, default=1000)
    ap.add_argument("--lbfgs-steps", type=int, default=100)
    ap.add_argument("--backend", default="serial")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    scale = SCALES["paper" if args.paper_scale else "cpu"]
    out, runs = Path(args.out), Path(args.runs)
    start = time.perf_counter()
    train = {"optimizer": args.optimizer, "adam_steps": args.adam_steps, "lbfgs_steps": args.lbfgs_steps,
             "seed": args.seed}

    widths = log_widths(scale["max_width"], scale["n_widths"])
    configs = sweep_configs(SweepConfig(widths=tuple(widths), seed_budget=scale["seed_budget"],
                                        min_seeds=scale["min_seeds"], max_seeds=scale["max_seeds"], **train))
    results = run_sweep(configs, runs / "sweep", backend=args.backend, workers=args.workers, device=args.device)
    table = scaling_table(results)
    fits = fit_scaling(table, seed=args.seed)
    plot_scaling(table, fits, out / "scaling")

    peak_cfg = sweep_configs(SweepConfig(widths=(2,), activations=("silu",), min_seeds=scale["peak_seeds"],
                                         max_seeds=scale["peak_seeds"], **train))
    run_sweep(peak_cfg, runs / "peaks", device=args.device)
    peaks = peak_report(resolve_run(runs / "peaks", width=2))
    plot_peaks(peaks.losses, peaks.peaks, peaks.solutions, out / "peaks_n2")

    widest = resolve_run(runs / "sweep", width=max(widths), activation="silu")
    net, result, config, index = load_run(widest)
    strict = dissect(net, tol=STRICT_TOL, seed=args.seed)
    loose = dissect(net, tol=LOOSE_TOL, seed=args.seed)
    plot_tickets(loose.to_dict(curves=True), out / "tickets")
    small, *_ = load_run(resolve_run(runs / "sweep", width=8, activation="silu"))
    plot_neurons(neuron_curves(small), out / "neurons")

    def ticket_summary(r):
        d = r.to_dict()
        return {k: d[k] for k in ("n_pairs", "paired_fraction", "mean_error_corr", "mean_abs_error_corr",
                                  "variance_exponent", "network_mse")} | {
            "variance_exponent_ci": d["variance_fit"].exponent_ci if r.variance_fit else None,
            "median_ticket_mse": float(np.median(r.ticket_mse)) if r.n_pairs else None}

    summary = {
        "scale": "paper" if args.paper_scale else "cpu", "device": args.device, "training": train,
        "target": "x^2", "interval": [-1.0, 1.0], "n_train": configs[0].n_train, "n_test": configs[0].n_test,
        "sharma_kaplan_exponent": SHARMA_KAPLAN_EXPONENT, "paper_silu_exponent": 1.0,
        "activations": {act: {"exponent": f.exponent, "exponent_ci": f.exponent_ci, "widths": f.widths,
                              "median_test_mse": f.median, "n_seeds": table.rows[act].n_seeds,
                              "q25": table.rows[act].quantiles["q25"], "q75": table.rows[act].quantiles["q75"],
                              "local_slopes": f.local_slopes, "range_sensitivity": f.range_sensitivity}
                        for act, f in fits.rows.items()},
        "peaks_n2": {"n_seeds": peaks.n_seeds, "peaks": [{k: p[k] for k in ("loss", "count", "fraction",
                                                                             "representative")}
                                                          for p in peaks.peaks],
                     "solutions": [{k: getattr(s, k) for k in ("seed", "w", "b", "v", "c")} for s in peaks.solutions]},
        "dissection": {"width": net.width, "seed_index": index, "test_mse": float(result.test_mse[index]),
                       f"tol_{STRICT_TOL}": ticket_summary(strict), f"tol_{LOOSE_TOL}": ticket_summary(loose),
                       "pairing_vs_random": pairing_vs_random(net, args.seed)},
        "seconds": time.perf_counter() - start,
    }
    atomic_write_json(out / "summary.json", summary)
    for act, f in fits.rows.items():
        print(f"{act}: exponent {f.exponent:.3f} CI {list(f.exponent_ci)}")
    print(f"dissection N={net.width}: {summary['dissection']}")
    print(f"wrote {out}/summary.json in {summary['seconds']:.0f} s")


if __name__ == "__main__":
    main()
