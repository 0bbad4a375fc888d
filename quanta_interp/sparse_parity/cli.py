"""`quanta sparse-parity train|sweep|fit|neurons`: multitask sparse parity from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `train`, `sweep`, `fit`, `qdg` and `neurons` subcommands to the `quanta sparse-parity` parser.

    Each sets `func`, which takes the parsed namespace and returns the exit code.
    """
    from ..cli import add_backend, add_common, positive_int
    from ..config import add_arguments, parse_int_list
    from .config import KINDS, SparseParityConfig

    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train one MLP; writes config, metrics.jsonl, weights, result.json")
    add_arguments(p.add_argument_group("task and training"), SparseParityConfig)
    add_common(p, out="runs/sparse_parity/train", device=True, seed=False)
    p.set_defaults(func=_train)

    p = sub.add_parser("sweep", help="resumable N (width), D (dataset size) or S (steps) sweep, batched per seed")
    add_arguments(p.add_argument_group("task and training"), SparseParityConfig, skip=("seed",))
    p.add_argument("--kind", choices=KINDS, default="N", help="N: widths, D: dataset sizes, S: steps (default: N)")
    p.add_argument("--values", type=parse_int_list, default=(8, 16, 32, 64, 128),
                   help="widths (N) or dataset sizes (D), e.g. 8,16,32 (default: 8,16,32,64,128)")
    p.add_argument("--seeds", type=parse_int_list, default=(0,), help="seeds, one batched group each (default: 0)")
    add_backend(p)
    add_common(p, out="runs/sparse_parity/sweep", device=True, seed=False)
    p.set_defaults(func=_sweep)

    p = sub.add_parser("fit", help="fit α_N, α_D or α_S of finished sweeps; writes fit.json and a figure")
    p.add_argument("sweeps", nargs="+", help="sweep folders written by `sweep`")
    p.add_argument("--max-late-slope", type=float, default=None,
                   help="N and D: leave out runs whose loss still falls faster than this at the end, −d log L / "
                        "d log step, e.g. 0.1 (not converged; default: keep all)")
    add_common(p, out="runs/sparse_parity/fit")
    p.set_defaults(func=_fit)

    p = sub.add_parser("qdg", help="QDG checked against the truth: cluster a trained run's per-sample gradients "
                                   "and score the quanta found against its subtasks")
    p.add_argument("run", help="a run folder written by `train`")
    from ..quanta.ground_truth import GroundTruthConfig

    add_arguments(p, GroundTruthConfig)
    add_common(p, out="", device=True, seed=False)  # empty --out: write qdg.json into the run folder
    p.set_defaults(func=_qdg)

    p = sub.add_parser("neurons", help="per-neuron ablation matrix of a trained run (JSON + heatmap)")
    p.add_argument("run", help="a run folder written by `train`")
    p.add_argument("--samples", type=positive_int, default=500, help="samples per subtask (default: 500)")
    p.add_argument("--threshold", type=float, default=0.1,
                   help="bits of loss increase that make a unit a carrier of a subtask (default: 0.1)")
    add_common(p, out="", device=True)  # empty: write into the run folder
    p.set_defaults(func=_neurons)


def _train(args: argparse.Namespace) -> int:
    from ..config import from_args
    from .config import SparseParityConfig
    from .training import train_run

    cfg = from_args(SparseParityConfig, args)
    _, result = train_run(cfg, args.out, device=args.device)
    print(f"learned {result['n_learned']}/{cfg.n_tasks} subtasks, test loss {result['test_loss']:.4f} bits; "
          f"wrote {Path(args.out)}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from ..cli import backend_kwargs
    from ..config import check_positive_int, from_args
    from .config import SparseParityConfig
    from .sweep import run_sweep

    for seed in args.seeds:  # before the sweep folder opens
        check_positive_int("seeds", seed, low=0)
    results = run_sweep(args.kind, from_args(SparseParityConfig, args), args.values, args.seeds, args.out,
                        device=args.device, **backend_kwargs(args))
    for r in results:
        c = r["config"]
        print(f"width {c['width']:>5} n_train {c['n_train']} seed {c['seed']}: loss {r['test_loss']:.4f} bits, "
              f"learned {r['n_learned']}")
    print(f"wrote {args.out}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from ..cli import few_points_note
    from .sweep import fit_sweeps

    result = fit_sweeps(args.sweeps, args.out, max_late_slope=args.max_late_slope)
    for name, f in result.fits.items():
        print(f"{name}: α = {f['fit']['exponent']:.3f} {f['fit']['exponent_ci']} "
              f"(theory α_{f['kind']} = {f['theory']['alpha_' + f['kind']]:.3f})")
        few_points_note(f"α_{f['kind']} of {name}", f["fit"]["n_points"])
    print(f"wrote {result.path}")
    return 0


def _qdg(args: argparse.Namespace) -> int:
    from ..config import from_args
    from ..quanta.ground_truth import GroundTruthConfig
    from .quanta import score_run

    scored, path = score_run(args.run, from_args(GroundTruthConfig, args), args.out, device=args.device)
    report = scored.report
    g = report["geometry"]
    print(f"{report['n_samples']} samples of {len(report['subtasks'])} subtasks; mean |cos| same pattern "
          f"{g['same_subtask_same_pattern']:.3f}, other pattern {g['same_subtask_other_pattern']:.3f}, other subtask "
          f"{g['other_subtask']:.3f}")
    for name, m in report["methods"].items():
        print(f"  {name:40s} ARI {m['ari']:.3f}  homogeneity {m['homogeneity']:.3f}  at 2^k×K {m['fine_homogeneity']:.3f}"
              f"  slope {m['fit_at_K']['slope']}")
    print(f"wrote {path}")
    return 0


def _neurons(args: argparse.Namespace) -> int:
    from .ablation import write_ablation

    result = write_ablation(args.run, args.out, samples=args.samples, threshold=args.threshold, seed=args.seed,
                            device=args.device)
    print(json.dumps({"learned": result.learned, "carriers": {i: result.matrix["carriers"][i] for i in result.learned}}))
    print(f"wrote {result.path}")
    return 0
