"""`quanta bench neurons`: a whole layer in one pass vs the same neurons inspected one by one, and pages/s.

One-by-one costs one pass over the sample per neuron; it is timed on `n_single` neurons and scaled to the
layer's width (stated in the output). `--quick` uses a small random native model instead of SmolLM2.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

from .results import BenchResult

__all__ = ["run", "NeuronsBench"]


def _setup(quick: bool, seed: int):
    from .. import lm
    from ..corpora import load_corpus

    if quick:
        corpus = load_corpus("shakespeare", "char")
        model = lm.build_model(lm.TrainConfig(d_vocab=corpus.vocab_size, n_layers=2, d_model=64, n_heads=4, n_ctx=128,
                                    seed=seed))
        model = lm.LoadedModel(model, None, "native-2L-d64 (random init)")
        return model, corpus, 1, 32, 8

    model = lm.load("smollm2")
    return model, load_corpus("shakespeare", tokenizer=lm.corpus_tokenizer(model)), 6, 16, 4


@dataclass(frozen=True)
class NeuronsBench(BenchResult):
    """A layer in one pass vs one neuron per pass (seconds; the one-by-one layer time estimated from the timed
    neurons), and HTML pages written per second (see `run`)."""

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


def run(args) -> NeuronsBench:
    """`LayerInspector` on a whole MLP layer in one pass vs one neuron per pass, and HTML pages written/s.

    SmolLM2 layer 6 on 16 Shakespeare windows of 64 tokens, 4 neurons timed alone; with `args.quick`, a
    random 2-layer native model (char vocabulary) layer 1 on 32 windows, 8 neurons timed alone.

    Returns
    -------
    NeuronsBench
        "model", "layer", "neurons_in_layer", "sample_tokens", "threads"; "layer_batch_s", "one_neuron_s",
        "one_by_one_timed_neurons", "one_by_one_layer_s_estimated" (one_neuron_s × width),
        "speedup_layer_batch_vs_one_by_one", "speedup_note"; "pages_written" (≤ 200), "pages_per_s".
        No target is recorded.
    """
    import torch

    from ..neurons.inspect import LayerInspector, corpus_sample
    from ..neurons.pages import write_layer

    model, corpus, layer, n_windows, n_single = _setup(bool(args.quick), int(args.seed))
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
        pages_written=pages["pages"], pages_per_s=round(pages["pages_per_s"], 1),
    )
