"""`quanta bench qdg`: the QDG engine against its floors, measured side by side in one process.

- capture vs floor: per-token gradients with the default sketch vs the same batches' forward + backward
  with nothing captured (activation gradients only) — `capture_over_forward_backward`, target ≤ 1.3;
- scan vs forward: the block scan vs a plain inference forward over the same blocks — `scan_over_forward`
  (throughput ratio), target ≥ 0.8;
- projection error: cosines of sketched vs exact gradients (exact Gram summed block by block);
- the paper's procedure (one forward+backward per token, full weight `.grad` flattened) at the *same*
  context as ours, and on its whole `doc_len`-token document: two ratios, because they are two questions;
- the paper's context (`doc_costs`): shared-prefix capture of the targets of one long window vs its floor
  (one forward of the window + one activation backward per target over its prefix) —
  `doc_capture_over_floor`, target ≤ 1.3 — and vs the paper's procedure at the same contexts —
  `doc_speedup_vs_paper`, target ≥ 3;
- spectral clustering: kNN vs dense at 10k points, kNN at 100k (skipped with --quick).

The gradient-side rows (capture, the paper's procedure and context, projection error) live in
`bench.qdg_gradients`; this module holds the scan and clustering rows and `run`, which measures them all.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

from .qdg_gradients import (
    DocCosts,
    GradientCosts,
    ProjectionError,
    doc_costs,
    gradient_costs,
    projection_error,
)
from .results import BenchResult, optional
from .timing import median_times, sync

__all__ = ["run", "gradient_costs", "doc_costs", "scan_costs", "projection_error", "clustering_costs", "QDGBench",
           "GradientCosts", "DocCosts", "ScanCosts", "ProjectionError", "ClusteringCosts", "MethodCost"]


@dataclass(frozen=True)
class ScanCosts(BenchResult):
    """`scan_costs`: the scan's throughput against a plain forward's (tokens/s) and the blocks timed."""

    scan_over_forward: float
    target_scan_over_forward: float
    scan_tokens_per_second: float
    forward_tokens_per_second: float
    scored_tokens_per_second: float
    tokens: int
    block: int
    blocks: int
    batch_tokens: int
    pass_rate: float


@dataclass(frozen=True)
class MethodCost(BenchResult):
    """One clustering method: seconds, peak_gb (tracemalloc peak) and ari_vs_truth."""

    seconds: float
    peak_gb: float
    ari_vs_truth: float


@dataclass(frozen=True)
class ClusteringCosts(BenchResult):
    """`clustering_costs`: the points' sizes, kNN's `MethodCost` and, when dense ran, its cost, knn_speedup (dense /
    knn seconds) and ari_knn_vs_dense."""

    n: int
    n_clusters: int
    dim: int
    knn: MethodCost
    dense: MethodCost | None = optional()
    knn_speedup: float | None = optional()
    ari_knn_vs_dense: float | None = optional()


@dataclass(frozen=True)
class QDGBench(BenchResult):
    """`run`: the headline ratios, then every measurement whole (see `run`)."""

    device: str
    note: str
    capture_over_forward_backward: float
    scan_over_forward: float
    cosine_mae: float
    capture_tokens_per_second: float
    scan_tokens_per_second: float
    speedup_vs_paper_same_context: float
    speedup_vs_paper_full_document: float
    doc_capture_over_floor: float
    doc_speedup_vs_paper: float
    per_token_gradients: GradientCosts
    doc_context: DocCosts
    scan: ScanCosts
    projection: ProjectionError
    clustering_10k: ClusteringCosts
    clustering_100k_knn: ClusteringCosts | None = optional()
    targets: dict | None = optional()


def scan_costs(model, docs, *, block: int, n_blocks: int, batch_tokens: int, seed: int, folder,
               device: str = "cpu") -> ScanCosts:
    """Throughput of the block scan vs a plain inference forward over the same blocks.

    Parameters
    ----------
    block : int
        Tokens per scanned block.
    n_blocks : int
        Random blocks of `docs` timed.
    batch_tokens : int
        Tokens per forward batch, for both sides.
    folder : str or PathLike
        Scratch folder for the scan's output.

    Returns
    -------
    ScanCosts
        "scan_over_forward" (forward time / scan time; target "target_scan_over_forward" ≥ 0.8),
        "scan_tokens_per_second", "forward_tokens_per_second", "scored_tokens_per_second", "tokens",
        "block", "blocks", "batch_tokens" and "pass_rate" (share of scored tokens kept: below 0.1 nats and
        not induction-predictable).
    """
    import torch

    from ..quanta.scan import blocks, scan_low_loss

    table = blocks([len(d) for d in docs], block, 8)
    chosen = table[np.random.default_rng(seed).permutation(len(table))[:n_blocks]]
    sub = [np.asarray(docs[d][s: last + 1]) for d, s, last in chosen]  # the same blocks, as their own documents
    per = max(1, batch_tokens // block)

    def forward():
        with torch.inference_mode():
            for b in range(0, len(sub), per):
                width = max(len(x) for x in sub[b: b + per]) - 1
                x = np.zeros((len(sub[b: b + per]), width), np.int64)
                for i, s in enumerate(sub[b: b + per]):
                    x[i, : len(s) - 1] = s[:-1]
                model(torch.from_numpy(x).to(device))
        sync(device)

    runs = iter(range(10**6))

    def scan():
        out = scan_low_loss(model, sub, f"{folder}/scan{next(runs)}", n_needed=10**9, block=block, min_context=8,
                            loss_threshold=0.1, seed=seed, batch_tokens=batch_tokens, show_progress=False)
        sync(device)
        return out

    t_scan, t_fwd = median_times(scan, forward)
    tokens = sum(len(s) - 1 for s in sub)
    found = scan()
    return ScanCosts(scan_over_forward=t_fwd / t_scan, target_scan_over_forward=0.8,
                     scan_tokens_per_second=tokens / t_scan, forward_tokens_per_second=tokens / t_fwd,
                     scored_tokens_per_second=found.tokens_scored / t_scan, tokens=tokens, block=block,
                     blocks=len(sub), batch_tokens=batch_tokens, pass_rate=len(found.losses) / found.tokens_scored)


def clustering_costs(n: int, *, n_clusters: int, dim: int, seed: int, dense: bool = True) -> ClusteringCosts:
    """Time and peak traced memory of kNN (and dense) spectral clustering on clustered unit vectors.

    `QuantaClustering` with method "knn" and, when `dense`, "dense", on n points of `n_clusters` noisy
    Gaussian centres in `dim` dimensions, normalised to unit length (float32).

    Returns
    -------
    ClusteringCosts
        "n", "n_clusters", "dim"; per method ("knn", "dense"): "seconds", "peak_gb" (tracemalloc peak) and
        "ari_vs_truth"; with `dense`, "knn_speedup" (dense / knn seconds) and "ari_knn_vs_dense".
    """
    from sklearn.metrics import adjusted_rand_score

    from ..quanta.clustering import QuantaClustering

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    truth = rng.integers(0, n_clusters, n)
    X = centres[truth] + 0.8 * rng.normal(size=(n, dim))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    costs, labels = {}, {}
    for method in ("knn", "dense") if dense else ("knn",):
        tracemalloc.start()
        t = time.perf_counter()
        qc = QuantaClustering(n_clusters, method=method, random_state=seed).fit(X)
        secs = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        costs[method] = MethodCost(seconds=secs, peak_gb=peak / 1e9, ari_vs_truth=adjusted_rand_score(truth, qc.labels_))
        labels[method] = qc.labels_
    if not dense:
        return ClusteringCosts(n=n, n_clusters=n_clusters, dim=dim, knn=costs["knn"])
    return ClusteringCosts(n=n, n_clusters=n_clusters, dim=dim, knn=costs["knn"], dense=costs["dense"],
                           knn_speedup=costs["dense"].seconds / costs["knn"].seconds,
                           ari_knn_vs_dense=adjusted_rand_score(labels["dense"], labels["knn"]))


def run(args: argparse.Namespace) -> QDGBench:
    """Every QDG measurement of this module on SmolLM2 and Shakespeare, on `args.device`.

    128 windows per capture batch on CUDA, 16 on the CPU; `args.quick` shortens the paper's documents,
    the scan, the projection check (12 tokens, not 24) and clusters 2000 points instead of 10k.

    Returns
    -------
    QDGBench
        "device", "note"; the headline ratios "capture_over_forward_backward", "scan_over_forward",
        "cosine_mae", "capture_tokens_per_second", "scan_tokens_per_second",
        "speedup_vs_paper_same_context", "speedup_vs_paper_full_document", "doc_capture_over_floor",
        "doc_speedup_vs_paper"; the full dicts "per_token_gradients" (`gradient_costs`), "doc_context"
        (`doc_costs`: 512-token window, 24 targets; --quick 256 and 8), "scan" (`scan_costs`), "projection" (`projection_error`),
        "clustering_10k" (`clustering_costs`); without `--quick` also "clustering_100k_knn" and "targets"
        (knn_10k_speedup ≥ 5, knn_10k_ari_vs_dense ≥ 0.9, knn_100k_seconds ≤ 600).

    Raises
    ------
    ParameterError
        `args.device` is not a torch device usable here (e.g. CUDA not available).
    """
    import tempfile

    import torch

    from .. import lm
    from ..config import check_device
    from ..corpora import load_corpus

    quick = bool(getattr(args, "quick", False))
    device = getattr(args, "device", "cpu")
    check_device(device)
    loaded = lm.load("smollm2", device=device)
    model = loaded.bridge
    docs = load_corpus("shakespeare", tokenizer=loaded.tokenizer).documents()
    big = torch.device(device).type == "cuda"
    with torch.random.fork_rng(), tempfile.TemporaryDirectory() as tmp:
        grads = gradient_costs(model, docs, n=128 if big else 16, context=64, doc_len=256 if quick else 512,
                               n_paper=2 if quick else 4, seed=args.seed, device=device)
        scan = scan_costs(model, docs, block=64, n_blocks=32 if quick else 96, batch_tokens=8192 if big else 1024,
                          seed=args.seed, folder=tmp, device=device)
        proj = projection_error(model, docs, n=12 if quick else 24, context=64, seed=args.seed)
        doc = doc_costs(model, docs, context=256 if quick else 512, n_targets=8 if quick else 24,
                        n_paper=2 if quick else 3, seed=args.seed, device=device)
    del model, loaded
    clustering_10k = clustering_costs(2000 if quick else 10000, n_clusters=50 if quick else 100, dim=64, seed=args.seed)
    quick_only = {} if quick else {
        "clustering_100k_knn": clustering_costs(100000, n_clusters=100, dim=64, seed=args.seed, dense=False),
        "targets": {"knn_10k_speedup": 5.0, "knn_10k_ari_vs_dense": 0.9, "knn_100k_seconds": 600}}
    return QDGBench(
        device=device, note="ratios are measured side by side in this one process; seconds depend on the load",
        capture_over_forward_backward=grads.capture_over_forward_backward,
        scan_over_forward=scan.scan_over_forward, cosine_mae=proj.cosine_mae,
        capture_tokens_per_second=grads.capture_tokens_per_second,
        scan_tokens_per_second=scan.scan_tokens_per_second,
        speedup_vs_paper_same_context=grads.speedup_vs_paper_same_context,
        speedup_vs_paper_full_document=grads.speedup_vs_paper_full_document,
        doc_capture_over_floor=doc.doc_capture_over_floor, doc_speedup_vs_paper=doc.doc_speedup_vs_paper,
        per_token_gradients=grads, doc_context=doc, scan=scan, projection=proj,
        clustering_10k=clustering_10k, **quick_only,
    )
