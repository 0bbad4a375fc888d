"""Quanta across scale on the char-LM family: every QDG quantum's loss curve over the 6 family sizes, its
learning scale N*, and the quantization model's predictions tested with bootstrap CIs.

The quanta are those of `analyses/qdg_lm.py`'s char run (the largest member of the `analyses/lm_scaling.py`
family, 2000 tokens in 80 clusters; the same settings, so the same clusters), re-analysed here with
`--family` over that family. That estimator measures each quantum on the tokens QDG selected because the top
member predicts them (loss < 0.1), so every quantum is learned at the top by construction; the held-out
estimator beside it (`heldout`) measures the same quanta on random positions of text the scan never read.
Writes artifacts/quanta_scaling/ (summary.json with both estimators' headline numbers beside the paper's
claim, quanta_scaling.json with every quantum (selected), heldout.json (held-out), planted.json (both
estimators on synthetic families with a planted ρ), quanta_scaling.{png,svg},
browser.html). Resumable: the gradients and the per-member losses stay under --runs.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from quanta_interp.io import atomic_write_json
from quanta_interp.lm.scaling import family_members
from quanta_interp.quanta import QDGConfig, discover
from quanta_interp.quanta.scaling import PAPER_CLAIM, QuantaScaling

# the lm_scaling analysis's thresholds for models this small (the paper's 5 → 0.3 nats suit Pythia)
CPU_CLASSES = (1.5, 0.3, -0.1, 0.9)
OUTPUTS = ("quanta_scaling.json", "quanta_scaling.png", "quanta_scaling.svg", "browser.html")


def heldout(config: QDGConfig, runs: Path, n: int) -> tuple[QuantaScaling, dict]:
    """The held-out estimator on the char family (`quanta.scaling.heldout_quanta_scaling`): the quanta are the
    QDG run's clusters (defined on the tokens its scan selected), the curves are measured on `n` random
    positions of the blocks the scan never read (`family.heldout_targets`), each assigned to its nearest
    quantum centroid by its gradient under the QDG model (same sketch, same seed); learned = the curve falls
    halfway to QDG's loss threshold. Resumable: gradients and per-member losses under runs/heldout/.
    Returns the result and what heldout.json adds to it (n_heldout_targets, n_scanned_blocks_skipped,
    top_member_loss_below_threshold)."""
    import numpy as np

    from quanta_interp import lm
    from quanta_interp.capture import GradientStore, capture_gradients
    from quanta_interp.capture.windows import window_losses
    from quanta_interp.corpora import load_corpus
    from quanta_interp.io import atomic_save_npy, load_npy, read_json
    from quanta_interp.quanta.analysis import cluster_quanta, clustered_rows
    from quanta_interp.quanta.family import heldout_targets, resolve_family
    from quanta_interp.quanta.scaling import heldout_quanta_scaling, quantum_centroids
    from quanta_interp.quanta.scan import block_length

    store = GradientStore(runs / "gradients")
    G = np.asarray(store.gradients[clustered_rows(store, config)])
    quanta = cluster_quanta(G, config.clustering, counts=config.counts(), fit_ranks=config.ranks(), seed=config.seed,
                            show_progress=False)
    centroids = quantum_centroids(G, quanta.labels)
    model = lm.load(config.model, device=config.device)
    docs = load_corpus(config.corpus, tokenizer=lm.corpus_tokenizer(model), seed=config.seed).documents()
    block, _ = block_length(config.context, int(model.cfg.n_ctx))
    skip = read_json(runs / "scan" / "state.json")["blocks_done"]
    targets = heldout_targets([len(d) for d in docs], block, config.min_context, n, skip_blocks=skip, seed=config.seed)
    held = capture_gradients(model.bridge, docs, targets, runs / "heldout" / "gradients", params=config.params,
                             projection_dim=config.projection_dim, matrix_sketch_dim=config.matrix_sketch_dim,
                             batch_tokens=config.batch_tokens, seed=config.seed)
    members = resolve_family(config.family)
    losses = []
    for m in members:
        path = runs / "heldout" / f"{m['name']}.npy"
        if not path.exists():
            atomic_save_npy(path, window_losses(lm.load(m["spec"], device=config.device).bridge, docs, targets,
                                                batch_tokens=config.batch_tokens, progress=True, desc=m["name"]))
        losses.append(load_npy(path, dtype=np.float32))
    ok = held.ok
    result = heldout_quanta_scaling(np.stack(losses, 1)[ok], [m["n_params"] for m in members],
                                    np.asarray(held.gradients)[ok], centroids, learned_loss=config.loss_threshold,
                                    members=[m["name"] for m in members],
                                    thresholds=dict(zip(("high", "low", "slope", "r2"), CPU_CLASSES, strict=True)),
                                    seed=config.seed)
    return result, {"n_heldout_targets": int(len(targets)), "n_scanned_blocks_skipped": int(skip),
                    "top_member_loss_below_threshold": float(np.mean(held.losses[ok] < config.loss_threshold))}


def planted(seeds: range) -> dict:
    """The selected and the held-out estimator on synthetic families with a planted ρ (`planted_family`):
    which of them recovers it, seed by seed."""
    from quanta_interp.quanta.scaling import compare_estimators, planted_family

    rows = [{"seed": s, **compare_estimators(planted_family(s), seed=s).to_dict()} for s in seeds]
    inside = {k: sum(r[k]["ci"][0] <= r["planted"] <= r[k]["ci"][1] for r in rows) for k in ("selected", "heldout")}
    return {"family": "planted_family: 120 quanta, Zipf k^-1.3, 30000 tokens, 7 members 1e3…1e5; ln N*_k = ln 200 + "
                      "1.6 ln k + N(0, 1.2²)", "n_seeds": len(rows), "planted_inside_ci": inside, "seeds": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="runs/lm_scaling", help="the lm_scaling family sweep")
    parser.add_argument("--runs", default="runs/qdg_lm/char_lm", help="the char QDG run of analyses/qdg_lm.py")
    parser.add_argument("--alpha-n", default="artifacts/lm_scaling/summary.json")
    parser.add_argument("--out", default="artifacts/quanta_scaling")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--heldout-tokens", type=int, default=4000, help="random positions of unscanned text")
    parser.add_argument("--planted-only", action="store_true",
                        help="only (re)compute the synthetic comparison, planted.json (otherwise written when missing)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.planted_only or not (out / "planted.json").exists():  # no family in it: computed once
        atomic_write_json(out / "planted.json", planted(range(5)))
    if args.planted_only:
        return
    largest = family_members(args.family)[-1].path
    config = QDGConfig.build(model=str(largest), keep_induction=True, alpha_n=args.alpha_n, family=args.family,
                       token_classes=CPU_CLASSES, device=args.device)
    t0 = time.perf_counter()
    result = discover(config, args.runs)
    seconds = time.perf_counter() - t0
    for f in OUTPUTS:
        shutil.copyfile(Path(args.runs) / f, out / f)
    s = result.summary["quanta_scaling"]
    fit = result.summary["rank_frequency"]
    t1 = time.perf_counter()
    unbiased, extra = heldout(config, Path(args.runs), args.heldout_tokens)
    atomic_write_json(out / "heldout.json", {**unbiased.to_dict(), **extra})
    h = unbiased.spearman_rank_n_star
    atomic_write_json(out / "summary.json", {
        "model": config.model, "family": s["members"], "x_non_embedding_params": s["x"],
        "n_tokens": result.n_tokens, "n_quanta": len(result.cluster_sizes),
        "spearman_rank_n_star": s["spearman_rank_n_star"], "n_learned": s["n_learned"], "sharpness": s["sharpness"],
        "token_classes": s["token_classes"], "rank_frequency_slope": fit.get("slope"),
        "rank_frequency_slope_ci": fit.get("slope_ci"),
        "heldout": {"estimator": unbiased.estimator, "n_tokens": unbiased.n_tokens,
                    "n_quanta": unbiased.n_quanta, "spearman_rank_n_star": h.to_dict(),
                    "n_learned": unbiased.n_learned.to_dict(), "learned_loss": unbiased.learned_loss,
                    "top_member_loss_below_threshold": extra["top_member_loss_below_threshold"]},
        "paper": PAPER_CLAIM, "seconds_this_run": round(seconds, 1), "heldout_seconds": round(time.perf_counter() - t1, 1),
        "timings": result.timings,
    })
    rho = s["spearman_rank_n_star"]
    n = s["n_learned"]
    print(f"selected: Spearman ρ(rank, N*) = {rho['rho']} CI {rho['ci']} (n = {rho['n']}, {rho['n_left_censored']} left-, "
          f"{rho['n_right_censored']} right-censored); n_learned ∝ N^{n['b']} CI {n['b_ci']}; implied α_N "
          f"{n['implied_alpha_N']} vs measured {n['measured_alpha_N']}; sharpness ratio {s['sharpness']['median_ratio']}"
          f" CI {s['sharpness']['ci']}; {seconds:.0f} s")
    print(f"held-out: Spearman ρ(rank, N*) = {h.rho} CI {h.ci} (n = {h.n}, {h.n_left_censored} left-, "
          f"{h.n_right_censored} right-censored) on {unbiased.n_tokens} tokens")


if __name__ == "__main__":
    main()
