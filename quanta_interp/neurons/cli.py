"""`quanta neurons inspect|layer|cluster`: neuron pages for any model, and the neurons of a quanta cluster."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..cli import add_common, positive_int

__all__ = ["register"]


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `inspect`, `layer` and `cluster` subcommands to `parser`."""
    from ..config import add_arguments
    from .config import LinkConfig, NeuronConfig, PagesConfig
    from .scan import ScanConfig

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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(text).name or text)


def _model(spec: str, device: str):
    from ..lm import load

    return load(spec, device=device)


def _corpus(model, source: str, **kwargs):
    from ..lm.losses import model_corpus

    return model_corpus(model, source, **kwargs)


def _fit(args, neurons):
    import torch

    from ..config import from_args
    from ..corpora import check_corpus_source
    from .config import NeuronConfig
    from .inspect import LayerInspector, corpus_sample
    from .quanta_link import ClusterProfile, check_model, discover_corpus, read_discover

    cfg = from_args(NeuronConfig, args)
    torch.manual_seed(cfg.seed)
    check_corpus_source(cfg.corpus)  # the cheap checks, before a model loads
    if cfg.discover:
        check_model(read_discover(cfg.discover)[0], cfg.model, cfg.discover)
    model = _model(cfg.model, args.device)
    corpus = _corpus(model, cfg.corpus)
    if cfg.context > int(model.cfg.n_ctx):
        print(f"note: context {cfg.context} is more than model {cfg.model!r} reads; windows of its n_ctx "
              f"({int(model.cfg.n_ctx)}) tokens are used")
    if cfg.top_k > cfg.windows * min(cfg.context, int(model.cfg.n_ctx)):
        print(f"note: top_k {cfg.top_k} is more than the {cfg.windows} windows hold; every position is shown")
    sample = corpus_sample(corpus, n_windows=cfg.windows, context=min(cfg.context, int(model.cfg.n_ctx)),
                           split=None if cfg.split == "all" else cfg.split, seed=cfg.seed)
    insp = LayerInspector(cfg.layer, hook=cfg.hook, neurons=neurons, top_k=cfg.top_k, intervals=cfg.intervals,
                          batch_size=cfg.batch_size, seed=cfg.seed).fit(model, sample, desc="forward")
    if cfg.discover:
        summary, _ = read_discover(cfg.discover)
        profile = ClusterProfile([cfg.layer], hook=cfg.hook).fit(model, cfg.discover, discover_corpus(model, summary),
                                                                  desc="cluster members")
        insp.link(profile)
    out = Path(args.out) / _slug(cfg.model) / insp.hook_.replace(".", "_")
    return insp, out, cfg


def _scan(args) -> int:
    from ..config import from_args
    from ..corpora import check_corpus_source
    from .scan import ScanConfig, scan_neurons

    cfg = from_args(ScanConfig, args)
    check_corpus_source(cfg.corpus)
    model = _model(cfg.model, args.device)
    scan = scan_neurons(model, _corpus(model, cfg.corpus), cfg, args.out)
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
    print(f"wrote {res['pages']} neuron pages and {res['index']} (open it in any browser, offline)")
    return 0


def _inspect(args) -> int:
    from .pages import write_neuron

    insp, out, _ = _fit(args, [args.neuron])
    path = write_neuron(insp.record(args.neuron), out)
    print(f"wrote {path} (+ .json); open it in any browser, offline")
    return 0


def _layer(args) -> int:
    from ..io import progress
    from .pages import write_layer

    insp, out, cfg = _fit(args, parse_indices(args.neurons, "neurons"))
    records = list(progress(insp.records(), total=len(insp.neurons_), desc="records"))
    res = write_layer(records, out, title=f"{cfg.model} · {insp.hook_}")
    print(f"wrote {res['pages']} neuron pages ({res['pages_per_s']:.1f} pages/s) and {res['index']}")
    return 0


def _cluster(args) -> int:
    from ..config import ParameterError
    from ..io import atomic_write_json
    from .quanta_link import ClusterProfile, check_model, discover_corpus, discover_model, read_discover

    summary, clusters = read_discover(args.discover)
    spec = args.model or discover_model(summary)
    check_model(summary, spec, args.discover)  # before loading the model
    ids = [str(cl.get("id", cl.get("rank", c))) for c, cl in enumerate(clusters)]
    if str(args.cluster) not in ids:
        raise ParameterError("cluster", f"{args.cluster} is not in {args.discover}: clusters are ranked "
                                        f"{ids[0]}..{ids[-1]} (1 = largest)")
    model = _model(spec, args.device)
    layers = parse_indices(args.layers, "layers") or list(range(int(model.cfg.n_layers)))
    profile = ClusterProfile(layers, hook=args.hook, batch_size=args.batch_size).fit(
        model, args.discover, discover_corpus(model, summary), desc="cluster members")
    cluster = int(args.cluster) if args.cluster.isdigit() and int(args.cluster) in profile.cluster_ids_ else args.cluster
    rows = profile.neurons_for(cluster, args.top)
    c = profile.cluster_ids_.index(cluster)
    path = atomic_write_json(Path(args.out) / _slug(spec) / f"cluster_{_slug(str(cluster))}.json", {
        "model": spec, "discover": str(args.discover), "cluster": cluster, "size": profile.sizes_[c],
        "label": profile.labels_[c], "context": profile.context_, "ranking": "z = (cluster mean − mean over all "
        "members) / sd over all members, at the last context token before each target", "neurons": rows})
    print(f"cluster {cluster} (size {profile.sizes_[c]}; targets {profile.labels_[c]!r}) — top neurons:")
    for r in rows:
        print(f"  {r['hook']:<28} neuron {r['neuron']:>5}  z {r['z']:+.2f}  mean {r['mean_activation']:+.3f}")
    print(f"wrote {path}")
    return 0
