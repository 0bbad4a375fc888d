"""`Record`: the base of the package's frozen result dataclasses, whose `to_dict()` is the JSON they are written as
(benchmark results, langstats fits and reports, …)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["Record", "optional"]


def optional():
    """A `Record` field left out of `to_dict()` while it is None (a measurement or fit that was not made)."""
    return field(default=None, metadata={"optional": True})


@dataclass(frozen=True)
class Record:
    """Frozen fields in the order the JSON lists them; nested results (and lists or dicts of them) become dicts.

    Subclasses document each field's unit; `optional()` fields are left out while None. Numpy values are left
    for `io.to_jsonable`, which every JSON writer of the package applies.
    """

    def to_dict(self) -> dict[str, Any]:
        """{field: value} in field order, nested results as their `to_dict()`, `optional()` Nones left out."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)
                if not (f.metadata.get("optional") and getattr(self, f.name) is None)}


def _plain(value):
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
