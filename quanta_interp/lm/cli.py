"""`quanta lm load|train|family|losses|scaling`: language models from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli import add_backend, add_common, backend_kwargs, few_points_note, positive_int, vocab_note
from ..config import add_arguments, from_args, parse_str_list
from .config import UNCONVERGED, TrainConfig

LADDER_HELP = "comma-separated LAYERSxWIDTH sizes, e.g. 1x16,1x32,2x32 (default: the 6-model ladder)"
_FAMILY_SKIP = ("d_vocab", "n_layers", "d_model", "n_heads", "d_mlp")  # set per member by the ladder


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    """'1x16,2x32' → ((1, 16), (2, 32)); `ParameterError('sizes', …)` otherwise."""
    from ..config import ParameterError

    try:
        sizes = tuple(tuple(int(v) for v in s.split("x")) for s in parse_str_list(text))
    except (ValueError, argparse.ArgumentTypeError):
        sizes = ()
    if not sizes or not all(len(s) == 2 and min(s) > 0 for s in sizes):
        raise ParameterError("sizes", f"must be {LADDER_HELP}; got {text!r}")
    return sizes


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `load`, `train`, `family`, `losses` and `scaling` subcommands to `parser`."""
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("load", help="load a model and print its shape, parameter counts and a prediction")
    p.add_argument("model", nargs="?", default="smollm2", help="smollm2, an HF name, an HF folder or a run folder")
    p.add_argument("--prompt", default="The capital of France is", help="text whose next token is printed")
    add_common(p, out="runs/lm-load", device=True)
    p.set_defaults(func=_load)

    p = sub.add_parser("train", help="train a fresh model on a corpus (resumes in --out after a kill)")
    _corpus_args(p)
    add_arguments(p.add_argument_group("model and training"), TrainConfig, skip=("d_vocab",))
    add_common(p, out="runs/lm-train", seed=False)
    p.set_defaults(func=_train)

    p = sub.add_parser("family", help="train a size ladder as a resumable sweep")
    _corpus_args(p)
    add_arguments(p.add_argument_group("training (every member)"), TrainConfig, skip=_FAMILY_SKIP)
    p.add_argument("--sizes", default=None, help=LADDER_HELP)
    add_backend(p)
    add_common(p, out="runs/lm-family", seed=False)
    p.set_defaults(func=_family)

    p = sub.add_parser("losses", help="per-token losses of a model on a corpus split → losses.npy")
    p.add_argument("--model", default="smollm2", help="as for `quanta lm load`")
    _corpus_args(p, tokenizer=False)
    _eval_args(p)
    p.add_argument("--split", default="val", choices=["train", "val", "all"])
    add_common(p, out="runs/lm-losses", device=True)
    p.set_defaults(func=_losses)

    p = sub.add_parser("scaling", help="α_N and monogenic/polygenic tokens of a trained family")
    p.add_argument("--family", required=True, help="folder written by `quanta lm family`")
    _corpus_args(p, tokenizer=False)
    _eval_args(p)
    for name, default, text in (("high", 5.0, "monogenic: loss above this (nats) below the step size"),
                                ("low", 0.3, "monogenic: loss below this at and above the step size"),
                                ("slope", -0.3, "polygenic: loss-vs-ln N slope below this"),
                                ("r2", 0.98, "polygenic: R² of the linear fit above this")):
        p.add_argument(f"--{name}", type=float, default=default, help=f"{text} (default: {default}, the paper's)")
    p.add_argument("--unconverged", choices=UNCONVERGED, default="refuse",
                   help="members whose convergence rule did not stop them (or trained without one): refuse the "
                        "family, drop them from the fit, or keep them (default: refuse)")
    add_common(p, out="runs/lm-scaling", device=True)
    p.set_defaults(func=_scaling)


def _corpus_args(p: argparse.ArgumentParser, tokenizer: bool = True) -> None:
    p.add_argument("--corpus", default="shakespeare", help="shakespeare, a text file/folder, or hf:NAME")
    if tokenizer:
        p.add_argument("--tokenizer", default="char", help="char or bpe-N (default: char)")


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--context", type=positive_int, default=None,
                   help="tokens of context per prediction, at most the model's n_ctx (default: 64, or n_ctx if smaller)")
    p.add_argument("--max-tokens", type=positive_int, default=4000, help="tokens evaluated per document (default: 4000)")


def _print(d: dict) -> None:
    from ..io import to_jsonable

    print(json.dumps(to_jsonable(d), indent=2))


def _load(args) -> int:
    import torch

    from ..config import ParameterError
    from . import load, n_params, non_embedding_params
    from .losses import unseen_characters

    model = load(args.model, device=args.device)
    info = {"spec": model.spec, "n_layers": model.cfg.n_layers, "d_model": model.cfg.d_model,
            "n_ctx": model.cfg.n_ctx, "d_vocab": model.cfg.d_vocab, "n_params": n_params(model.bridge),
            "n_params_non_embedding": non_embedding_params(model.bridge), "note": model.note}
    if model.tokenizer is not None:
        try:
            ids = model.tokenizer.encode(args.prompt)[-model.cfg.n_ctx:]
        except ValueError as e:
            raise unseen_characters(e, "prompt", repr(args.prompt), "give text in the characters the model was "
                                                                    "trained on") from None
        if not ids:
            raise ParameterError("prompt", f"{args.prompt!r} has no token: give text whose next token to predict")
        with torch.inference_mode():
            logits = model.bridge(torch.tensor([ids], device=args.device))
        info["next_token"] = model.tokenizer.decode([int(logits[0, -1].argmax())])
    _print(info)
    return 0


