"""Lazy package exports: a subpackage lists its public names per submodule and imports a submodule only
when one of its names is first used, so `import quanta_interp.X` (and `quanta --help`) stays cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, list[str]]) -> tuple[list[str], Callable[[str], object]]:
    """(`__all__`, `__getattr__`) for `package` from {submodule: [public names]}.

    Parameters
    ----------
    package : str
        The package's `__name__`, which the submodules are relative to.
    exports : dict submodule → list of str
        Public names of each submodule (relative module name, e.g. "sketch").

    Returns
    -------
    names : list of str
        Every exported name, for `__all__`.
    getattr : callable (str) → object
        The module-level `__getattr__` (PEP 562): imports the submodule on first use of one of its names;
        raises AttributeError for any other name.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name in where:
            return getattr(importlib.import_module(f".{where[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return list(where), __getattr__
