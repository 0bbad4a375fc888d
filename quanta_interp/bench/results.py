"""`BenchResult`: the base of every benchmark's result, whose `to_dict()` is the `bench_NAME.json` it writes."""

from __future__ import annotations

from dataclasses import dataclass

from ..record import Record, optional

__all__ = ["BenchResult", "optional"]


@dataclass(frozen=True)
class BenchResult(Record):
    """A benchmark's result (`record.Record`): frozen fields in the order bench_NAME.json lists them, each
    subclass documenting its fields' units; `optional()` fields are left out while None."""
