"""How much of QDG's answer survives resampling: every quantum's stability, the partition agreement, and a
slope interval that includes the clustering's own variance.

The analysis of the stored gradients is repeated `resamples` times — no gradient is recomputed. Resample i
clusters the tokens again with its own seed (k-means' starts: what another row order or a rerun elsewhere would
also change) and counts its quanta on a bootstrap draw of the tokens (the sampling noise of every frequency).
Why not recluster a subsample of the tokens (Hennig's "subsetting"; Monti et al. 2003): on the README run an 80 %
subsample steepened the envelope by 0.16 (resampled slopes −1.02 … −1.15 against −0.91 with all tokens), a change of
resolution rather than noise, and the interval then missed reruns with other seeds; and a bootstrap draw is not
clustered itself, because its duplicated tokens form spurious tight pairs. `SUBSAMPLE` < 1 restores subsetting.
From the resamples:

- each quantum's **stability**: the clusterwise stability of Hennig (2007, *Comput. Stat. Data Anal.* 52, 258):
  the mean over resamples of the Jaccard similarity between the quantum (restricted to the resample's tokens) and
  its best-matching cluster of the resample; ≥ 0.75 is a stable cluster, < 0.5 one that dissolves;
- the run's **partition agreement**: adjusted mutual information between the reference partition and each
  resample on the tokens it clustered (1 = the same partition, 0 = chance);
- the **slope interval**: the full-data slope and each resample's, with the rank bootstrap of each fit mixed in
  and each resample's counting noise added centred (`Stability.interval_fits`, `slope_interval`): it covers the
  clustering seed, the frequencies' sampling noise and the fit's scatter, not the model, the context, the sketch or
  the clustering method (those are held fixed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..config import ParameterError
from ..io import progress
from .config import ClusteringConfig
from .frequencies import RankFrequencyFit

__all__ = ["Stability", "resample_quanta", "slope_interval", "jaccard_stability", "subsample_fits", "perturb",
           "SUBSAMPLE", "FLOAT32_ROUNDING"]

SUBSAMPLE = 1.0  # share of the tokens each resample clusters (see the module docstring)


FLOAT32_ROUNDING = 2.0 ** -24  # unit roundoff of float32: what another BLAS, thread count or CPU changes


def perturb(G: np.ndarray, scale: float = FLOAT32_ROUNDING, seed: int = 0) -> np.ndarray:
    """G with every number multiplied by (1 + scale · N(0, 1)), rounded to float32: the last-bit noise of a rerun
    on another machine at the default scale (float32's unit roundoff; about half the numbers move by one ulp),
    for checking that the analysis does not depend on it.

    Parameters
    ----------
    G : float ndarray (n, dim)
    scale : float
        Relative size of the noise, > 0.
    seed : int

    Returns
    -------
    float32 ndarray (n, dim)

    Raises
    ------
    ParameterError
        `scale` is not a positive finite number.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < np.inf:
        raise ParameterError("perturbation", f"must be a positive number (relative noise; float32 rounding is "
                                             f"{FLOAT32_ROUNDING:.2g}), got {scale!r}")
    noise = np.random.default_rng(seed).standard_normal(np.shape(G))
    # in float64: in float32, 1 + 2^-24·N rounds back to 1 for |N| < 1 and most numbers would be left untouched
    return (np.asarray(G, np.float64) * (1 + scale * noise)).astype(np.float32)


def subsample_size(n: int) -> int:
    """Tokens each resample clusters: `SUBSAMPLE` of n."""
    return int(round(SUBSAMPLE * n))


def subsample_fits(n: int, n_clusters: int, counts) -> bool:
    """Whether a subsample of n tokens can be clustered into n_clusters and every count (each < its size)."""
    return max(n_clusters, *counts) < subsample_size(n)


@dataclass(frozen=True)
class Stability:
    """What the resamples of one clustering say about it (see the module docstring).

    Attributes
    ----------
    rows : list of int ndarray (m,)
        The bootstrap draw (with replacement) of the resample's tokens that its quanta were counted on.
    labels : list of int ndarray (m,)
        Each resample's quanta at n_clusters, one per entry of `rows[i]`.
    fits : list of frequencies.RankFrequencyFit
        Each resample's `rank_frequency_fit` of its envelope (its clustering, counted on the tokens it clustered).
    counted_slopes : list of float or None
        The same slopes with the quanta counted on the bootstrap draw `rows[i]` instead.
    envelopes : list of int ndarray
        Each resample's envelope (cluster size by rank).
    quantum_stability : float ndarray (k,)
        Per reference label 0 … k−1: mean best-match Jaccard over the resamples.
    ami : float ndarray (resamples,)
        AMI between the reference partition and each resample's clustering, on the tokens it clustered.
    subsamples : list of int ndarray (m,)
        The rows each resample clustered (sorted; all n unless `SUBSAMPLE` < 1).
    partitions : list of int ndarray (m,)
        Each resample's quanta at n_clusters, one per row of `subsamples[i]`.
    """

    rows: list
    labels: list
    fits: list
    counted_slopes: list
    envelopes: list
    quantum_stability: np.ndarray
    ami: np.ndarray
    subsamples: list
    partitions: list

    @property
    def slopes(self) -> np.ndarray:
        """float (resamples,): each resample's envelope slope (NaN where it could not be fitted)."""
        return np.array([np.nan if f.slope is None else f.slope for f in self.fits])

    def interval_fits(self) -> list[RankFrequencyFit]:
        """The resampled fits `slope_interval` pools: each slope moved by its counting noise (the bootstrap-counted
        slope minus the clustered one) less the mean of that noise. Sorting noisier counts steepens every
        bootstrap-counted envelope (on the README run by 0.10 on average), a bias of the resampling, not of the
        data; centring keeps the noise's spread and drops its bias."""
        pairs = [(f, c) for f, c in zip(self.fits, self.counted_slopes, strict=True)
                 if f.slope is not None and c is not None]
        if not pairs:
            return []
        shift = np.mean([c - f.slope for f, c in pairs])
        return [replace(f, slope=c - shift) for f, c in pairs]

    def to_dict(self) -> dict:
        """The JSON form (summary.json's "stability"): resamples, AMI to the reference (mean, min), each resample's
        slope, the quartiles of the quanta's stability and how many are stable (≥ 0.75) or dissolve (< 0.5). The
        per-resample arrays stay on the object: they are for figures, not for the summary."""
        q = self.quantum_stability
        return {"n_resamples": len(self.rows), "ami_mean": float(self.ami.mean()), "ami_min": float(self.ami.min()),
                "slopes": [None if np.isnan(x) else round(float(x), 4) for x in self.slopes],
                "counted_slopes": [None if x is None else round(float(x), 4) for x in self.counted_slopes],
                "stability_quartiles": [float(x) for x in np.nanquantile(q, [0.25, 0.5, 0.75])],
                "n_stable_quanta": int((q >= 0.75).sum()), "n_dissolving_quanta": int((q < 0.5).sum()),
                "covers": "each resample reclusters the tokens with its own seed and counts its quanta on a bootstrap "
                          "draw; the gradients (model, context, sketch) and the method are held fixed"}


def _onehot(labels: np.ndarray, n_columns: int):
    from scipy import sparse

    rows = np.arange(len(labels))
    return sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, labels)), shape=(len(rows), n_columns))


