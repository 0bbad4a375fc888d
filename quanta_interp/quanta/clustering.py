"""Cluster per-token gradients into quanta: spectral clustering on an angular affinity (Michaud et al. 2023).

The paper: L2-normalise the gradients (no mean subtraction), cosine matrix C, affinity
A = 1 − arccos(C)/π, `SpectralClustering(affinity="precomputed")`. `QuantaClustering` computes the spectral
embedding once with as many components as the largest cluster count asked for, so the rank-frequency
envelope over many cluster counts reuses it (`labels_for(k)` is what `SpectralClustering(n_clusters=k)`
computes). `method="knn"` keeps each token's nearest neighbours only (sparse), for 10^5 tokens.
"""

from __future__ import annotations

import numpy as np

from ..config import ParameterError
from .config import ClusteringConfig

__all__ = ["QuantaClustering", "dense_spectral_embedding", "refine_rows", "merge_tree", "cut_tree", "umap_embedding",
           "unit_rows"]


def dense_spectral_embedding(A: np.ndarray, n_components: int) -> np.ndarray:
    """float64 (n, n_components): the spectral embedding of a dense affinity — eigenvectors of the normalised
    Laplacian I − D^−½ A D^−½ with the smallest eigenvalues, divided by √degree and sign-fixed, as scikit-learn's
    `spectral_embedding(drop_first=False)` computes it (Ng, Jordan & Weiss 2001) — by LAPACK's dense solver
    (`scipy.linalg.eigh`, driver evr) instead of ARPACK: no random start vector, so the embedding does not move
    with the seed, and at n = 2000, 640 components 2.9 s instead of 57 s (measured on the README run's
    gradients, machine shared)."""
    import scipy.linalg
    from scipy.sparse import csgraph
    from sklearn.utils.extmath import _deterministic_vector_sign_flip

    L, dd = csgraph.laplacian(np.asarray(A, dtype=np.float64), normed=True, return_diag=True)
    np.fill_diagonal(L, 1.0)
    _, V = scipy.linalg.eigh(L, subset_by_index=[0, n_components - 1], driver="evr", overwrite_a=True)
    return np.ascontiguousarray(_deterministic_vector_sign_flip((V / dd[:, None]).T).T)


def unit_rows(G: np.ndarray, center: bool = False) -> np.ndarray:
    """float32 rows of G scaled to unit length (after subtracting the mean row when `center`).

    Raises
    ------
    ValueError
        A row is all zero or not finite.
    """
    X = np.asarray(G, dtype=np.float32)
    if center:
        X = X - X.mean(0, keepdims=True)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise ValueError("gradients contain all-zero or non-finite rows; drop them before clustering")
    return X / norms


