"""Lazy package exports: a subpackage lists its public names per submodule and imports a submodule only
when one of its names is first used, so `import quanta_interp.X` (and `quanta --help`) stays cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, list[str]]) -> tuple[list[str], Callable[[str], object]]:
    """(`__all__`, `__getattr__`) for `package` from {submodule: [public names]}."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name in where:
            return getattr(importlib.import_module(f".{where[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return list(where), __getattr__
