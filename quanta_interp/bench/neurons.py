"""`quanta bench neurons`: the streaming scan vs a plain forward over the same tokens; a whole layer in one
pass vs the same neurons inspected one by one, and pages/s.

- `neurons_scan_over_forward` (target ≥ 0.8): throughput of `scan_neurons` over a plain forward that stops at
  the same hook and keeps nothing, on the same windows; beside it the scan over a full forward. The functions
  are timed in turn within each round (`bench.timing.median_times`), medians of 3 rounds after a warm-up.
- One-by-one costs one pass over the sample per neuron; it is timed on `n_single` neurons and scaled to the
  layer's width (stated in the output).

`--quick` uses a small random native model instead of SmolLM2.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

from .results import BenchResult

__all__ = ["run", "scan_costs", "NeuronScanCosts", "NeuronsBench"]


@dataclass(frozen=True)
class NeuronScanCosts(BenchResult):
    """`scan_costs`: the streaming neuron scan of one layer against plain forwards over the same windows.

    Attributes
    ----------
    scan_tokens : int
        Tokens scanned (and forwarded).
    scan_s, forward_to_hook_s, full_forward_s : float
        Seconds (median over rounds, 3 decimals) of `scan_neurons`, of a forward stopped at the layer's hook
        that keeps one neuron, and of a full forward.
    neurons_scan_over_forward : float
        forward_to_hook_s / scan_s: the scan's throughput relative to the forward (> 1 = the scan is faster).
    target_neurons_scan_over_forward : float
        Its target, 0.8.
    scan_over_full_forward : float
        full_forward_s / scan_s.
    scan_state_bytes : int
        Bytes of the scan's state.
    scan_note : str
        How to read the ratios.
    """

    scan_tokens: int
    scan_s: float
    forward_to_hook_s: float
    full_forward_s: float
    neurons_scan_over_forward: float
    target_neurons_scan_over_forward: float
    scan_over_full_forward: float
    scan_state_bytes: int
    scan_note: str


def _setup(quick: bool, seed: int, device: str = "cpu"):
    from .. import lm
    from ..corpora import load_corpus

    if quick:
        corpus = load_corpus("shakespeare", "char")
        model = lm.build_model(lm.TrainConfig(d_vocab=corpus.vocab_size, n_layers=2, d_model=64, n_heads=4, n_ctx=128,
                                    seed=seed)).to(device)
        model = lm.LoadedModel(model, None, "native-2L-d64 (random init)")
        return model, corpus, 1, 32, 8

    model = lm.load("smollm2", device=device)
    return model, load_corpus("shakespeare", tokenizer=lm.corpus_tokenizer(model)), 6, 16, 4


def scan_costs(model, corpus, layer: int, *, n_batches: int = 3, batch_size: int = 16, context: int = 128,
               repeats: int = 3) -> NeuronScanCosts:
    """Seconds of the scan of one layer over `n_batches` batches, of a plain forward stopped at the same hook
    and of a full forward, over the same windows, timed in turn within each round.

    Returns
    -------
    NeuronScanCosts
        The three times, their ratios (with the target 0.8 of `neurons_scan_over_forward`) and the scan's state
        size.
    """
    import numpy as np
    import torch

    from ..capture.activations import activation_batches
    from ..neurons.config import ScanConfig, resolve_hook
    from ..neurons.scan import scan_neurons, scan_windows
    from .timing import median_times

    bridge = model.bridge
    context = min(context, int(bridge.cfg.n_ctx))
    hook = resolve_hook(bridge, layer, None)
    windows = scan_windows(corpus, context, max_tokens=n_batches * batch_size * context)
    tokens = np.stack([corpus.doc(int(d))[s: s + context] for d, s in windows]).astype(np.int64)
    batches = [tokens[i: i + batch_size] for i in range(0, len(tokens), batch_size)]
    cfg = ScanConfig(model=model.spec, layers=(layer,), tokens=int(tokens.size), context=context,
                     batch_size=batch_size, top_k=min(20, len(windows)))
    held = {}

    def scan():
        held["scan"] = scan_neurons(model, corpus, cfg, desc=None)

    def forward_to_hook():
        for _ in activation_batches(bridge, ((b, None) for b in batches), [hook], neurons=np.array([0])):
            pass

    def full_forward():
        with torch.no_grad():
            for b in batches:
                bridge(torch.as_tensor(b, device=next(bridge.parameters()).device))

    t_scan, t_fwd, t_full = median_times(scan, forward_to_hook, full_forward, repeats=repeats)
    return NeuronScanCosts(
        scan_tokens=int(tokens.size), scan_s=round(t_scan, 3), forward_to_hook_s=round(t_fwd, 3),
        full_forward_s=round(t_full, 3), neurons_scan_over_forward=round(t_fwd / t_scan, 3),
        target_neurons_scan_over_forward=0.8, scan_over_full_forward=round(t_full / t_scan, 3),
        scan_state_bytes=held["scan"].state_bytes(),
        scan_note="throughput ratios (> 1 = the scan is faster); the plain forward stops at the same hook and keeps "
                  "one neuron; timed in turn within each round, medians")


@dataclass(frozen=True)
class NeuronsBench(BenchResult):
    """A layer in one pass vs one neuron per pass (seconds; the one-by-one layer time estimated from the timed
    neurons), HTML pages written per second, and the streaming scan against a forward (`scan`, whose fields
    `to_dict` flattens after `scan_layer`; see `run`)."""

    model: str
    layer: int
    neurons_in_layer: int
    sample_tokens: int
    threads: int
    layer_batch_s: float
    one_neuron_s: float
    one_by_one_timed_neurons: int
    one_by_one_layer_s_estimated: float
    speedup_layer_batch_vs_one_by_one: float
    speedup_note: str
    pages_written: int
    pages_per_s: float
    scan_layer: int
    scan: NeuronScanCosts

    def to_dict(self) -> dict:
        """`bench_neurons.json`: the fields in order, `scan`'s flattened in its place (the last)."""
        d = super().to_dict()
        scan = d.pop("scan")
        return {**d, **scan}