class QuantaClustering:
    """Spectral clustering of per-token gradients, scikit-learn style (`fit(G)` → `labels_`).

    Parameters
    ----------
    n_clusters : int
        Number of quanta (the paper: 400 for 10k tokens).
    affinity : {"angular", "cosine", "unsigned", "abs"}
        "angular" is the paper's A = 1 − arccos(cos)/π; "cosine" is (1 + cos)/2; "unsigned" is (1 + |cos|)/2
        (for two-class outputs, where a gradient's sign only encodes the label); "abs" is |cos| itself.
    method : {"dense", "knn"}
        Dense n × n affinity, or each token joined to its `n_neighbors` nearest only (symmetrised, sparse).
    n_components : int or None
        Spectral components to compute (≥ n_clusters); `labels_for(k)` needs k ≤ n_components.
    assign_labels : {"kmeans", "cluster_qr"}
        How the embedding becomes labels: k-means with `n_init` restarts (the paper), or scikit-learn's
        deterministic, much faster `cluster_qr`.
    over_cluster : int
        1: the spectral clusters are the quanta (the paper). m > 1: spectral clustering into m·k fine
        clusters, then fine clusters are merged by size-weighted average linkage on the mean |cos| between
        their members until k remain. A quantum whose gradients split into groups (a sparse-parity subtask
        splits by the pattern of its bits, 2^k groups) is first cut along those groups and then rejoined;
        see `artifacts/qdg_sparse_parity/`. Cuts of the one merge tree give every cluster count ≤ m·k (≤ the
        fine clusters left after refining).
    refine : int
        0: labels as the clustering gives them (the paper). r > 0: up to r rounds in which every token moves
        to the cluster whose other members it has the highest mean |cos| with (the similarity the merge
        uses), applied to the fine clusters before merging and to every cut; it returns tokens that spectral
        clustering put with a larger neighbour to their own quantum (sparse parity: ARI 0.950 → 0.976, fine
        homogeneity 0.936 → 0.953). The mean, not kernel k-means' distance to the centroid, which on sparse
        parity starved the rarest quanta (slope −1.8 vs −1.5). A cluster whose members all leave vanishes, so
        a cut can hold fewer than k clusters. Needs method="dense" (it reads the n × n affinity).

    Attributes
    ----------
    affinity_ : float32 ndarray (n, n) or scipy CSR matrix (n, n)
    embedding_ : float64 ndarray (n, n_components)
        The spectral embedding (eigenvectors of the normalised Laplacian, smallest first): LAPACK's dense solver for
        method="dense" (`dense_spectral_embedding`), ARPACK/LOBPCG for "knn". Float64, because scikit-learn's
        k-means++ seeding runs 4.7× slower on float32 (its upcasting distance path: 170 s vs 36 s for 640
        clusters of the README run's 2000 tokens).
    labels_ : int ndarray (n,)
        Quantum of each token, in [0, n_clusters) (ids 0 … k'−1, k' ≤ n_clusters, when refined).
    fine_labels_ : int ndarray (n,)
        With over_cluster > 1: the fine cluster of each token, in [0, over_cluster · n_clusters) (refined
        when refine > 0).
    merges_ : int ndarray (m − 1, 2)
        With over_cluster > 1: the merge tree of the m fine clusters (m ≤ over_cluster · n_clusters), one
        (kept, absorbed) pair of fine-cluster ids per step.

    Raises
    ------
    ParameterError
        At `fit`: a setting outside its accepted values (`config.ClusteringConfig`'s rules, the same messages),
        more clusters than tokens, or n_components / n_neighbors the data cannot take.
    """

    def __init__(self, n_clusters: int = 400, *, affinity: str = "angular", method: str = "dense",
                 n_neighbors: int = 30, n_components: int | None = None, assign_labels: str = "kmeans",
                 n_init: int = 10, over_cluster: int = 1, refine: int = 0, center: bool = False,
                 block_size: int = 4096, random_state: int | None = 0):
        self.n_clusters, self.affinity, self.method, self.n_neighbors = n_clusters, affinity, method, n_neighbors
        self.n_components, self.assign_labels, self.n_init = n_components, assign_labels, n_init
        self.over_cluster, self.refine = over_cluster, refine
        self.center, self.block_size, self.random_state = center, block_size, random_state

    @classmethod
    def of(cls, config: ClusteringConfig, *, counts=(), random_state: int | None = 0) -> QuantaClustering:
        """The clustering `config` describes, with spectral components for every cluster count in `counts`
        (`labels_for`) when there is no merge tree (over_cluster 1)."""
        return cls(config.n_clusters, affinity=config.affinity, method=config.method, assign_labels=config.assign_labels,
                   n_components=max(counts) if config.over_cluster == 1 and len(counts) else None,
                   n_init=config.n_init, over_cluster=config.over_cluster, refine=config.refine,
                   random_state=random_state)

    def _validate(self, n: int) -> None:
        ClusteringConfig(self.n_clusters, method=self.method, affinity=self.affinity, assign_labels=self.assign_labels,
                         n_init=self.n_init, over_cluster=self.over_cluster, refine=self.refine)  # its rules, once
        if not 2 <= self.n_clusters <= n:
            raise ParameterError("n_clusters", f"must be between 2 and the number of tokens ({n}), got {self.n_clusters}")
        if self.n_components is not None and not self.n_clusters <= self.n_components <= n:
            raise ParameterError("n_components", f"must be between n_clusters ({self.n_clusters}) and the number of "
                                                 f"tokens ({n}), got {self.n_components}")
        if self.method == "knn" and not 1 <= self.n_neighbors < n:
            raise ParameterError("n_neighbors", f"must be between 1 and {n - 1}, got {self.n_neighbors}")

    def _values(self, cos: np.ndarray) -> np.ndarray:
        if self.affinity == "abs":
            return np.abs(cos)
        cos = np.clip(np.abs(cos) if self.affinity == "unsigned" else cos, -1.0, 1.0)
        return 1.0 - np.arccos(cos) / np.pi if self.affinity == "angular" else (cos + 1.0) / 2.0

    def _dense(self, X: np.ndarray) -> np.ndarray:
        A = np.empty((len(X), len(X)), dtype=np.float32)
        for i in range(0, len(X), self.block_size):
            A[i: i + self.block_size] = self._values(X[i: i + self.block_size] @ X.T)
        return A

    def _knn(self, X: np.ndarray):
        from scipy import sparse
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=self.n_neighbors + 1, algorithm="brute", metric="euclidean").fit(X)
        dist, idx = nn.kneighbors(X)
        cos = 1.0 - dist[:, 1:] ** 2 / 2.0  # unit vectors: |x − y|² = 2 − 2 cos
        rows = np.repeat(np.arange(len(X)), self.n_neighbors)
        A = sparse.csr_matrix((self._values(cos).ravel(), (rows, idx[:, 1:].ravel())), shape=(len(X), len(X)))
        return A.maximum(A.T).tocsr()

    def fit(self, G: np.ndarray, y=None) -> QuantaClustering:
        """Cluster the rows of G (n × dim, any float dtype; rows are normalised here)."""
        from sklearn.manifold import spectral_embedding

        G = np.asarray(G)
        self._validate(len(G))
        self.labels_ = None  # a refit computes them anew (`labels_for` returns them once set)
        X = unit_rows(G, self.center)
        self.affinity_ = self._dense(X) if self.method == "dense" else self._knn(X)
        n_fine = self._n_fine(len(X))
        n_components = max(self.n_components or self.n_clusters, n_fine if self.over_cluster > 1 else 0)
        if self.method == "dense":
            self.embedding_ = dense_spectral_embedding(self.affinity_, n_components)
        else:
            solver = "lobpcg" if len(X) > 20000 else "arpack"
            self.embedding_ = spectral_embedding(self.affinity_, n_components=n_components, eigen_solver=solver,
                                                 random_state=self.random_state, drop_first=False).astype(np.float64)
        self.n_fine_ = n_fine
        if self.over_cluster > 1:
            self.fine_labels_ = self.refine_labels(self._assign(n_fine))
            self.merges_ = merge_tree(X, self.fine_labels_, block_size=self.block_size)
        self.labels_ = self.labels_for(self.n_clusters)
        return self

    def _n_fine(self, n: int) -> int:
        return min(self.over_cluster * self.n_clusters, n - 1) if self.over_cluster > 1 else self.n_clusters

    def fit_predict(self, G: np.ndarray, y=None) -> np.ndarray:
        return self.fit(G).labels_

    def labels_for(self, k: int) -> np.ndarray:
        """int (n,) labels for k clusters (k' ≤ k when refined): with over_cluster = 1, k-means on the first k
        spectral components (what `SpectralClustering(n_clusters=k)` computes on the same affinity); with
        over_cluster > 1, the merge tree cut at k clusters (k ≤ the number of fine clusters); then
        `refine_labels`. k = n_clusters returns `labels_` once `fit` has computed it."""
        if k == self.n_clusters and getattr(self, "labels_", None) is not None:
            return self.labels_
        top = self.n_fine_ if self.over_cluster > 1 else self.embedding_.shape[1]
        if not 2 <= k <= top:
            raise ParameterError("cluster_counts", f"must each be between 2 and {top}, got {k}")
        if self.over_cluster > 1:  # refining the fine clusters may have emptied some
            return self.refine_labels(cut_tree(self.merges_, min(k, len(self.merges_) + 1))[self.fine_labels_])
        return self.refine_labels(self._assign(k))

    def _abs_cos(self, A: np.ndarray) -> np.ndarray:
        """|cos| from affinity values (each affinity is a monotone function of cos or |cos|)."""
        if self.affinity == "abs":
            return A
        if self.affinity == "angular":
            return np.abs(np.cos(np.pi * (1.0 - A)))
        return np.abs(2.0 * A - 1.0)

    def refine_labels(self, labels: np.ndarray) -> np.ndarray:
        """int (n,) labels after up to `refine` rounds of `refine_rows` on |cos| (each token to the cluster whose
        other members it has the highest mean |cos| with); ids renumbered 0 … k'−1, k' ≤ k."""
        if not self.refine:
            return labels
        diag = self._abs_cos(np.diagonal(self.affinity_)).astype(np.float32)
        return refine_rows(labels, lambda s: self._abs_cos(self.affinity_[s]), diag, rounds=self.refine,
                           block_size=self.block_size)

    def _assign(self, k: int) -> np.ndarray:
        if self.assign_labels == "cluster_qr":
            from sklearn.cluster._spectral import cluster_qr

            return cluster_qr(self.embedding_[:, :k])
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state).fit_predict(self.embedding_[:, :k])


