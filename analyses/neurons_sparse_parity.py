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

Writes `--out` (default artifacts/neurons/sparse_parity_precision.json).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from quanta_interp.io import atomic_write_json
from quanta_interp.sparse_parity.ablation import ablation_matrix, carriers
from quanta_interp.sparse_parity.task import LEARNED_BITS
from quanta_interp.sparse_parity.training import load_trained


def attribution(model, x: torch.Tensor, y: torch.Tensor, metric: str = "loss") -> np.ndarray:
    """A_j = Σ_n (0 − h_j) ∂M_n/∂h_j for the last hidden layer h (float64 (width,)): M is the loss (nats) or, for
    `metric="margin"`, minus the logit difference (right − wrong), which does not saturate when the loss is ~0."""
    h = model[:-1](x).detach().requires_grad_(True)
    logits = model[-1](h)
    if metric == "loss":
        torch.nn.functional.cross_entropy(logits, y, reduction="sum").backward()
    else:
        (logits.gather(1, 1 - y[:, None]) - logits.gather(1, y[:, None])).sum().backward()
    return (-(h.detach() * h.grad)).sum(0).double().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", default="/work/runs/qdg_sparse_parity/cpu", help="a `quanta sparse-parity train` run")
    ap.add_argument("--out", default="artifacts/neurons/sparse_parity_precision.json")
    ap.add_argument("--samples", type=int, default=2000, help="samples drawn per subtask")
    ap.add_argument("--threshold", type=float, default=0.1, help="carrier: ablation raises the loss by > this (bits)")
    ap.add_argument("--loss-threshold", type=float, default=0.1, help="quantum members: loss < this (nats)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    model, cfg, _ = load_trained(args.run)
    task = cfg.task()
    matrix = ablation_matrix(model, task, args.samples, torch.Generator().manual_seed(args.seed))
    carry = carriers(matrix["increase"], args.threshold)
    gen = torch.Generator().manual_seed(args.seed + 1)
    data = [task.sample_task(i, args.samples, gen) for i in range(task.n_tasks)]
    with torch.no_grad():
        acts = [model[:-1](x) for x, _ in data]
    every = torch.cat(acts)
    mu, sd = every.mean(0), every.std(0).clamp_min(1e-6)
    rows = []
    for i, ((x, y), h) in enumerate(zip(data, acts, strict=True)):
        if matrix["base_loss"][i] >= LEARNED_BITS or not carry[i]:
            continue
        with torch.no_grad():
            keep = torch.nn.functional.cross_entropy(model(x), y, reduction="none") < args.loss_threshold
        a, am = (attribution(model, x[keep], y[keep], metric) for metric in ("loss", "margin"))
        z = ((h[keep].mean(0) - mu) / sd).numpy()
        k, truth = len(carry[i]), set(carry[i])
        top_a, top_m, top_z = (np.argsort(-v)[:k].tolist() for v in (a, am, z))
        rows.append({"subtask": i, "members": int(keep.sum()), "carriers": carry[i], "k": k,
                     "top_attribution": top_a, "top_attribution_margin": top_m, "top_z": top_z,
                     "precision_attribution": round(len(truth & set(top_a)) / k, 3),
                     "precision_attribution_margin": round(len(truth & set(top_m)) / k, 3),
                     "precision_z": round(len(truth & set(top_z)) / k, 3)})
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
           "note": "quantum = the subtask's well-predicted samples (labels stand in for QDG clusters); zero-ablation, "
                   "as the carriers"}
    atomic_write_json(args.out, res)
    print(f"precision@k over {len(rows)} learned subtasks: attribution (loss) mean {res['mean_precision_attribution']} "
          f"(min {res['min_precision_attribution']}), attribution (margin) {res['mean_precision_attribution_margin']}, "
          f"z-score {res['mean_precision_z']} → {args.out}")


if __name__ == "__main__":
    main()
