"""`quanta lottery sweep|fit|peaks|dissect|neurons`: width sweeps of y = x² MLPs and the ticket probes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli import add_backend, add_common, backend_kwargs, positive_int
from ..config import add_arguments, from_args
from .config import SweepConfig

__all__ = ["register"]


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `sweep`, `fit`, `peaks`, `dissect` and `neurons` subcommands to `parser`."""
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("sweep", help="train S seeds per (activation, width) into a resumable sweep folder")
    add_arguments(p, SweepConfig)
    add_common(p, out="runs/lottery", device=True, seed=False)
    add_backend(p)
    p.set_defaults(func=_sweep)

    p = sub.add_parser("fit", help="power-law fits of median test MSE vs width per activation")
    add_common(p, out="runs/lottery")
    p.add_argument("sweep", nargs="?", default=None, help="sweep folder (default: --out)")
    p.add_argument("--min-width", type=positive_int, default=2)
    p.set_defaults(func=_fit)

    for name, help_text, func in (("peaks", "discrete peaks of the loss histogram over seeds (default N = 2)", _peaks),
                                  ("dissect", "find symmetric-pair tickets and test the CLT claim", _dissect),
                                  ("neurons", "per-neuron activation and contribution curves: grid plot + JSON", _neurons)):
        p = sub.add_parser(name, help=help_text)
        add_common(p, out=f"runs/lottery/{name}")
        p.add_argument("run", help="a run folder, or a sweep folder with --width/--activation")
        p.add_argument("--width", type=positive_int, default=None, help="in a sweep folder: which width (default 2)")
        p.add_argument("--activation", default=None, help="in a sweep folder: which activation (default silu)")
        if name == "peaks":
            p.add_argument("--prominence", type=float, default=0.05, help="peak prominence / highest density")
        else:
            p.add_argument("--seed-index", type=int, default=None, help="which seed (default: median test loss)")
        if name == "dissect":
            p.add_argument("--tol", type=float, default=0.05, help="relative distance for a symmetric pair")
        p.set_defaults(func=func)


def _sweep(args: argparse.Namespace) -> int:
    from .analysis import scaling_table
    from .runs import run_sweep, sweep_configs

    results = run_sweep(sweep_configs(from_args(SweepConfig, args)), args.out, device=args.device,
                        **backend_kwargs(args))
    for act, row in scaling_table(results).rows.items():
        print(act, " ".join(f"N={w}:{m:.2e}" for w, m in zip(row.widths, row.median, strict=True)))
    print(f"wrote {len(results)} runs to {args.out}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from ..cli import few_points_note
    from ..io import Sweep, atomic_write_json
    from .analysis import fit_scaling, scaling_table
    from .plots import plot_scaling
    from .results import RunResult

    root = Path(args.sweep or args.out)
    results = [RunResult.from_dict(r) for r in Sweep.open(root, hint="run `quanta lottery sweep` first").results()
               if r is not None]
    if not results:
        raise ValueError(f"{root} has no finished runs yet")
    table = scaling_table(results)
    fits = fit_scaling(table, min_width=args.min_width, seed=args.seed)
    atomic_write_json(Path(args.out) / "scaling.json", {"table": table, "fits": fits})
    plot_scaling(table, fits, Path(args.out) / "scaling")
    for act, f in fits.rows.items():
        ci = f.exponent_ci
        print(f"{act}: exponent {f.exponent:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{act}: too few widths")
        if ci:
            few_points_note(f"the {act} exponent", f.fit.n_points)
    print(f"wrote {Path(args.out) / 'scaling.json'}")
    return 0


def _peaks(args: argparse.Namespace) -> int:
    from ..io import atomic_write_json
    from .plots import plot_peaks
    from .runs import peak_report, resolve_run

    report = peak_report(resolve_run(args.run, width=args.width, activation=args.activation),
                         prominence=args.prominence)
    atomic_write_json(Path(args.out) / "peaks.json", report)
    plot_peaks(report.losses, report.peaks, report.solutions, Path(args.out) / "peaks", width=report.width)
    print(json.dumps([{k: p[k] for k in ("loss", "count", "representative")} for p in report.peaks]))
    return 0


def _dissect(args: argparse.Namespace) -> int:
    from ..io import atomic_write_json
    from .plots import plot_tickets
    from .runs import load_run, resolve_run
    from .tickets import dissect

    net, _, config, index = load_run(resolve_run(args.run, width=args.width, activation=args.activation), args.seed_index)
    report = dissect(net, target=config.target, interval=config.interval, tol=args.tol, seed=args.seed)
    d = {"seed_index": index, **report.to_dict(curves=True)}
    atomic_write_json(Path(args.out) / "dissect.json", d)
    plot_tickets(d, Path(args.out) / "tickets")
    print(f"{report.n_pairs} pairs of {report.width} neurons; mean error corr {d['mean_error_corr']}; "
          f"variance exponent {d['variance_exponent']}")
    return 0


def _neurons(args: argparse.Namespace) -> int:
    from ..io import atomic_write_json
    from .plots import plot_neurons
    from .runs import load_run, resolve_run
    from .tickets import neuron_curves

    net, _, config, index = load_run(resolve_run(args.run, width=args.width, activation=args.activation), args.seed_index)
    curves = neuron_curves(net, interval=config.interval)
    atomic_write_json(Path(args.out) / "neurons.json", {"seed_index": index, **curves.to_dict()})
    plot_neurons(curves, Path(args.out) / "neurons")
    print(f"wrote {Path(args.out) / 'neurons.json'} and neurons.png/svg ({net.width} neurons)")
    return 0
