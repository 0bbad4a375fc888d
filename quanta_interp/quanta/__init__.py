"""The Quantization Model of Neural Scaling (Michaud et al., NeurIPS 2023): quanta discovery from
gradients (QDG) on language models and the rank-frequency of quanta.

`discover(QDGConfig(...), out)` runs the whole pipeline; `QuantaClustering` clusters any gradients;
`rank_frequency_fit` fits p_k ∝ k^−(α+1) to cluster sizes. (Multitask sparse parity lives here too for now.)
"""

from __future__ import annotations

__all__ = ["QDGConfig", "QDGResult", "discover", "QuantaClustering", "rank_frequency_fit", "envelope", "rank_sizes"]

_EXPORTS = {"QDGConfig": "qdg", "QDGResult": "qdg", "discover": "qdg", "QuantaClustering": "clustering",
            "rank_frequency_fit": "frequencies", "envelope": "frequencies", "rank_sizes": "frequencies"}


def __getattr__(name: str):
    """Lazy exports: `quanta --help` does not pay for numpy, scipy or torch."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
