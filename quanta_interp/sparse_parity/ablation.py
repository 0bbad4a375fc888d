"""Neurons of a quantum: which hidden units each sparse-parity subtask needs.

Ablating unit j of the last hidden layer removes its term h_j · W_out[:, j] from the logits, so the
whole neuron × subtask matrix of loss increases comes from one forward pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import ParameterError
from .task import LEARNED_BITS, MultitaskSparseParity, to_bits

__all__ = ["AblationMatrix", "ablation_matrix", "carriers", "unit_attribution", "write_ablation", "Ablation"]


@dataclass(frozen=True)
class Ablation:
    """What `write_ablation` wrote: `matrix` (`AblationMatrix.to_dict()`, "carriers" and "threshold_bits" added)
    as `path` (neurons.json) holds it, and the subtasks the model learned (base loss < 0.1 bits)."""

    matrix: dict
    learned: list
    path: Path

    def to_dict(self) -> dict:
        return self.matrix


@dataclass(frozen=True)
class AblationMatrix:
    """Loss increases when each last-layer hidden unit is zeroed (`ablation_matrix`).

    Attributes
    ----------
    base_loss : list of float (n_tasks,)
        Mean loss of the intact model per subtask, in bits.
    increase : nested list of float (width, n_tasks)
        Ablated minus base loss, in bits (negative when a unit hurt).
    loss_unit : str
        "bits".
    """

    base_loss: list
    increase: list
    loss_unit: str = "bits"

    def to_dict(self) -> dict:
        return {"loss_unit": self.loss_unit, "base_loss": self.base_loss, "increase": self.increase}


def ablation_matrix(model: nn.Sequential, task: MultitaskSparseParity, n_samples: int = 500,
                    generator: torch.Generator | None = None) -> AblationMatrix:
    """Loss increase (bits) on each subtask when each last-layer hidden unit is zeroed: [width, n_tasks].

    Parameters
    ----------
    model : nn.Sequential
        A `build_mlp` network; its last module is the `nn.Linear(width, 2)` readout.
    n_samples : int
        Fresh samples of each subtask, drawn with `generator` (made for the task's device) and scored on the
        model's device.

    Returns
    -------
    AblationMatrix

    Raises
    ------
    ParameterError
        `n_samples` < 1.
    """
    if n_samples < 1:
        raise ParameterError("n_samples", f"must be a positive integer, got {n_samples}")
    out = model[-1]
    rows_base, rows_abl = [], []
    with torch.no_grad():
        for i in range(task.n_tasks):
            x, y = (v.to(out.weight.device) for v in task.sample_task(i, n_samples, generator))
            h = model[:-1](x)  # [n, width]
            logits = out(h)  # [n, 2]
            ce = nn.functional.cross_entropy
            rows_base.append(ce(logits, y))
            # logits with unit j removed: [width, n, 2]
            abl = logits[None] - h.T[:, :, None] * out.weight.T[:, None, :]
            rows_abl.append(ce(abl.reshape(-1, 2), y.repeat(h.shape[1]), reduction="none")
                            .view(h.shape[1], -1).mean(1))
    base = to_bits(torch.stack(rows_base))
    increase = to_bits(torch.stack(rows_abl, dim=1)) - base[None]
    return AblationMatrix(base_loss=base.tolist(), increase=increase.tolist())


def unit_attribution(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, metric: str = "loss") -> np.ndarray:
    """First-order estimate of zero-ablating each last-layer hidden unit, summed over samples (attribution
    patching, Nanda 2023; `neurons.attribution` with μ = 0): A_j = Σ_n (0 − h_j(n)) · ∂M_n/∂h_j(n).

    Parameters
    ----------
    model : nn.Sequential
        A `build_mlp` network; `x` (n, inputs) float32 and `y` (n,) int64 on its device.
    metric : str
        "loss": M is the cross-entropy (nats); "margin": M is minus the logit difference (right − wrong), which
        does not saturate where the loss is ~0.

    Returns
    -------
    float64 ndarray (width,)

    Raises
    ------
    ParameterError
        An unknown `metric`.
    """
    if metric not in ("loss", "margin"):
        raise ParameterError("metric", f"must be 'loss' or 'margin', got {metric!r}")
    h = model[:-1](x).detach().requires_grad_(True)
    logits = model[-1](h)
    if metric == "loss":
        nn.functional.cross_entropy(logits, y, reduction="sum").backward()
    else:
        (logits.gather(1, 1 - y[:, None]) - logits.gather(1, y[:, None])).sum().backward()
    return (-(h.detach() * h.grad)).sum(0).double().cpu().numpy()


def carriers(increase: list[list[float]], threshold: float = 0.1) -> list[list[int]]:
    """Per subtask, the units whose ablation raises its loss by more than `threshold` bits, largest first.

    Parameters
    ----------
    increase : nested list (width, n_tasks)
        `ablation_matrix(...).increase`, in bits.

    Returns
    -------
    list of n_tasks lists of int
        Unit indices per subtask, by decreasing loss increase; empty for a subtask no unit carries.
    """
    m = torch.tensor(increase)
    return [[int(j) for j in torch.argsort(m[:, i], descending=True) if m[j, i] > threshold]
            for i in range(m.shape[1])]


def write_ablation(run: str | os.PathLike, out: str | os.PathLike | None = None, *, samples: int = 500,
                   threshold: float = 0.1, seed: int = 0, device: str = "cpu") -> Ablation:
    """The ablation matrix of a trained run (`ablation_matrix`, `samples` per subtask drawn with `seed`) and its
    `carriers` above `threshold` bits, written to `out/neurons.json` with its heatmap (`out` defaults to `run`).

    Raises
    ------
    ParameterError
        `threshold` is not a finite number ≥ 0 (NaN would make no unit a carrier, silently), or `samples` < 1.
    """
    from ..config import check_finite
    from ..io import atomic_write_json
    from .figures import plot_heatmap
    from .training import load_trained

    check_finite("threshold", threshold, low=0.0)
    model, cfg, _ = load_trained(run, device)
    a = ablation_matrix(model, MultitaskSparseParity.of(cfg), samples, torch.Generator().manual_seed(seed))
    m = {**a.to_dict(), "carriers": carriers(a.increase, threshold), "threshold_bits": threshold}
    out = Path(out or run)
    path = atomic_write_json(out / "neurons.json", m)
    plot_heatmap([list(r) for r in zip(*a.increase, strict=True)], out / "neurons",
                 xlabels=list(range(cfg.width)), xlabel="hidden unit", cbar="loss increase (bits)",
                 title="ablation: loss increase per subtask", vmax=None)
    return Ablation(m, [i for i, b in enumerate(a.base_loss) if b < LEARNED_BITS], path)
