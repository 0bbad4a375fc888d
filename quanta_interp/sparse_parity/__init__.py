"""Multitask sparse parity (Michaud et al. 2023, §3): the toy model of the quantization hypothesis, whose
quanta (subtasks) and their Zipf frequencies are known.

- `task`: `MultitaskSparseParity`, the theory's `predictions` (α_N = α, α_D = α_S = α/(α + 1));
- `config`: `SparseParityConfig`, one training run;
- `training`: `train_sparse_parity` and the batched `train_sparse_parity_batched` (`stack.BlockMLP`);
- `sweep`: resumable N / D / S sweeps and their fits (exponents, learning order, steps to learn);
- `ablation`: which hidden units each subtask needs; `figures`: plots from result dicts; `cli`.
"""

from __future__ import annotations

__all__ = ["MultitaskSparseParity", "SparseParityConfig", "train_sparse_parity", "train_sparse_parity_batched",
           "build_mlp", "run_sweep", "fit_exponent", "predictions", "LEARNED_BITS"]

_EXPORTS = {"MultitaskSparseParity": "task", "predictions": "task", "LEARNED_BITS": "task",
            "SparseParityConfig": "config", "train_sparse_parity": "training",
            "train_sparse_parity_batched": "training", "build_mlp": "training", "run_sweep": "sweep",
            "fit_exponent": "sweep"}


def __getattr__(name: str):
    """Lazy exports: importing the package does not import torch."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
