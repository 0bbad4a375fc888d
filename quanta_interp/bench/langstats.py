"""`quanta bench langstats`: sparse top singular value of C(n) vs dense `numpy.linalg.svd`, same counts.

Counts are Shakespeare at lag 1 under BPE-8192 (BPE-1024 with --quick); reports the speed ratio, the
relative error of the top singular value and of the analytic Frobenius norm, and pair-counting throughput.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from .results import BenchResult

__all__ = ["run", "LangstatsBench"]


@dataclass(frozen=True)
class LangstatsBench(BenchResult):
    """Sparse vs dense ‖C(1)‖: sizes, seconds (count_s, sparse_s, dense_s), pairs_per_s, the speed-up and the
    relative errors, and the targets (see `run`)."""

    vocab_size: int
    tokenizer: str
    n_tokens: int
    n_pairs: int
    nonzero_pairs: int
    count_s: float
    pairs_per_s: float
    sparse_s: float
    dense_s: float
    speedup_sparse_vs_dense: float
    top_sv_sparse: float
    top_sv_dense: float
    rel_error_top_sv: float
    rel_error_fro: float
    targets: dict


def run(args: argparse.Namespace) -> LangstatsBench:
    """Top singular value ‖C(1)‖_op and Frobenius norm of the Shakespeare lag-1 correlation matrix, sparse
    (`Correlation.op_norm`, `fro_norm`) vs dense (materialise V × V, `numpy.linalg.svd`, `numpy.linalg.norm`).

    Returns
    -------
    LangstatsBench
        Sizes: "vocab_size", "tokenizer", "n_tokens", "n_pairs", "nonzero_pairs". Speeds: "count_s",
        "pairs_per_s" (pair counting), "sparse_s", "dense_s", "speedup_sparse_vs_dense" (dense_s / sparse_s).
        Accuracy: "top_sv_sparse", "top_sv_dense", "rel_error_top_sv", "rel_error_fro". "targets":
        speedup ≥ 20, rel_error_top_sv ≤ 1e-3.
    """
    from ..corpora import load_corpus
    from ..langstats.correlations import Correlation, pair_counts

    vocab = 1024 if args.quick else 8192
    corpus = load_corpus("shakespeare", f"bpe-{vocab}")
    docs = corpus.documents()
    n_tokens = sum(d.size for d in docs)

    t0 = time.perf_counter()
    counts = pair_counts(docs, 1, corpus.vocab_size, seed=args.seed)
    t_count = time.perf_counter() - t0
    corr = Correlation.from_counts(counts)

    t0 = time.perf_counter()
    top_sparse = corr.op_norm(args.seed)
    fro_sparse = corr.fro_norm()
    t_sparse = time.perf_counter() - t0

    t0 = time.perf_counter()
    dense = corr.dense()
    top_dense = float(np.linalg.svd(dense, compute_uv=False)[0])
    fro_dense = float(np.linalg.norm(dense))
    t_dense = time.perf_counter() - t0

    return LangstatsBench(
        vocab_size=corpus.vocab_size, tokenizer=f"bpe-{vocab}", n_tokens=n_tokens, n_pairs=corr.n_pairs,
        nonzero_pairs=int(counts.nnz), count_s=t_count, pairs_per_s=corr.n_pairs / t_count,
        sparse_s=t_sparse, dense_s=t_dense, speedup_sparse_vs_dense=t_dense / t_sparse,
        top_sv_sparse=top_sparse, top_sv_dense=top_dense,
        rel_error_top_sv=abs(top_sparse - top_dense) / top_dense,
        rel_error_fro=abs(fro_sparse - fro_dense) / fro_dense,
        targets={"speedup": ">= 20", "rel_error_top_sv": "<= 1e-3"},
    )