def jaccard_stability(reference: np.ndarray, rows: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> np.ndarray:
    """Hennig's clusterwise bootstrap: per reference cluster, the mean over resamples of the Jaccard similarity
    between the cluster restricted to the drawn rows and its best-matching cluster of the resample.

    Parameters
    ----------
    reference : int ndarray (n,)
        Reference labels 0 … k−1 of every row.
    rows, labels : sequences of int ndarrays
        For each resample, the rows it drew (duplicates allowed: a row counts once, with its first label) and
        their labels.

    Returns
    -------
    float ndarray (k,)
        In [0, 1]; NaN for a cluster no resample drew.
    """
    k = int(reference.max()) + 1
    total, count = np.zeros(k), np.zeros(k)
    for r, lab in zip(rows, labels, strict=True):
        u, first = np.unique(r, return_index=True)
        lab = np.unique(lab[first], return_inverse=True)[1]
        overlap = (_onehot(reference[u], k).T @ _onehot(lab, int(lab.max()) + 1)).toarray()
        a, b = overlap.sum(1), overlap.sum(0)
        jac = overlap / np.maximum(a[:, None] + b[None, :] - overlap, 1)
        drawn = a > 0
        total[drawn] += jac.max(1)[drawn]
        count[drawn] += 1
    with np.errstate(invalid="ignore"):
        return total / count


def slope_interval(fits: Sequence[dict], level: float = 0.95, seed: int = 0) -> tuple[float, float] | None:
    """The `level` interval of the rank-frequency slope over several fits: the percentiles of a mixture, one normal
    per fit centred on its slope with the spread of its own rank-bootstrap CI. Given the full-data fit and the
    resamples' `Stability.interval_fits` it covers the clustering seed, the frequencies' counting noise and the
    fit's scatter about its line. (Reflecting the resamples about the full-data slope, the basic bootstrap, was
    tried: on the README run it moved the interval off the full-data slope, −0.87 outside [−0.78, −0.56].) None
    when fewer than 2 fits have a slope.

    Parameters
    ----------
    fits : sequence of frequencies.RankFrequencyFit
        `frequencies.rank_frequency_fit` results (`slope`, `slope_ci`).
    """
    ok = [f for f in fits if f.slope is not None]
    if len(ok) < 2:
        return None
    rng = np.random.default_rng(seed)
    z = 1.959963984540054
    draws = np.concatenate([f.slope + (f.slope_ci[1] - f.slope_ci[0]) / (2 * z) * rng.standard_normal(4000)
                            for f in ok])
    tail = (1 - level) / 2
    return float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail))


