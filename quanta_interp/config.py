"""Config dataclasses: one place for each setting's default, unit, check and help text.

A pipeline's settings are a frozen dataclass deriving from `Config`. Each field carries an attribute
docstring (the string literal under it) that is its documentation *and* its `--help` text; `validate()`
checks every field before any expensive work and raises `ParameterError`, which names the Python
parameter. The CLI builds the dataclass from its flags (`add_arguments` / `from_args`), and `quanta`'s
main maps a parameter to its flag once (by the parser's own dest → option table), so library errors
never mention flags and CLI errors always do.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import numbers
import re
import textwrap
import typing
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

__all__ = ["BACKENDS", "SPLITS", "Config", "ParameterError", "check_choice", "field_docs", "add_arguments", "from_args", "given_args", "parse_int_list",
           "parse_float_list", "parse_str_list", "check_positive_int", "check_finite", "check_device",
           "check_tokenizer", "parse_seed", "MAX_BPE_VOCAB"]

BACKENDS = ("serial", "processes", "ray")  # where sweep runs execute: `executors.map_runs`, `--backend`
SPLITS = ("train", "val", "all")  # which documents of a corpus a measurement reads
MAX_BPE_VOCAB = 1 << 20  # largest bpe-N: above any published vocabulary (256k); ≥ 2^32 aborts the tokenizers library

C = TypeVar("C", bound="Config")


class ParameterError(ValueError):
    """A bad value for one named parameter: `param` is the Python name, `detail` the rest of the sentence
    ("must be a positive integer, got 0").

    `str(error)` reads "param detail"; the CLI prints the flag in place of the Python name.

    Parameters
    ----------
    param : str
        The Python parameter (or config field) name.
    detail : str
        What is wrong and what is accepted.

    Attributes
    ----------
    param, detail : str
        As given.
    """

    def __init__(self, param: str, detail: str):
        self.param, self.detail = param, detail
        super().__init__(f"{param} {detail}")


@cache
def field_docs(cls: type) -> dict[str, str]:
    """{field: attribute docstring} of a dataclass and its bases (the string literal under each field).

    Read from the source with `ast` (cached per class); whitespace runs become one space. Fields without a
    docstring, and classes whose source is unavailable, are left out.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every pipeline config: validated on construction; `replace`, `to_dict`, `from_dict`.

    Subclasses are frozen dataclasses with an attribute docstring under each field and override
    `_checks()`, which returns (field name, check(name, value)) pairs; a check raises `ParameterError`.
    Every field named `seed` or `*_seed` is checked here: a non-negative integer (numpy refuses others).

    A field may itself be a `Config` (a part of the settings, validated on its own construction): its fields
    keep their names, unique across the whole tree, so they are read (`config.n_clusters`), built
    (`build(n_clusters=…)`), changed (`replace(n_clusters=…)`), written (`to_dict`) and given as flags
    (`add_arguments`) as if they were the parent's own; the parent's `_checks` hold the rules between parts.

    Raises
    ------
    ParameterError
        On construction, a field fails its check.
    """

    def __post_init__(self) -> None:
        self.validate()

    def validate(self: C) -> C:
        """Check every field; return self or raise `ParameterError`. Subclasses extend `_checks`.

        Raises
        ------
        ParameterError
            The first field, in `_checks` order, whose value is not accepted.
        """
        for f in dataclasses.fields(self):
            if f.name == "seed" or f.name.endswith("_seed"):
                check_positive_int(f.name, getattr(self, f.name), low=0)
        for name, check in self._checks():
            check(name, getattr(self, name))
        return self

    def _checks(self) -> Sequence[tuple[str, Callable[[str, Any], None]]]:
        return ()

    def __getattr__(self, name: str):
        """A field of a part (a `Config` field), read as the config's own: `config.n_clusters`."""
        for value in self.__dict__.values():
            if isinstance(value, Config) and name in value.names():
                return getattr(value, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every setting's name, in field order, a part's (a `Config` field's) in its place."""
        return _names(cls)

    @classmethod
    def build(cls: type[C], **settings) -> C:
        """The config from settings named as in `names()` (a part's fields given flat); absent ones default.

        Raises
        ------
        ParameterError
            A value fails its field's check.
        TypeError
            A name is not a setting.
        """
        kwargs = {}
        for f in dataclasses.fields(cls):
            part = _parts(cls).get(f.name)
            if part is not None:
                kwargs[f.name] = part.build(**{n: settings.pop(n) for n in part.names() if n in settings})
            elif f.name in settings:
                kwargs[f.name] = settings.pop(f.name)
        if settings:
            raise TypeError(f"{cls.__name__} has no setting(s) {', '.join(sorted(settings))}")
        return cls(**kwargs)

    def replace(self: C, **changes) -> C:
        """A copy with `changes` (named as in `names()`) applied and validated.

        Raises
        ------
        ParameterError
            A changed value fails its field's check.
        TypeError
            A name in `changes` is not a setting.
        """
        for name, part in _parts(type(self)).items():
            mine = {n: changes.pop(n) for n in part.names() if n in changes}
            if mine:
                changes[name] = getattr(self, name).replace(**mine)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """{setting: value} in `names()` order (a part's fields flat), tuples as lists: JSON-able for plain
        field types, and the input of `from_dict`."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out.update(value.to_dict() if isinstance(value, Config) else {f.name: _plain(value)})
        return out

    @classmethod
    def from_dict(cls: type[C], data: dict) -> C:
        """The config from `to_dict()` output; unknown keys are one `ParameterError`.

        Missing keys take their defaults; lists go back to tuples where the field's annotation is a tuple.

        Raises
        ------
        ParameterError
            `data` has keys that are not settings, or a value fails its field's check.
        """
        names = set(cls.names())
        unknown = sorted(set(data) - names)
        if unknown:
            raise ParameterError("config", f"has unknown keys {unknown}; accepted: {sorted(names)}")
        hints = _hints(cls)
        return cls.build(**{k: _tupled(v, hints[k]) for k, v in data.items()})


@cache
def _hints(cls: type) -> dict:
    """{setting: annotation} of a config and its parts (`Config.names()`)."""
    hints = {}
    for name, hint in typing.get_type_hints(cls).items():
        hints.update(_hints(hint) if isinstance(hint, type) and issubclass(hint, Config) else {name: hint})
    return hints


@cache
def _parts(cls: type) -> dict[str, type[Config]]:
    """{field: its `Config` class} of the fields of `cls` that are parts of its settings."""
    return {name: hint for name, hint in typing.get_type_hints(cls).items()
            if isinstance(hint, type) and issubclass(hint, Config)}


@cache
def _names(cls: type) -> tuple[str, ...]:
    parts = _parts(cls)
    return tuple(n for f in dataclasses.fields(cls) for n in (parts[f.name].names() if f.name in parts else (f.name,)))


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _tupled(value, hint):
    """JSON lists back to the tuples a frozen config holds."""
    if isinstance(value, list) and "tuple" in str(hint):
        return tuple(value)
    return value


# ---------------------------------------------------------------- checks shared by configs

def check_choice(accepted: Sequence[str]) -> Callable[[str, Any], None]:
    """A check for `Config._checks`: raises `ParameterError(name, "must be one of …")` unless the value is one of
    `accepted`.

    Returns
    -------
    callable (name, value) -> None
    """
    def check(name: str, value) -> None:
        if value not in accepted:
            raise ParameterError(name, f"must be one of {', '.join(accepted)}, got {value!r}")
    return check


def check_positive_int(name: str, value, *, low: int = 1) -> None:
    """Raise `ParameterError(name, …)` unless `value` is an integer ≥ `low` (1: positive, 0: non-negative;
    numpy integers count, bools do not).

    Raises
    ------
    ParameterError
        `value` is not an integer, is a bool, or is < `low`.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        kind = {1: "a positive integer", 0: "a non-negative integer"}.get(low, f"an integer ≥ {low}")
        raise ParameterError(name, f"must be {kind}, got {value!r}")


def check_finite(name: str, value, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> None:
    """A finite number within [low, high] (or (low, high] when `low_open`).

    Parameters
    ----------
    name : str
        The parameter, named in the error.
    low, high : float or None
        Inclusive bounds (`low` exclusive when `low_open`); None for no bound.

    Raises
    ------
    ParameterError
        `value` is not an int or float (bools are refused), is NaN or infinite, or lies outside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParameterError(name, f"must be a finite number, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ParameterError(name, f"must be {'>' if low_open else '≥'} {low}, got {value!r}")
    if high is not None and value > high:
        raise ParameterError(name, f"must be ≤ {high}, got {value!r}")


def check_tokenizer(name: str, value) -> None:
    """Raise `ParameterError(name, …)` unless `value` is "char" or "bpe-N" with 257 ≤ N ≤ `MAX_BPE_VOCAB`.

    Checked before any corpus is read: N ≥ 2^32 would abort the tokenizers library (no Python error).

    Raises
    ------
    ParameterError
        `value` is neither form, or N lies outside the bounds.
    """
    m = re.fullmatch(r"bpe-(\d+)", str(value))
    if value != "char" and not (m and 257 <= int(m.group(1)) <= MAX_BPE_VOCAB):
        raise ParameterError(name, f"must be 'char' or 'bpe-N' with 257 ≤ N ≤ {MAX_BPE_VOCAB} (256 bytes + merges), "
                                   f"got {value!r}")


def check_device(device: str) -> None:
    """`ParameterError('device', …)` unless torch can use `device` here (CUDA present, index in range)."""
    if device == "cpu":
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ParameterError("device", f"{device!r} is not a torch device: use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError("device", f"{device!r} asked for, but CUDA is not available here "
                                           "(torch.cuda.is_available() is False); use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ParameterError("device", f"{device!r} is not here: this machine has {torch.cuda.device_count()} "
                                           "CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ParameterError("device", f"{device!r} asked for, but MPS is not available here; use 'cpu'")
    elif dev.type not in ("cuda", "mps", "cpu"):
        raise ParameterError("device", f"{device!r} is not supported: use cpu, cuda or mps")


# ---------------------------------------------------------------- the CLI side

def parse_seed(text: str) -> int:
    """argparse `type=` for --seed: an integer ≥ 0 (numpy's generators refuse negative seeds).

    Raises
    ------
    argparse.ArgumentTypeError
        `text` is not a non-negative integer.
    """
    if not re.fullmatch(r"\s*\d+\s*", text):
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return int(text)


def parse_int_list(text: str) -> tuple[int, ...]:
    """'10,20,40' → (10, 20, 40); '0-3,7' → (0, 1, 2, 3, 7); 'geom:10:1500:30' → 30 integers spaced
    geometrically from 10 to 1500 (duplicates dropped).

    An argparse `type`: ranges are inclusive; 'geom:' values are rounded and come back sorted.

    Raises
    ------
    argparse.ArgumentTypeError
        `text` is none of these forms, or it gives no value.
    """
    return _parse_list(text, int)


def parse_float_list(text: str) -> tuple[float, ...]:
    """'0,0.1,0.3' → (0.0, 0.1, 0.3).

    Raises
    ------
    argparse.ArgumentTypeError
        An item is not a float, or `text` gives no value.
    """
    return _parse_list(text, float)


def parse_str_list(text: str) -> tuple[str, ...]:
    """'a,b' → ('a', 'b'), blanks dropped.

    Raises
    ------
    argparse.ArgumentTypeError
        `text` holds no non-blank item.
    """
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def _parse_list(text: str, kind: type) -> tuple:
    text = text.strip()
    try:
        if text.startswith("geom:"):
            lo, hi, n = text[5:].split(":")
            import numpy as np

            values = np.unique(np.geomspace(float(lo), float(hi), int(n)).round().astype(int))
            return tuple(kind(v) for v in values)
        items = [t.strip() for t in text.split(",") if t.strip()]
        if kind is int:
            if any(not re.fullmatch(r"-?\d+|\d+-\d+", t) for t in items):
                raise ValueError
            values = tuple(v for t in items for v in (range(int(t.split("-")[0]), int(t.split("-")[1]) + 1)
                                                      if re.fullmatch(r"\d+-\d+", t) else [int(t)]))
        else:
            values = tuple(kind(t) for t in items)
    except ValueError:
        shape = "'A,B,C', 'A-B' or 'geom:LO:HI:N'" if kind is int else "'A,B,C'"
        raise argparse.ArgumentTypeError(f"expected {shape} of {kind.__name__}s, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: Sequence[str] = ()) -> None:
    """One option per field of `cls`: flag from the name (or `metadata['flag']`), type from the annotation
    (or `metadata['parse']`), help from its attribute docstring with the field's default shown. Options
    left out stay out of the namespace (`argparse.SUPPRESS`), so `from_args` lets the dataclass (or a
    preset) supply them: defaults live in one place.

    A bool field becomes a `store_true` flag. Fields with `metadata['cli'] = False` get no option.

    Parameters
    ----------
    parser : argparse.ArgumentParser or argument group
    cls : type
        A `Config` dataclass.
    skip : sequence of str
        Fields to leave out (e.g. one the command sets itself).

    Raises
    ------
    TypeError
        A field's annotation is not int, float or str (or an optional of one), and it has no
        `metadata['parse']`.
    """
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.metadata.get("cli") is False:
            continue
        if f.name in _parts(cls):
            add_arguments(parser, hints[f.name], skip=skip)
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        text = docs.get(f.name, "").replace("%", "%%")
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        if hints[f.name] is bool:
            parser.add_argument(flag, dest=f.name, action="store_true", default=argparse.SUPPRESS, help=text)
            continue
        parse = f.metadata.get("parse") or _scalar_parser(hints[f.name], f.name)
        shown = str(",".join(map(str, default)) if isinstance(default, tuple) else default).replace("%", "%%")
        parser.add_argument(flag, dest=f.name, type=parse, default=argparse.SUPPRESS,
                            metavar=f.metadata.get("metavar"),
                            help=text if default is None else f"{text} (default: {shown})")


def _scalar_parser(hint, name: str):
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    kind = args[0]
    if kind in (int, float, str):
        def parse(text: str):
            try:
                return kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        parse.__name__ = kind.__name__
        return parse
    raise TypeError(f"field {name}: give metadata['parse'] for annotation {hint}")


def given_args(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """{setting: value} of the options the user gave (see `add_arguments`; a part's settings flat); absent
    ones are left out. A mapping: the keyword arguments `cls.build` takes (`from_args`)."""
    return {name: getattr(args, name) for name in cls.names() if hasattr(args, name)}


def from_args(cls: type[C], args: argparse.Namespace, **overrides) -> C:
    """The validated config: the dataclass defaults, then the options the user gave, then `overrides`.

    Raises
    ------
    ParameterError
        A resulting value fails its field's check.
    """
    return cls.build(**{**given_args(cls, args), **overrides})
