"""The lottery subpackage's result types: one training run over many seeds (`RunResult`), and the peaks of its
loss histogram with their representative networks (`PeakReport`, `PeakSolution`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["RunResult", "PeakSolution", "PeakReport"]


@dataclass(frozen=True, eq=False)
class RunResult:
    """What `train_run` measured on one (activation, width) ensemble of S seeds; `to_dict` is its `result.json`.

    Attributes
    ----------
    activation : str
        One of `ACTIVATIONS` (or a label a caller put in its place).
    width : int
        Hidden neurons N.
    n_seeds : int
        Seeds S.
    train_mse, test_mse : float ndarray (S,)
        Final MSE of each seed on the training grid and on the `n_test` midpoints (units of the target squared).
    median_test_mse : float
        Median of `test_mse`.
    seconds : float
        Wall time of the training and the test evaluation.
    """

    activation: str
    width: int
    n_seeds: int
    train_mse: np.ndarray
    test_mse: np.ndarray
    median_test_mse: float
    seconds: float

    def to_dict(self) -> dict:
        """The fields in order (arrays as they are: the JSON writer lists them)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, row: Mapping) -> RunResult:
        """A result as `map_runs` hands it back (a `result.json` read again, or a fresh `to_dict()`); the
        losses as float64 arrays."""
        return cls(**{**row, "train_mse": np.asarray(row["train_mse"], dtype=float),
                      "test_mse": np.asarray(row["test_mse"], dtype=float)})


@dataclass(frozen=True, eq=False)
class PeakSolution:
    """The representative network of one loss peak, evaluated on a grid of the run's interval.

    Attributes
    ----------
    seed : int
        The seed (index into the run's S networks).
    x, target, prediction : float64 ndarray (n_points,)
        Grid, target and the network's output on it.
    w, b, v : float64 ndarray (N,)
        Input weights, biases and output weights.
    c : float
        Output bias.
    """

    seed: int
    x: np.ndarray
    target: np.ndarray
    prediction: np.ndarray
    w: np.ndarray
    b: np.ndarray
    v: np.ndarray
    c: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class PeakReport:
    """`peak_report`: peaks of a run's final train-loss histogram over seeds (Liu & Tegmark 2023 find distinct
    peaks at N = 2, distinct algorithms), each with its representative network.

    Attributes
    ----------
    activation : str
    width : int
    n_seeds : int
        S.
    losses : float64 ndarray (S,)
        Final train MSE of each seed.
    peaks : list of dict
        `loss_peaks` output, in increasing loss.
    solutions : list of PeakSolution
        One per peak, in the same order.
    """

    activation: str
    width: int
    n_seeds: int
    losses: np.ndarray
    peaks: list[dict]
    solutions: list[PeakSolution]

    def to_dict(self) -> dict:
        """peaks.json: the fields in order, each solution as its `to_dict()`."""
        return asdict(self)