def refine_rows(labels: np.ndarray, similarity_rows, diag: np.ndarray, *, rounds: int,
                block_size: int = 4096) -> np.ndarray:
    """Up to `rounds` rounds in which every row moves to the cluster whose *other* members it has the highest mean
    similarity with; stops when no row moves, or when the moves only undo the previous round's (moving every row
    at once can swap a few back and forth).

    Parameters
    ----------
    labels : int ndarray (n,)
    similarity_rows : callable slice → float ndarray (rows in the slice, n)
        Rows of the n × n similarity (|cos| for `QuantaClustering`).
    diag : float32 ndarray (n,)
        Each row's similarity with itself (left out of its own cluster's mean).

    Returns
    -------
    int ndarray (n,)
        ids renumbered 0 … k'−1, k' ≤ k: a cluster whose members all leave is gone.
    """
    from scipy import sparse

    labels, rows = np.unique(labels, return_inverse=True)[1], np.arange(len(labels))
    before = None
    for _ in range(rounds):
        k = int(labels.max()) + 1
        Zt = sparse.csr_matrix((np.ones(len(rows), np.float32), (labels, rows)), shape=(k, len(rows)))
        S = np.empty((len(rows), k), np.float32)
        for i in range(0, len(rows), block_size):  # sums of similarity to each cluster, block by block
            S[i: i + block_size] = (Zt @ np.asarray(similarity_rows(slice(i, i + block_size)), np.float32).T).T
        size = np.bincount(labels, minlength=k).astype(np.float32)  # ≥ 1: ids are renumbered
        own = (S[rows, labels] - diag) / np.maximum(size[labels] - 1, 1)  # the mean over the *other* members
        S /= size
        S[rows, labels] = own
        moved = np.unique(S.argmax(1), return_inverse=True)[1]
        if np.array_equal(moved, labels) or (before is not None and np.array_equal(moved, before)):
            break
        before, labels = labels, moved
    return labels


