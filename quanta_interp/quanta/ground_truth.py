"""QDG checked where the answer is known: the quanta of multitask sparse parity are its subtasks.

A trained sparse-parity MLP sees samples drawn from the task distribution (subtask i with p_i ∝ i^−(α+1),
as an LM sees tokens of a text); the samples it predicts with loss below the threshold are kept (the
recheck of `quanta discover`); their per-sample gradients go through the same analysis as tokens'
(`analysis.cluster_quanta`: clustering, rank-frequency envelope, fit). Against the true subtask of each
sample: ARI, homogeneity and completeness at K = learned subtasks; homogeneity at K = 2^k × learned
(subtask × bit pattern, the finest true structure); the rank-frequency slope against −(α + 1); and the
gradient geometry behind them (mean |cos| within a subtask and pattern, within a subtask across patterns,
across subtasks). The paper had no such check.

`sparse_parity.split` holds issue 26's split: the task the default clustering was chosen on (`TUNING`), and 12
held-out draws (`TEST`) never used for a choice (`analyses/qdg_sparse_parity.py`, `analyses/qdg_heldout.py`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..config import Config, ParameterError, check_finite, check_positive_int
from .config import ClusteringConfig

__all__ = ["GroundTruthConfig", "GroundTruth", "METHODS", "draw_samples", "GradientGeometry", "gradient_geometry",
           "Recovery", "recovery", "ground_truth"]

# (name, affinity, over_cluster, refine): the paper's clustering first, the default of `quanta discover` last.
METHODS = (("paper: spectral, angular", "angular", 1, 0), ("spectral, unsigned", "unsigned", 1, 0),
           ("spectral, |cos|", "abs", 1, 0), ("spectral, unsigned, refined", "unsigned", 1, 10),
           ("angular, ×8 then merge", "angular", 8, 0), ("|cos|, ×8 then merge", "abs", 8, 0),
           ("unsigned, ×8 then merge", "unsigned", 8, 0),
           ("unsigned, ×8, merge, refined (default)", "unsigned", 8, 10))



@dataclass(frozen=True)
class GroundTruthConfig(Config):
    """How the quanta of a trained sparse-parity MLP are sampled, clustered and scored."""

    n_samples: int = 3000
    """Samples clustered: drawn from the task's Zipf distribution, kept if their loss is below the threshold."""
    loss_threshold: float = 0.1
    """Keep samples whose loss is below this, in nats (QDG's threshold for tokens)."""
    projection_dim: int = 0
    """0: exact per-sample gradients (small MLPs); k: the TensorSketch of `quanta discover`."""
    methods: tuple[str, ...] = field(default=tuple(m[0] for m in METHODS), metadata={"cli": False})
    """Which rows of `METHODS` to score."""
    seed: int = 1
    """Seeds the samples, the sketch and the clustering."""
    resamples: int = 0
    """0: none; R ≥ 2: each method's quanta are also resampled R times (`stability.resample_quanta`: bootstrap
    of the samples, clustering seed) for the resampled slope interval (`stability.slope_interval`)."""

    def _checks(self):
        def methods(name, v):
            known = [m[0] for m in METHODS]
            bad = [m for m in v if m not in known]
            if not v or bad:
                raise ParameterError(name, f"must name rows of METHODS ({'; '.join(known)}), got {bad or v}")

        def resamples(name, v):
            check_positive_int(name, v, low=0)
            if v == 1:
                raise ParameterError(name, "must be 0 (no resampling) or at least 2, got 1")

        return [("n_samples", check_positive_int),
                ("loss_threshold", lambda n, v: check_finite(n, v, low=0.0, low_open=True)),
                ("projection_dim", lambda n, v: check_finite(n, v, low=0)), ("methods", methods),
                ("resamples", resamples)]


