"""The sketch sizes and their check, without torch: configs import them when the CLI starts."""

from __future__ import annotations

from ..config import ParameterError, check_positive_int

__all__ = ["DEFAULT_PROJECTION_DIM", "DEFAULT_MATRIX_DIM", "validate_dims"]

DEFAULT_PROJECTION_DIM = 8192  # k: numbers stored per token; cosine MAE ≈ 0.011 on SmolLM2
DEFAULT_MATRIX_DIM = 512  # m: buckets per matrix (the FFT length)


def validate_dims(projection_dim: int, matrix_dim: int) -> None:
    """`projection_dim` 0 (exact) or ≥ 1, `matrix_dim` ≥ 1; `ParameterError` otherwise.

    The boundary check for settings that build a `TensorSketch` later, so a bad value fails before any work.

    Raises
    ------
    ParameterError
        `projection_dim` is not an integer ≥ 0, or `matrix_dim` is not a positive integer.
    """
    if isinstance(projection_dim, bool) or not isinstance(projection_dim, int) or projection_dim < 0:
        raise ParameterError("projection_dim", f"must be a positive integer, or 0 for exact gradients, "
                                               f"got {projection_dim!r}")
    check_positive_int("matrix_sketch_dim", matrix_dim)