def _train(args) -> int:
    from . import train
    from .training import split_tokens

    cfg = from_args(TrainConfig, args, d_vocab=1)  # every setting checked before the corpus is read
    corpus = _corpus(args, cfg.seed)
    split_tokens(corpus, args.corpus, "train", cfg.n_ctx + 1)
    val = corpus.documents("val")
    if not val:
        print(f"note: corpus {args.corpus!r} has {len(corpus.doc_ids())} document, so no held-out 'val' split: "
              "val_loss is not measured (pass a folder of several .txt files)")
    _print(train(cfg.replace(d_vocab=corpus.vocab_size), corpus.documents("train"), val_tokens=val or None,
                 tokenizer=corpus.tokenizer, run_dir=args.out))
    return 0


def _corpus(args, seed: int):
    """The training corpus, `--tokenizer` checked first; a note when bpe-N learned fewer tokens than asked."""
    from ..config import check_tokenizer
    from ..corpora import load_corpus

    check_tokenizer("tokenizer", args.tokenizer)
    corpus = load_corpus(args.corpus, args.tokenizer, seed=seed)
    vocab_note(args.tokenizer, corpus)
    return corpus


def _family(args) -> int:
    from ..config import given_args
    from .scaling import LADDER, family_configs, train_family

    sizes = _sizes(args.sizes) if args.sizes else LADDER
    from_args(TrainConfig, args, d_vocab=1)  # shared settings checked before the corpus is read
    _corpus(args, 0)
    configs = family_configs(sizes, corpus=args.corpus, tokenizer=args.tokenizer, **given_args(TrainConfig, args))
    results = train_family(configs, args.out, **backend_kwargs(args))
    for m, r in zip(configs, results, strict=True):
        done = "" if r.converged is None else f" steps={r.steps} converged={r.converged}"
        print(f"{m.name:10s} N={r.n_params_non_embedding:>9d} val_loss={r.val_loss}{done}")
    return 0


def _docs(model, args, split: str = "val"):
    from ..config import ParameterError
    from .losses import model_corpus

    corpus = model_corpus(model, args.corpus)
    docs = [d[: args.max_tokens] for d in corpus.documents(None if split == "all" else split)]
    if sum(max(len(d) - 1, 0) for d in docs) == 0:  # token p is scored from the tokens before it
        where = "holds no document" if not docs else "has no token after a first one to score"
        raise ParameterError("split", f"{split!r} of corpus {args.corpus!r} {where} ({len(corpus.doc_ids())} "
                                      f"document(s), {corpus.tokens.size} tokens in all; one document has no 'val'): "
                                      "pass --split all, or a folder of several documents")
    return docs


def _context(args, model) -> int:
    """--context, checked against the model's n_ctx; the default 64 is capped there with a note."""
    from ..config import ParameterError

    n_ctx = int(model.cfg.n_ctx)
    if args.context is None:
        if n_ctx < 64:
            print(f"note: context {n_ctx} tokens, the model's n_ctx (the default 64 is more than it reads)")
        return min(64, n_ctx)
    if args.context > n_ctx:
        raise ParameterError("context", f"({args.context}) exceeds the model's n_ctx ({n_ctx}); pass at most {n_ctx}")
    return args.context


def _losses(args) -> int:
    import numpy as np

    from ..corpora import check_corpus_source
    from ..io import atomic_save_npy, atomic_write_json
    from . import load, token_losses

    check_corpus_source(args.corpus)  # before the model loads
    model = load(args.model, device=args.device)
    context = _context(args, model)
    losses = token_losses(model.bridge, _docs(model, args, args.split), context=context)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    atomic_save_npy(Path(args.out) / "losses.npy", losses)
    summary = {"model": args.model, "split": args.split, "context": context,
               "n_tokens": int(np.isfinite(losses).sum()), "mean_loss": float(np.nanmean(losses))}
    atomic_write_json(Path(args.out) / "summary.json", summary)
    _print(summary)
    return 0


def _scaling(args) -> int:
    from ..config import check_finite
    from ..io import atomic_save_npy, atomic_write_json
    from .scaling import TokenClasses, analyse, load_family

    thresholds = dict(high=args.high, low=args.low, slope=args.slope, r2=args.r2)
    for name, value in thresholds.items():  # before the models load; NaN would label no token, silently
        check_finite(name, value)
    TokenClasses(**thresholds)
    models, members = load_family(args.family, device=args.device, unconverged=args.unconverged)
    summary, losses, _ = analyse([m.bridge for m in models], [m.name for m in members], _docs(models[0], args),
                                 context=_context(args, models[0]), thresholds=thresholds)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    atomic_save_npy(Path(args.out) / "losses.npy", losses)
    atomic_write_json(Path(args.out) / "summary.json", {**summary.to_dict(), "unconverged": args.unconverged,
                                                        "members": [m.to_dict() for m in members]})
    print(f"α_N = {summary.alpha_N:.4f} CI {summary.alpha_N_ci}; token classes {summary.token_classes}")
    few_points_note("α_N", summary.fit.n_points)
    return 0
