"""`SparseParityConfig`: one multitask-sparse-parity training run, every setting documented and checked once."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config import Config, ParameterError, check_choice, check_finite, check_positive_int

__all__ = ["SparseParityConfig", "ACTIVATIONS", "MEMBER_KEYS", "KINDS", "check_task"]

ACTIVATIONS = {"relu": "ReLU", "gelu": "GELU", "tanh": "Tanh", "silu": "SiLU"}  # torch.nn class names
# Members of one batched training may differ only in these; all else is shared.
MEMBER_KEYS = ("width", "seed", "n_train")
KINDS = ("N", "D", "S")  # sweeps over width, dataset size, steps


def check_task(n_tasks: int, n_bits: int, k: int, zipf_exponent: float) -> None:
    """`ParameterError` unless the task exists: positive counts, k ≤ n_bits, n_tasks distinct k-subsets of
    the n_bits bits, zipf_exponent > 0."""
    for name, v in (("n_tasks", n_tasks), ("n_bits", n_bits), ("k", k)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ParameterError(name, f"must be a positive integer, got {v!r}")
    if k > n_bits:
        raise ParameterError("k", f"must be ≤ n_bits ({n_bits}), got {k}")
    if math.comb(n_bits, k) < n_tasks:
        raise ParameterError("n_tasks", f"must be ≤ C(n_bits, k) = {math.comb(n_bits, k)} distinct subsets, "
                                        f"got {n_tasks}")
    if not zipf_exponent > 0:
        raise ParameterError("zipf_exponent", f"(= α + 1) must be > 0, got {zipf_exponent}")


@dataclass(frozen=True)
class SparseParityConfig(Config):
    """One MLP trained on multitask sparse parity (Michaud et al. 2023). Defaults are sized for a CPU;
    the paper: n_tasks 500, n_bits 100, Zipf 1.4, width 500, Adam lr 1e-3, batch 20000, 200k steps."""

    n_tasks: int = 50
    """Subtasks (one-hot control bits)."""
    n_bits: int = 10
    """Random task bits after the control bits."""
    k: int = 3
    """Bits per subtask whose parity is the label."""
    zipf_exponent: float = 1.5
    """Subtask i is drawn with p_i ∝ i^−zipf_exponent; the paper's α is zipf_exponent − 1."""
    task_seed: int = 0
    """Seeds the subtasks' bit subsets (and the evaluation samples)."""
    width: int = 128
    """Hidden units per layer."""
    depth: int = 1
    """Hidden layers."""
    activation: str = "relu"
    """Hidden activation: relu, gelu, tanh or silu."""
    steps: int = 2000
    """Optimiser steps."""
    batch_size: int = 1000
    """Samples per step."""
    lr: float = 1e-2
    """AdamW learning rate (the paper's 1e-3 goes with its 20× larger batch)."""
    weight_decay: float = 0.0
    """AdamW weight decay (0 is plain Adam)."""
    n_train: int | None = field(default=None, metadata={"parse": int})
    """A finite training set of this many samples, cycled in reshuffled epochs (default: fresh batches)."""
    log_every: int = 100
    """Steps between evaluations (per-subtask loss and accuracy on fresh samples)."""
    eval_samples: int = 200
    """Fresh samples per subtask at each evaluation."""
    seed: int = 0
    """Seeds the initial weights and the training data."""

    def _checks(self):
        def task(name, v):
            check_task(self.n_tasks, self.n_bits, self.k, self.zipf_exponent)

        def n_train(name, v):
            if v is not None and (isinstance(v, bool) or int(v) != v or v < 1):
                raise ParameterError(name, f"must be None (fresh batches) or a positive integer, got {v!r}")

        positive = [(k, check_positive_int) for k in
                    ("width", "depth", "steps", "batch_size", "log_every", "eval_samples")]
        return [("n_tasks", task), *positive, ("n_train", n_train), ("activation", check_choice(ACTIVATIONS)),
                ("lr", lambda n, v: check_finite(n, v, low=0.0, low_open=True)),
                ("weight_decay", lambda n, v: check_finite(n, v, low=0.0))]
