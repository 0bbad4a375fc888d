"""`quanta sparse-parity train|sweep|fit|neurons`: multitask sparse parity from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    from ..cli import add_backend, add_common, positive_int

    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def task_options(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("task and training")
        g.add_argument("--n-tasks", type=positive_int, default=50)
        g.add_argument("--n-bits", type=positive_int, default=10)
        g.add_argument("--k", type=positive_int, default=3)
        g.add_argument("--zipf-exponent", type=float, default=1.5, help="p_i ∝ i^-zipf_exponent (= paper's α + 1)")
        g.add_argument("--task-seed", type=int, default=0, help="seed of the subsets (default: 0)")
        g.add_argument("--width", type=int, default=128)
        g.add_argument("--depth", type=positive_int, default=1)
        g.add_argument("--activation", default="relu")
        g.add_argument("--steps", type=positive_int, default=2000)
        g.add_argument("--batch-size", type=positive_int, default=1000)
        g.add_argument("--lr", type=float, default=1e-2)
        g.add_argument("--n-train", type=positive_int, default=None, help="finite dataset size D (default: fresh batches)")
        g.add_argument("--log-every", type=positive_int, default=100)
        g.add_argument("--eval-samples", type=positive_int, default=200, help="fresh samples per subtask per evaluation")

    p = sub.add_parser("train", help="train one MLP; writes config, metrics.jsonl, weights, result.json")
    task_options(p)
    add_common(p, out="runs/sparse_parity/train", device=True)
    p.set_defaults(func=_train)

    p = sub.add_parser("sweep", help="resumable N (width), D (dataset size) or S (steps) sweep, batched per seed")
    task_options(p)
    p.add_argument("--kind", choices=["N", "D", "S"], default="N")
    p.add_argument("--values", default="8,16,32,64,128", help="comma-separated widths (N) or dataset sizes (D)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, one batched group each")
    add_backend(p)
    add_common(p, out="runs/sparse_parity/sweep", device=True)
    p.set_defaults(func=_sweep)

    p = sub.add_parser("fit", help="fit α_N, α_D or α_S of finished sweeps; writes fit.json and a figure")
    p.add_argument("sweeps", nargs="+", help="sweep folders written by `sweep`")
    add_common(p, out="runs/sparse_parity/fit")
    p.set_defaults(func=_fit)

    p = sub.add_parser("neurons", help="per-neuron ablation matrix of a trained run (JSON + heatmap)")
    p.add_argument("run", help="a run folder written by `train`")
    p.add_argument("--samples", type=positive_int, default=500, help="samples per subtask (default: 500)")
    p.add_argument("--threshold", type=float, default=0.1, help="bits of loss increase that make a carrier")
    add_common(p, out="")  # empty: write into the run folder
    p.set_defaults(func=_neurons)


def _config(args: argparse.Namespace) -> dict:
    keys = ("n_tasks", "n_bits", "k", "zipf_exponent", "task_seed", "width", "depth", "activation", "steps",
            "batch_size", "lr", "n_train", "log_every", "eval_samples", "seed")
    return {k: getattr(args, k) for k in keys}


def _ints(text: str, name: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers, got {text!r}") from None


def _train(args: argparse.Namespace) -> int:
    from ..io import RunDir
    from .sparse_parity import check_config, train_sparse_parity

    cfg = check_config(_config(args))
    run = RunDir(args.out, cfg)
    _, result = train_sparse_parity(cfg, run, device=args.device)
    run.write_result(result)
    print(f"learned {result['n_learned']}/{cfg['n_tasks']} subtasks, test loss {result['test_loss']:.4f} bits; "
          f"wrote {run.path}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from ..cli import backend_kwargs
    from .sparse_parity import check_config
    from .sparse_parity_sweep import run_sweep

    base = check_config(_config(args))
    del base["seed"]
    values = _ints(args.values, "--values")
    if any(v < 1 for v in values):
        raise ValueError(f"--values must be positive integers, got {args.values!r}")
    results = run_sweep(args.kind, base, values, _ints(args.seeds, "--seeds"), args.out,
                        device=args.device, **backend_kwargs(args))
    for r in results:
        c = r["config"]
        print(f"width {c['width']:>5} n_train {c['n_train']} seed {c['seed']}: loss {r['test_loss']:.4f} bits, "
              f"learned {r['n_learned']}")
    print(f"wrote {args.out}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from ..io import Sweep, atomic_write_json
    from .sparse_parity_figures import plot_scaling
    from .sparse_parity_sweep import fit_exponent, members, predictions

    out, fits = Path(args.out), {}
    for folder in args.sweeps:
        sweep = Sweep.open(folder, hint="run `quanta sparse-parity sweep`")
        kind = sweep.name.removeprefix("sparse-parity-")
        results = [r for r in sweep.results() if r is not None]
        if not results:
            raise ValueError(f"{folder} has no finished runs yet; run the sweep first")
        res = members(results)
        z = res[0]["config"]["zipf_exponent"]
        fits[f"{kind} {folder}"] = {"kind": kind, **fit_exponent(res, kind), "theory": predictions(z)}
    atomic_write_json(out / "fit.json", fits)
    for kind in sorted({f["kind"] for f in fits.values()}):
        plot_scaling({k: f for k, f in fits.items() if f["kind"] == kind}, out / f"loss_vs_{kind}",
                     xlabel={"N": "parameters", "D": "training samples D", "S": "steps"}[kind])
    for name, f in fits.items():
        print(f"{name}: α = {f['fit']['exponent']:.3f} {f['fit']['exponent_ci']} "
              f"(theory α_{f['kind']} = {f['theory']['alpha_' + f['kind']]:.3f})")
    print(f"wrote {out / 'fit.json'}")
    return 0


def _neurons(args: argparse.Namespace) -> int:
    import torch

    from ..io import RunDir, atomic_write_json
    from .sparse_parity import LEARNED_BITS, build_mlp, task_from_config
    from .sparse_parity_figures import plot_heatmap
    from .sparse_parity_neurons import ablation_matrix, carriers

    run = RunDir(args.run)
    if not (run.path / "weights.safetensors").exists():
        raise FileNotFoundError(f"{args.run} holds no weights.safetensors; train one with `sparse-parity train`")
    cfg = run.config
    task = task_from_config(cfg)
    model = build_mlp(task.n_inputs, cfg["width"], cfg["depth"], cfg["activation"])
    model.load_state_dict(run.load_weights())
    m = ablation_matrix(model, task, args.samples, torch.Generator().manual_seed(args.seed))
    m["carriers"] = carriers(m["increase"], args.threshold)
    m["threshold_bits"] = args.threshold
    out = Path(args.out or run.path)
    atomic_write_json(out / "neurons.json", m)
    plot_heatmap([list(r) for r in zip(*m["increase"], strict=True)], out / "neurons",
                 xlabels=list(range(cfg["width"])), xlabel="hidden unit", cbar="loss increase (bits)",
                 title="ablation: loss increase per subtask", vmax=None)
    learned = [i for i, b in enumerate(m["base_loss"]) if b < LEARNED_BITS]
    print(json.dumps({"learned": learned, "carriers": {i: m["carriers"][i] for i in learned}}))
    print(f"wrote {out / 'neurons.json'}")
    return 0
