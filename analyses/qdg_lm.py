"""QDG on language models: a fresh small char-level LM trained here on Shakespeare, and SmolLM2-135M.

Each runs the `quanta discover` pipeline (resumable, under --runs) and its small outputs are copied
to artifacts/qdg/<name>/ (summary, clusters, rank-frequency CSV/JSON/PNG/SVG, UMAP, browser.html);
artifacts/qdg/summary.json puts the rank-frequency slopes beside the paper's (Pythia: −1.237
measured vs −1.083 predicted, −0.92…−1.24 across fit ranges). CPU scale by default;
`--paper-scale` clusters 10k tokens into 400 quanta (needs hours on a CPU; use --device cuda).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from quanta_interp.cli import build_parser
from quanta_interp.io import atomic_write_json, read_json
from quanta_interp.quanta.discover_cli import config_from_args, discover
from quanta_interp.quanta.frequencies import PAPER

FRESH = dict(n_layers=2, d_model=64, n_heads=4, n_ctx=128, steps=300, batch_size=32, lr=3e-3, eval_every=300)
OUTPUTS = ("summary.json", "clusters.json", "rank_frequency.csv", "rank_frequency.json", "rank_frequency.png",
           "rank_frequency.svg", "umap.png", "browser.html")


def train_fresh(runs: Path) -> Path:
    """A small char-level model on Shakespeare's training split (resumes if killed)."""
    from quanta_interp import lm
    from quanta_interp.corpora import load_corpus

    corpus = load_corpus("shakespeare", "char")
    lm.train({**FRESH, "d_vocab": corpus.vocab_size}, corpus.documents("train"), val_tokens=corpus.documents("val"),
             tokenizer=corpus.tokenizer, run_dir=runs / "fresh_model")
    return runs / "fresh_model"


def run_qdg(name: str, options: list[str], runs: Path, artifacts: Path, device: str) -> dict:
    args = build_parser().parse_args(["discover", "--out", str(runs / name), "--device", device, *options])
    summary = discover(config_from_args(args), args.out, device=device)
    (artifacts / name).mkdir(parents=True, exist_ok=True)
    for f in OUTPUTS:
        shutil.copyfile(runs / name / f, artifacts / name / f)
    fit = summary["rank_frequency"]
    return {"model": summary["model"], "n_tokens": summary["n_tokens"], "clusters": len(summary["clusters"]),
            "sizes": [c["size"] for c in summary["clusters"]], "slope": fit.get("slope"),
            "slope_ci": fit.get("slope_ci"), "slope_range": fit.get("slope_range"),
            "predicted_slope": fit.get("predicted_slope"), "wall_seconds_this_run": summary.get("wall_seconds_this_run")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-scale", action="store_true")
    parser.add_argument("--runs", default="runs/qdg_lm")
    parser.add_argument("--out", default="artifacts/qdg")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=("fresh", "smollm2"), default=None)
    args = parser.parse_args()
    runs, artifacts = Path(args.runs), Path(args.out)
    scale = ["--n-tokens", "10000", "--clusters", "400", "--method", "knn", "--scan-tokens", "2000000"] \
        if args.paper_scale else []
    old = artifacts / "summary.json"
    results = read_json(old)["results"] if old.exists() else {}
    if args.only in (None, "fresh"):
        model = train_fresh(runs)
        # char-level: almost every character trigram recurs in a play, so the induction filter is off
        results["fresh_char_lm"] = run_qdg("fresh", ["--model", str(model), "--n-tokens", "400", "--clusters", "16",
                                                     "--keep-induction", *scale], runs, artifacts, args.device)
    if args.only in (None, "smollm2"):
        results["smollm2"] = run_qdg("smollm2", scale, runs, artifacts, args.device)
    atomic_write_json(artifacts / "summary.json", {"results": results, "paper": PAPER,
                                                   "note": "CPU scale: few tokens and clusters, so slopes are rough"})
    print(results)


if __name__ == "__main__":
    main()
