"""`quanta discover`: builds a `QDGConfig` from its flags and runs `qdg.discover` (see that module)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import add_arguments, given_args

__all__ = ["register"]


def register(parser: argparse.ArgumentParser) -> None:
    from .config import PRESETS, QDGConfig

    parser.add_argument("--out", default="runs/discover", help="output folder (default: runs/discover)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                        help="cpu: sized for a 2-core CPU; paper: 10k tokens, whole-document context, 400 clusters, "
                             "30 counts 10…1500, ranks 100–900 (a GPU job). Flags given override it (default: cpu)")
    add_arguments(parser, QDGConfig)
    parser.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    from .config import QDGConfig
    from .qdg import discover

    result = discover(QDGConfig.preset(args.preset, **given_args(QDGConfig, args)), args.out)
    for note in result.summary["notes"]:
        print(f"quanta discover: {note}")
    fit = result.summary["rank_frequency"]
    lo, hi = fit.get("slope_interval") or result.slope_ci or (None, None)
    what = "95 % over resamples" if fit.get("slope_interval") else "rank bootstrap only"
    slope = "none" if result.slope is None else (f"{result.slope:.3f} [{lo:.3f}, {hi:.3f}] ({what}) over ranks "
                                                 f"{fit['fit_ranks'][0]}–{fit['fit_ranks'][1]}")
    print(f"{result.n_tokens} tokens → {len(result.cluster_sizes)} clusters; rank-frequency slope {slope}; "
          f"open {Path(args.out) / 'browser.html'}")
    return 0
