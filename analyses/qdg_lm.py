"""QDG on language models: the largest char-level model of the lm_scaling family, and SmolLM2-135M.

Each runs `quanta_interp.quanta.discover` (resumable, under --runs) and its small outputs are copied to
artifacts/qdg/<name>/ (summary, clusters, rank-frequency CSV/JSON/PNG/SVG, UMAP, browser.html);
artifacts/qdg/summary.json puts the rank-frequency slopes beside the paper's (Pythia: −1.237 measured vs
−1.083 predicted, −0.92…−1.24 across fit ranges).

The char model is the largest member of the family that `analyses/lm_scaling.py` trains and fits α_N on
(the same sweep folder, resumed), so its predicted slope −(α_N + 1) comes from its own family. SmolLM2 has
no family here: no prediction is drawn for it. `--paper-scale` runs the paper's preset on SmolLM2 (10k
tokens, whole-document context, 400 clusters, 30 counts, ranks 100–900): a GPU job (`--device cuda`).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from quanta_interp.io import Sweep, atomic_write_json, read_json
from quanta_interp.quanta import QDGConfig, discover
from quanta_interp.quanta.frequencies import PAPER

OUTPUTS = ("summary.json", "clusters.json", "rank_frequency.csv", "rank_frequency.json", "rank_frequency.png",
           "rank_frequency.svg", "umap.png", "browser.html")


def char_family_member(runs: Path, device: str) -> Path:
    """The largest model of the lm_scaling char family (trained here if the sweep is not finished)."""
    from quanta_interp.lm.scaling import CPU_TRAIN, LADDER, family_configs, train_family

    configs = family_configs(LADDER, device=device, **CPU_TRAIN)
    train_family(configs, runs)
    return Sweep.open(runs).run_dir(len(configs) - 1).path


def clustering_sensitivity(config: QDGConfig, out: Path) -> list[dict]:
    """The slope and the largest clusters under each clustering of the ground-truth table
    (`quanta.ground_truth.METHODS`, the default last), from the stored gradients."""
    import numpy as np

    from quanta_interp.capture import GradientStore
    from quanta_interp.quanta.analysis import cluster_quanta, clustered_rows
    from quanta_interp.quanta.config import ClusteringConfig
    from quanta_interp.quanta.ground_truth import METHODS

    store = GradientStore(out / "gradients")
    G = np.asarray(store.gradients[clustered_rows(store, config)])
    table = []
    for name, affinity, over, refine in METHODS:
        c = config.replace(affinity=affinity, over_cluster=over, refine=refine, cluster_counts=None, fit_ranks=None)
        clustering = ClusteringConfig(c.n_clusters, affinity=affinity, over_cluster=over, refine=refine)  # n_init 10
        q = cluster_quanta(G, clustering, counts=c.counts(), fit_ranks=c.ranks(), seed=c.seed, show_progress=False)
        sizes = q.sizes_by_k[c.n_clusters]
        table.append({"clustering": name, "affinity": affinity, "over_cluster": over, "refine": refine,
                      "slope": q.fit.slope, "slope_ci": q.fit.slope_ci,
                      "largest_cluster_share": float(sizes[0] / len(G)), "largest_sizes": sizes[:6].tolist()})
    return table


def run_qdg(name: str, config: QDGConfig, runs: Path, artifacts: Path) -> dict:
    result = discover(config, runs / name)
    atomic_write_json(artifacts / name / "clustering_sensitivity.json", clustering_sensitivity(config, runs / name))
    (artifacts / name).mkdir(parents=True, exist_ok=True)
    for f in OUTPUTS:
        shutil.copyfile(runs / name / f, artifacts / name / f)
    fit = result.summary["rank_frequency"]
    return {"model": config.model, "n_tokens": result.n_tokens, "clusters": len(result.cluster_sizes),
            "sizes": result.cluster_sizes, "fit_ranks": fit["fit_ranks"], "slope": result.slope,
            "slope_ci": result.slope_ci, "slope_range": fit.get("slope_range"),
            "predicted_slope": result.predicted_slope, "alpha_N_source": fit["alpha_N_source"],
            "timings": result.timings, "settings": result.summary["settings"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-scale", action="store_true", help="the paper's preset on SmolLM2 (GPU)")
    parser.add_argument("--runs", default="runs/qdg_lm")
    parser.add_argument("--family-runs", default="runs/lm_scaling", help="the lm_scaling family sweep (resumed)")
    parser.add_argument("--alpha-n", default="artifacts/lm_scaling/summary.json",
                        help="the family's α_N: the summary.json analyses/lm_scaling.py writes")
    parser.add_argument("--out", default="artifacts/qdg")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=("char", "smollm2"), default=None)
    args = parser.parse_args()
    runs, artifacts = Path(args.runs), Path(args.out)
    old = artifacts / "summary.json"
    results = read_json(old)["results"] if old.exists() else {}
    if args.paper_scale:
        results["smollm2_paper"] = run_qdg("smollm2_paper", QDGConfig.preset("paper", device=args.device,
                                                                             batch_tokens=65536), runs, artifacts)
    else:
        if args.only in (None, "char"):
            model = char_family_member(Path(args.family_runs), args.device)
            alpha = args.alpha_n if Path(args.alpha_n).exists() else None
            # char-level: almost every character trigram recurs in a play, so the induction filter is off
            results["char_lm"] = run_qdg("char_lm", QDGConfig.build(model=str(model), keep_induction=True, alpha_n=alpha,
                                                              device=args.device), runs, artifacts)
        if args.only in (None, "smollm2"):
            results["smollm2"] = run_qdg("smollm2", QDGConfig.build(device=args.device), runs, artifacts)
    for stale in ("fresh_char_lm", "fresh"):  # the previous layout's char model, not from the family
        results.pop(stale, None)
        shutil.rmtree(artifacts / stale, ignore_errors=True)
    atomic_write_json(artifacts / "summary.json", {"results": results, "paper": PAPER})
    print({k: {f: v[f] for f in ("n_tokens", "clusters", "slope", "slope_ci", "predicted_slope")}
           for k, v in results.items()})


if __name__ == "__main__":
    main()