def draw_samples(model, task, n: int, *, loss_threshold: float, seed: int):
    """Up to `n` samples of the task distribution that `model` predicts with loss < `loss_threshold` nats.

    Samples are drawn on the CPU (the same samples whatever the model's device) and scored on the model's.

    Returns
    -------
    x : float32 tensor (m, n_tasks + n_bits)
    y : int64 tensor (m,)
    subtask : int64 ndarray (m,)
    pattern : int64 ndarray (m,)
        The subtask's k bits read as a binary number, 0 … 2^k − 1.
    n_drawn : int
        Samples drawn to find them (at most 20 n).
    """
    import torch

    gen, device = torch.Generator().manual_seed(seed), next(model.parameters()).device
    xs, ys, ts, drawn = [], [], [], 0
    while sum(len(t) for t in ts) < n and drawn < 20 * n:
        x, y, t = task.sample(n, gen)
        drawn += n
        with torch.no_grad():
            loss = torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device), reduction="none")
        keep = (loss < loss_threshold).cpu()
        xs.append(x[keep])
        ys.append(y[keep])
        ts.append(t[keep])
    x, y, t = torch.cat(xs)[:n], torch.cat(ys)[:n], torch.cat(ts)[:n].numpy()
    bits = x[:, task.n_tasks:].long().numpy()
    powers = 2 ** np.arange(task.k - 1, -1, -1)
    pattern = (bits[np.arange(len(t))[:, None], task.subsets[t]] * powers).sum(1) if len(t) else np.zeros(0, int)
    return x, y, t, pattern, drawn


@dataclass(frozen=True)
class GradientGeometry:
    """Mean |cos| between unit gradient rows (`gradient_geometry`), each None when no pair of that kind exists.

    Attributes
    ----------
    same_subtask_same_pattern : float or None
        Pairs of distinct samples of one subtask with the same bit pattern.
    same_subtask_other_pattern : float or None
        Pairs of one subtask with different bit patterns.
    other_subtask : float or None
        Pairs from different subtasks.
    """

    same_subtask_same_pattern: float | None
    same_subtask_other_pattern: float | None
    other_subtask: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def gradient_geometry(X: np.ndarray, subtask: np.ndarray, pattern: np.ndarray) -> GradientGeometry:
    """Mean |cos| between unit rows X (n, dim): same subtask and pattern, same subtask other pattern, other
    subtask (`subtask`, `pattern`: int (n,)). Quanta are recoverable from gradients when the first two are well
    above the third."""
    A = np.abs(X @ X.T)
    same = subtask[:, None] == subtask[None]
    same_pattern = same & (pattern[:, None] == pattern[None]) & ~np.eye(len(X), dtype=bool)
    other_pattern = same & (pattern[:, None] != pattern[None])
    return GradientGeometry(float(A[same_pattern].mean()) if same_pattern.any() else None,
                            float(A[other_pattern].mean()) if other_pattern.any() else None,
                            float(A[~same].mean()) if (~same).any() else None)


@dataclass(frozen=True)
class Recovery:
    """Where a clustering put the samples of each true subtask (`recovery`).

    Attributes
    ----------
    recall : dict int → float
        Per subtask asked for, the share of its samples in the one cluster holding most of them (< 1 when its
        gradients split).
    home : dict int → int
        That cluster, per subtask.
    purity : list of float
        Per cluster present (ascending label), the share of its members from its largest subtask (< 1 when it
        joins subtasks).
    mixed : list of dict
        Per cluster below 0.9 purity: "cluster", "size" and "subtasks" (its two largest, with their shares to 3
        decimals).
    """

    recall: dict
    home: dict
    purity: list
    mixed: list

    def to_dict(self) -> dict:
        return asdict(self)


def recovery(subtask: np.ndarray, labels: np.ndarray, subtasks) -> Recovery:
    """Where a clustering `labels` (n,) puts the samples of true `subtask` (n,), for each of `subtasks` (see
    `Recovery`)."""
    from sklearn.metrics.cluster import contingency_matrix

    truth, t_idx = np.unique(subtask, return_inverse=True)
    C = contingency_matrix(t_idx, labels)  # (true subtasks, clusters present), counts
    clusters = np.unique(labels)
    purity = C.max(0) / C.sum(0)
    mixed = []
    for j in np.flatnonzero(purity < 0.9):
        top = np.argsort(C[:, j])[::-1][:2]
        mixed.append({"cluster": int(clusters[j]), "size": int(C[:, j].sum()),
                      "subtasks": {int(truth[i]): round(float(C[i, j] / C[:, j].sum()), 3) for i in top}})
    rows = {int(t): C[i] for i, t in enumerate(truth) if int(t) in set(int(u) for u in subtasks)}
    return Recovery(recall={t: float(r.max() / r.sum()) for t, r in rows.items()},
                    home={t: int(clusters[r.argmax()]) for t, r in rows.items()},
                    purity=[float(p) for p in purity], mixed=mixed)


def _short(fit) -> dict:
    """The JSON of `fit` (a `frequencies.RankFrequencyFit`, not imported here: its module loads scipy, and the CLI
    imports this one for `GroundTruthConfig`) cut to the slope, its CI and range, the ranks fitted and the
    prediction."""
    full = fit.to_dict()
    return {k: full.get(k) for k in ("slope", "slope_ci", "slope_range", "n_ranks_fitted", "predicted_slope")}


