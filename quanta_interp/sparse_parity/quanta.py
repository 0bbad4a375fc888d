"""QDG checked on a trained sparse-parity run: its per-sample gradients clustered and scored against its subtasks
(`quanta.ground_truth`), written as the run's qdg.json."""

from __future__ import annotations

import os
from pathlib import Path

from ..quanta.ground_truth import GroundTruth, GroundTruthConfig, ground_truth
from .task import MultitaskSparseParity
from .training import load_trained

__all__ = ["score_run"]


def score_run(run: str | os.PathLike, config: GroundTruthConfig, out: str | os.PathLike | None = None, *,
              device: str = "cpu", show_progress: bool = True) -> tuple[GroundTruth, Path]:
    """`ground_truth` of the finished `train` run folder `run` (its learned subtasks), its report written to
    `out/qdg.json` (`out` defaults to `run`); returns the scoring and that path.

    Raises
    ------
    FileNotFoundError
        `run` holds no finished run.
    ValueError
        As `ground_truth` (fewer than 2 learned subtasks, a threshold that keeps no sample, …).
    """
    from ..io import atomic_write_json

    model, cfg, result = load_trained(run, device)
    scored = ground_truth(model, MultitaskSparseParity.of(cfg), result["learned"], config, show_progress=show_progress)
    return scored, atomic_write_json(Path(out or run) / "qdg.json", scored.report)
