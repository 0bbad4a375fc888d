"""Validate the attribution ranking where the answer is known: multitask sparse parity.

For each subtask the trained MLP has learned, the units it needs are the package's ablation carriers
(`sparse_parity.ablation`: zeroing the unit raises the subtask's loss by > `--threshold` bits). The subtask's
quantum is its samples the model predicts well (loss < `--loss-threshold` nats, as QDG selects tokens; the
subtask labels stand in for the QDG clusters, which recover them, see artifacts/qdg/sparse_parity). The units
are ranked by attribution A_j = Σ_n (0 − h_j(n)) · ∂L_n/∂h_j(n) over the quantum (first-order estimate of
zero-ablation; the same formula as `neurons.attribution` with μ = 0) and, beside it, by the z-score of their
mean activation on the quantum against all subtasks' samples; a third ranking differentiates the logit margin
instead of the loss (attribution patching's usual metric: it does not saturate where the loss is ~0).
precision@k: the share of the top-k that are carriers, k = the number of carriers.

`qdg` repeats it with QDG's own quanta instead of the labels: the well-predicted samples' per-sample gradients
clustered with the package's default clustering at K = the learned subtasks present, each learned subtask's
quantum the cluster holding most of its samples (members from other subtasks included).

Writes `--out` (default artifacts/neurons/sparse_parity_precision.json).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from quanta_interp.io import atomic_write_json
from quanta_interp.sparse_parity.ablation import ablation_matrix, carriers, unit_attribution
from quanta_interp.sparse_parity.task import LEARNED_BITS, MultitaskSparseParity
from quanta_interp.sparse_parity.training import load_trained


def precision(model, x, y, h, mu, sd, truth) -> dict:
    """Top-k (k = len(truth)) units by loss attribution, margin attribution and z-score on samples x (with hidden
    activations h) and the share of each top-k that are carriers."""
    a, am = (unit_attribution(model, x, y, metric) for metric in ("loss", "margin"))
    z = ((h.mean(0) - mu) / sd).cpu().numpy()
    k = len(truth)
    top = {name: np.argsort(-v)[:k].tolist() for name, v in (("attribution", a), ("attribution_margin", am),
                                                              ("z", z))}
    return {f"top_{n}": t for n, t in top.items()} | {f"precision_{n}": round(len(set(truth) & set(t)) / k, 3)
                                                       for n, t in top.items()}


def qdg_quanta(model, task, subtasks, n: int, loss_threshold: float, seed: int):
    """Well-predicted samples (x, y, subtask) and their QDG quanta (labels), clustered as `quanta discover` does by
    default at K = the learned subtasks present among them."""
    from quanta_interp.capture import per_sample_gradients
    from quanta_interp.quanta.analysis import cluster_quanta
    from quanta_interp.quanta.config import ClusteringConfig
    from quanta_interp.quanta.ground_truth import draw_samples

    x, y, t, _, _ = draw_samples(model, task, n, loss_threshold=loss_threshold, seed=seed)
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    G = per_sample_gradients(model, x, y, seed=seed).cpu().numpy()
    ok = np.linalg.norm(G, axis=1) > 0  # p_y = 1.0 in float32 leaves no gradient
    K = int(np.isin(np.unique(t[ok]), subtasks).sum())
    quanta = cluster_quanta(G[ok], ClusteringConfig(K), counts=[K], fit_ranks=(1, max(K, 3)), seed=seed,
                            show_progress=False)
    return x[ok], y[ok], t[ok], quanta.labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", default="/work/runs/qdg_sparse_parity/cpu", help="a `quanta sparse-parity train` run")
    ap.add_argument("--out", default="artifacts/neurons/sparse_parity_precision.json")
    ap.add_argument("--samples", type=int, default=2000, help="samples drawn per subtask")
    ap.add_argument("--threshold", type=float, default=0.1, help="carrier: ablation raises the loss by > this (bits)")
    ap.add_argument("--loss-threshold", type=float, default=0.1, help="quantum members: loss < this (nats)")
    ap.add_argument("--qdg-samples", type=int, default=3000, help="well-predicted samples clustered into quanta")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="torch device for the model, e.g. cpu or cuda")
    args = ap.parse_args()

    model, cfg, _ = load_trained(args.run, args.device)
    task = MultitaskSparseParity.of(cfg)
    matrix = ablation_matrix(model, task, args.samples, torch.Generator().manual_seed(args.seed))
    carry = carriers(matrix.increase, args.threshold)
    gen = torch.Generator().manual_seed(args.seed + 1)
    data = [tuple(v.to(args.device) for v in task.sample_task(i, args.samples, gen)) for i in range(task.n_tasks)]
    with torch.no_grad():
        acts = [model[:-1](x) for x, _ in data]
    every = torch.cat(acts)
    mu, sd = every.mean(0), every.std(0).clamp_min(1e-6)
    rows = []
    for i, ((x, y), h) in enumerate(zip(data, acts, strict=True)):
        if matrix.base_loss[i] >= LEARNED_BITS or not carry[i]:
            continue
        with torch.no_grad():
            keep = torch.nn.functional.cross_entropy(model(x), y, reduction="none") < args.loss_threshold
        rows.append({"subtask": i, "members": int(keep.sum()), "carriers": carry[i], "k": len(carry[i]),
                     **precision(model, x[keep], y[keep], h[keep], mu, sd, carry[i])})
    # the same with QDG's quanta standing for the subtasks
    qx, qy, qt, labels = qdg_quanta(model, task, [r["subtask"] for r in rows], args.qdg_samples,
                                    args.loss_threshold, args.seed)
    with torch.no_grad():
        qh = model[:-1](qx)
    qrows = []
    for r in rows:
        mine = labels[qt == r["subtask"]]
        if not len(mine):
            continue
        c = int(np.bincount(mine).argmax())
        members = labels == c
        qrows.append({"subtask": r["subtask"], "quantum_size": int(members.sum()),
                      "quantum_purity": round(float((qt[members] == r["subtask"]).mean()), 3),
                      "subtask_recall": round(float((mine == c).mean()), 3), "carriers": r["carriers"],
                      **precision(model, qx[members], qy[members], qh[members], mu, sd, r["carriers"])})
    pa = [r["precision_attribution"] for r in rows]
    pm = [r["precision_attribution_margin"] for r in rows]
    pz = [r["precision_z"] for r in rows]
    res = {"run": args.run, "config": cfg.to_dict(), "samples": args.samples, "carrier_threshold_bits": args.threshold,
           "loss_threshold_nats": args.loss_threshold, "learned_bits": LEARNED_BITS, "subtasks": rows,
           "n_subtasks": len(rows), "mean_precision_attribution": round(float(np.mean(pa)), 3),
           "min_precision_attribution": round(float(np.min(pa)), 3), "mean_precision_z": round(float(np.mean(pz)), 3),
           "mean_precision_attribution_margin": round(float(np.mean(pm)), 3),
           "min_precision_attribution_margin": round(float(np.min(pm)), 3),
           "subtasks_at_or_above_0.8_attribution": int(sum(p >= 0.8 for p in pa)),
           "subtasks_at_or_above_0.8_attribution_margin": int(sum(p >= 0.8 for p in pm)),
           "subtasks_at_or_above_0.8_z": int(sum(p >= 0.8 for p in pz)),
           "qdg": {"samples": int(len(qt)), "n_subtasks": len(qrows), "subtasks": qrows,
                   **{f"mean_precision_{n}": round(float(np.mean([q[f"precision_{n}"] for q in qrows])), 3)
                      for n in ("attribution", "attribution_margin", "z")},
                   **{f"min_precision_{n}": round(float(np.min([q[f"precision_{n}"] for q in qrows])), 3)
                      for n in ("attribution", "attribution_margin")},
                   "mean_quantum_purity": round(float(np.mean([q["quantum_purity"] for q in qrows])), 3)},
           "note": "quantum = the subtask's well-predicted samples (labels stand in for QDG clusters); zero-ablation, "
                   "as the carriers"}
    atomic_write_json(args.out, res)
    print(f"precision@k over {len(rows)} learned subtasks: attribution (loss) mean {res['mean_precision_attribution']} "
          f"(min {res['min_precision_attribution']}), attribution (margin) {res['mean_precision_attribution_margin']}, "
          f"z-score {res['mean_precision_z']}; with QDG's quanta: {res['qdg']['mean_precision_attribution']} / "
          f"{res['qdg']['mean_precision_attribution_margin']} / {res['qdg']['mean_precision_z']} → {args.out}")


if __name__ == "__main__":
    main()
