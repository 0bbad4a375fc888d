"""SmolLM2 layer 10 at scale: a streaming scan of 2^20 Shakespeare tokens, the layer's neurons ranked for the
README run's largest quanta by attribution and tested by mean-ablation, and pages for the linked neurons.

Writes to `--out` (default artifacts/neurons/): `links_l10.json` (the `quanta neurons link` result: every
quantum's neurons ranked, the largest `--ablate` tested by ablation), `smollm2_l10/` (pages of the top
`--per-quantum` neurons of each ablated quantum and the top neuron of every other one, an index of all 1536 neurons
and `quanta.html`, the discover run's browser with each quantum's neurons linked) and
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
           "one_layer_minutes_per_1e6_tokens_idle": 45, "all_layers_minutes_per_1e6_tokens_idle": 90}


def summarise(scan: dict, links: dict, pages, bench: dict | None, parity: dict | None, index: list[dict],
              all_layers: dict | None = None, machine: str = "not stated") -> dict:
    """The figures artifacts/README.md quotes: scan size/time/memory (and the all-layers scan's, extrapolated to
    10^6 tokens), per ablated quantum the ablation results, the bench row and the sparse-parity precision (when
    their JSONs exist), and the layer's description AUCs (`index`)."""
    aucs = np.array([r["auc"] for r in index if r.get("auc") is not None])
    rows = []
    for q in (q for q in links["quanta"] if q["delta_top"] is not None):  # the quanta tested by ablation
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
                "machine": machine},
            "all_layers": None if all_layers is None else {
                k: all_layers[k] for k in ("hooks", "tokens_done", "seconds", "tokens_per_s", "state_bytes")} | {
                "layers": len(all_layers["hooks"]), "state_mb": round(all_layers["state_bytes"] / 1e6, 1),
                "minutes_per_1e6_tokens": round(all_layers["seconds"] / all_layers["tokens_done"] * 1e6 / 60, 1),
                "over_one_layer_per_token": round(all_layers["seconds"] / all_layers["tokens_done"]
                                                  / (scan["seconds"] / scan["tokens_done"]), 2),
                "extrapolation": "per-token cost is constant in a streaming scan (bounded state), so minutes per 10^6 "
                                 "tokens = seconds / tokens_done × 10^6 / 60",
                "machine": machine},
            "links": {k: links[k] for k in ("discover", "model", "hook", "top_n", "draws", "max_members", "n_other",
                                             "mean_source", "positions")} | {"quanta": rows},
            "linked_quanta": len(links["quanta"]),
            "pages": {"folder": "smollm2_l10/", "neurons": pages.neurons, "n_pages": pages.pages,
                      "index": "smollm2_l10/index.html",
                      "quanta": None if pages.quanta is None else "smollm2_l10/quanta.html"},
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
    ap.add_argument("--per-quantum", type=int, default=5, help="pages for each ablated quantum's top neurons by "
                    "attribution (the top one of every other quantum)")
    ap.add_argument("--quanta", type=int, default=80, help="quanta whose neurons are ranked")
    ap.add_argument("--ablate", type=int, default=4, help="of those, the largest tested by ablation")
    ap.add_argument("--all-layers-scan", default="runs/neurons/all30", help="scan folder of all 30 layers over "
                    "--all-layers-tokens tokens (timing only; resumed when present)")
    ap.add_argument("--all-layers-tokens", type=int, default=2 ** 16)
    ap.add_argument("--machine", default="not stated", help="what the scans' timings were measured on, e.g. "
                    "'2 idle cores' (recorded beside them)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bench", default="artifacts/bench/bench_neurons.json", help="`quanta bench neurons` output")
    args = ap.parse_args()
    out = Path(args.out)

    scan = run_scan(ScanConfig(layers=(args.layer,), tokens=args.tokens), args.scan, args.device)
    every = run_scan(ScanConfig(layers=tuple(range(30)), tokens=args.all_layers_tokens), args.all_layers_scan,
                     args.device)
    links_path = out / f"links_l{args.layer}.json"
    if not links_path.exists():
        res = link_quanta(LinkConfig(discover=args.discover, layer=args.layer, scan=args.scan, quanta=args.quanta,
                                     ablate=args.ablate), args.device)
        atomic_write_json(links_path, res.to_dict())
    links = read_json(links_path)
    chosen = list(dict.fromkeys(i for q in links["quanta"]
                                for i in q["top_attribution"][: args.per_quantum if q["delta_top"] is not None else 1]))
    pages = write_scan_pages(PagesConfig(scan=args.scan, layer=args.layer, neurons=",".join(map(str, chosen)),
                                         links=str(links_path)), out / f"smollm2_l{args.layer}", args.device)
    bench, parity = Path(args.bench), out / "sparse_parity_precision.json"
    atomic_write_json(out / "summary.json", summarise(scan.to_dict(), links, pages,
                                                      read_json(bench) if bench.exists() else None,
                                                      read_json(parity) if parity.exists() else None,
                                                      read_json(out / f"smollm2_l{args.layer}" / "index.json")["neurons"],
                                                      every.to_dict(), args.machine))
    print(f"wrote {out}/summary.json, {links_path} and {pages.pages} pages + {pages.index} and {pages.quanta}")


if __name__ == "__main__":
    main()