def resample_quanta(G: np.ndarray, clustering: ClusteringConfig, *, counts, fit_ranks, resamples: int,
                    reference: np.ndarray, alpha_n: float | None = None, alpha_n_source: str | None = None, seed: int = 0,
                    show_progress: bool = True) -> Stability:
    """Repeat QDG's clustering (`analysis.cluster_quanta`'s, same settings) `resamples` times on the rows (a share
    `SUBSAMPLE` of them), resample i with seed `seed + 1 + i`, its envelope counted on a bootstrap draw and fitted
    (see the module docstring).

    Parameters
    ----------
    G : float ndarray (n, dim)
        Gradient rows (as clustered).
    reference : int ndarray (n,)
        The partition whose quanta get stability scores and against which AMI is measured.
    clustering : ClusteringConfig
        The clustering, as `analysis.cluster_quanta` ran it.
    Other parameters as `analysis.cluster_quanta`.

    Raises
    ------
    ParameterError
        `resamples` < 2, a subsample too small for the clustering asked for, or a clustering setting the data
        cannot take.
    """
    from sklearn.metrics import adjusted_mutual_info_score

    from .clustering import QuantaClustering
    from .frequencies import envelope, rank_frequency_fit, rank_sizes

    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 2:
        raise ParameterError("resamples", f"must be ≥ 2 to measure a spread, got {resamples!r}")
    n = len(G)
    m = subsample_size(n)
    if not subsample_fits(n, clustering.n_clusters, counts):
        raise ParameterError("resamples", f"a resample clusters {m} of the {n} tokens ({SUBSAMPLE:.0%}), too few for "
                                          f"cluster counts up to {max(counts)}; use resamples 0 or cluster more tokens")
    rng = np.random.default_rng(seed)
    rows, labels, subs, parts, fits, envs, ami, counted = [], [], [], [], [], [], [], []
    for i in progress(range(resamples), desc="resampling the clustering", leave=False, disable=not show_progress):
        sub = np.sort(rng.choice(n, m, replace=False))
        qc = QuantaClustering.of(clustering, counts=counts, random_state=seed + 1 + i).fit(G[sub])
        draw = np.sort(rng.integers(0, m, m))
        cuts = [qc.labels_for(k) for k in counts]
        env = envelope([rank_sizes(c) for c in cuts])
        fits.append(rank_frequency_fit(env, total=m, fit_ranks=fit_ranks, alpha_n=alpha_n,
                                       alpha_n_source=alpha_n_source, seed=seed + 1 + i, sensitivity=False))
        counted.append(rank_frequency_fit(envelope([rank_sizes(c[draw]) for c in cuts]), total=m, fit_ranks=fit_ranks,
                                          seed=seed + 1 + i, sensitivity=False).slope)
        rows.append(sub[draw])
        labels.append(qc.labels_[draw])
        subs.append(sub)
        parts.append(qc.labels_)
        envs.append(env)
        ami.append(adjusted_mutual_info_score(reference[sub], qc.labels_))
    return Stability(rows=rows, labels=labels, fits=fits, envelopes=envs, counted_slopes=counted,
                     quantum_stability=jaccard_stability(reference, subs, parts), ami=np.array(ami), subsamples=subs,
                     partitions=parts)
