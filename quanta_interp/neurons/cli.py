"""`quanta neurons scan|link|pages|inspect|layer|cluster`: a streaming scan, neurons ranked for quanta by cause,
neuron pages for any model, and the neurons of a quanta cluster by z-score. Each command builds its config and
calls one library function."""

from __future__ import annotations

import argparse

from ..cli import add_common, positive_int

__all__ = ["register"]


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `scan`, `link`, `pages`, `inspect`, `layer` and `cluster` subcommands to `parser`."""
    from ..config import add_arguments
    from .config import LinkConfig, NeuronConfig, PagesConfig, ScanConfig

    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p = sub.add_parser("scan", help="stream ≥ 10^6 tokens once: per-neuron top-k, quantile examples, histogram; "
                                    "resumable")
    add_arguments(p, ScanConfig)
    add_common(p, out="runs/neurons/scan", device=True, seed=False)
    p.set_defaults(func=_scan)

    p = sub.add_parser("link", help="a layer's neurons for the largest quanta of a discover run, by attribution, "
                                    "confirmed by ablation → JSON")
    add_arguments(p, LinkConfig)
    add_common(p, out="runs/neurons/links.json", device=True, seed=False)
    p.set_defaults(func=_link)

    p = sub.add_parser("pages", help="neuron pages + a searchable layer index from a scan (and links) → HTML")
    add_arguments(p, PagesConfig)
    add_common(p, out="runs/neurons/pages", device=True, seed=False)
    p.set_defaults(func=_pages)

    p = sub.add_parser("inspect", help="one neuron: stats, examples, logit effects → JSON + HTML page")
    add_arguments(p, NeuronConfig)
    p.add_argument("--neuron", type=int, required=True, help="neuron index in the hook's last dimension")
    add_common(p, out="runs/neurons", device=True, seed=False)
    p.set_defaults(func=_inspect)

    p = sub.add_parser("layer", help="every neuron of a layer in one pass: a page per neuron + index.html")
    add_arguments(p, NeuronConfig)
    p.add_argument("--neurons", default=None, help="subset, e.g. 0-99 or 3,17,42 (default: all)")
    add_common(p, out="runs/neurons", device=True, seed=False)
    p.set_defaults(func=_layer)

    p = sub.add_parser("cluster", help="the neurons most selective for one `quanta discover` cluster")
    p.add_argument("--discover", required=True, help="folder written by `quanta discover --out`")
    p.add_argument("--cluster", required=True, help="the cluster's rank in clusters.json (1 = largest), as in browser.html")
    p.add_argument("--model", default=None, help="model spec (default: the one the discover run used)")
    p.add_argument("--layers", default=None, help="layers to rank, e.g. 0-5 or 3,7 (default: all)")
    p.add_argument("--hook", default=None, help="hook template with {layer} (default: blocks.{layer}.mlp.hook_post)")
    p.add_argument("--top", type=positive_int, default=20, help="neurons to list (default: 20)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="windows per forward pass (default: 16)")
    add_common(p, out="runs/neurons", device=True, seed=False)
    p.set_defaults(func=_cluster)


def parse_indices(text: str | None, name: str) -> list[int] | None:
    """'0-9,12' → [0..9, 12] (`config.parse_int_list`); one-line error naming the flag otherwise.

    Returns None when `text` is None (all indices). `name` is the flag without dashes, for the message.

    Raises
    ------
    ValueError
        `text` is not a list of ranges/integers, is empty, or holds a negative index.
    """
    from ..config import parse_int_list

    if text is None:
        return None
    try:
        values = parse_int_list(text)
    except argparse.ArgumentTypeError:
        values = ()
    if not values or min(values) < 0:
        raise ValueError(f"--{name} must look like 0-99 or 3,17,42, got {text!r}")
    return list(values)


def _scan(args) -> int:
    from ..config import from_args
    from .config import ScanConfig
    from .scan import run_scan

    scan = run_scan(from_args(ScanConfig, args), args.out, args.device)
    info = scan.to_dict()
    print(f"scanned {info['tokens_done']} tokens of {', '.join(scan.hooks)} in {info['seconds']:.0f} s "
          f"({info['tokens_per_s']:.0f} tokens/s); state {info['state_bytes'] / 1e6:.1f} MB → {args.out}/scan_state.pt")
    return 0


def _link(args) -> int:
    from ..config import from_args
    from ..io import atomic_write_json
    from .attribution import link_quanta
    from .config import LinkConfig

    res = link_quanta(from_args(LinkConfig, args), args.device)
    path = atomic_write_json(args.out, res.to_dict())
    for q in res.quanta:
        if q.delta_top is None:
            print(f"Q{q.rank} (size {q.size}, targets {q.targets}): top-{res.top_n} by attribution "
                  f"{q.top_attribution[:8]}… (not ablated)")
            continue
        print(f"Q{q.rank} (size {q.size}, targets {q.targets}): top-{res.top_n} by attribution "
              f"{q.top_attribution[:8]}…; ablating them raises its loss {q.delta_top:+.4f} nats vs {q.delta_z:+.4f} "
              f"(top z-score) and {sum(q.delta_random) / len(q.delta_random):+.4f} (random; ratio {q.ratio}, "
              f"95 % {q.ratio_interval}); other tokens {q.delta_other:+.4f}")
    print(f"wrote {path}")
    return 0


def _pages(args) -> int:
    from ..config import from_args
    from .config import PagesConfig
    from .dashboard import write_scan_pages

    res = write_scan_pages(from_args(PagesConfig, args), args.out, args.device)
    print(f"wrote {res.pages} neuron pages and {res.index}" + (f" and {res.quanta} (each quantum's neurons)"
                                                              if res.quanta else "") + " (open in any browser, offline)")
    return 0


def _write(args, **kwargs):
    from ..config import from_args
    from .config import NeuronConfig
    from .inspect import write_inspection

    res = write_inspection(from_args(NeuronConfig, args), args.out, device=args.device, **kwargs)
    for note in res.notes:
        print(f"note: {note}")
    return res


def _inspect(args) -> int:
    res = _write(args, single=args.neuron)
    print(f"wrote {res.page} (+ .json); open it in any browser, offline")
    return 0


def _layer(args) -> int:
    res = _write(args, neurons=parse_indices(args.neurons, "neurons"))
    print(f"wrote {res.pages} neuron pages ({res.pages_per_s:.1f} pages/s) and {res.page}")
    return 0


def _cluster(args) -> int:
    from .quanta_link import cluster_neurons

    res = cluster_neurons(args.discover, args.cluster, args.out, model=args.model,
                          layers=parse_indices(args.layers, "layers"), hook=args.hook, top=args.top,
                          batch_size=args.batch_size, device=args.device)
    print(f"cluster {res.cluster} (size {res.size}; targets {res.label!r}) — top neurons:")
    for r in res.neurons:
        print(f"  {r['hook']:<28} neuron {r['neuron']:>5}  z {r['z']:+.2f}  mean {r['mean_activation']:+.3f}")
    print(f"wrote {res.path}")
    return 0
