"""`quanta bench NAME`: benchmarks that measure ratios side by side in one process.

Each benchmark is a module with `run(args)` returning a `results.BenchResult`; this package dispatches and writes
its `to_dict()` to `--out/bench_NAME.json`.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from ..io import atomic_write_json

BENCHES: dict[str, str] = {name: f"quanta_interp.bench.{name.replace('-', '_')}" for name in (
    "lm", "sparse-parity", "qdg", "lottery", "langstats", "passuntil", "neurons", "executors")}


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(BENCHES), help="which benchmark")
    parser.add_argument("--out", default="runs/bench", help="folder for bench_NAME.json (default: runs/bench)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--device", default="cpu", help="torch device for the benchmarks that run models (default: cpu)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    result = importlib.import_module(BENCHES[args.name]).run(args).to_dict()
    path = atomic_write_json(Path(args.out) / f"bench_{args.name}.json", result)
    print(json.dumps(result, indent=2, default=str))
    print(f"wrote {path}")
    return 0
