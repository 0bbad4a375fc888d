"""Multitask sparse parity (Michaud et al. 2023, §3.1 of DESIGN): the toy whose quanta are known.

Input = one-hot control bits (n_tasks) ‖ n_bits random bits; subtask i's label is the parity of the
bits in its fixed k-subset S_i, and subtask i is drawn with probability p_i ∝ i^-zipf_exponent.
Naming: `zipf_exponent` is the paper's α + 1 (the original code calls it `alpha`, e.g. 1.4 ↔ α = 0.4).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..config import ParameterError
from .config import check_task

__all__ = ["MultitaskSparseParity", "LEARNED_BITS", "to_bits", "Predictions", "predictions"]

LEARNED_BITS = 0.1  # a subtask counts as learned when its loss is below 0.1 bits


def to_bits(nats: torch.Tensor) -> torch.Tensor:
    """Losses in nats → bits (÷ ln 2), the unit of the 0.1-bit learned threshold; same shape."""
    return nats / math.log(2)


@dataclass(frozen=True)
class Predictions:
    """The quantization model's exponents for p_i ∝ i^-zipf_exponent (`predictions`; Michaud et al. 2023, §3).

    Attributes
    ----------
    alpha : float
        α = zipf_exponent − 1.
    alpha_N, alpha_D, alpha_S : float
        The exponents of L ∝ N^-α_N, D^-α_D, S^-α_S: α_N = α, α_D = α_S = α/(α + 1).
    """

    alpha: float
    alpha_N: float
    alpha_D: float
    alpha_S: float

    def to_dict(self) -> dict:
        return asdict(self)


def predictions(zipf_exponent: float) -> Predictions:
    """The quantization model's exponents for p_i ∝ i^-zipf_exponent (α = zipf_exponent − 1):
    α_N = α, α_D = α_S = α/(α + 1) (Michaud et al. 2023, §3)."""
    a = zipf_exponent - 1.0
    return Predictions(alpha=a, alpha_N=a, alpha_D=a / (a + 1), alpha_S=a / (a + 1))


class MultitaskSparseParity:
    """The task: fixed distinct k-subsets, Zipf task frequencies, vectorised sampling in torch.

    Multitask sparse parity of Michaud et al. 2023 ("The Quantization Model of Neural Scaling"): each
    subtask is one quantum, so which quanta a network has learned is known exactly.

    Parameters
    ----------
    n_tasks : int
        Subtasks, i.e. one-hot control bits.
    n_bits : int
        Random task bits after the control bits.
    k : int
        Bits per subtask whose parity is the label.
    zipf_exponent : float
        α + 1: subtask i (1-based rank) is drawn with p_i ∝ i^-zipf_exponent.
    seed : int
        Seeds the subsets (sampling takes its own generators).

    Attributes
    ----------
    subsets : int64 ndarray (n_tasks, k)
        The bits S_i whose parity is subtask i's label, sorted within each row.
    probs : float64 ndarray (n_tasks,)
        Task frequencies p_i ∝ i^−zipf_exponent (i = 1 … n_tasks), summing to 1.
    alpha : float
        α = zipf_exponent − 1.
    n_inputs : int
        n_tasks + n_bits, the MLP's input width.

    Raises
    ------
    ParameterError
        A count that is not a positive integer, k > n_bits, more tasks than distinct k-subsets, or a
        zipf_exponent ≤ 0.
    """

    def __init__(self, n_tasks: int, n_bits: int, k: int, zipf_exponent: float, seed: int = 0):
        check_task(n_tasks, n_bits, k, zipf_exponent)
        self.n_tasks, self.n_bits, self.k = int(n_tasks), int(n_bits), int(k)
        self.zipf_exponent, self.seed = float(zipf_exponent), int(seed)
        rng = np.random.default_rng(seed)
        chosen: dict[tuple[int, ...], None] = {}
        while len(chosen) < n_tasks:  # rejection is fast unless n_tasks is close to C(n_bits, k)
            chosen.setdefault(tuple(sorted(rng.choice(n_bits, k, replace=False).tolist())), None)
        self.subsets = np.array(list(chosen), dtype=np.int64).reshape(n_tasks, k)
        w = np.arange(1, n_tasks + 1, dtype=float) ** -self.zipf_exponent
        self.probs = w / w.sum()
        self._subsets_t = torch.from_numpy(self.subsets)
        self._probs_t = torch.from_numpy(self.probs)

    @classmethod
    def of(cls, config) -> MultitaskSparseParity:
        """The task a `SparseParityConfig` trains on (its n_tasks, n_bits, k, zipf_exponent, task_seed)."""
        return cls(config.n_tasks, config.n_bits, config.k, config.zipf_exponent, config.task_seed)

    def to(self, device: str | torch.device) -> MultitaskSparseParity:
        """Sample on `device` (pass generators made for that device); returns self, moved in place."""
        self._subsets_t, self._probs_t = self._subsets_t.to(device), self._probs_t.to(device)
        return self

    @property
    def alpha(self) -> float:
        """The paper's α = zipf_exponent − 1 (predicted α_N)."""
        return self.zipf_exponent - 1.0

    @property
    def n_inputs(self) -> int:
        """n_tasks + n_bits: the width of an encoded input."""
        return self.n_tasks + self.n_bits

    def draw(self, n: int, generator: torch.Generator | None = None, task: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw samples: task ids t [n] (Zipf, or all `task`) and bits [n, n_bits] int64.

        Parameters
        ----------
        generator : torch.Generator or None
            On the task's device (see `to`); None uses torch's global generator.
        task : int or None
            Draw only this subtask; None draws task ids from p_i.

        Returns
        -------
        t : int64 tensor (n,)
        bits : int64 tensor (n, n_bits)
            Uniform in {0, 1}.

        Raises
        ------
        ParameterError
            `task` is not in [0, n_tasks).
        """
        dev = self._probs_t.device
        if task is None:
            t = torch.multinomial(self._probs_t, n, replacement=True, generator=generator)
        elif 0 <= task < self.n_tasks:
            t = torch.full((n,), task, dtype=torch.int64, device=dev)
        else:
            raise ParameterError("task", f"must be a task id in [0, {self.n_tasks}), got {task}")
        return t, torch.randint(0, 2, (n, self.n_bits), generator=generator, device=dev)

    def labels(self, t: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """Parity of each row's bits on its task's subset (int64 in {0, 1}).

        Parameters
        ----------
        t : int64 tensor (n,)
        bits : int64 tensor (n, n_bits)

        Returns
        -------
        int64 tensor (n,)
        """
        return bits.gather(1, self._subsets_t[t]).sum(1) % 2

    def encode(self, t: torch.Tensor, bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (control one-hot ‖ bits, float32) and parity labels.

        Returns
        -------
        x : float32 tensor (n, n_tasks + n_bits)
        y : int64 tensor (n,)
            In {0, 1}.
        """
        x = torch.cat([nn.functional.one_hot(t, self.n_tasks), bits], dim=1).float()
        return x, self.labels(t, bits)

    def sample(self, n: int, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`n` samples: x [n, n_tasks + n_bits] float32, y int64 in {0, 1}, task ids t ~ Zipf.

        Returns
        -------
        x : float32 tensor (n, n_tasks + n_bits)
        y : int64 tensor (n,)
        t : int64 tensor (n,)
        """
        t, bits = self.draw(n, generator)
        return (*self.encode(t, bits), t)

    def sample_task(self, i: int, n: int, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` samples of subtask `i` only (for per-subtask evaluation).

        Returns
        -------
        x : float32 tensor (n, n_tasks + n_bits)
        y : int64 tensor (n,)

        Raises
        ------
        ParameterError
            `i` is not in [0, n_tasks).
        """
        return self.encode(*self.draw(n, generator, task=i))
