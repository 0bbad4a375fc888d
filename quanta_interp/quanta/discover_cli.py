"""`quanta discover`: the QDG pipeline, tokens → per-token gradients → quanta → plots and browser.html.

Three stages, each resumable in `--out`: (1) scan random spans of the corpus for low-loss tokens
(`targets.json`); (2) per-token gradients streamed to `gradients/`; (3) analysis without the model:
clusters, rank-frequency envelope and fit, UMAP, `summary.json`, `clusters.json`, `browser.html`.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..capture import DEFAULT_PROJECTION_DIM
from ..cli import add_common, positive_int
from ..io import RunDir, atomic_write_json, progress, read_json

__all__ = ["register", "config_from_args", "discover", "find_targets", "analyse"]


def register(parser: argparse.ArgumentParser) -> None:
    add_common(parser, out="runs/discover", device=True)
    a = parser.add_argument
    a("--model", default="smollm2", help="'smollm2', an HF name/folder or a `quanta lm train` run (default: smollm2)")
    a("--corpus", default="shakespeare", help="'shakespeare', a text file/folder or hf:NAME (default: shakespeare)")
    a("--n-tokens", type=positive_int, default=320,
      help="low-loss tokens whose gradients are captured; those still below the threshold with exactly "
           "--context tokens of context are clustered (default: 320)")
    a("--loss-threshold", type=float, default=0.1, help="keep tokens with loss below this, nats (default: 0.1)")
    a("--params", default="all", help="weights: all, mlp, attn, 'layers 3-5' or a regex (default: all)")
    a("--context", type=positive_int, default=32, help="tokens of context before each target (default: 32)")
    a("--projection-dim", type=int, default=DEFAULT_PROJECTION_DIM,
      help="k: each token's gradient is sketched to k numbers (cosine error ≈ 1/√k); 0 = exact (small models) "
           f"(default: {DEFAULT_PROJECTION_DIM})")
    a("--clusters", type=positive_int, default=12, help="number of quanta (default: 12)")
    a("--method", choices=("dense", "knn"), default="dense", help="spectral clustering affinity (default: dense)")
    a("--scan-tokens", type=positive_int, default=40000, help="at most this many corpus tokens scanned (default: 40000)")
    a("--keep-induction", action="store_true", help="keep tokens that complete a trigram seen earlier")
    a("--alpha-n", type=float, default=None, help="α_N for the predicted slope −(α_N+1) "
      "(default: artifacts/lm_scaling/summary.json if present)")
    a("--batch-size", type=positive_int, default=16, help="windows per backward pass (default: 16)")
    parser.set_defaults(func=_cmd)


def config_from_args(args: argparse.Namespace) -> dict:
    """The run's config (what `--out/config.json` records) from parsed `quanta discover` arguments."""
    if args.projection_dim < 0:
        raise ValueError(f"--projection-dim must be a positive integer, or 0 for exact gradients, got {args.projection_dim}")
    return {k: getattr(args, k) for k in ("model", "corpus", "n_tokens", "loss_threshold", "params", "context",
                                          "projection_dim", "clusters", "method", "scan_tokens", "keep_induction",
                                          "alpha_n", "batch_size", "seed")}


def _cmd(args: argparse.Namespace) -> int:
    summary = discover(config_from_args(args), args.out, device=args.device)
    fit = summary["rank_frequency"]
    print(f"{summary['n_tokens']} tokens → {len(summary['clusters'])} clusters; rank-frequency slope "
          f"{fit.get('slope') if fit.get('slope') is None else round(fit['slope'], 3)}; open {Path(args.out) / 'browser.html'}")
    return 0


