"""Language statistics → data-limited scaling (Cagnetta, Raventós, Ganguli, Wyart 2026).

Correlation decay ‖C(n)‖ ∝ n^-β (`correlations`), conditional-entropy decay H_n − H_∞ ∝ n^-γ
(`entropy`), the prediction α_D = γ/(2β) (`predict`), its check by training LMs on growing data
(`measure`, `pipeline`), and the Random Hierarchy Model with known β = ln m / ln s (`rhm`).
"""

from .._exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "config": ["StatsConfig", "MeasureConfig", "RHMConfig"],
    "correlations": ["Correlation", "CorrelationDecay", "fit_beta", "pair_counts"],
    "fits": ["BetaFit", "GammaFit", "AlphaFit"],
    "entropy": ["NgramEntropy", "fit_gamma", "ngram_entropy"],
    "predict": ["AlphaDPrediction", "alpha_d", "horizon"],
    "measure": ["position_losses", "BudgetRun", "fit_alpha_measured", "collapse"],
    "pipeline": ["BetaReport", "beta_report", "GammaReport", "gamma_report", "lm_entropy_report", "prediction",
                 "MeasureReport", "measure_report", "default_lags"],
    "rhm": ["RandomHierarchyModel"],
})
