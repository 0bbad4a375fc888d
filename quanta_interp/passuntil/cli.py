"""`quanta passuntil run|fit|predict|emergence|pass-at-k`.

`run` samples a model (`lm.load` spec) on instances from a JSONL file or a built-in task and writes
result.json (task PU with CI, per-instance counts, model size). The other commands take points as
`--n ... --pu ...` or the result folders of several `run`s (`--runs A B C`: per-instance tables).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli import add_common
from ..config import add_arguments, from_args
from ..io import RunDir, atomic_write_json, read_json
from .config import PassUntilConfig

__all__ = ["register"]


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `run`, `fit`, `predict`, `emergence` and `pass-at-k` subcommands to `parser`."""
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="sample until r passes per instance; task PU with CI")
    add_arguments(p, PassUntilConfig)
    add_common(p, out="runs/passuntil", device=True, seed=False)
    p.set_defaults(func=_run)
    for name, help_text in (("fit", "fit log(−log PU) = log c − α log N"),
                            ("predict", "fit, then predict PU at --at with a bootstrap CI"),
                            ("emergence", "linear / convex / concave against seeds (≥ 2 runs per size), and AIC of multi-step vs "
                                          "multi-circuit")):
        p = sub.add_parser(name, help=help_text)
        add_common(p, out="runs/passuntil_fit")
        p.add_argument("--n", type=float, nargs="+", help="model sizes N")
        p.add_argument("--pu", type=float, nargs="+", help="task PU per size, in (0, 1]")
        p.add_argument("--runs", nargs="+", help="folders written by `passuntil run` (instead of --n/--pu)")
        p.add_argument("--at", type=float, nargs="+", required=name == "predict", help="sizes to predict")
        p.add_argument("--per-instance", action="store_true", help="fit each instance (needs --runs)")
        p.add_argument("--significance", type=float, default=0.05, help="emergence test level (default 0.05)")
        p.set_defaults(func=_analyse)
    p = sub.add_parser("pass-at-k", help="unbiased pass@k from c passes in n samples, or from a rate p")
    add_common(p, out="runs/passuntil_fit")
    p.add_argument("--k", type=int, nargs="+", required=True, help="the k of pass@k, one or more (e.g. 1 10 100)")
    p.add_argument("--n", type=int, help="samples drawn")
    p.add_argument("--c", type=int, help="passes among them")
    p.add_argument("--p", type=float, help="a pass rate instead of --n/--c")
    p.set_defaults(func=_pass_at_k)


def _run(args: argparse.Namespace) -> int:
    from .. import lm
    from .estimators import estimate_pass_rate, task_pass_rate
    from .sampler import PassUntil, load_instances
    from .tasks import builtin_instances

    cfg = from_args(PassUntilConfig, args)
    instances = (load_instances(cfg.instances) if cfg.instances else
                 builtin_instances(cfg.task, cfg.n_instances, digits=cfg.digits, seed=cfg.seed))
    sampler = PassUntil(r=cfg.r, k_max=cfg.k_max, batch_size=cfg.batch_size, temperature=cfg.temperature,
                        top_k=cfg.top_k, seed=cfg.seed)
    model = lm.load(cfg.model, device=args.device)
    _check_vocabulary(lm.corpus_tokenizer(model), instances, "instances" if cfg.instances else "task")
    run = RunDir(args.out, cfg.to_dict())
    records = sampler.run(model.bridge, instances, tokenizer=model.tokenizer, run_dir=run)
    passes, samples = [r.passes for r in records], [r.samples for r in records]
    method = "unbiased" if cfg.r >= 2 else "mle"
    rates = estimate_pass_rate(passes, samples, r=cfg.r, method=method)
    result = {"model": cfg.model, "n_params": lm.n_params(model.bridge), "N": lm.non_embedding_params(model.bridge),
              "task": task_pass_rate(passes, samples, r=cfg.r, method=method, seed=cfg.seed).to_dict(),
              "instances": [{**rec.to_dict(), "pu": float(e), "ci": [float(lo), float(hi)], "log_p": float(lp)}
                            for rec, e, lo, hi, lp in zip(records, rates.estimate, rates.lower, rates.upper,
                                                          rates.log_p, strict=True)]}
    run.write_result(result)
    t = result["task"]
    print(f"task PU {t['pu']:.4g} (95% CI {t['ci'][0]:.4g}–{t['ci'][1]:.4g}) over {t['n_instances']} instances, "
          f"{t['total_samples']} samples; wrote {run.path / 'result.json'}")
    return 0


def _check_vocabulary(tokenizer, instances, param: str) -> None:
    """`ParameterError(param, …)` before anything is written when a prompt or answer holds text the model's own
    tokenizer cannot encode (a char model never saw '+'): its PU would be 0 for a reason that is not the model's
    skill."""
    from ..lm.losses import unseen_characters

    for inst in instances:
        try:
            tokenizer.encode(inst.prompt + inst.answer)
        except ValueError as e:
            raise unseen_characters(e, param, f"instance {inst.prompt!r} → {inst.answer!r}", "give --instances in "
                                    "text the model can read, or a model trained on such text") from None


