"""`quanta bench qdg`'s gradient side: per-token capture vs its forward+backward floor and vs the paper's
procedure (`gradient_costs`), the paper's context with shared prefixes (`doc_costs`), and the sketch's cosine
error against exact gradients (`projection_error`). `bench.qdg` runs them with the scan and clustering rows."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .results import BenchResult
from .timing import median_times, sync

__all__ = ["gradient_costs", "doc_costs", "doc_rows", "projection_error", "GradientCosts", "DocCosts",
           "ProjectionError"]


@dataclass(frozen=True)
class GradientCosts(BenchResult):
    """`gradient_costs`: ratios and tokens/s; seconds_per_token {capture, floor_forward_backward, forward,
    paper_same_context, paper_full_document}; the batch's sizes and the vector lengths."""

    capture_over_forward_backward: float
    target_capture_over_forward_backward: float
    capture_tokens_per_second: float
    floor_tokens_per_second: float
    speedup_vs_paper_same_context: float
    speedup_vs_paper_full_document: float
    seconds_per_token: dict
    n_windows: int
    context: int
    paper_doc_len: int
    projection_dim: int
    matrix_sketch_dim: int
    gradient_dim_full: int


@dataclass(frozen=True)
class DocCosts(BenchResult):
    """`doc_costs`: ratios against the floor and the paper; seconds_per_target {capture, floor,
    paper_same_prefix, paper_whole_window}; runs_seconds (ours, floor) per run; the window's sizes."""

    doc_capture_over_floor: float
    target_doc_capture_over_floor: float
    doc_speedup_vs_paper: float
    target_doc_speedup_vs_paper: float
    doc_speedup_vs_paper_whole_window: float
    floor_speedup_vs_paper: float
    seconds_per_target: dict
    runs_seconds: list
    context: int
    n_targets: int
    mean_target_context: float
    n_paper: int
    forward_groups: int


@dataclass(frozen=True)
class ProjectionError(BenchResult):
    """`projection_error`: |cos_sketched − cos_exact| over all pairs, against the exact cosines' scale."""

    cosine_mae: float
    cosine_max_error: float
    target_cosine_mae: float
    n_pairs: int
    mean_abs_exact_cosine: float
    projection_dim: int
    matrix_sketch_dim: int
    context: int


