"""Multitask sparse parity (Michaud et al. 2023, §3): the toy model of the quantization hypothesis, whose
quanta (subtasks) and their Zipf frequencies are known.

- `task`: `MultitaskSparseParity`, the theory's `predictions` (α_N = α, α_D = α_S = α/(α + 1));
- `config`: `SparseParityConfig`, one training run;
- `training`: `train_sparse_parity` and the batched `train_sparse_parity_batched` (`stack.BlockMLP`);
- `sweep`: resumable N / D / S sweeps and their fits (exponents, learning order, steps to learn);
- `ablation`: which hidden units each subtask needs; `figures`: plots from result dicts; `cli`.
"""

from .._exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "task": ["MultitaskSparseParity", "predictions", "Predictions", "LEARNED_BITS"],
    "config": ["SparseParityConfig"],
    "training": ["train_sparse_parity", "train_sparse_parity_batched", "build_mlp", "load_trained"],
    "sweep": ["run_sweep", "fit_exponent", "learning_order", "steps_to_learn_fit"],
    "ablation": ["ablation_matrix", "AblationMatrix", "carriers"],
})
