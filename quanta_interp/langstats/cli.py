"""`quanta langstats correlations|entropy|predict|measure|rhm`: β, γ and α_D = γ/(2β) from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

__all__ = ["register"]

def _load(cfg, model=None):
    """The corpus, read with `model`'s own tokenizer when there is one (the only ids it may be fed), and the
    documents of the statistics' split."""
    from ..cli import vocab_note
    from ..corpora import load_corpus
    from ..lm.losses import model_corpus

    if model is not None:
        corpus = model_corpus(model, cfg.corpus, seed=cfg.seed)
    else:
        corpus = load_corpus(cfg.corpus, cfg.tokenizer or "char", seed=cfg.seed)
        vocab_note(cfg.tokenizer or "char", corpus)
    docs = _split_docs(corpus, cfg, "stats", 2)
    if model is not None:  # the LM's split too, before any statistic is computed
        _split_docs(corpus, cfg, "lm", _lm_ctx(cfg, model) + 1)
    return corpus, docs


def _lm_ctx(cfg, model) -> int:
    return cfg.n_ctx or int(model.cfg.n_ctx)


def _split_docs(corpus, cfg, part: str, need: int) -> list:
    """The documents `part` reads; `ParameterError('split', …)` when they hold fewer than `need` tokens."""
    from ..config import ParameterError

    split = cfg.split_for(part)
    docs = corpus.documents(None if split == "all" else split)
    n = sum(d.size for d in docs)
    if n < need:
        what = f"the LM's windows of n_ctx + 1 = {need} tokens" if part == "lm" else "any statistic"
        raise ParameterError("split", f"{split!r} of corpus {cfg.corpus!r} holds {len(docs)} of its "
                                      f"{len(corpus.doc_ids())} documents ({n} tokens), too few for {what}: pass "
                                      "--split all, or a folder of several documents (one document has no 'val')")
    return docs


def _model(cfg):
    """The LM of `--model` (None without), loaded after the cheap checks; its n_ctx bounds `--n-ctx`."""
    from ..config import ParameterError
    from ..corpora import check_corpus_source

    if not cfg.model:
        return None
    from .. import lm

    check_corpus_source(cfg.corpus)  # before the model loads
    model = lm.load(cfg.model)
    if cfg.n_ctx is not None and cfg.n_ctx > model.cfg.n_ctx:
        raise ParameterError("n_ctx", f"({cfg.n_ctx}) exceeds the context of model {cfg.model!r} "
                                      f"({model.cfg.n_ctx}); pass at most {model.cfg.n_ctx}")
    return model


def _write(args: argparse.Namespace, name: str, result: dict) -> Path:
    from ..io import atomic_write_json

    path = atomic_write_json(Path(args.out) / name, result)
    print(f"wrote {path}")
    return path


def _betas(cfg, docs, vocab_size: int):
    from .pipeline import beta_report, default_lags

    lags = cfg.lags or default_lags(cfg.max_lag, cfg.n_lags)
    return beta_report(docs, vocab_size, lags, max_pairs=cfg.max_pairs, floor_factor=cfg.floor_factor, seed=cfg.seed)


def _show_fit(label: str, value: float, ci, n_points: int | None = None) -> None:
    """One fitted exponent and its 95 % CI; the few-points note when the fit rests on `n_points` < 6."""
    from ..cli import few_points_note

    print(f"{label} = {value:.3f}  95% CI [{ci[0]:.3f}, {ci[1]:.3f}]")
    if n_points is not None:
        few_points_note(label, n_points)


def _show_exponent(label: str, fit, error: str | None = None) -> None:
    """An `ExponentFit` (β, γ or the measured α_D), or why it was not fitted (`fit` None)."""
    if fit is None:
        print(f"{label}: not fitted — {error}")
    else:
        _show_fit(label, fit.value, fit.ci, fit.fit.n_points)


def _stats(args: argparse.Namespace):
    from ..config import from_args
    from .config import StatsConfig

    return from_args(StatsConfig, args)


def _cmd_correlations(args: argparse.Namespace) -> int:
    cfg = _stats(args)
    corpus, docs = _load(cfg)
    rep = _betas(cfg, docs, corpus.vocab_size)
    _write(args, "correlations.json", rep.to_dict())
    for norm, fit in (("op", rep.beta_op), ("fro", rep.beta_fro)):
        _show_exponent(f"beta ({norm} norm)", fit, rep.errors.get(norm))
    rep.require("op")
    return 0


def _gamma(cfg, corpus, docs, model) -> dict:
    """The JSON of `entropy.json` (tokenizer, split, `ngram`, with a model its `lm` report, `gamma`); its
    `ngram` an `NgramEntropy` and its `gamma` the `GammaFit` used."""
    from .entropy import fit_gamma, ngram_entropy
    from .pipeline import lm_entropy_report

    ng = ngram_entropy(docs, cfg.n_max)
    out = {"tokenizer": corpus.tokenizer.spec, "split": cfg.split_for("stats"), "ngram": ng}
    if model is not None:
        n_ctx = _lm_ctx(cfg, model)
        lm_docs = _split_docs(corpus, cfg, "lm", n_ctx + 1)
        rep = lm_entropy_report(model.bridge, np.concatenate(lm_docs), n_ctx=n_ctx, seed=cfg.seed, progress=True)
        out["lm"] = {"split": cfg.split_for("lm"), **rep.to_dict()}
        out["gamma"] = rep.gamma_offset
    else:
        ok = ng.reliable & (ng.n >= 1)
        if ok.sum() < 4:
            raise ValueError(f"only {int(ok.sum())} reliable n-gram orders; pass --model RUN to use an LM's "
                             "per-position loss, or a larger corpus")
        out["gamma"] = fit_gamma(ng.n[ok], ng.H[ok], offset=True, seed=cfg.seed)
        print("note: γ from n-grams covers only the reliable orders; an LM (--model) reaches far longer contexts")
    return out


