"""QDG: choose low-loss tokens, then cluster their gradients into quanta (Michaud et al. 2023, §5).

`select_tokens` keeps tokens the model predicts well (loss < 0.1 nats by default) and, as in the
paper, drops tokens that complete a trigram seen earlier in the document (induction).
`QuantaClustering` is the paper's spectral clustering on the angular affinity
A = 1 − arccos(cos)/π of L2-normalised gradients, with a sparse kNN path for 10^5 tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

__all__ = ["induction_mask", "select_tokens", "QuantaClustering", "umap_embedding"]


def induction_mask(doc: np.ndarray) -> np.ndarray:
    """True at positions whose trigram (t[p−2], t[p−1], t[p]) already occurred earlier in `doc`."""
    doc = np.asarray(doc, dtype=np.int64)
    mask = np.zeros(doc.size, dtype=bool)
    if doc.size < 3:
        return mask
    v = int(doc.max()) + 1
    keys = (doc[:-2] * v + doc[1:-1]) * v + doc[2:]
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    mask[2:] = first[inverse] < np.arange(keys.size)
    return mask


def select_tokens(losses: Sequence[np.ndarray], docs: Sequence[np.ndarray], *, threshold: float = 0.1,
                  exclude_induction: bool = True, min_pos: int = 0, stride: int = 1, max_tokens: int | None = None,
                  seed: int = 0) -> np.ndarray:
    """(doc, pos) rows of tokens with loss < `threshold` nats, optionally not induction-predictable.

    `losses[d][p]` is the loss of token p of `docs[d]` (NaN where unknown); positions below `min_pos`
    are skipped; every `stride`-th candidate is kept, then at most `max_tokens` drawn at random (seeded).
    """
    if threshold <= 0:
        raise ValueError(f"--loss-threshold must be > 0 nats, got {threshold}")
    if stride < 1:
        raise ValueError(f"stride must be ≥ 1, got {stride}")
    rows = []
    for d, (loss, doc) in enumerate(zip(losses, docs, strict=True)):
        loss = np.asarray(loss, dtype=float)[: len(doc)]
        keep = np.zeros(len(doc), dtype=bool)
        with np.errstate(invalid="ignore"):
            keep[: loss.size] = loss < threshold
        keep[:min_pos] = False
        if exclude_induction and keep.any():
            keep &= ~induction_mask(doc)
        rows.extend((d, p) for p in np.flatnonzero(keep))
    found = np.array(rows, dtype=np.int64).reshape(-1, 2)[::stride]
    if len(found) == 0:
        raise ValueError(f"--loss-threshold {threshold} keeps no token (of {sum(len(x) for x in losses)} scanned); "
                         "raise the threshold or scan more tokens")
    if max_tokens is not None and len(found) > max_tokens:
        pick = np.sort(np.random.default_rng(seed).choice(len(found), max_tokens, replace=False))
        found = found[pick]
    return found


def _unit_rows(G: np.ndarray, center: bool) -> np.ndarray:
    X = np.asarray(G, dtype=np.float32)
    if center:
        X = X - X.mean(0, keepdims=True)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise ValueError("gradients contain all-zero or non-finite rows; drop them before clustering")
    return X / norms


class QuantaClustering:
    """Spectral clustering of per-token gradients on the angular affinity, scikit-learn style.

    affinity="angular" is the paper's; "unsigned" uses |cos| (for two-class outputs, where a gradient's
    sign only encodes the label); "cosine" is (1 + cos)/2.
    method="dense": blocked cosine Gram → A = 1 − arccos(clip C)/π (the paper's). method="knn": the
    same affinity kept only between each token and its `n_neighbors` nearest (symmetrised, sparse),
    for 10^5 tokens. Both: spectral embedding (`embedding_`) → k-means (`labels_`); `labels_for(k)`
    reuses the embedding for any k ≤ n_clusters (the rank-frequency envelope).
    """

    def __init__(self, n_clusters: int = 400, *, affinity: str = "angular", method: str = "dense",
                 n_neighbors: int = 30, center: bool = False, block_size: int = 4096, random_state: int | None = 0):
        self.n_clusters, self.affinity, self.method = n_clusters, affinity, method
        self.n_neighbors, self.center, self.block_size, self.random_state = n_neighbors, center, block_size, random_state

    def _validate(self, n: int) -> None:
        if self.affinity not in ("angular", "cosine", "unsigned"):
            raise ValueError(f"affinity must be 'angular', 'cosine' or 'unsigned', got {self.affinity!r}")
        if self.method not in ("dense", "knn"):
            raise ValueError(f"--method must be 'dense' or 'knn', got {self.method!r}")
        if not 2 <= self.n_clusters <= n:
            raise ValueError(f"--clusters must be between 2 and the number of tokens ({n}), got {self.n_clusters}")
        if self.method == "knn" and self.affinity == "unsigned":
            raise ValueError("affinity='unsigned' needs method='dense' (kNN search is by signed distance)")
        if self.method == "knn" and not 1 <= self.n_neighbors < n:
            raise ValueError(f"n_neighbors must be between 1 and {n - 1}, got {self.n_neighbors}")

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
        from sklearn.manifold import spectral_embedding

        G = np.asarray(G)
        self._validate(len(G))
        X = _unit_rows(G, self.center)
        self.affinity_ = self._dense(X) if self.method == "dense" else self._knn(X)
        solver = "lobpcg" if self.method == "knn" and len(X) > 20000 else "arpack"
        self.embedding_ = spectral_embedding(self.affinity_, n_components=self.n_clusters, eigen_solver=solver,
                                             random_state=self.random_state, drop_first=False)
        self.labels_ = self.labels_for(self.n_clusters)
        return self

    def fit_predict(self, G: np.ndarray, y=None) -> np.ndarray:
        return self.fit(G).labels_

    def labels_for(self, k: int) -> np.ndarray:
        """k-means on the first k spectral components: what SpectralClustering(n_clusters=k) computes."""
        from sklearn.cluster import KMeans

        if not 2 <= k <= self.embedding_.shape[1]:
            raise ValueError(f"k must be between 2 and n_clusters={self.embedding_.shape[1]}, got {k}")
        km = KMeans(n_clusters=k, n_init=10, random_state=self.random_state)
        return km.fit_predict(self.embedding_[:, :k])


def umap_embedding(G: np.ndarray, *, n_neighbors: int = 15, random_state: int = 0) -> np.ndarray:
    """A 2-D UMAP of the L2-normalised gradients (cosine metric), for the picture only."""
    import umap

    X = _unit_rows(G, center=False)
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(X) - 1), metric="cosine",
                        random_state=random_state, n_jobs=1)
    return reducer.fit_transform(X)
