"""`quanta langstats correlations|entropy|predict|measure|rhm`: β, γ and α_D = γ/(2β) from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]

DEFAULT_MODEL = {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_mlp": 256, "n_ctx": 64, "batch_size": 32,
                 "lr": 3e-3, "warmup": 50, "eval_every": 50}


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _corpus_options(p: argparse.ArgumentParser) -> None:
    from ..cli import positive_int

    p.add_argument("--corpus", default="shakespeare", help="'shakespeare', a text file or folder, or hf:NAME")
    p.add_argument("--tokenizer", default="char", help="'char' or 'bpe-N' (default: char)")
    p.add_argument("--split", default="train", choices=["train", "val", "all"], help="documents to use")
    p.add_argument("--max-lag", type=positive_int, default=1000, help="largest lag (default: 1000)")
    p.add_argument("--n-lags", type=positive_int, default=20, help="number of log-spaced lags (default: 20)")
    p.add_argument("--lags", type=_int_list, default=None, help="explicit lags, e.g. 1,2,4,8 (overrides --max-lag)")
    p.add_argument("--max-pairs", type=positive_int, default=None, help="sample this many pairs per lag")
    p.add_argument("--floor-factor", type=float, default=2.0, help="fit lags with norm > this × floor (default 2)")


def _load(args: argparse.Namespace):
    from ..corpora import load_corpus

    corpus = load_corpus(args.corpus, args.tokenizer, seed=args.seed)
    return corpus, corpus.documents(None if args.split == "all" else args.split)


def _write(args: argparse.Namespace, name: str, result: dict) -> Path:
    from ..io import atomic_write_json

    path = atomic_write_json(Path(args.out) / name, result)
    print(f"wrote {path}")
    return path


def _betas(args: argparse.Namespace, docs, vocab_size: int) -> dict:
    from .pipeline import beta_report, default_lags

    lags = args.lags or default_lags(args.max_lag, args.n_lags)
    return beta_report(docs, vocab_size, lags, max_pairs=args.max_pairs, floor_factor=args.floor_factor,
                       seed=args.seed)


def _show_fit(label: str, fit: dict, key: str) -> None:
    if "error" in fit:
        print(f"{label}: not fitted — {fit['error']}")
    else:
        print(f"{label} = {fit[key]:.3f}  95% CI [{fit[key + '_ci'][0]:.3f}, {fit[key + '_ci'][1]:.3f}]")


def _cmd_correlations(args: argparse.Namespace) -> int:
    corpus, docs = _load(args)
    rep = _betas(args, docs, corpus.vocab_size)
    _write(args, "correlations.json", rep)
    for norm in ("op", "fro"):
        _show_fit(f"beta ({norm} norm)", rep[f"beta_{norm}"], "beta")
    if "error" in rep["beta_op"]:
        raise ValueError(rep["beta_op"]["error"])
    return 0


def _gamma(args: argparse.Namespace, corpus, docs) -> dict:
    from .entropy import fit_gamma, ngram_entropy
    from .pipeline import lm_entropy_report

    out = {"ngram": ngram_entropy(docs, args.n_max)}
    if args.model:
        from .. import lm

        model = lm.load(args.model)
        n_ctx = args.n_ctx or model.cfg.n_ctx
        out["lm"] = lm_entropy_report(model, corpus.stream("val"), n_ctx=n_ctx, seed=args.seed)
        out["gamma"] = out["lm"]["gamma_offset"]
    else:
        ng = out["ngram"]
        ok = ng["reliable"] & (ng["n"] >= 1)
        if ok.sum() < 4:
            raise ValueError(f"only {int(ok.sum())} reliable n-gram orders; pass --model RUN to use an LM's "
                             "per-position loss, or a larger corpus")
        out["gamma"] = fit_gamma(ng["n"][ok], ng["H"][ok], offset=True, seed=args.seed)
        print("note: γ from n-grams covers only the reliable orders; an LM (--model) reaches far longer contexts")
    return out


def _cmd_entropy(args: argparse.Namespace) -> int:
    corpus, docs = _load(args)
    rep = _gamma(args, corpus, docs)
    _write(args, "entropy.json", rep)
    for n, h, ok in zip(rep["ngram"]["n"], rep["ngram"]["H"], rep["ngram"]["reliable"], strict=True):
        print(f"H_{n} = {h:.4f} nats (n-gram{'' if ok else ', unreliable'})")
    _show_fit("gamma", rep["gamma"], "gamma")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .pipeline import prediction

    corpus, docs = _load(args)
    betas = _betas(args, docs, corpus.vocab_size)
    if "error" in betas["beta_op"]:
        raise ValueError(betas["beta_op"]["error"])
    gam = _gamma(args, corpus, docs)
    pred = prediction(betas["beta_op"], gam["gamma"])
    _write(args, "predict.json", {"correlations": betas, "entropy": gam, "prediction": pred})
    _show_fit("beta", betas["beta_op"], "beta")
    _show_fit("gamma", gam["gamma"], "gamma")
    _show_fit("alpha_D = gamma/(2 beta)", pred, "alpha_D")
    return 0


def _cmd_measure(args: argparse.Namespace) -> int:
    from ..cli import backend_kwargs
    from .pipeline import measure_report

    model = {**DEFAULT_MODEL, **json.loads(args.model_config)}
    rep = measure_report(args.budgets, source=args.corpus, tokenizer=args.tokenizer, model=model,
                         root=str(Path(args.out) / "sweep"), h_inf=args.h_inf, seed=args.seed,
                         executor=backend_kwargs(args))
    _write(args, "measure.json", rep)
    for p, loss in zip(rep["P"], rep["best_val_loss"], strict=True):
        print(f"P = {p:>10d}  best val loss = {loss:.4f}")
    _show_fit("measured alpha_D (free H_inf)", rep["fit_free_offset"], "alpha_D")
    if "fit_entropy_offset" in rep:
        _show_fit("measured alpha_D (H_inf given)", rep["fit_entropy_offset"], "alpha_D")
    return 0


def _cmd_rhm(args: argparse.Namespace) -> int:
    from .correlations import CorrelationDecay
    from .rhm import RandomHierarchyModel

    rhm = RandomHierarchyModel(args.v, args.m, args.s, args.L, seed=args.seed)
    lags = [args.s ** k for k in range(args.L)]
    est = CorrelationDecay(lags, floor_factor=args.floor_factor, seed=args.seed).fit(rhm.sample(args.samples),
                                                                                     args.v)
    try:
        fit = est.fit_beta()
    except ValueError as e:
        fit = {"error": str(e)}
    _write(args, "rhm.json", {"params": vars(args) | {"func": None}, "beta_analytic": rhm.beta,
                              "spectrum": est.to_dict(), "beta_fit": fit})
    print(f"analytic beta = ln m / ln s = {rhm.beta:.3f}")
    _show_fit("measured beta (last-token pairs, lags s^k)", fit, "beta")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    from ..cli import add_backend, add_common, positive_int

    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p = sub.add_parser("correlations", help="‖C(n)‖ vs lag, noise floor, β")
    _corpus_options(p)
    add_common(p, out="runs/langstats")
    p.set_defaults(func=_cmd_correlations)

    for name, fn, text in (("entropy", _cmd_entropy, "H_n from n-grams and (with --model) an LM; γ"),
                           ("predict", _cmd_predict, "β, γ and the predicted α_D = γ/(2β) with a CI")):
        p = sub.add_parser(name, help=text)
        _corpus_options(p)
        p.add_argument("--n-max", type=positive_int, default=6, help="largest n-gram context (default: 6)")
        p.add_argument("--model", default=None, help="a trained LM (run folder or name) for per-position H_n")
        p.add_argument("--n-ctx", type=positive_int, default=None, help="context for the LM (default: its n_ctx)")
        add_common(p, out="runs/langstats")
        p.set_defaults(func=fn)

    p = sub.add_parser("measure", help="data-limited sweep: train on P tokens, fit the measured α_D")
    p.add_argument("--corpus", default="shakespeare")
    p.add_argument("--tokenizer", default="char")
    p.add_argument("--budgets", type=_int_list, default=[16_000, 64_000, 256_000, 1_024_000],
                   help="training-token budgets P (≥ 4, spanning ≥ 1.5 decades)")
    p.add_argument("--model-config", default="{}", help=f"JSON overrides of {DEFAULT_MODEL}")
    p.add_argument("--h-inf", type=float, default=None, help="H_∞ from the entropy fit, for a second α_D fit")
    add_backend(p)
    add_common(p, out="runs/langstats", device=False)
    p.set_defaults(func=_cmd_measure)

    p = sub.add_parser("rhm", help="Random Hierarchy Model: measured vs analytic β = ln m / ln s")
    for flag, default in (("--v", 8), ("--m", 3), ("--s", 3), ("--L", 4)):
        p.add_argument(flag, type=positive_int, default=default)
    p.add_argument("--samples", type=positive_int, default=100_000, help="number of sequences (default 100000)")
    p.add_argument("--floor-factor", type=float, default=2.0)
    add_common(p, out="runs/langstats")
    p.set_defaults(func=_cmd_rhm)