def _points(args: argparse.Namespace):
    """(N, pu, counts): a task-level vector from --n/--pu, or a models × instances table from --runs with
    its (passes, samples) (None from --n/--pu). A size may repeat: seeds of one size."""
    import numpy as np

    if args.runs:
        from ..config import ParameterError

        missing = [r for r in args.runs if not (Path(r) / "result.json").exists()]
        if missing:
            raise ParameterError("runs", f"{missing[0]} is not a finished `quanta passuntil run` folder (no result.json)")
        results = [read_json(Path(r) / "result.json") for r in args.runs]
        if len({len(res["instances"]) for res in results}) != 1:
            raise ValueError("--runs: every run must cover the same instances")
        table, passes, samples = ([[i[key] for i in res["instances"]] for res in results]
                                  for key in ("pu", "passes", "samples"))
        return (np.array([res["N"] for res in results], dtype=float), np.array(table),
                (np.array(passes), np.array(samples)))
    if not args.n or not args.pu or len(args.n) != len(args.pu):
        raise ValueError("give --n and --pu with one PU per size, or --runs with `passuntil run` folders")
    if args.per_instance:
        raise ValueError("--per-instance needs --runs (per-instance pass rates)")
    from ..config import ParameterError, check_finite

    for n, pu in zip(args.n, args.pu, strict=True):
        check_finite("n", n, low=0.0, low_open=True)  # model sizes
        if not 0 < pu <= 1:  # NaN fails too
            raise ParameterError("pu", f"must lie in (0, 1] (task pass rates: log(−log PU) must exist), got {pu}")
    return np.array(args.n), np.array(args.pu), None


def _analyse(args: argparse.Namespace) -> int:
    import numpy as np

    from ..config import ParameterError, check_finite
    from .scaling import classify_emergence, fit_emergence_models, fit_task_scaling

    for at in args.at or ():
        check_finite("at", at, low=0.0, low_open=True)  # a model size: log N must exist
    check_finite("significance", args.significance, low=0.0, low_open=True)
    if args.significance >= 1:
        raise ParameterError("significance", f"must be < 1, got {args.significance}")
    N, pu, counts = _points(args)
    if args.cmd == "emergence":
        out = {"emergence": classify_emergence(N, pu, significance=args.significance).to_dict()}
        sizes = np.unique(N)
        if sizes.size >= 5:  # the two-component laws on the seed mean per size
            task = pu if pu.ndim == 1 else pu.mean(axis=1)
            out["models"] = fit_emergence_models(sizes, [task[N == n].mean() for n in sizes]).to_dict()
    else:
        passes, samples = counts if args.per_instance else (None, None)
        out = fit_task_scaling(N, pu, predict_at=args.at, per_instance=args.per_instance, passes=passes,
                               samples=samples, seed=args.seed).to_dict()
    _check_answer(out, args.cmd)
    path = atomic_write_json(Path(args.out) / f"{args.cmd}.json", out)
    print(json.dumps(out, indent=1, default=str))
    print(f"wrote {path}")
    return 0


def _check_answer(out, what: str, key: str = "") -> None:
    """ValueError naming the first NaN or infinite number in `out` (nested dicts, lists, dataclass fields):
    an answer is finite or refused."""
    import dataclasses
    import math

    if dataclasses.is_dataclass(out):
        out = dataclasses.asdict(out)
    if isinstance(out, dict):
        for k, v in out.items():
            _check_answer(v, what, f"{key}.{k}" if key else str(k))
    elif isinstance(out, (list, tuple)):
        for i, v in enumerate(out):
            _check_answer(v, what, f"{key}[{i}]")
    elif isinstance(out, float) and not math.isfinite(out):
        raise ValueError(f"{what}: {key} came out {out}; the points cannot support it (check --n, --pu and --at, "
                         "or give more sizes)")


def _pass_at_k(args: argparse.Namespace) -> int:
    from ..config import ParameterError, check_finite, check_positive_int
    from .estimators import pass_at_k, pass_at_k_from_rate

    for k in args.k:
        check_positive_int("k", k)
    if args.p is not None:
        check_finite("p", args.p, low=0.0, high=1.0)
    elif args.n is not None and args.c is not None:
        check_positive_int("n", args.n)
        if not 0 <= args.c <= args.n:
            raise ParameterError("c", f"must be passes among the --n samples, 0 ≤ c ≤ {args.n}, got {args.c}")
        if max(args.k) > args.n:
            raise ParameterError("k", f"must be ≤ n ({args.n}) for the unbiased estimate from n samples, "
                                      f"got {max(args.k)}")
    if args.p is not None:
        values = pass_at_k_from_rate(args.p, args.k)
    elif args.n is not None and args.c is not None:
        values = pass_at_k(args.n, args.c, args.k)
    else:
        raise ValueError("pass-at-k needs --n and --c (samples and passes), or --p (a pass rate)")
    values = [values] if isinstance(values, float) else values.tolist()
    for k, v in zip(args.k, values, strict=True):
        print(f"pass@{k} = {v:.6g}")
    atomic_write_json(Path(args.out) / "pass_at_k.json", {"k": args.k, "pass_at_k": values})
    return 0