@dataclass(frozen=True)
class GroundTruth:
    """What `ground_truth` scored: `report` (its JSON, see there) and what the figures draw.

    Attributes
    ----------
    report : dict
    gradients : float32 ndarray (n, dim)
        The clustered per-sample gradients.
    subtask : int64 ndarray (n,)
        Each sample's true subtask.
    labels : dict str → int ndarray (n,)
        Each scored method's quanta at K.
    """

    report: dict
    gradients: np.ndarray
    subtask: np.ndarray
    labels: dict

    def to_dict(self) -> dict:
        return self.report


def ground_truth(model, task, learned, config: GroundTruthConfig, *, show_progress: bool = False) -> GroundTruth:
    """Score QDG's quanta of a trained sparse-parity MLP against its subtasks (see module docstring).

    Parameters
    ----------
    model : nn.Sequential
        The MLP (`sparse_parity.build_mlp`), float32 encoded inputs → 2 logits.
    task : MultitaskSparseParity
    learned : list of int
        Subtasks below 0.1 bits (`train_sparse_parity`'s result).

    Returns
    -------
    GroundTruth
        Its `report`: `n_samples`, `n_drawn`, `subtasks` (samples per present subtask), `geometry` (`gradient_geometry`),
        `truth_fit` (rank-frequency fit of the true subtask sizes: the best any clustering can do),
        `predicted_slope` −(α + 1), `fit_ranks` (1 … `learned_prefix`, the subtasks 0, 1, … learned before the
        first unlearned one: subtasks are numbered by frequency, and one learned after a more frequent unlearned
        subtask is not at its task rank, so −(α + 1) holds over the prefix only; `truth_slope_all_learned` and
        each method's `slope_all_learned` fit all K learned ranks instead), and `methods`: per row of METHODS
        its ARI, homogeneity and completeness at K = learned subtasks present, `fine_homogeneity` at K = 2^k ×
        learned (against subtasks; `fine_homogeneity_learned` on learned subtasks' samples only,
        `fine_homogeneity_patterns` against subtask × pattern; `n_fine_clusters` of them remain after refining),
        rank-frequency fits of its clusters at K (`fit_at_K`) and of the paper's envelope over counts
        2 … 2^k × learned, `recovery` (`recovery` of the learned subtasks at K) and, when `config.resamples`,
        `resampled` (`resamples`, each resample's slope at K over `fit_ranks`, their `slope_interval`, `ami`,
        `quantum_stability`; see `stability.resample_quanta`). Beside it, what was scored, for figures.

    Raises
    ------
    ValueError
        Fewer than 2 learned subtasks, a threshold that keeps no sample, or fewer samples than clusters.
    """
    from sklearn.metrics import adjusted_rand_score, completeness_score, homogeneity_score

    from ..capture import per_sample_gradients
    from .analysis import cluster_quanta
    from .clustering import unit_rows
    from .frequencies import rank_frequency_fit, rank_sizes

    if len(learned) < 2:
        raise ValueError(f"only {len(learned)} subtask(s) learned: quanta need at least 2; train longer "
                         "(more steps) or on fewer subtasks")
    x, y, subtask, pattern, drawn = draw_samples(model, task, config.n_samples, loss_threshold=config.loss_threshold,
                                                 seed=config.seed)
    if len(subtask) == 0:
        raise ValueError(f"loss_threshold {config.loss_threshold} keeps no sample of {drawn} drawn; raise it")
    device = next(model.parameters()).device
    G = per_sample_gradients(model, x.to(device), y.to(device), projection_dim=config.projection_dim or None,
                             seed=config.seed).cpu().numpy()
    ok = np.linalg.norm(G, axis=1) > 0  # p_y = 1.0 in float32 leaves no gradient
    G, subtask, pattern = G[ok], subtask[ok], pattern[ok]
    present = np.unique(subtask)
    from_learned = np.isin(subtask, learned)
    K = int(np.isin(present, learned).sum())  # samples of unlearned subtasks are lucky guesses (≈ 1 %)
    fine = K * 2 ** task.k
    if K < 2:
        raise ValueError(f"the kept samples hold {K} learned subtask(s); quanta need at least 2: raise n_samples")
    if fine >= len(G):
        raise ValueError(f"{len(G)} samples cannot fill 2^k × {K} = {fine} clusters; raise n_samples")
    alpha = task.zipf_exponent - 1.0
    counts = sorted({int(c) for c in np.unique(np.geomspace(2, fine, 12).round())} | {K})
    zipf = {"alpha_n": alpha, "alpha_n_source": "the task's Zipf exponent", "seed": config.seed}
    prefix = next(i for i in range(len(learned) + 1) if i not in learned)  # subtasks 0 … prefix−1 all learned
    ranks, all_learned = (1, max(min(prefix, K), 3)), (1, max(K, 3))

    def fit(labels, fit_ranks):
        return rank_frequency_fit(rank_sizes(labels), total=len(G), fit_ranks=fit_ranks, **zipf)

    truth = np.unique(subtask, return_inverse=True)[1]
    out = {"n_samples": int(len(G)), "n_drawn": int(drawn), "n_zero_gradients": int((~ok).sum()),
           "learned": [int(i) for i in learned], "subtasks": {int(t): int((subtask == t).sum()) for t in present},
           "share_from_learned": float(from_learned.mean()),
           "geometry": gradient_geometry(unit_rows(G), subtask, pattern).to_dict(), "predicted_slope": -(alpha + 1.0),
           "truth_fit": fit(truth, ranks).to_dict(), "truth_slope_all_learned": fit(truth, all_learned).slope,
           "learned_prefix": prefix, "fit_ranks": list(ranks), "cluster_counts": counts, "methods": {}}
    labels = {}
    for name, affinity, over, refine in METHODS:
        if name not in config.methods:
            continue
        clustering = ClusteringConfig(K, affinity=affinity, over_cluster=over, refine=refine)
        quanta = cluster_quanta(G, clustering, counts=counts, fit_ranks=ranks, show_progress=show_progress, **zipf)
        qc = quanta.clustering
        fine_labels = qc.fine_labels_ if over > 1 else qc.labels_for(fine)  # ≤ fine clusters when refined
        labels[name] = quanta.labels
        out["methods"][name] = {
            "affinity": affinity, "over_cluster": over, "refine": refine,
            "ari": float(adjusted_rand_score(subtask, quanta.labels)),
            "homogeneity": float(homogeneity_score(subtask, quanta.labels)),
            "completeness": float(completeness_score(subtask, quanta.labels)),
            "n_fine_clusters": int(fine_labels.max()) + 1,
            "fine_homogeneity": float(homogeneity_score(subtask, fine_labels)),
            # the same on the samples of learned subtasks only (the ≈ 1 % lucky guesses of unlearned ones have no
            # quantum to join), and against subtask × pattern, the finest true structure
            "fine_homogeneity_learned": float(homogeneity_score(subtask[from_learned], fine_labels[from_learned])),
            "fine_homogeneity_patterns": float(homogeneity_score(subtask * 2 ** task.k + pattern, fine_labels)),
            "envelope_fit": _short(quanta.fit), "fit_at_K": _short(fit(quanta.labels, ranks)),
            "slope_all_learned": fit(quanta.labels, all_learned).slope,
            "recovery": recovery(subtask, quanta.labels, [t for t in present if t in learned]).to_dict(),
        }
        if config.resamples:
            out["methods"][name]["resampled"] = _resampled(G, quanta.labels, clustering, counts, ranks, config, zipf)
    return GroundTruth(out, G, subtask, labels)