def run(args) -> NeuronsBench:
    """`LayerInspector` on a whole MLP layer in one pass vs one neuron per pass, and HTML pages written/s.

    SmolLM2 layer 6 on 16 Shakespeare windows of 64 tokens, 4 neurons timed alone; with `args.quick`, a
    random 2-layer native model (char vocabulary) layer 1 on 32 windows, 8 neurons timed alone.

    Returns
    -------
    NeuronsBench
        "model", "layer", "neurons_in_layer", "sample_tokens", "threads"; "layer_batch_s", "one_neuron_s",
        "one_by_one_timed_neurons", "one_by_one_layer_s_estimated" (one_neuron_s × width),
        "speedup_layer_batch_vs_one_by_one", "speedup_note"; "pages_written" (≤ 200), "pages_per_s";
        "scan_layer" and the `scan_costs` fields (SmolLM2 layer 10, 3 batches of 16 × 128 tokens; quick: 2 of
        4 × 64), with the target of `neurons_scan_over_forward`.
    """
    import torch

    from ..neurons.inspect import LayerInspector, corpus_sample
    from ..neurons.pages import write_layer

    model, corpus, layer, n_windows, n_single = _setup(bool(args.quick), int(args.seed), getattr(args, "device", "cpu"))
    scan_row = scan_costs(model, corpus, 10 if not args.quick else layer, n_batches=2 if args.quick else 3,
                          batch_size=4 if args.quick else 16, context=64 if args.quick else 128)
    sample = corpus_sample(corpus, n_windows=n_windows, context=64, seed=int(args.seed))
    torch.manual_seed(int(args.seed))

    start = time.perf_counter()
    batch = LayerInspector(layer, batch_size=8).fit(model, sample)
    records = list(batch.records())
    t_layer = time.perf_counter() - start
    width = len(batch.neurons_)

    start = time.perf_counter()
    for i in range(n_single):
        LayerInspector(layer, neurons=[i], batch_size=8).fit(model, sample).record(i)
    t_single = (time.perf_counter() - start) / n_single

    n_pages = min(width, 200)
    with tempfile.TemporaryDirectory() as out:
        pages = write_layer(records[:n_pages], out, title="bench")
    return NeuronsBench(
        model=model.spec, layer=layer, neurons_in_layer=width,
        sample_tokens=int(sample.tokens.size), threads=torch.get_num_threads(),
        layer_batch_s=round(t_layer, 3),
        one_neuron_s=round(t_single, 3), one_by_one_timed_neurons=n_single,
        one_by_one_layer_s_estimated=round(t_single * width, 1),
        speedup_layer_batch_vs_one_by_one=round(t_single * width / t_layer, 1),
        speedup_note="one-by-one = one pass over the sample per neuron, timed on the first neurons and scaled to "
                     "the layer width; both include building the records",
        pages_written=pages.pages, pages_per_s=round(pages.pages_per_s, 1),
        scan_layer=10 if not args.quick else layer, scan=scan_row,
    )