def _cmd_entropy(args: argparse.Namespace) -> int:
    cfg = _stats(args)
    model = _model(cfg)
    corpus, docs = _load(cfg, model)
    rep = _gamma(cfg, corpus, docs, model)
    _write(args, "entropy.json", rep)
    ng = rep["ngram"]
    for n, h, ok in zip(ng.n, ng.H, ng.reliable, strict=True):
        print(f"H_{n} = {h:.4f} nats (n-gram{'' if ok else ', unreliable'})")
    _show_exponent("gamma", rep["gamma"])
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .pipeline import prediction

    cfg = _stats(args)
    model = _model(cfg)
    corpus, docs = _load(cfg, model)
    betas = _betas(cfg, docs, corpus.vocab_size)
    beta = betas.require("op")
    gam = _gamma(cfg, corpus, docs, model)
    pred = prediction(beta, gam["gamma"])
    _write(args, "predict.json", {"correlations": betas.to_dict(), "entropy": gam, "prediction": pred})
    _show_exponent("beta", beta)
    _show_exponent("gamma", gam["gamma"])
    _show_fit("alpha_D = gamma/(2 beta)", pred.alpha_D, pred.alpha_D_ci)
    return 0


def _cmd_measure(args: argparse.Namespace) -> int:
    from ..cli import backend_kwargs
    from ..config import from_args
    from .config import MeasureConfig
    from .pipeline import measure_report

    rep = measure_report(from_args(MeasureConfig, args), str(Path(args.out) / "sweep"), executor=backend_kwargs(args))
    _write(args, "measure.json", rep)
    for p, loss in zip(rep.P, rep.best_val_loss, strict=True):
        print(f"P = {p:>10d}  best val loss = {loss:.4f}")
    _show_exponent("measured alpha_D (free H_inf)", rep.fit_free_offset)
    if rep.fit_entropy_offset is not None:
        _show_exponent("measured alpha_D (H_inf given)", rep.fit_entropy_offset)
    return 0


def _cmd_rhm(args: argparse.Namespace) -> int:
    from ..config import from_args
    from .config import RHMConfig
    from .correlations import CorrelationDecay
    from .rhm import RandomHierarchyModel

    cfg = from_args(RHMConfig, args)
    rhm = RandomHierarchyModel(cfg.v, cfg.m, cfg.s, cfg.L, seed=cfg.seed)
    lags = [cfg.s ** k for k in range(cfg.L)]
    est = CorrelationDecay(lags, floor_factor=cfg.floor_factor, seed=cfg.seed).fit(rhm.sample(cfg.samples), cfg.v)
    fit, error = None, None
    try:
        fit = est.fit_beta()
    except ValueError as e:
        error = str(e)
    _write(args, "rhm.json", {"params": cfg.to_dict(), "beta_analytic": rhm.beta, "spectrum": est.to_dict(),
                              "beta_fit": fit.to_dict() if fit is not None else {"error": error}})
    print(f"analytic beta = ln m / ln s = {rhm.beta:.3f}")
    _show_exponent("measured beta (last-token pairs, lags s^k)", fit, error)
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `correlations`, `entropy`, `predict`, `measure` and `rhm` subcommands to `parser`."""
    from ..cli import add_backend, add_common
    from ..config import add_arguments
    from .config import MeasureConfig, RHMConfig, StatsConfig

    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for name, fn, text, skip in (
            ("correlations", _cmd_correlations, "‖C(n)‖ vs lag, noise floor, β", ("n_max", "model", "n_ctx")),
            ("entropy", _cmd_entropy, "H_n from n-grams and (with --model) an LM; γ", ()),
            ("predict", _cmd_predict, "β, γ and the predicted α_D = γ/(2β) with a CI", ())):
        p = sub.add_parser(name, help=text)
        add_arguments(p, StatsConfig, skip=skip)
        add_common(p, out="runs/langstats", seed=False)
        p.set_defaults(func=fn)

    p = sub.add_parser("measure", help="data-limited sweep: train on P tokens, fit the measured α_D")
    add_arguments(p, MeasureConfig)
    add_backend(p)
    add_common(p, out="runs/langstats", seed=False)
    p.set_defaults(func=_cmd_measure)

    p = sub.add_parser("rhm", help="Random Hierarchy Model: measured vs analytic β = ln m / ln s")
    add_arguments(p, RHMConfig)
    add_common(p, out="runs/langstats", seed=False)
    p.set_defaults(func=_cmd_rhm)
