"""Cluster per-token gradients into quanta: spectral clustering on an angular affinity (Michaud et al. 2023).

The paper: L2-normalise the gradients (no mean subtraction), cosine matrix C, affinity
A = 1 − arccos(C)/π, `SpectralClustering(affinity="precomputed")`. `QuantaClustering` computes the spectral
embedding once with as many components as the largest cluster count asked for, so the rank-frequency
envelope over many cluster counts reuses it (`labels_for(k)` is what `SpectralClustering(n_clusters=k)`
computes). `method="knn"` keeps each token's nearest neighbours only (sparse), for 10^5 tokens.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ..config import ParameterError

__all__ = ["QuantaClustering", "umap_embedding", "unit_rows", "AFFINITIES", "METHODS", "ASSIGN_LABELS"]

AFFINITIES = ("angular", "cosine", "unsigned")
METHODS = ("dense", "knn")
ASSIGN_LABELS = ("kmeans", "cluster_qr")


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
    affinity : {"angular", "cosine", "unsigned"}
        "angular" is the paper's A = 1 − arccos(cos)/π; "cosine" is (1 + cos)/2; "unsigned" uses |cos|
        (for two-class outputs, where a gradient's sign only encodes the label).
    method : {"dense", "knn"}
        Dense n × n affinity, or each token joined to its `n_neighbors` nearest only (symmetrised, sparse).
    n_components : int or None
        Spectral components to compute (≥ n_clusters); `labels_for(k)` needs k ≤ n_components.
    assign_labels : {"kmeans", "cluster_qr"}
        How the embedding becomes labels: k-means with `n_init` restarts (the paper), or scikit-learn's
        deterministic, much faster `cluster_qr`.

    Attributes
    ----------
    affinity_ : float32 ndarray (n, n) or scipy CSR matrix (n, n)
    embedding_ : float64 ndarray (n, n_components)
        The spectral embedding (eigenvectors of the normalised Laplacian, smallest first).
    labels_ : int ndarray (n,)
        Quantum of each token, in [0, n_clusters).

    Raises
    ------
    ParameterError
        A setting outside its accepted values, or more clusters than tokens (at `fit`).
    """

    def __init__(self, n_clusters: int = 400, *, affinity: str = "angular", method: str = "dense",
                 n_neighbors: int = 30, n_components: int | None = None, assign_labels: str = "kmeans",
                 n_init: int = 10, center: bool = False, block_size: int = 4096, random_state: int | None = 0):
        self.n_clusters, self.affinity, self.method, self.n_neighbors = n_clusters, affinity, method, n_neighbors
        self.n_components, self.assign_labels, self.n_init = n_components, assign_labels, n_init
        self.center, self.block_size, self.random_state = center, block_size, random_state

    def _validate(self, n: int) -> None:
        for name, value, accepted in (("affinity", self.affinity, AFFINITIES), ("method", self.method, METHODS),
                                      ("assign_labels", self.assign_labels, ASSIGN_LABELS)):
            if value not in accepted:
                raise ParameterError(name, f"must be one of {', '.join(accepted)}, got {value!r}")
        if not 2 <= self.n_clusters <= n:
            raise ParameterError("n_clusters", f"must be between 2 and the number of tokens ({n}), got {self.n_clusters}")
        if self.n_components is not None and not self.n_clusters <= self.n_components <= n:
            raise ParameterError("n_components", f"must be between n_clusters ({self.n_clusters}) and the number of "
                                                 f"tokens ({n}), got {self.n_components}")
        if self.method == "knn" and self.affinity == "unsigned":
            raise ParameterError("affinity", "'unsigned' needs method='dense' (kNN search is by signed distance)")
        if self.method == "knn" and not 1 <= self.n_neighbors < n:
            raise ParameterError("n_neighbors", f"must be between 1 and {n - 1}, got {self.n_neighbors}")
        if self.n_init < 1:
            raise ParameterError("n_init", f"must be ≥ 1, got {self.n_init}")

    def _values(self, cos: np.ndarray) -> np.ndarray:
        cos = np.clip(np.abs(cos) if self.affinity == "unsigned" else cos, -1.0, 1.0)
        return 1.0 - np.arccos(cos) / np.pi if self.affinity == "angular" else (cos + 1.0) / 2.0

    def _dense(self, X: np.ndarray) -> np.ndarray:
        A = np.empty((len(X), len(X)), dtype=np.float32)
        for i in range(0, len(X), self.block_size):
            A[i: i + self.block_size] = self._values(X[i: i + self.block_size] @ X.T)
        return A

    def _knn(self, X: np.ndarray) -> sparse.csr_matrix:
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
        X = unit_rows(G, self.center)
        self.affinity_ = self._dense(X) if self.method == "dense" else self._knn(X)
        solver = "lobpcg" if self.method == "knn" and len(X) > 20000 else "arpack"
        self.embedding_ = spectral_embedding(self.affinity_, n_components=self.n_components or self.n_clusters,
                                             eigen_solver=solver, random_state=self.random_state, drop_first=False)
        self.labels_ = self.labels_for(self.n_clusters)
        return self

    def fit_predict(self, G: np.ndarray, y=None) -> np.ndarray:
        return self.fit(G).labels_

    def labels_for(self, k: int) -> np.ndarray:
        """int (n,) labels for k clusters from the first k spectral components: what
        `SpectralClustering(n_clusters=k)` computes on the same affinity."""
        if not 2 <= k <= self.embedding_.shape[1]:
            raise ParameterError("cluster_counts", f"must each be between 2 and n_components="
                                                   f"{self.embedding_.shape[1]}, got {k}")
        if self.assign_labels == "cluster_qr":
            from sklearn.cluster._spectral import cluster_qr

            return cluster_qr(self.embedding_[:, :k])
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state).fit_predict(self.embedding_[:, :k])


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
