"""Does the context change the quanta? The README run's tokens with the paper's context against its 64-token
block prefix (issue 26, point 4).

The README run (`quanta discover`, default settings: SmolLM2 + Shakespeare, targets found by the block scan with
loss < 0.1 nats, each seen through the prefix of its 64-token block, 8–63 tokens) holds each target's gradient at
the block-prefix context. This script takes the first `--tokens` of its rows (the scan's seeded random order),
captures the same targets' gradients at the paper's context — the preceding document, cut by the shared-window
rule of `capture.doc.doc_windows` at C = 1024 (a target keeps its whole document when it lies in its first 1024
tokens, otherwise 512–1023 tokens) — with the same sketch (params, k, m, seed), so the two gradients of one token
are directly comparable, and then compares:

- the same token's gradient: cosine between its block-prefix and paper-context sketches;
- the geometry: correlation of the pairwise cosines of the tokens under the two contexts;
- the quanta: each context clustered with the default analysis (n_clusters scaled to the tokens: 40 for 1000,
  the README run's 25 tokens per quantum) and `--resamples` resamples; the AMI between the two contexts'
  partitions against the resampling baseline (AMI of each context's resamples to its own partition: what a rerun
  with another seed and another draw of frequencies changes);
- each slope with its resampled interval, and the losses at both contexts.

`capture` (loads the model; resumable, the store checksummed; `--step` rows at a time, so a capture stopped early
leaves a uniform prefix of the run's random order) writes under --work; `analyse` (no model) reads both
stores and writes artifacts/qdg/context/context.json and context.png. Without a stage, both run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

CONTEXT = 1024  # the paper's cap on the preceding document


def _rows(run: Path, n: int) -> np.ndarray:
    from quanta_interp.capture import GradientStore

    store = GradientStore(run / "gradients")
    ok = np.flatnonzero(store.ok)[:n]
    if len(ok) < n:
        raise SystemExit(f"{run} holds only {len(ok)} captured rows, fewer than --tokens {n}")
    return np.asarray(store.targets[ok])


def capture(run: Path, work: Path, n: int, step: int, device: str = "cpu") -> None:
    """The paper-context gradients of the run's first n targets, with the run's sketch, into work/paper."""
    from quanta_interp import lm
    from quanta_interp.capture import capture_gradients
    from quanta_interp.capture.doc import doc_windows
    from quanta_interp.capture.store import open_store
    from quanta_interp.corpora import load_corpus
    from quanta_interp.io import read_json

    identity = read_json(run / "identity.json", expect=dict)
    loaded = lm.load(identity["model"], device=device)
    docs = load_corpus(identity.get("corpus_source", identity["corpus"]), tokenizer=loaded.tokenizer).documents()
    rows = doc_windows(_rows(run, n), min(CONTEXT, int(loaded.bridge.cfg.n_ctx)))
    held = open_store(work / "paper")
    have = 0 if held is None else len(held.targets)  # a rerun extends the store from where it stopped
    for m in range(min(step, n), n + step, step):
        if min(m, n) < have:
            continue
        t0 = time.perf_counter()
        capture_gradients(loaded.bridge, docs, rows[: min(m, n)], work / "paper", params=identity["params"],
                          projection_dim=identity["projection_dim"], matrix_sketch_dim=identity["matrix_sketch_dim"],
                          seed=identity["seed"], batch_tokens=CONTEXT, shared_windows=True)
        with open(work / "capture_seconds.txt", "a") as f:
            f.write(f"{min(m, n)} rows: {time.perf_counter() - t0:.1f} s\n")


def _capture_log(work: Path) -> dict:
    """Rows captured and wall seconds of each capture step (capture_seconds.txt), with the seconds per target."""
    steps = []
    path = work / "capture_seconds.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        rows, seconds = line.replace(" rows:", "").replace(" s", "").split()
        steps.append([int(rows), float(seconds)])
    done = steps[-1][0] if steps else 0
    total = sum(s for _, s in steps)
    return {"steps": steps, "rows": done, "wall_seconds": round(total, 1),
            "seconds_per_target": round(total / done, 2) if done else None,
            "machine": "2 CPU cores shared with 4-6 other jobs, one thread: an upper bound"}


def _partition_ami(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import adjusted_mutual_info_score

    return float(adjusted_mutual_info_score(a, b))


def analyse(run: Path, work: Path, n: int, resamples: int, out: Path) -> dict:
    """Cluster both contexts' gradients of the same tokens and write the comparison (see the module docstring)."""
    from quanta_interp.capture import GradientStore
    from quanta_interp.io import atomic_write_json
    from quanta_interp.quanta import QDGConfig
    from quanta_interp.quanta.analysis import cluster_quanta
    from quanta_interp.quanta.clustering import unit_rows

    block_store, paper_store = GradientStore(run / "gradients"), GradientStore(work / "paper")
    done = int(np.argmin(np.append(paper_store.ok, False)))  # the leading rows captured (the capture extends in steps)
    if done < n:
        print(f"{work / 'paper'}: only the first {done} of {n} rows are captured; analysing those")
        n = done
    ok = np.flatnonzero(block_store.ok)[:n]
    same = np.array_equal(paper_store.targets[:n, [0, 2]], block_store.targets[ok][:, [0, 2]])
    assert same, "the paper-context store holds other targets than the run's"
    # the analysis clusters rows in (doc, pos) order, as `analyse` does, so no capture order matters
    order = np.lexsort((paper_store.targets[:n, 2], paper_store.targets[:n, 0]))
    G = {"block": np.asarray(block_store.gradients[ok[order]], np.float32),
         "paper": np.asarray(paper_store.gradients[order], np.float32)}
    losses = {"block": np.asarray(block_store.losses[ok[order]]), "paper": np.asarray(paper_store.losses[order])}
    t = paper_store.targets[order]
    context = {"block": (block_store.targets[ok[order], 2] - block_store.targets[ok[order], 1]),
               "paper": t[:, 2] - t[:, 1]}
    U = {k: unit_rows(v.astype(np.float64)) for k, v in G.items()}
    same_token = np.sum(U["block"] * U["paper"], axis=1)
    iu = np.triu_indices(n, 1)
    pair = {k: (u @ u.T)[iu] for k, u in U.items()}
    config = QDGConfig.build(n_tokens=n, n_clusters=max(2, round(n / 25)), resamples=resamples)
    fits, t0 = {}, time.perf_counter()
    for name, g in G.items():
        q = cluster_quanta(g, config.clustering, counts=config.counts(), fit_ranks=config.ranks(), seed=config.seed,
                           resamples=resamples)
        fits[name] = q
    cross = _partition_ami(fits["block"].labels, fits["paper"].labels)
    # cross-context AMI between resamples too, so both sides of the comparison carry the same seed noise
    cross_resampled = [_partition_ami(a, b) for a, b in zip(fits["block"].stability.partitions,
                                                             fits["paper"].stability.partitions, strict=True)]
    within = {k: [float(x) for x in f.stability.ami] for k, f in fits.items()}
    baseline_min = min(min(v) for v in within.values())
    result = {
        "run": str(run), "n_tokens": n, "n_clusters": config.clustering.n_clusters, "resamples": resamples,
        "contexts": {"block": "each target's 64-token block prefix (the default `--context 64`; 8–63 tokens)",
                     "paper": f"the preceding document, shared windows of C = {CONTEXT} (`doc_windows`): the whole "
                              f"document before a target in its first {CONTEXT} tokens, else {CONTEXT // 2}–"
                              f"{CONTEXT - 1} tokens"},
        "context_tokens": {k: {"median": float(np.median(v)), "min": int(v.min()), "max": int(v.max())}
                           for k, v in context.items()},
        "loss_nats": {k: {"mean": float(v.mean()), "median": float(np.median(v)),
                          "share_below_0.1": float((v < 0.1).mean())} for k, v in losses.items()},
        "same_token_cosine": {"median": float(np.median(same_token)),
                              "quartiles": [float(x) for x in np.quantile(same_token, [0.25, 0.75])],
                              "min": float(same_token.min()), "mean": float(same_token.mean())},
        "pairwise_cosine_correlation": float(np.corrcoef(pair["block"], pair["paper"])[0, 1]),
        "ami_between_contexts": cross,
        "ami_between_contexts_resampled": {"mean": float(np.mean(cross_resampled)),
                                           "min": float(np.min(cross_resampled)),
                                           "max": float(np.max(cross_resampled))},
        "ami_within_context": {k: {"mean": float(np.mean(v)), "min": float(np.min(v))} for k, v in within.items()},
        "context_moves_quanta_more_than_resampling": bool(cross < baseline_min),
        "fits": {k: {"slope": f.fit.slope, "slope_interval": f.fit.slope_interval,
                     "slope_ci_rank_bootstrap": f.fit.slope_ci, "n_quanta": int(len(np.unique(f.labels))),
                     "stability": f.stability.to_dict()} for k, f in fits.items()},
        "analysis_seconds": round(time.perf_counter() - t0, 1),
        "capture_log": _capture_log(work),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "context.json", result)
    _figure(same_token, fits, within, cross, cross_resampled, out / "context")
    return result


