"""β, γ, predicted and measured α_D = γ/(2β) on Shakespeare, per tokenizer → artifacts/langstats/.

Per tokenizer: ‖C(n)‖ over lags with the shuffled-pair floor (β), n-gram H_n at small n, a data-limited
sweep (LMs trained on P tokens, resumable under --runs), γ from the largest-P model's per-position
validation loss, the prediction γ/(2β) beside the measured exponent, and the collapse of the L_n(P)
curves. CPU scale by default; `--paper-scale` uses BPE-8192, bigger models and budgets.

    python analyses/langstats_shakespeare.py [--paper-scale] [--device cuda] [--out artifacts/langstats]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from quanta_interp.corpora import load_corpus
from quanta_interp.io import atomic_write_json, read_json, to_jsonable
from quanta_interp.langstats.config import MeasureConfig
from quanta_interp.langstats.entropy import ngram_entropy
from quanta_interp.langstats.measure import collapse
from quanta_interp.langstats.pipeline import (
    beta_report,
    default_lags,
    gamma_report,
    measure_report,
    prediction,
)

SCALES = {
    # ≈ 25 min on 2 CPU cores with --backend processes (2 × 10.5k steps of ~0.1 s)
    "cpu": {"tokenizers": {"char": 1000, "bpe-1024": 300}, "n_max": 6, "budgets": [2 ** k for k in range(14, 22)],
            "model": {"n_layers": 2, "d_model": 96, "n_heads": 4, "n_ctx": 64, "batch_size": 16, "lr": 3e-3,
                      "warmup": 100, "eval_every": 100, "eval_batches": 8},
            "sweep": {"epochs": 20.0, "min_steps": 300, "max_steps": 2000}},
    "paper": {"tokenizers": {"char": 3000, "bpe-8192": 1000}, "n_max": 8, "budgets": [2 ** k for k in range(14, 23)],
              "model": {"n_layers": 6, "d_model": 384, "n_heads": 6, "n_ctx": 256, "batch_size": 64, "lr": 1e-3,
                        "warmup": 200, "eval_every": 200, "eval_batches": 16},
              "sweep": {"epochs": 40.0, "min_steps": 500, "max_steps": 20000}},
}


def analyse(tokenizer: str, max_lag: int, scale: dict, args: argparse.Namespace) -> dict:
    corpus = load_corpus("shakespeare", tokenizer, seed=args.seed)
    docs = corpus.documents("train")
    betas = beta_report(docs, corpus.vocab_size, default_lags(max_lag), seed=args.seed)
    ngram = ngram_entropy(docs, scale["n_max"])
    budgets = [p for p in scale["budgets"] if p <= sum(d.size for d in docs)]
    sweep = measure_report(MeasureConfig(budgets=tuple(budgets), corpus="shakespeare", tokenizer=tokenizer,
                                         model_config={**scale["model"], "device": args.device}, seed=args.seed,
                                         **scale["sweep"]),
                           str(Path(args.runs) / tokenizer), executor={"backend": args.backend})
    # the model trained on the most data: its per-position loss is the H_n upper bound
    gammas = gamma_report(sweep.position_losses[-1], seed=args.seed)
    gam, gam_raw = gammas.gamma_offset, gammas.gamma_raw
    beta = betas.require("op")
    pred, pred_error = None, None
    try:
        pred = prediction(beta, gam)
    except ValueError as e:  # e.g. a flat per-position curve: γ ≤ 0 predicts nothing
        pred_error = f"no prediction: {e}"
    with_h_inf = sweep.fit_entropy_offset
    if gam.H_inf < min(sweep.best_val_loss):
        from quanta_interp.langstats.measure import fit_alpha_measured

        with_h_inf = fit_alpha_measured(sweep.P, sweep.best_val_loss, h_inf=gam.H_inf, seed=args.seed)
    measured = sweep.fit_free_offset
    return to_jsonable({
        "tokenizer": tokenizer, "vocab_size": corpus.vocab_size, "n_train_tokens": int(sum(d.size for d in docs)),
        "beta": beta.beta, "beta_ci": beta.beta_ci,
        "beta_fro": betas.beta_fro.beta if betas.beta_fro is not None else None, "lags_used": beta.lags_used,
        "noise_floor_op_at_full_pairs": float(betas.spectrum["floor_op"][0]),
        "noise_floor_exponent": betas.spectrum["floor_exponent_op"],
        "gamma": gam.gamma, "gamma_ci": gam.gamma_ci, "H_inf": gam.H_inf,
        "gamma_raw_loglog": gam_raw.gamma, "gamma_raw_loglog_ci": gam_raw.gamma_ci,
        "alpha_D_predicted": pred.alpha_D if pred else None, "alpha_D_predicted_ci": pred.alpha_D_ci if pred else None,
        "alpha_D_predicted_error": pred_error,
        "alpha_D_measured": measured.alpha_D, "alpha_D_measured_ci": measured.alpha_D_ci,
        "alpha_D_measured_fit": "L(P) = a·P^-α + c (c fitted)",
        "alpha_D_measured_with_H_inf": with_h_inf.alpha_D if with_h_inf else None,
        "alpha_D_measured_with_H_inf_ci": with_h_inf.alpha_D_ci if with_h_inf else None,
        "alpha_D_measured_sensitivity": measured.sensitivity,
        "beta_sensitivity": beta.sensitivity, "gamma_sensitivity": gam.sensitivity,
        "model": {**scale["model"], "device": args.device},
        "sweep": {"P": sweep.P, "best_val_loss": sweep.best_val_loss, "steps": sweep.steps},
        "detail": {"spectrum": betas.spectrum, "ngram": ngram, "position_losses": sweep.position_losses,
                   "gamma_prefactor": gam.fit.prefactor, "measured_fit": measured.fit, "beta_fit": beta.fit},
    })


def assess(s: dict, detail: dict, scale: dict, *, tolerance: float = 0.05, seed: int = 0) -> dict:
    """γ's fit quality and its dependence on H_∞, and predicted vs measured α_D decided only where both
    intervals are narrower than `tolerance` — else "undetermined", with what data would decide it.
    Reads only the summary entry and its detail (no model, no training): seconds."""
    from quanta_interp.langstats.pipeline import gamma_vs_h_inf
    from quanta_interp.langstats.predict import compare_alpha_d

    h = np.asarray(detail["position_losses"][-1])
    rows = gamma_vs_h_inf(h, extra=[s["H_inf"]], seed=seed)
    n = np.arange(2, h.size + 1)  # the offset fit's own R², of log H_n (as `fit_power_law` scores it)
    log_h, log_fit = np.log(h[1:]), np.log(detail["gamma_prefactor"] * n ** -s["gamma"] + s["H_inf"])
    r2 = 1 - np.sum((log_h - log_fit) ** 2) / np.sum((log_h - log_h.mean()) ** 2)
    cmp = compare_alpha_d(s["alpha_D_predicted"], s["alpha_D_predicted_ci"], s["alpha_D_measured"],
                          s["alpha_D_measured_ci"], tolerance=tolerance)
    tokens_per_step = scale["model"]["batch_size"] * scale["model"]["n_ctx"]
    epochs = [st * tokens_per_step / p for p, st in zip(s["sweep"]["P"], s["sweep"]["steps"], strict=True)]
    capped = [p for p, e in zip(s["sweep"]["P"], epochs, strict=True) if e < scale["sweep"]["epochs"] - 1e-9]
    needs = {
        "steps": f"{len(capped)} of {len(epochs)} budgets stopped at the {scale['sweep']['max_steps']}-step cap "
                 f"before {scale['sweep']['epochs']:g} epochs (P ≥ {min(capped):.0f}; the largest saw "
                 f"{min(epochs):.2g} epochs): train each to its early-stopping minimum, "
                 f"≈ {scale['sweep']['epochs'] * max(capped) / tokens_per_step:.0f} steps at P = {max(capped):.0f}"
        if capped else "every budget reached its epochs",
        "seeds": "1 model per budget: the measured interval is a bootstrap over budgets only; ≥ 3 seeds per P "
                 "would put model-level noise in it",
        "P": f"P spans {np.log10(max(s['sweep']['P']) / min(s['sweep']['P'])):.1f} decades of the "
             f"{s['n_train_tokens']} training tokens"
             + (f"; the intervals must shrink {cmp.narrowing_needed:.0f}×" if cmp.narrowing_needed else "")
             + ": more decades of P (a larger corpus), and a γ from a model that uses long contexts",
    }
    budget = {"epochs_per_budget": epochs, "n_capped_budgets": len(capped),
              "steps_to_reach_epochs": scale["sweep"]["epochs"] * sum(capped) / tokens_per_step}
    return {"gamma_fit_r2": float(r2), "gamma_raw_loglog_r2": rows[0]["r2"], "gamma_vs_H_inf": rows,
            "smallest_H_n_fitted": float(h[1:].min()),
            "alpha_D_comparison": {**cmp.to_dict(), **budget,
                                   "would_decide_it": needs if cmp.verdict == "undetermined" else None}}


RHM_CHECKS = [dict(v=8, m=3, s=3, L=4, n=60_000), dict(v=16, m=2, s=4, L=4, n=30_000)]


def rhm_check(seed: int = 0) -> dict:
    """β measured on Random Hierarchy Model sequences vs the analytic ln m / ln s, for the `RHM_CHECKS`
    grammars (the log-norms averaged over 3 grammars each, as tests/langstats does): seconds."""
    from quanta_interp.langstats.correlations import CorrelationDecay, fit_beta
    from quanta_interp.langstats.rhm import RandomHierarchyModel

    rows = []
    for c in RHM_CHECKS:
        lags = [c["s"] ** k for k in range(c["L"])]
        logs, floors = [], []
        for g in range(seed, seed + 3):
            rhm = RandomHierarchyModel(c["v"], c["m"], c["s"], c["L"], seed=g)
            est = CorrelationDecay(lags, n_shuffles=1, seed=g).fit(rhm.sample(c["n"]), c["v"])
            logs.append(np.log(est.op_norm_))
            floors.append(est.floor_op_)
        fit = fit_beta(lags, np.exp(np.mean(logs, 0)), np.mean(floors, 0), n_boot=200, seed=seed)
        rows.append({**c, "grammars": 3, "beta_analytic": rhm.beta, "beta": fit.beta, "beta_ci": fit.beta_ci,
                     "lags_used": fit.lags_used})
    return {"what": "β of RHM sequences vs the analytic ln m / ln s (analyses/langstats_shakespeare.py rhm_check)",
            "checks": rows}


def plot(s: dict, out: Path) -> None:
    """Four panels: ‖C(n)‖ with the floor, H_n, L(P) with both exponents, the collapse."""
    from quanta_interp.report import new_figure, save_figure

    d = s["detail"]
    fig, ax = new_figure(4, 1, size=(4.2, 3.6))
    sp = d["spectrum"]
    a = ax[0, 0]
    a.loglog(sp["lags"], sp["op_norm"], "o", ms=4, label="‖C(n)‖ op")
    a.loglog(sp["lags"], sp["fro_norm"], "s", ms=3, alpha=0.6, label="‖C(n)‖ Frob")
    a.loglog(sp["lags"], sp["floor_op"], "k--", lw=1, label="noise floor (op)")
    lags = np.asarray(s["lags_used"], float)
    a.loglog(lags, d["beta_fit"]["prefactor"] * lags ** -s["beta"], "-", label=f"β = {s['beta']:.2f}")
    a.set(xlabel="lag n", ylabel="norm", title=f"correlations ({s['tokenizer']})")
    a.legend(fontsize=7)

    a = ax[0, 1]
    curve = np.asarray(d["position_losses"][-1])
    n = np.arange(1, curve.size + 1)
    a.semilogx(n, curve, "-", label=f"LM per-position loss, P={s['sweep']['P'][-1]:.0e}")
    ng = d["ngram"]
    rel = np.asarray(ng["reliable"], bool) & (np.asarray(ng["n"]) > 0)
    a.semilogx(np.asarray(ng["n"])[rel], np.asarray(ng["H"])[rel], "o", label="n-gram (Miller–Madow, reliable)")
    a.semilogx(n[1:], s["H_inf"] + d["gamma_prefactor"] * n[1:] ** -s["gamma"], "--",
               label=f"H∞ + A n^-γ, γ = {s['gamma']:.2f}")
    a.set(xlabel="context length n", ylabel="H_n (nats)", title="conditional entropy")
    a.legend(fontsize=7)

    a = ax[0, 2]
    p, mf = np.asarray(s["sweep"]["P"], float), d["measured_fit"]
    if s["sweep"].get("best_val_loss"):  # absent where a run's per-P losses did not come back
        a.loglog(p, np.asarray(s["sweep"]["best_val_loss"]) - mf["offset"], "o", label="best val loss − c")
    a.loglog(p, mf["prefactor"] * p ** -s["alpha_D_measured"], "-", label=f"measured α_D = {s['alpha_D_measured']:.3f}")
    if s["alpha_D_predicted"] is not None:
        mid = np.exp(np.mean(np.log(p)))
        anchor = mf["prefactor"] * mid ** -s["alpha_D_measured"]
        a.loglog(p, anchor * (p / mid) ** -s["alpha_D_predicted"], "--",
                 label=f"predicted γ/2β = {s['alpha_D_predicted']:.3f}")
    a.set(xlabel="training tokens P", ylabel="L(P) − c (nats)", title="data-limited scaling")
    a.legend(fontsize=7)

    a = ax[0, 3]
    x, y = collapse(p, np.asarray(d["position_losses"]), beta=s["beta"], gamma=s["gamma"], h_inf=s["H_inf"])
    for i in range(len(p)):
        ok = y[i] > 0
        a.loglog(x[i][ok], y[i][ok], "-", lw=1, label=f"P = {p[i]:.0e}")
    positive = y[y > 0]  # a point where L_n barely exceeds H∞ would stretch the axis over decades
    a.set_ylim(np.percentile(positive, 2) / 2, np.percentile(positive, 100) * 2)
    a.set(xlabel="P / n^(2β)", ylabel="n^γ (L_n − H∞)", title="collapse")
    a.legend(fontsize=6)
    save_figure(fig, out / f"langstats_{s['tokenizer']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="artifacts/langstats")
    parser.add_argument("--runs", default="runs/langstats_shakespeare", help="sweep folders (resumable)")
    parser.add_argument("--paper-scale", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="serial", choices=["serial", "processes"])
    parser.add_argument("--tokenizers", default=None, help="comma-separated subset of the scale's tokenizers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-plots", action="store_true", help="numbers only (e.g. on a machine without matplotlib)")
    parser.add_argument("--plot-only", action="store_true", help="redraw figures from summary.json + detail_*.json")
    parser.add_argument("--assess-only", action="store_true",
                        help="add γ's fit quality, its H_∞ sensitivity and the α_D verdict to summary.json (seconds)")
    args = parser.parse_args()
    scale = SCALES["paper" if args.paper_scale else "cpu"]
    out = Path(args.out)
    summary_path = out / "summary.json"
    summary = read_json(summary_path) if summary_path.exists() else {}
    wanted = args.tokenizers.split(",") if args.tokenizers else list(scale["tokenizers"])
    if not args.plot_only:
        atomic_write_json(out / "rhm_beta.json", to_jsonable(rhm_check(args.seed)))
    for tok in wanted:
        if tok not in scale["tokenizers"]:
            raise SystemExit(f"--tokenizers: {tok!r} is not one of {list(scale['tokenizers'])}")
        if args.plot_only:
            plot({**summary[tok], "detail": read_json(out / f"detail_{tok}.json")}, out)
            continue
        if args.assess_only:
            summary[tok].update(to_jsonable(assess(summary[tok], read_json(out / f"detail_{tok}.json"), scale,
                                                   seed=args.seed)))
            atomic_write_json(summary_path, summary)
            print(f"{tok}: γ R² {summary[tok]['gamma_fit_r2']:.2f}; α_D comparison "
                  f"{summary[tok]['alpha_D_comparison']['verdict']}")
            continue
        s = analyse(tok, scale["tokenizers"][tok], scale, args)
        s.update(to_jsonable(assess(s, s["detail"], scale, seed=args.seed)))
        atomic_write_json(out / f"detail_{tok}.json", s.pop("detail"))
        summary[tok] = s
        atomic_write_json(summary_path, summary)
        if not args.no_plots:
            plot({**s, "detail": read_json(out / f"detail_{tok}.json")}, out)
        print(f"{tok}: β = {s['beta']:.3f} {s['beta_ci']}, γ = {s['gamma']:.3f} {s['gamma_ci']}, "
              f"α_D predicted {s['alpha_D_predicted']} {s['alpha_D_predicted_ci']}, "
              f"measured {s['alpha_D_measured']:.3f} {s['alpha_D_measured_ci']}")


if __name__ == "__main__":
    main()
