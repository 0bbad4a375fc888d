"""`quanta bench qdg`: per-token gradients vs the paper's procedure and vs the floor, projected vs exact
cosines, and kNN vs dense spectral clustering, all measured side by side in one process.

- paper: one forward+backward of the whole document (`doc_len` tokens) per target, full `.grad` flattened;
- floor: one forward+backward of the target's `context`-token window, `.grad` of the chosen weights only;
- ours: B windows per backward with per-example projected hooks (`capture.per_token_gradients`).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

__all__ = ["run"]


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _plain_grad(model, modules, tokens, target, at: int = -1) -> np.ndarray:
    """Forward+backward of one whole sequence, loss of the token predicted at position `at` only; the
    flattened weight grads (what the paper stored per token)."""
    import torch

    model.zero_grad(set_to_none=True)
    logits = model(tokens[None])[0, at]
    torch.nn.functional.cross_entropy(logits[None], target[None]).backward()
    return torch.cat([m.weight.grad.flatten() for m in modules.values()]).numpy()


def gradient_costs(model, docs, *, n_ours: int, n_paper: int, n_floor: int, context: int, doc_len: int,
                   projection_dim: int, seed: int) -> dict:
    """Seconds per token for the three procedures on the same model and targets."""
    import torch

    from ..capture import GradientCapture, grads_only_for, per_token_gradients, select_modules, window_batch

    rng = np.random.default_rng(seed)
    long_docs = [d for d in range(len(docs)) if len(docs[d]) > 2 * doc_len + 1]
    targets = np.array([[d, rng.integers(doc_len, len(docs[d]) - doc_len)] for d in rng.choice(long_docs, n_ours)])
    modules = select_modules(model, "all")
    cap = GradientCapture(modules, projection_dim, seed)
    windows, ys = window_batch(docs, targets, context)
    per_token_gradients(model, cap, windows[:2], ys[:2])  # warm-up
    t_ours, _ = _timed(lambda: per_token_gradients(model, cap, windows, ys))
    with grads_only_for(model, [m.weight for m in modules.values()]):  # the floor computes only what QDG needs
        t_floor, _ = _timed(lambda: [_plain_grad(model, modules, windows[i], ys[i]) for i in range(n_floor)])
    half = doc_len // 2  # the target sits mid-document; the paper ran the whole document for every token
    full = [torch.from_numpy(np.asarray(docs[d][p - half: p - half + doc_len], dtype=np.int64)) for d, p in targets]
    t_paper, _ = _timed(lambda: [_plain_grad(model, modules, full[i], ys[i], half - 1) for i in range(n_paper)])
    ours, floor, paper = t_ours / n_ours, t_floor / n_floor, t_paper / n_paper
    return {"seconds_per_token": {"ours": ours, "floor_one_backward": floor, "paper_full_document": paper},
            "speedup_vs_paper": paper / ours, "target_speedup_vs_paper": 10.0,
            "ratio_vs_floor": ours / floor, "target_ratio_vs_floor": 1.3,
            "context": context, "doc_len": doc_len, "batch": n_ours, "projection_dim": projection_dim,
            "gradient_dim_full": int(sum(m.weight.numel() for m in modules.values())), "gradient_dim_ours": cap.dim}


def projection_error(model, docs, *, n: int, context: int, projection_dim: int, seed: int) -> dict:
    """Mean |cos_projected − cos_exact| over all pairs of n tokens. The exact inner products are summed
    one transformer block at a time, so the full gradients of all n tokens never sit in memory together."""
    from ..capture import GradientCapture, per_token_gradients, select_modules, window_batch
    from ..io import progress

    rng = np.random.default_rng(seed + 1)
    targets = np.array([[d, rng.integers(context, len(docs[d]))] for d in rng.integers(0, len(docs), n)])
    windows, ys = window_batch(docs, targets, context)
    blocks = [select_modules(model, f"layers {i}") for i in range(model.cfg.n_layers)]
    assert sum(len(b) for b in blocks) == len(select_modules(model, "all")), "a weight matrix outside the blocks"
    exact = sum(((v := per_token_gradients(model, GradientCapture(b), windows, ys)[0].double()) @ v.T).numpy()
                for b in progress(blocks, desc="exact gradients, block by block"))
    proj = per_token_gradients(model, GradientCapture(select_modules(model, "all"), projection_dim, seed), windows, ys)[0]
    proj = proj.double().numpy()

    def cosines(gram):
        norm = np.sqrt(np.diag(gram))
        return (gram / norm[:, None] / norm[None])[np.triu_indices(n, 1)]

    exact_cos, proj_cos = cosines(exact), cosines(proj @ proj.T)
    err = np.abs(proj_cos - exact_cos)
    return {"cosine_mae": float(err.mean()), "cosine_max_error": float(err.max()), "target_cosine_mae": 0.02,
            "n_pairs": int(err.size), "mean_abs_exact_cosine": float(np.abs(exact_cos).mean()),
            "projection_dim": projection_dim}


def clustering_costs(n: int, *, n_clusters: int, dim: int, seed: int, dense: bool = True) -> dict:
    """Time and peak traced memory of kNN (and dense) spectral clustering on clustered unit vectors."""
    from sklearn.metrics import adjusted_rand_score

    from .discovery import QuantaClustering

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    truth = rng.integers(0, n_clusters, n)
    X = centres[truth] + 0.8 * rng.normal(size=(n, dim))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    out: dict = {"n": n, "n_clusters": n_clusters, "dim": dim}
    for method in ("knn", "dense") if dense else ("knn",):
        tracemalloc.start()
        secs, qc = _timed(lambda m=method: QuantaClustering(n_clusters, method=m, random_state=seed).fit(X))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[method] = {"seconds": secs, "peak_gb": peak / 1e9, "ari_vs_truth": adjusted_rand_score(truth, qc.labels_)}
        out.setdefault("labels", {})[method] = qc.labels_
    if dense:
        out["knn_speedup"] = out["dense"]["seconds"] / out["knn"]["seconds"]
        out["ari_knn_vs_dense"] = adjusted_rand_score(out["labels"]["dense"], out["labels"]["knn"])
    out.pop("labels")
    return out


def run(args: argparse.Namespace) -> dict:
    import torch

    from .. import lm
    from ..capture import DEFAULT_PROJECTION_DIM
    from ..corpora import load_corpus

    quick = bool(getattr(args, "quick", False))
    model = lm.load("smollm2")
    docs = load_corpus("shakespeare", tokenizer=lm.corpus_tokenizer(model)).documents()
    with torch.random.fork_rng():
        grads = gradient_costs(model, docs, n_ours=16, n_paper=2 if quick else 4, n_floor=4 if quick else 8,
                               context=32, doc_len=256 if quick else 512, projection_dim=DEFAULT_PROJECTION_DIM,
                               seed=args.seed)
        proj = projection_error(model, docs, n=8 if quick else 16, context=32, projection_dim=DEFAULT_PROJECTION_DIM,
                                seed=args.seed)
    del model
    return {
        "note": "timings on a shared CPU; only ratios measured in this one process are comparable",
        "per_token_gradients": grads, "projection": proj,
        "clustering_10k": clustering_costs(2000 if quick else 10000, n_clusters=50 if quick else 100, dim=64,
                                           seed=args.seed),
        "clustering_100k_knn": clustering_costs(10000 if quick else 100000, n_clusters=50 if quick else 100, dim=64,
                                                seed=args.seed, dense=False),
        "targets": {"knn_10k_speedup": 5.0, "knn_10k_ari_vs_dense": 0.9, "knn_100k_seconds": 600, "knn_100k_gb": 8},
    }