def _figure(same_token, fits, within, cross, cross_resampled, stem: Path) -> None:
    from quanta_interp.report import new_figure, save_figure

    fig, ax = new_figure(3, 1, size=(4.2, 3.4))
    a = ax[0, 0]
    a.hist(same_token, bins=40, color="C0")
    a.set(xlabel="cosine, same token: block prefix vs paper context", ylabel="tokens",
          title=f"median {np.median(same_token):.2f}")
    a = ax[0, 1]
    for i, (k, v) in enumerate(within.items()):
        a.scatter(np.full(len(v), i), v, color=f"C{i}", s=12, label=f"{k}: resamples vs own partition")
    a.scatter(np.full(len(cross_resampled), 2), cross_resampled, color="C3", s=12, label="block vs paper (resamples)")
    a.scatter([2], [cross], color="k", marker="x", s=40, label="block vs paper")
    a.set(xticks=[0, 1, 2], xticklabels=["block", "paper", "between"], ylabel="AMI", ylim=(0, 1),
          title="partition agreement")
    a.legend(fontsize=6, loc="lower left")
    from quanta_interp.quanta.frequencies import envelope

    a = ax[0, 2]
    for i, (k, f) in enumerate(fits.items()):
        env = np.asarray(envelope(list(f.sizes_by_k.values())))
        a.loglog(np.arange(1, len(env) + 1), env, color=f"C{i}",
                 label=f"{k}: {f.fit.slope:.2f} [{f.fit.slope_interval[0]:.2f}, {f.fit.slope_interval[1]:.2f}]")
    a.set(xlabel="rank", ylabel="tokens in quantum", title="rank-frequency envelope")
    a.legend(fontsize=6)
    save_figure(fig, stem)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", nargs="?", choices=["capture", "analyse"])
    parser.add_argument("--run", default="runs/qdg_lm/smollm2", help="the README run's folder")
    parser.add_argument("--work", default="runs/qdg_context", help="where the paper-context store is captured")
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=10)
    parser.add_argument("--step", type=int, default=50, help="rows captured per extension of the store")
    parser.add_argument("--device", default="cpu", help="torch device of the capture (e.g. cuda)")
    parser.add_argument("--out", default="artifacts/qdg/context")
    args = parser.parse_args()
    if args.resamples < 2:
        parser.error("--resamples must be ≥ 2: the comparison needs resampled partitions")
    from quanta_interp.config import ParameterError, check_device

    try:
        check_device(args.device)  # a cuda request without CUDA is an error, never a silent CPU run
    except ParameterError as e:
        parser.error(str(e))
    run, work = Path(args.run), Path(args.work)
    if args.stage in (None, "capture"):
        capture(run, work, args.tokens, args.step, args.device)
    if args.stage in (None, "analyse"):
        r = analyse(run, work, args.tokens, args.resamples, Path(args.out))
        print(f"same-token cosine median {r['same_token_cosine']['median']:.2f}; AMI between contexts "
              f"{r['ami_between_contexts']:.2f} vs within {r['ami_within_context']}; slopes "
              f"{ {k: (v['slope'], v['slope_interval']) for k, v in r['fits'].items()} }")


if __name__ == "__main__":
    main()