def merge_tree(X: np.ndarray, fine: np.ndarray, *, block_size: int = 4096) -> np.ndarray:
    """Size-weighted average-linkage merges of the fine clusters of unit rows X, on mean |cos|.

    The similarity of two clusters is the mean |cos| over all pairs of their members; the most similar
    pair merges first (UPGMA with every token weighing 1, started from the fine partition). A cache of
    each cluster's most similar partner keeps it near O(m²) for m fine clusters.

    Parameters
    ----------
    X : float32 ndarray (n, dim)
        Unit rows.
    fine : int ndarray (n,)
        Fine cluster of each row, ids 0 … m−1 (each used).

    Returns
    -------
    int64 ndarray (m − 1, 2)
        (kept, absorbed) fine-cluster ids, in merge order.
    """
    m = int(fine.max()) + 1
    Z = np.zeros((len(X), m), dtype=np.float32)
    Z[np.arange(len(X)), fine] = 1
    S = np.zeros((m, m))
    for i in range(0, len(X), block_size):  # S = Zᵀ |X Xᵀ| Z without the n × n matrix
        S += Z[i: i + block_size].T.astype(np.float64) @ (np.abs(X[i: i + block_size] @ X.T) @ Z)
    size = Z.sum(0).astype(np.float64)
    active = np.ones(m, dtype=bool)

    def best(a: int) -> tuple[float, int]:
        sim = S[a] / (size[a] * size)
        sim[~active] = -np.inf
        sim[a] = -np.inf
        b = int(np.argmax(sim))
        return float(sim[b]), b

    cache = [best(a) for a in range(m)]
    merges = []
    for _ in range(m - 1):
        a = max((i for i in range(m) if active[i]), key=lambda i: cache[i][0])
        b = cache[a][1]
        merges.append((a, b))
        S[a] += S[b]
        S[:, a] += S[:, b]
        size[a] += size[b]
        active[b] = False
        for i in np.flatnonzero(active):
            if i == a or cache[i][1] in (a, b):
                cache[i] = best(i)
            else:
                sim = S[i, a] / (size[i] * size[a])
                if sim > cache[i][0]:
                    cache[i] = (float(sim), a)
    return np.array(merges, dtype=np.int64).reshape(-1, 2)


def cut_tree(merges: np.ndarray, k: int) -> np.ndarray:
    """int (m,) cluster of each fine cluster after the first m − k merges of `merge_tree`, numbered 0 … k−1
    in the order of the fine id that absorbed the rest."""
    m = len(merges) + 1
    parent = np.arange(m)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in merges[: m - k]:
        parent[root(b)] = root(a)
    roots = np.array([root(i) for i in range(m)])
    _, labels = np.unique(roots, return_inverse=True)
    return labels


def umap_embedding(G: np.ndarray, *, n_neighbors: int = 15, random_state: int = 0) -> np.ndarray:
    """float32 (n, 2): a UMAP of the L2-normalised gradients (cosine metric), for the picture only.

    Raises
    ------
    ValueError
        Fewer than 4 rows: UMAP cannot embed them.
    """
    import umap

    X = unit_rows(G)
    if len(X) < 4:
        raise ValueError(f"UMAP needs at least 4 points, got {len(X)}")
    reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(n_neighbors, len(X) - 1)), metric="cosine",
                        random_state=random_state, n_jobs=1, init="random" if len(X) < 16 else "spectral")
    return reducer.fit_transform(X)
