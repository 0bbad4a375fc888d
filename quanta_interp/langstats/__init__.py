"""Language statistics → data-limited scaling (Cagnetta, Raventós, Ganguli, Wyart 2026).

Correlation decay ‖C(n)‖ ∝ n^-β (`correlations`), conditional-entropy decay H_n − H_∞ ∝ n^-γ
(`entropy`), the prediction α_D = γ/(2β) (`predict`), its check by training LMs on growing data
(`measure`), and the Random Hierarchy Model with known β = ln m / ln s (`rhm`). Import from the
submodules; this file stays empty so `quanta --help` does not load scipy.
"""