def _windows(docs, n: int, context: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    long = [d for d in range(len(docs)) if len(docs[d]) > 2 * context + 2]
    rows = []
    for d in rng.choice(long, n):
        p = int(rng.integers(context, len(docs[d]) - 1))
        rows.append((d, p - context, p))
    return np.array(rows)


def _default_capture(model, seed: int):
    """(every linear layer but the unembedding, the default TensorSketch capture over them): what the rows time."""
    from ..capture import DEFAULT_MATRIX_DIM, DEFAULT_PROJECTION_DIM, GradientCapture, select_modules

    modules = select_modules(model, "all")
    return modules, GradientCapture.for_model(modules, DEFAULT_PROJECTION_DIM, matrix_dim=DEFAULT_MATRIX_DIM, seed=seed)


def _paper_grad(model, modules, tokens, target, at: int) -> np.ndarray:
    """The paper's per-token gradient: forward+backward of the whole sequence, the loss of the token
    predicted at position `at`, every chosen weight's `.grad` flattened (what it stored per token)."""
    import torch

    model.zero_grad(set_to_none=True)
    logits = model(tokens[None].to(next(model.parameters()).device))[0, at]
    torch.nn.functional.cross_entropy(logits[None].float(), target[None].to(logits.device)).backward()
    return torch.cat([m.weight.grad.flatten() for m in modules.values()]).cpu().numpy()


def gradient_costs(model, docs, *, n: int, context: int, doc_len: int, n_paper: int, seed: int,
                   device: str = "cpu") -> GradientCosts:
    """Seconds per token: our capture, the floor, the paper's procedure at our context and on whole documents.

    Ours: `per_token_gradients` with the default TensorSketch (k = 8192, m = 512) over all linear layers,
    B = n windows per backward. Floor: `forward_backward_floor` on the same batch. The paper's procedure
    (Michaud et al. 2023): one forward + backward per token, every weight's `.grad` flattened, at our
    context and with the target in the middle of a `doc_len`-token document.

    Parameters
    ----------
    model : TransformerBridge
        On `device`.
    docs : sequence of int ndarray (T_d,)
        Token ids; windows come from documents longer than 2·context + 2 tokens.
    n : int
        Windows in our batch.
    context : int
        Tokens per window.
    doc_len : int
        Length of the whole document the paper's procedure runs per token.
    n_paper : int
        Tokens timed for each paper variant (it is slow).

    Returns
    -------
    GradientCosts
        "capture_over_forward_backward" (target "target_capture_over_forward_backward" ≤ 1.3),
        "capture_tokens_per_second", "floor_tokens_per_second", "speedup_vs_paper_same_context",
        "speedup_vs_paper_full_document", "seconds_per_token" (capture, floor_forward_backward, forward,
        paper_same_context, paper_full_document), "n_windows", "context", "paper_doc_len", "projection_dim",
        "matrix_sketch_dim" and "gradient_dim_full" (weights only, the paper's vector length).
    """
    import torch

    from ..capture import forward_backward_floor, grads_only_for, per_token_gradients, window_batch

    modules, cap = _default_capture(model, seed)
    batch = window_batch(docs, _windows(docs, n, context, seed))

    def ours():
        per_token_gradients(model, cap, *batch)
        sync(device)

    def floor():
        forward_backward_floor(model, *batch)
        sync(device)

    def forward():
        with torch.inference_mode():
            model(batch[0].to(device))
        sync(device)

    t_ours, t_floor, t_fwd = median_times(ours, floor, forward)
    windows, _, ys = batch
    with grads_only_for(model, [m.weight for m in modules.values()]):
        t_same = median_times(lambda: [_paper_grad(model, modules, windows[i], ys[i], -1) for i in range(n_paper)], repeats=1)
        half = doc_len // 2  # a doc_len-token document with the target in its middle, run whole for each token
        rows = _windows(docs, n_paper, doc_len, seed + 1)[:, [0, 2]] - [0, half]
        full = [torch.from_numpy(np.asarray(docs[d][p - half: p + half], dtype=np.int64)) for d, p in rows]
        targets = [torch.tensor(int(docs[d][p])) for d, p in rows]
        t_doc = median_times(lambda: [_paper_grad(model, modules, full[i], targets[i], half - 1)
                                      for i in range(n_paper)], repeats=1)
    per = {"capture": t_ours / n, "floor_forward_backward": t_floor / n, "forward": t_fwd / n,
           "paper_same_context": t_same / n_paper, "paper_full_document": t_doc / n_paper}
    return GradientCosts(
        capture_over_forward_backward=t_ours / t_floor, target_capture_over_forward_backward=1.3,
        capture_tokens_per_second=n / t_ours, floor_tokens_per_second=n / t_floor,
        speedup_vs_paper_same_context=per["paper_same_context"] / per["capture"],
        speedup_vs_paper_full_document=per["paper_full_document"] / per["capture"],
        seconds_per_token=per, n_windows=n, context=context, paper_doc_len=doc_len,
        projection_dim=cap.dim, matrix_sketch_dim=cap.sketch.m,
        gradient_dim_full=int(sum(m.weight.numel() for m in modules.values())),
    )


def _doc_floor(model, docs, rows: np.ndarray, device: str) -> float:
    """Seconds of one forward of the targets' shared window plus, per target, one activation backward
    over its own prefix (its forward untimed): what the shared-prefix engine cannot go below."""
    import torch

    from ..capture import activation_grads_only, window_batch
    from ..capture.windows import logits_at

    windows, lengths, ys = window_batch(docs, rows)
    top = int(lengths.argmax())
    with activation_grads_only(model), torch.enable_grad():
        t = time.perf_counter()
        logits_at(model, windows[top: top + 1], lengths[None] - 1)
        sync(device)
        total = time.perf_counter() - t
        for i in range(len(rows)):
            loss = torch.nn.functional.cross_entropy(
                logits_at(model, windows[i: i + 1, : int(lengths[i])], lengths[i: i + 1, None] - 1)[0].float(),
                ys[i: i + 1].to(device))
            t = time.perf_counter()
            loss.backward()
            sync(device)
            total += time.perf_counter() - t
    return total


def doc_rows(docs, *, context: int, n_targets: int, seed: int) -> np.ndarray:
    """(doc, start, pos) rows of `n_targets` targets in one window of `context` tokens of a random document,
    each keeping between context/2 and context tokens (`capture.doc.doc_windows`' rule), sorted by pos.

    Raises
    ------
    ValueError
        No document is longer than `context` tokens, or `n_targets` > context/2.
    """
    rng = np.random.default_rng(seed)
    long = [d for d in range(len(docs)) if len(docs[d]) > context + 1]
    if not long or n_targets > context // 2:
        raise ValueError(f"doc_rows: need a document longer than {context} tokens and ≤ {context // 2} targets")
    d = int(rng.choice(long))
    s = int(rng.integers(0, len(docs[d]) - context))
    pos = np.sort(rng.choice(np.arange(s + context // 2, s + context), n_targets, replace=False))
    return np.stack([np.full(n_targets, d), np.full(n_targets, s), pos], 1)


def doc_costs(model, docs, *, context: int, n_targets: int, n_paper: int, seed: int,
              device: str = "cpu") -> DocCosts:
    """Seconds per target at the paper's kind of context: shared-prefix capture, its floor, the paper's procedure.

    One window of `context` tokens holds `n_targets` targets with context/2 … context tokens each (`doc_rows`).
    Ours: `shared_prefix_gradients` with the default TensorSketch over all linear layers. Floor (`_doc_floor`):
    one forward of the window + one activation backward per target over its prefix. The paper's procedure:
    one forward + backward per target, weight `.grad` flattened, on the target's own context `doc[start:pos]`
    (the headline ratio) and on the whole window (what the paper ran: the document, for every token), timed
    on `n_paper` targets spread over the window. Ours and the floor run twice, alternating; medians count.
    Measured (SmolLM2, 512 tokens, one thread of a loaded 2-core CPU, two runs) the floor itself was only
    2.3× and 3.0× faster than the paper on the same prefix: the ≥ 3 target sits at the floor there.

    Returns
    -------
    DocCosts
        "doc_capture_over_floor" (target "target_doc_capture_over_floor" ≤ 1.3), "doc_speedup_vs_paper"
        (same prefix; target "target_doc_speedup_vs_paper" ≥ 3), "doc_speedup_vs_paper_whole_window",
        "floor_speedup_vs_paper", "seconds_per_target" (capture, floor, paper_same_prefix, paper_whole_window),
        "context", "n_targets", "mean_target_context", "n_paper", "forward_groups" (forwards ours ran).
    """
    import torch

    from ..capture import grads_only_for
    from ..capture.doc import forward_groups, shared_prefix_gradients

    modules, cap = _default_capture(model, seed)
    rows = doc_rows(docs, context=context, n_targets=n_targets, seed=seed)
    shared_prefix_gradients(model, cap, docs, rows[:2] - [0, 0, context // 4])  # warm-up, short prefixes

    def ours():
        t = time.perf_counter()
        shared_prefix_gradients(model, cap, docs, rows)
        sync(device)
        return time.perf_counter() - t

    runs = [(ours(), _doc_floor(model, docs, rows, device)) for _ in range(2)]
    t_ours, t_floor = (float(np.median(x)) for x in zip(*runs, strict=True))
    chosen = rows[np.linspace(0, n_targets - 1, n_paper).round().astype(int)]

    def paper(whole: bool) -> float:
        t = time.perf_counter()
        for d, s, p in chosen:
            tokens = np.asarray(docs[d][s: s + context] if whole else docs[d][s:p], dtype=np.int64)
            _paper_grad(model, modules, torch.from_numpy(tokens), torch.tensor(int(docs[d][p])), p - s - 1)
        sync(device)
        return (time.perf_counter() - t) / n_paper

    with grads_only_for(model, [m.weight for m in modules.values()]):
        t_prefix, t_window = paper(False), paper(True)
    model.zero_grad(set_to_none=True)
    per = {"capture": t_ours / n_targets, "floor": t_floor / n_targets, "paper_same_prefix": t_prefix,
           "paper_whole_window": t_window}
    return DocCosts(doc_capture_over_floor=t_ours / t_floor, target_doc_capture_over_floor=1.3,
                    doc_speedup_vs_paper=t_prefix / per["capture"], target_doc_speedup_vs_paper=3.0,
                    doc_speedup_vs_paper_whole_window=t_window / per["capture"],
                    floor_speedup_vs_paper=t_prefix / per["floor"], seconds_per_target=per, runs_seconds=runs,
                    context=context, n_targets=n_targets, mean_target_context=float((rows[:, 2] - rows[:, 1]).mean()),
                    n_paper=n_paper, forward_groups=len(forward_groups(rows[:, 2] - rows[:, 1])))


def projection_error(model, docs, *, n: int, context: int, seed: int) -> ProjectionError:
    """Mean |cos_sketched − cos_exact| over all pairs of n tokens at the default k and m. Exact inner products
    are summed one transformer block at a time, so the full gradients never sit in memory together.

    Returns
    -------
    ProjectionError
        "cosine_mae" (target "target_cosine_mae" ≤ 0.02), "cosine_max_error", "n_pairs",
        "mean_abs_exact_cosine" (the scale the error is read against), "projection_dim",
        "matrix_sketch_dim", "context".

    Raises
    ------
    RuntimeError
        A weight matrix lies outside the transformer blocks (`blocks.N.`), so the block sum would miss it.
    """
    from ..capture import (
        DEFAULT_MATRIX_DIM,
        DEFAULT_PROJECTION_DIM,
        GradientCapture,
        per_token_gradients,
        select_modules,
        window_batch,
    )
    from ..io import progress

    batch = window_batch(docs, _windows(docs, n, context, seed + 2))
    modules, cap = _default_capture(model, seed)
    blocks = [select_modules(model, f"layers {i}") for i in range(model.cfg.n_layers)]
    if sum(len(b) for b in blocks) != len(modules):
        raise RuntimeError("a weight matrix lies outside the transformer blocks")
    exact = sum(((v := per_token_gradients(model, GradientCapture(b), *batch)[0].double()) @ v.T).numpy()
                for b in progress(blocks, desc="exact gradients, block by block", leave=False))
    proj = per_token_gradients(model, cap, *batch)[0].double().numpy()

    def cosines(gram):
        norm = np.sqrt(np.diag(gram))
        return (gram / norm[:, None] / norm[None])[np.triu_indices(n, 1)]

    exact_cos, proj_cos = cosines(exact), cosines(proj @ proj.T)
    err = np.abs(proj_cos - exact_cos)
    return ProjectionError(cosine_mae=float(err.mean()), cosine_max_error=float(err.max()), target_cosine_mae=0.02,
                           n_pairs=int(err.size), mean_abs_exact_cosine=float(np.abs(exact_cos).mean()),
                           projection_dim=DEFAULT_PROJECTION_DIM, matrix_sketch_dim=DEFAULT_MATRIX_DIM, context=context)