def _resampled(G: np.ndarray, labels: np.ndarray, clustering: ClusteringConfig, counts, fit_ranks,
               config: GroundTruthConfig, zipf: dict) -> dict:
    """The quanta of `G` resampled `config.resamples` times with the clustering of `cluster_quanta`
    (`stability.resample_quanta`): each resample's slope at K over the same ranks, their `slope_interval`,
    the partition agreement (`ami`) and each reference quantum's stability (mean best-match Jaccard)."""
    from .frequencies import rank_frequency_fit, rank_sizes
    from .stability import resample_quanta, slope_interval

    st = resample_quanta(G, clustering, counts=counts, fit_ranks=fit_ranks, resamples=config.resamples,
                         seed=config.seed, reference=labels, show_progress=False)
    fits = [rank_frequency_fit(rank_sizes(lab), total=len(rows), fit_ranks=fit_ranks,
                               **{**zipf, "seed": config.seed + i})
            for i, (rows, lab) in enumerate(zip(st.rows, st.labels, strict=True))]
    interval = slope_interval(fits)  # None when fewer than 2 resamples could be fitted
    return {"resamples": config.resamples, "slope_interval": interval and [float(v) for v in interval],
            "slopes": [f.slope for f in fits], "ami": float(np.mean(st.ami)),
            "quantum_stability": [float(q) for q in st.quantum_stability]}
