"""The Quantization Model of Neural Scaling (Michaud et al., NeurIPS 2023): quanta discovery from
gradients (QDG) on language models and the rank-frequency of quanta.

`discover(QDGConfig.build(...), out)` runs the whole pipeline (`qdg`: scan → per-token gradients → `analysis`);
`QuantaClustering` clusters any gradients; `rank_frequency_fit` fits p_k ∝ k^−(α+1) to cluster sizes.
The toy model with known quanta is its own subpackage, `quanta_interp.sparse_parity`.
"""

from .._exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "config": ["QDGConfig", "CaptureConfig", "ClusteringConfig", "FamilyConfig"],
    "qdg": ["discover", "capture_stage"],
    "run": ["RunFolder", "CaptureInfo"],
    "analysis": ["QDGResult", "analyse"],
    "clustering": ["QuantaClustering", "umap_embedding"],
    "frequencies": ["rank_frequency_fit", "RankFrequencyFit", "envelope", "rank_sizes", "alpha_n_from"],
    "scan": ["scan_low_loss", "block_length", "induction_mask"],
})
