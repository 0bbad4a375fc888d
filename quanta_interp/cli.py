"""The `quanta` command: one subcommand group per capability, each registered by its own module.

Group modules expose `register(parser)`; they import heavy libraries (torch, transformer-lens) only
inside the command functions, so `quanta --help` stays fast. Bad input exits with code 2 and one line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

from .config import BACKENDS, ParameterError, check_device, parse_seed

__all__ = ["main", "add_common", "add_backend", "backend_kwargs", "BackendKwargs", "positive_int", "few_points_note",
           "vocab_note", "GROUPS"]

GROUPS: dict[str, tuple[str, str]] = {
    "sparse-parity": ("quanta_interp.sparse_parity.cli", "multitask sparse parity: train, sweep, fit, neurons"),
    "lm": ("quanta_interp.lm.cli", "language models: load, train, family, per-token losses, scaling"),
    "discover": ("quanta_interp.quanta.cli", "find quanta by clustering per-token gradients (QDG)"),
    "lottery": ("quanta_interp.lottery.cli", "lottery tickets: y = x² width sweeps, loss peaks, dissection"),
    "langstats": ("quanta_interp.langstats.cli", "language statistics: β, γ and α_D = γ/(2β)"),
    "passuntil": ("quanta_interp.passuntil.cli", "PassUntil: sample until pass, task scaling, emergence"),
    "neurons": ("quanta_interp.neurons.cli", "inspect individual neurons; static HTML pages"),
    "bench": ("quanta_interp.bench", "benchmarks that print speed and accuracy ratios"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line (`quanta: error: ...`) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_common(parser: argparse.ArgumentParser, *, out: str | None = None, device: bool = False,
               seed: bool = True) -> None:
    """The options every command shares: --out, --seed and, where models run, --device.

    Parameters
    ----------
    out : str or None
        Default output folder; None makes --out required.
    device : bool
        Also add --device (default "cpu").
    seed : bool
        Also add --seed (default 0); False where a config dataclass supplies its own --seed.
    """
    parser.add_argument("--out", default=out, required=out is None, help="output folder" +
                        (f" (default: {out})" if out else ""))
    if seed:
        parser.add_argument("--seed", type=parse_seed, default=0, help="random seed, an integer ≥ 0 (default: 0)")
    if device:
        parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")


def add_backend(parser: argparse.ArgumentParser) -> None:
    """Options for commands that run sweeps: where the runs execute (see `executors.map_runs`)."""
    parser.add_argument("--backend", choices=BACKENDS, default="serial",
                        help="where runs execute (default: serial)")
    parser.add_argument("--workers", type=positive_int, default=None, help="parallel runs for 'processes'")
    parser.add_argument("--address", default=None,
                        help="Ray cluster: 'auto', HOST:PORT or ray://HOST:PORT (default: start a local Ray)")
    parser.add_argument("--gpus-per-run", type=float, default=0.0, help="GPUs each run asks Ray for (default: 0)")


class BackendKwargs(TypedDict):
    """`map_runs` keyword arguments (a mapping, splatted into the call): backend, workers (parallel runs or
    None), address (Ray's or None) and resources ({"num_cpus": 1, "num_gpus": GPUs per run})."""

    backend: str
    workers: int | None
    address: str | None
    resources: dict[str, float]


def backend_kwargs(args: argparse.Namespace) -> BackendKwargs:
    """The `map_runs` keyword arguments chosen by `add_backend`'s options.

    Returns
    -------
    BackendKwargs
        "backend", "workers", "address" and "resources" (1 CPU and --gpus-per-run GPUs per run).
    """
    return {"backend": args.backend, "workers": args.workers, "address": args.address,
            "resources": {"num_cpus": 1, "num_gpus": args.gpus_per_run}}


def positive_int(text: str) -> int:
    """argparse `type=` for options that must be an integer ≥ 1.

    Raises
    ------
    ValueError
        `text` is not an integer.
    argparse.ArgumentTypeError
        The integer is ≤ 0.
    """
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def few_points_note(what: str, n_points: int, *, enough: int = 6) -> None:
    """Print a note when a fit rests on fewer than `enough` points: a pairs bootstrap of 3 or 4 points redraws
    almost only the points themselves, so its interval looks tight without meaning it (3 points: zero width)."""
    if n_points < enough:
        print(f"note: {what} rests on {n_points} points; a bootstrap of so few barely varies, so its interval is "
              "not a trustworthy uncertainty: fit more points")


def vocab_note(tokenizer: str, corpus) -> None:
    """Print a note when "bpe-N" learned fewer than N tokens on `corpus` (a `TokenizedCorpus`): every merge the
    text supports is made, and the vocabulary is what it is."""
    if tokenizer.startswith("bpe-") and corpus.vocab_size < int(tokenizer[4:]):
        print(f"note: {tokenizer} asked, but the corpus yields only {corpus.vocab_size} tokens (every merge it "
              "supports); the vocabulary is that")


def build_parser() -> argparse.ArgumentParser:
    """The `quanta` parser: one subparser per `GROUPS` entry, filled by its module's `register`.

    Raises
    ------
    ModuleNotFoundError
        A group module imports a package that is not installed.
    """
    parser = _Parser(prog="quanta", description="quanta_interp: mechanistic interpretability of neural scaling laws.")
    sub = parser.add_subparsers(dest="group", metavar="GROUP", parser_class=_Parser)
    for name, (module, help_text) in GROUPS.items():
        importlib.import_module(module).register(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def _flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """{Python parameter: flag} of the command that ran: how a library error's parameter reads on the CLI."""
    return {a.dest: a.option_strings[0] for a in _command_parser(parser, args)._actions if a.option_strings}


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command that ran."""
    for name in (args.group, getattr(args, "cmd", None)):
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or name not in sub.choices:
            break
        parser = sub.choices[name]
    return parser


def _check_out(out, parser: argparse.ArgumentParser) -> None:
    """One-line ParameterError for an --out that cannot be an output folder, before any work: an existing
    file, or "" where the command has no default meaning for it (its own default is then not "")."""
    if out is None:
        return
    default = next((a.default for a in parser._actions if a.dest == "out"), None)
    if str(out) == "" and default != "":
        raise ParameterError("out", "must name a folder (\"\" would write into the working directory)")
    path = Path(out)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ParameterError("out", f"{out} cannot be a folder: {p} is a file")
            break


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `quanta` command and return its exit code, reporting bad input in one line on stderr.

    Parameters
    ----------
    argv : sequence of str or None
        The arguments after the program name; None reads `sys.argv`.

    Returns
    -------
    int
        The command's code (0 by default, and for bare `quanta`); 2 for a bad option, a missing
        subcommand, a group not in this build, or a ParameterError (shown with its CLI flag),
        ValueError, FileNotFoundError or RuntimeError from the command; 130 on Ctrl-C.

    Raises
    ------
    SystemExit
        Code 0 after --help.
    ValueError, FileNotFoundError, RuntimeError, OSError
        Re-raised with its traceback instead of reported when the environment sets QUANTA_TRACEBACK=1.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a bad option was already reported in one line; --help still exits
        if e.code == 2:
            return 2
        raise
    if not getattr(args, "func", None):
        _command_parser(parser, args).print_help()
        return 0 if args.group is None else 2
    debug = os.environ.get("QUANTA_TRACEBACK") == "1"
    try:
        _check_out(getattr(args, "out", None), _command_parser(parser, args))
        if getattr(args, "device", None):
            check_device(args.device)  # an unavailable device is one line, never a silent CPU run
        return int(args.func(args) or 0)
    except ParameterError as e:
        if debug:
            raise
        print(f"quanta {args.group}: error: {_flags(parser, args).get(e.param, e.param)} {e.detail}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        if debug:
            raise
        print(f"quanta {args.group}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a folder that cannot be written, a disk that is full, …
        if debug:
            raise
        where = f" {e.filename}" if e.filename else ""
        print(f"quanta {args.group}: error: cannot write or read{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("quanta: interrupted; finished work is on disk and a rerun resumes it", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
