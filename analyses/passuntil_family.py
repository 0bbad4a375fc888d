"""PassUntil on a real family: ≥ 5 fresh transformers trained on addition, task scaling law, prediction.

Trains a ladder of 2-layer models (lm.train, resumable sweep) on "a+b=c" lines, runs PassUntil on
held-out sums for every size, validates every estimate against the exact teacher-forced P(answer),
fits log(−log PU) = log c − α log N on all but the largest model and predicts the largest.
Writes artifacts/passuntil/summary.json and figures. `--paper-scale`: more sizes, steps and instances.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from quanta_interp.executors import map_runs
from quanta_interp.fitting import fit_range_sensitivity
from quanta_interp.io import RunDir, atomic_write_json

SCALES = {
    "cpu": dict(widths=[8, 12, 16, 24, 32, 48, 64], steps=6000, n_train=200_000, n_test=200, k_max=100_000),
    "paper": dict(widths=[8, 12, 16, 24, 32, 48, 64, 96, 128], steps=8000, n_train=1_000_000, n_test=1000,
                  k_max=1_000_000),
}


def _setup(cfg: dict):
    from quanta_interp.passuntil import addition_split, addition_text, builtin_instances
    from quanta_interp.passuntil.tasks import addition_tokenizer

    tok = addition_tokenizer()
    train, _ = addition_split(cfg["n_train"], cfg["n_test"], digits=cfg["digits"], seed=cfg["seed"])
    instances = builtin_instances("addition", cfg["n_test"], digits=cfg["digits"], seed=cfg["seed"])
    return tok, np.asarray(tok.encode(addition_text(train)), dtype=np.int64), instances


def train_and_evaluate(cfg: dict, run_dir: RunDir | None) -> dict:
    """One family member: train (resumable), PassUntil on every instance (resumable), exact log P."""
    import torch

    from quanta_interp import lm
    from quanta_interp.passuntil import PassUntil, exact_probability

    torch.set_num_threads(1)
    tok, tokens, instances = _setup(cfg)
    model_dir = run_dir.path / "lm"
    lm_cfg = lm.TrainConfig(n_layers=2, d_model=cfg["width"], n_heads=2, n_ctx=32, d_vocab=tok.vocab_size,
                  steps=cfg["steps"], batch_size=32, lr=3e-3, warmup=100, eval_every=10**9, seed=cfg["seed"],
                  device=cfg["device"])
    trained = lm.train(lm_cfg, tokens, tokenizer=tok, run_dir=model_dir, progress=False)
    model = lm.load(model_dir, device=cfg["device"]).bridge
    t0 = time.perf_counter()
    records = PassUntil(r=cfg["r"], k_max=cfg["k_max"], batch_size=4096, seed=cfg["seed"]).run(
        model, instances, tokenizer=tok, run_dir=RunDir(run_dir.path / "passuntil"), show_progress=False)
    return {"width": cfg["width"], "n_params": trained.n_params,
            "n_params_non_embedding": trained.n_params_non_embedding, "final_train_loss": trained.final_train_loss,
            "passes": [r["passes"] for r in records], "samples": [r["samples"] for r in records],
            "sampling_s": time.perf_counter() - t0,
            "exact_log_p": exact_probability(model, instances, tok).tolist()}


def analyse(results: list[dict], cfg: dict) -> dict:
    """Estimates, validation against exact P, held-out prediction, emergence: the summary dict."""
    from quanta_interp.passuntil import (
        classify_emergence,
        estimate_pass_rate,
        fit_emergence_models,
        fit_task_scaling,
        task_pass_rate,
    )

    r = cfg["r"]
    N = np.array([res["n_params_non_embedding"] for res in results], dtype=float)
    rows, unbiased, logp, exact, covered = [], [], [], [], []
    for res in results:
        rates = estimate_pass_rate(res["passes"], res["samples"], r=r, method="unbiased")
        p_exact = np.exp(res["exact_log_p"])
        task = task_pass_rate(res["passes"], res["samples"], r=r, method="unbiased", seed=cfg["seed"])
        inside = (rates.lower <= p_exact) & (p_exact <= rates.upper)
        rows.append({"width": res["width"], "N": res["n_params_non_embedding"], "n_params": res["n_params"],
                     "final_train_loss": res["final_train_loss"], "pu": task["pu"], "pu_ci": task["ci"],
                     "exact_p": float(p_exact.mean()), "exact_in_task_ci": task["ci"][0] <= p_exact.mean() <= task["ci"][1],
                     "instance_ci_coverage": float(inside.mean()), "n_censored": task["n_censored"],
                     "total_samples": task["total_samples"], "sampling_s": res["sampling_s"]})
        unbiased.append(rates.estimate)
        logp.append(np.exp(rates.log_p))
        exact.append(p_exact)
        covered.append(inside)
    pu, pu_log, p_exact = np.array(unbiased), np.array(logp), np.array(exact)
    held = int(np.argmax(N))
    fit_on = np.arange(N.size) != held
    out = {"config": cfg, "N_definition": "non-embedding parameters", "sizes": rows, "held_out_N": float(N[held])}
    measured = rows[held]
    for name, table, per_inst in (("task", pu, False), ("per_instance", pu_log, True), ("exact_task", p_exact, False)):
        fit = fit_task_scaling(N[fit_on], table[fit_on], predict_at=[N[held]], per_instance=per_inst,
                               seed=cfg["seed"])
        lo, hi = fit.prediction_ci[0]
        out[f"fit_{name}"] = {
            "alpha": fit.alpha, "alpha_ci": list(fit.alpha_ci), "c": fit.c, "r2": fit.r2,
            "predicted_pu": fit.prediction[0], "predicted_ci": [lo, hi],
            "measured_pu": measured["pu"], "measured_ci": measured["pu_ci"], "exact_p": measured["exact_p"],
            "measured_in_prediction_ci": bool(lo <= measured["pu"] <= hi),
            "prediction_in_measured_ci": bool(measured["pu_ci"][0] <= fit.prediction[0] <= measured["pu_ci"][1]),
            "relative_error_vs_measured": fit.prediction[0] / measured["pu"] - 1,
            # near PU = 1 the pass rate compresses differences; the law's own quantity is −log PU
            "neg_log_pu_ratio_predicted_over_measured": float(np.log(fit.prediction[0]) / np.log(measured["pu"])),
            "relative_error_vs_exact": fit.prediction[0] / measured["exact_p"] - 1}
    out["range_sensitivity"] = []  # drop the smallest sizes: how the exponent and the prediction move
    for drop in range(int(fit_on.sum()) - 2):
        keep = fit_on & (N > np.sort(N)[drop - 1] if drop else fit_on)
        fit = fit_task_scaling(N[keep], pu[keep], predict_at=[N[held]], seed=cfg["seed"])
        lo, hi = fit.prediction_ci[0]
        out["range_sensitivity"].append({
            "N_range": [float(N[keep].min()), float(N[keep].max())], "n_sizes": int(keep.sum()),
            "alpha": fit.alpha, "alpha_ci": list(fit.alpha_ci), "predicted_pu": fit.prediction[0],
            "predicted_ci": [lo, hi], "measured_in_prediction_ci": bool(lo <= measured["pu"] <= hi)})
    # −log PU = c·N^−α is a plain power law: the core's table of α over every trimmed range of sizes
    out["alpha_range_sensitivity"] = fit_range_sensitivity(N[fit_on], -np.log(pu[fit_on].mean(axis=1)))
    out["emergence"] = classify_emergence(N, pu, seed=cfg["seed"])
    out["emergence_models"] = fit_emergence_models(N, pu.mean(axis=1))
    out["validation"] = {"instance_ci_coverage_all": float(np.concatenate(covered).mean()), "nominal": 0.95,
                         "task_ci_contains_exact": int(sum(row["exact_in_task_ci"] for row in rows)),
                         "n_sizes": len(rows)}
    out["pu_decades_spanned"] = float(np.log10(max(row["pu"] for row in rows) / min(row["pu"] for row in rows)))
    return out


def plot(summary: dict, out: Path) -> None:
    from quanta_interp.passuntil.scaling import emergence_curve
    from quanta_interp.report import new_figure, save_figure

    rows = summary["sizes"]
    N = np.array([row["N"] for row in rows], dtype=float)
    pu = np.array([row["pu"] for row in rows])
    ci = np.array([row["pu_ci"] for row in rows])
    exact = np.array([row["exact_p"] for row in rows])
    fit = summary["fit_task"]
    grid = np.logspace(np.log10(N.min()) - 0.1, np.log10(N.max()) + 0.1, 100)
    fig, axes = new_figure(2, 1, size=(4.6, 3.6))
    ax = axes[0, 0]
    ax.errorbar(N, pu, yerr=[pu - ci[:, 0], ci[:, 1] - pu], fmt="o", capsize=3, label="PassUntil task PU (95% CI)")
    ax.plot(N, exact, "x", color="k", label="exact P (teacher forcing)")
    ax.plot(grid, np.exp(-fit["c"] * grid ** -fit["alpha"]), "-", lw=1, label=f"fit without largest, α={fit['alpha']:.2f}")
    lo, hi = fit["predicted_ci"]
    ax.errorbar([summary["held_out_N"] * 1.04], [fit["predicted_pu"]], yerr=[[fit["predicted_pu"] - lo], [hi - fit["predicted_pu"]]],
                fmt="s", capsize=3, label="prediction (bootstrap CI)")
    ax.set(xscale="log", yscale="log", xlabel="non-embedding parameters N", ylabel="pass rate PU",
           title="addition: pass rate vs size")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    x = np.log(N)
    ax.plot(x, np.log(-np.log(pu)), "o", label="task PU")
    xs = np.log(grid)
    for name, model in summary["emergence_models"]["models"].items():
        f = emergence_curve(name, model["params"], xs)
        ax.plot(xs, f, lw=1, label=f"{name} (AICc {model['aicc']:.1f})")
    ax.set(xlabel="log N", ylabel="log(−log PU)", title=f"emergence: {summary['emergence']['class']}")
    ax.legend(fontsize=7)
    save_figure(fig, out / "passuntil_family")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="artifacts/passuntil", help="artifact folder")
    p.add_argument("--runs", default="runs/passuntil_family", help="resumable sweep folder (models, samples)")
    p.add_argument("--paper-scale", action="store_true", help="more sizes, steps and instances")
    p.add_argument("--digits", type=int, default=2, help="operand digits (default 2)")
    p.add_argument("--r", type=int, default=3, help="passes to wait for per instance (default 3)")
    p.add_argument("--steps", type=int, default=None, help="training steps per model (default: the scale's)")
    p.add_argument("--workers", type=int, default=None, help="processes for the sweep (default: all cores)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    scale = SCALES["paper" if args.paper_scale else "cpu"]
    cfg = {k: v for k, v in scale.items() if k != "widths"} | {"digits": args.digits, "r": args.r,
                                                                 "seed": args.seed, "device": args.device}
    if args.steps is not None:
        cfg["steps"] = args.steps
    configs = [cfg | {"width": w} for w in scale["widths"]]
    t0 = time.perf_counter()
    results = map_runs(train_and_evaluate, configs, backend="processes", workers=args.workers,
                       root=Path(args.runs) / (f"d{args.digits}_r{args.r}_s{args.seed}{'_paper' if args.paper_scale else ''}"
                                              + (f"_steps{args.steps}" if args.steps is not None else "")),
                       name="passuntil_family")
    summary = analyse(list(results), cfg | {"widths": scale["widths"]})
    summary["wall_s"] = time.perf_counter() - t0
    out = Path(args.out)
    atomic_write_json(out / "summary.json", summary)
    plot(summary, out)
    print(f"wrote {out / 'summary.json'}: PU spans {summary['pu_decades_spanned']:.1f} decades; "
          f"held-out prediction {summary['fit_task']['predicted_pu']:.4g} vs measured {summary['fit_task']['measured_pu']:.4g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