def discover(config: dict, out: str | Path, *, device: str = "cpu") -> dict:
    """Run (or resume) the whole pipeline in `out` and return the summary."""
    import torch

    from .. import lm
    from ..capture import capture_gradients
    from ..corpora import load_corpus

    if config["loss_threshold"] <= 0:
        raise ValueError(f"--loss-threshold must be > 0 nats, got {config['loss_threshold']}")
    run = RunDir(out, config)
    t0 = time.time()
    model = lm.load(config["model"], device=device)
    corpus = load_corpus(config["corpus"], tokenizer=lm.corpus_tokenizer(model), seed=config["seed"])
    targets = find_targets(model, corpus, config, run.path)
    with torch.random.fork_rng():
        capture_gradients(model, corpus.documents(), np.array([[t["doc"], t["pos"]] for t in targets]),
                          run.path / "gradients", context=config["context"], params=config["params"],
                          projection_dim=config["projection_dim"] or None, batch_size=config["batch_size"],
                          seed=config["seed"])
    extra = {"model_note": getattr(model, "quanta_note", ""), "n_layers": int(model.cfg.n_layers),
             "wall_seconds_this_run": round(time.time() - t0, 1)}
    del model
    return analyse(run.path, extra=extra)


def find_targets(model, corpus, config: dict, out: Path) -> list[dict]:
    """Scan random spans until `n_tokens` low-loss tokens are found; cached in `out/targets.json`."""
    from .. import lm
    from .discovery import induction_mask, select_tokens

    path = out / "targets.json"
    if path.exists():
        return read_json(path)
    ctx, docs = config["context"], corpus.documents()
    scan_ctx = min(4 * ctx, int(model.cfg.n_ctx))
    span = 8 * ctx
    losses = [np.full(len(d), np.nan, dtype=np.float32) for d in docs]
    rng = np.random.default_rng(config["seed"])
    spans = [(d, s) for d, doc in enumerate(docs) for s in range(0, len(doc) - span, span)]
    spans = [spans[i] for i in rng.permutation(len(spans))][: max(config["scan_tokens"] // span, 1)]
    masks: dict[int, np.ndarray] = {}  # induction masks, one per document, computed when first scanned
    n_found = 0
    bar = progress(total=config["n_tokens"], desc="scanning for low-loss tokens", unit="tok")
    for b in range(0, len(spans), 4):
        chunk = spans[b: b + 4]
        nll = lm.token_losses(model, [docs[d][s: s + span] for d, s in chunk], context=scan_ctx,
                              stride=max(scan_ctx - ctx, 1), batch_size=config["batch_size"], progress=False)
        for i, (d, s) in enumerate(chunk):
            losses[d][s + ctx: s + span] = nll[i, ctx:span]  # positions with ≥ ctx tokens of context
            keep = nll[i, ctx:span] < config["loss_threshold"]
            if not config["keep_induction"]:
                if d not in masks:
                    masks[d] = induction_mask(docs[d])
                keep &= ~masks[d][s + ctx: s + span]
            n_found += int(keep.sum())  # spans never overlap, so the running count is exact
        bar.update(min(n_found, config["n_tokens"]) - bar.n)
        if n_found >= config["n_tokens"]:
            break
    bar.close()
    scanned = int(sum(np.isfinite(x).sum() for x in losses))
    if n_found == 0:
        raise ValueError(f"--loss-threshold {config['loss_threshold']} keeps no token of the {scanned} scanned; "
                         "raise it or raise --scan-tokens")
    found = select_tokens(losses, docs, threshold=config["loss_threshold"], min_pos=ctx,
                          exclude_induction=not config["keep_induction"], max_tokens=config["n_tokens"],
                          seed=config["seed"])
    tok = corpus.tokenizer
    records = [{"doc": int(d), "pos": int(p), "doc_name": corpus.doc_names[d],
                "context": corpus.text(d, p - ctx, p), "target": tok.token_str(int(docs[d][p])),
                "tokens": [tok.token_str(int(t)) for t in docs[d][p - ctx: p + 1]],
                "scan_loss": float(losses[d][p])} for d, p in found]
    atomic_write_json(out / "scan.json", {"n_scanned": scanned, "n_candidates": n_found, "spans": len(spans)})
    atomic_write_json(path, records)
    return records


def analyse(out: str | Path, *, extra: dict | None = None) -> dict:
    """Cluster the stored gradients and write every output; needs no model."""
    from ..capture import GradientStore
    from .browser import write_browser
    from .discovery import QuantaClustering, umap_embedding
    from .frequencies import (
        alpha_n_from_artifacts,
        envelope,
        plot_rank_frequency,
        plot_umap,
        rank_frequency_fit,
        rank_sizes,
        write_rank_frequency,
    )

    out = Path(out)
    config, targets, store = read_json(out / "config.json"), read_json(out / "targets.json"), GradientStore(out / "gradients")
    rows = np.flatnonzero(store.ok & (store.losses < config["loss_threshold"]))
    G = np.asarray(store.gradients[rows])
    k = config["clusters"]
    if k > len(rows):
        raise ValueError(f"--clusters {k} is more than the {len(rows)} tokens with gradients; lower --clusters "
                         "or raise --n-tokens")
    qc = QuantaClustering(k, method=config["method"], random_state=config["seed"]).fit(G)
    ks = sorted({int(x) for x in np.unique(np.geomspace(2, k, 8).round())} | {k})
    sizes_by_k = {j: rank_sizes(qc.labels_ if j == k else qc.labels_for(j)) for j in ks}
    alpha_n = config["alpha_n"] if config["alpha_n"] is not None else alpha_n_from_artifacts()
    fit = rank_frequency_fit(envelope(list(sizes_by_k.values())), total=len(rows), alpha_n=alpha_n, seed=config["seed"])
    write_rank_frequency(out, sizes_by_k, fit)
    plot_rank_frequency(out / "rank_frequency", sizes_by_k, fit, title=f"QDG quanta: {config['model']}")
    plot_umap(out / "umap", umap_embedding(G, random_state=config["seed"]), qc.labels_)

    order = np.argsort(-np.bincount(qc.labels_, minlength=k), kind="stable")
    clusters = []
    for rank, c in enumerate(order):
        members = sorted((int(rows[i]) for i in np.flatnonzero(qc.labels_ == c)), key=lambda r: store.losses[r])
        recs = [{**{f: targets[r][f] for f in ("doc", "pos", "doc_name", "context", "target")},
                 "loss": float(store.losses[r]), "tokens": targets[r]["tokens"]} for r in members]
        top = Counter(r["target"] for r in recs).most_common(10)
        clusters.append({"rank": rank + 1, "label": int(c), "size": len(recs), "top_targets": top, "members": recs})
    atomic_write_json(out / "clusters.json", [{**c, "members": [{f: v for f, v in m.items() if f != "tokens"}
                                                                  for m in c["members"]]} for c in clusters])
    scan = read_json(out / "scan.json")
    summary = {
        "model": config["model"], "corpus": config["corpus"], **(extra or {}),
        "settings": {**config, "context_window": config["context"], "gradient_dim": store.meta["dim"],
                     "n_weight_matrices": len(store.meta["layers"])},
        "n_scanned": scan["n_scanned"], "n_tokens": int(len(rows)),
        "n_nan_gradients": int((store.status == -1).sum()),
        "n_above_threshold_on_recheck": int((store.ok & (store.losses >= config["loss_threshold"])).sum()),
        "clusters": [{"rank": c["rank"], "label": c["label"], "size": c["size"], "top_targets": c["top_targets"][:5]}
                     for c in clusters],
        "rank_frequency": fit, "envelope_ks": ks,
    }
    atomic_write_json(out / "summary.json", summary)
    write_browser(out / "browser.html", [{**c, "examples": c["members"]} for c in clusters],
                  title=f"Quanta of {config['model']} on {config['corpus']}",
                  subtitle=f"{len(rows)} tokens with loss < {config['loss_threshold']} nats, {k} clusters of "
                           f"per-token gradients (context {config['context']} tokens). {summary.get('model_note', '')}",
                  n_tokens=len(rows))
    return summary
