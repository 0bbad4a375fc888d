"""SmolLM2 layer 10 at scale: a streaming scan of 2^20 Shakespeare tokens, the layer's neurons ranked for the
README run's largest quanta by attribution and tested by mean-ablation, and pages for the linked neurons.

Writes to `--out` (default artifacts/neurons/): `links_l10.json` (the `quanta neurons link` result),
`smollm2_l10/` (pages of the top `--per-quantum` neurons of each quantum + an index of all 1536 neurons) and
`summary.json` (the scan's size, time and memory, the ablation figures, and — when their JSONs exist — the
`quanta bench neurons` row and `analyses/neurons_sparse_parity.py`'s precision). The scan itself (9 MB of state)
stays in `--scan` (default runs/neurons/smollm2_l10); it resumes where it stopped. Every step calls the function
its CLI command calls (`run_scan`, `link_quanta`, `write_scan_pages`); an existing links_l10.json is reused.

Needs a finished `quanta discover --out runs/discover` (the README's main command) for the links.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from quanta_interp.io import atomic_write_json, read_json
from quanta_interp.neurons.attribution import link_quanta
from quanta_interp.neurons.config import LinkConfig, PagesConfig, ScanConfig
from quanta_interp.neurons.dashboard import write_scan_pages
from quanta_interp.neurons.scan import run_scan

TARGETS = {"ablation_ratio_vs_random": 5, "scan_over_forward": 0.8, "precision_at_k": 0.8,
           "one_layer_minutes_per_1e6_tokens_idle": 45}


def summarise(scan: dict, links: dict, pages: dict, bench: dict | None, parity: dict | None, index: list[dict]) -> dict:
    """The figures artifacts/README.md quotes: scan size/time/memory, per quantum the ablation results, the
    bench row and the sparse-parity precision (when their JSONs exist), and the layer's description AUCs (`index`)."""
    aucs = np.array([r["auc"] for r in index if r.get("auc") is not None])
    rows = []
    for q in links["quanta"]:
        rand = float(np.mean(q["delta_random"]))
        rows.append({k: q[k] for k in ("rank", "size", "targets", "n_members", "base_loss", "delta_top", "delta_z",
                                       "predicted_delta", "ratio", "ratio_interval", "delta_other", "specificity",
                                       "overlap_z")} |
                    {"delta_random_mean": round(rand, 5), "top5_attribution": q["top_attribution"][:5],
                     "top5_z": q["top_z"][:5],
                     "meets_5x": q["ratio_interval"][0] is None or q["ratio_interval"][0] >= 5,  # null = inf
                     "more_than_other": q["delta_top"] > q["delta_other"]})
    return {"scan": {k: scan[k] for k in ("hooks", "context", "windows", "tokens", "tokens_done", "complete", "seconds",
                                          "tokens_per_s", "state_bytes", "state_note")} | {
                "state_mb_per_layer": round(scan["state_bytes"] / len(scan["hooks"]) / 1e6, 2),
                "minutes": round(scan["seconds"] / 60, 1),
                "machine": "2-core machine shared with other jobs: times are upper bounds"},
            "links": {k: links[k] for k in ("discover", "model", "hook", "top_n", "draws", "max_members", "n_other",
                                             "mean_source", "positions")} | {"quanta": rows},
            "pages": {"folder": "smollm2_l10/", "neurons": pages["neurons"], "n_pages": pages["pages"],
                      "index": "smollm2_l10/index.html"},
            "descriptions": {"neurons": len(index), "with_auc": int(aucs.size),
                             "median_auc": round(float(np.median(aucs)), 3),
                             "auc_above_0_9": int((aucs > 0.9).sum()), "auc_below_0_6": int((aucs < 0.6).sum()),
                             "thresholds": [0.6, 0.9]},
            "targets": TARGETS,
            "bench": None if bench is None else {k: bench[k] for k in bench if k.startswith(("scan", "forward", "full",
                                                                                             "neurons_scan"))},
            "sparse_parity": None if parity is None else {k: v for k, v in parity.items() if k != "subtasks"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="artifacts/neurons")
    ap.add_argument("--scan", default="runs/neurons/smollm2_l10", help="scan folder (resumed when present)")
    ap.add_argument("--discover", default="runs/discover", help="a `quanta discover` folder of SmolLM2")
    ap.add_argument("--layer", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=2 ** 20)
    ap.add_argument("--per-quantum", type=int, default=5, help="pages for each quantum's top neurons by attribution")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bench", default="artifacts/bench/bench_neurons.json", help="`quanta bench neurons` output")
    args = ap.parse_args()
    out = Path(args.out)

    scan = run_scan(ScanConfig(layers=(args.layer,), tokens=args.tokens), args.scan, args.device)
    links_path = out / f"links_l{args.layer}.json"
    if not links_path.exists():
        res = link_quanta(LinkConfig(discover=args.discover, layer=args.layer, scan=args.scan), args.device)
        atomic_write_json(links_path, res.to_dict())
    links = read_json(links_path)
    chosen = list(dict.fromkeys(i for q in links["quanta"] for i in q["top_attribution"][: args.per_quantum]))
    pages = write_scan_pages(PagesConfig(scan=args.scan, layer=args.layer, neurons=",".join(map(str, chosen)),
                                         links=str(links_path)), out / f"smollm2_l{args.layer}", args.device)
    bench, parity = Path(args.bench), out / "sparse_parity_precision.json"
    atomic_write_json(out / "summary.json", summarise(scan.to_dict(), links, pages,
                                                      read_json(bench) if bench.exists() else None,
                                                      read_json(parity) if parity.exists() else None,
                                                      read_json(out / f"smollm2_l{args.layer}" / "index.json")["neurons"]))
    print(f"wrote {out}/summary.json, {links_path} and {pages['pages']} pages + {pages['index']}")


if __name__ == "__main__":
    main()
