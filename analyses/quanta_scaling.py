"""Quanta across scale on the char-LM family: every QDG quantum's loss curve over the 6 family sizes, its
learning scale N*, and the quantization model's predictions tested with bootstrap CIs.

The quanta are those of `analyses/qdg_lm.py`'s char run (the largest member of the `analyses/lm_scaling.py`
family, 2000 tokens in 80 clusters; the same settings, so the same clusters), re-analysed here with
`--family` over that family. Writes artifacts/quanta_scaling/ (summary.json with the headline numbers
beside the paper's claim, quanta_scaling.json with every quantum, quanta_scaling.{png,svg}, browser.html).
Resumable: the gradients and the per-member losses stay under --runs.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from quanta_interp.io import atomic_write_json
from quanta_interp.lm.scaling import family_members
from quanta_interp.quanta.qdg import QDGConfig, discover
from quanta_interp.quanta.scaling import PAPER_CLAIM

# the lm_scaling analysis's thresholds for models this small (the paper's 5 → 0.3 nats suit Pythia)
CPU_CLASSES = (1.5, 0.3, -0.1, 0.9)
OUTPUTS = ("quanta_scaling.json", "quanta_scaling.png", "quanta_scaling.svg", "browser.html")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="runs/lm_scaling", help="the lm_scaling family sweep")
    parser.add_argument("--runs", default="runs/qdg_lm/char_lm", help="the char QDG run of analyses/qdg_lm.py")
    parser.add_argument("--alpha-n", default="artifacts/lm_scaling/summary.json")
    parser.add_argument("--out", default="artifacts/quanta_scaling")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    largest = family_members(args.family)[-1].path
    config = QDGConfig(model=str(largest), keep_induction=True, alpha_n=args.alpha_n, family=args.family,
                       token_classes=CPU_CLASSES, device=args.device)
    t0 = time.perf_counter()
    result = discover(config, args.runs)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in OUTPUTS:
        shutil.copyfile(Path(args.runs) / f, out / f)
    s = result.summary["quanta_scaling"]
    fit = result.summary["rank_frequency"]
    atomic_write_json(out / "summary.json", {
        "model": config.model, "family": s["members"], "x_non_embedding_params": s["x"],
        "n_tokens": result.n_tokens, "n_quanta": len(result.cluster_sizes),
        "spearman_rank_n_star": s["spearman_rank_n_star"], "n_learned": s["n_learned"], "sharpness": s["sharpness"],
        "token_classes": s["token_classes"], "rank_frequency_slope": fit.get("slope"),
        "rank_frequency_slope_ci": fit.get("slope_ci"), "paper": PAPER_CLAIM,
        "seconds_this_run": round(seconds, 1), "timings": result.timings,
    })
    rho = s["spearman_rank_n_star"]
    n = s["n_learned"]
    print(f"Spearman ρ(rank, N*) = {rho['rho']} CI {rho['ci']} (n = {rho['n']}, {rho['n_left_censored']} left-, "
          f"{rho['n_right_censored']} right-censored); n_learned ∝ N^{n['b']} CI {n['b_ci']}; implied α_N "
          f"{n['implied_alpha_N']} vs measured {n['measured_alpha_N']}; sharpness ratio {s['sharpness']['median_ratio']}"
          f" CI {s['sharpness']['ci']}; {seconds:.0f} s")


if __name__ == "__main__":
    main()
