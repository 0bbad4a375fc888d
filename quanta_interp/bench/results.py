"""`BenchResult`: the base of every benchmark's result, whose `to_dict()` is the `bench_NAME.json` it writes."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

__all__ = ["BenchResult", "optional"]


def optional():
    """A field left out of `to_dict()` while it is None (a measurement that was not run)."""
    return field(default=None, metadata={"optional": True})


@dataclass(frozen=True)
class BenchResult:
    """Frozen fields in the order the JSON lists them; nested results (and lists or dicts of them) become dicts.

    Subclasses document each field's unit; `optional()` fields are left out while None.
    """

    def to_dict(self) -> dict:
        """{field: value} in field order, nested results as their `to_dict()`, `optional()` Nones left out."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)
                if not (f.metadata.get("optional") and getattr(self, f.name) is None)}


def _plain(value):
    if isinstance(value, BenchResult):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
