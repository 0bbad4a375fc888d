"""Neuronpedia-style records from a `NeuronScan`: the scan's statistics and examples, the examples' contexts
(one forward over the windows they come from), direct logit effects, and the quanta each neuron serves.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..corpora import TokenizedCorpus
from ..describe import Description, describe_tokens, log_unigram
from .config import DEFAULT_HOOK
from .inspect import TokenText, _r, logit_effects
from .pages import LayerPages, NeuronRecord, neuron_filename
from .scan import NeuronScan

__all__ = ["scan_records", "index_rows", "serves", "quantum_links", "describe", "write_scan_pages"]


def serves(links: dict | None, hook: str) -> dict[int, list[dict]]:
    """neuron → the quanta whose top-n attribution list holds it, from `QuantaNeurons.to_dict()` (or {}).

    Each entry: `quantum` (rank), `size`, `targets`, `place` (1 = most attributed), `attribution` (A_i, nats).
    """
    out: dict[int, list[dict]] = {}
    if not links or links.get("hook") != hook:
        return out
    for q in links["quanta"]:
        for place, (i, a) in enumerate(zip(q["top_attribution"], q["attribution"], strict=True), 1):
            out.setdefault(int(i), []).append({"quantum": q["rank"], "size": q["size"], "targets": q["targets"],
                                               "place": place, "attribution": a})
    return out


def quantum_links(links: dict, pages: Collection[int] = (), descriptions: Sequence[str] = ()) -> dict[int, list[dict]]:
    """Quantum rank → its neurons from `QuantaNeurons.to_dict()`, most attributed first, as
    `quanta.browser.link_neurons` lists them: `neuron`, `attribution` (A_i, nats), `href` (its page's file name,
    None for neurons in no `pages`) and `description` (`descriptions[neuron]`, when given).

    A mapping because the browser looks quanta up by rank; quanta the links do not cover are absent."""
    pages = {int(i) for i in pages}
    return {int(q["rank"]): [{"neuron": int(i), "attribution": a,
                              "href": neuron_filename(int(i)) if int(i) in pages else None,
                              **({"description": descriptions[int(i)]} if len(descriptions) else {})}
                             for i, a in zip(q["top_attribution"], q["attribution"], strict=True)]
            for q in links.get("quanta", [])}


@functools.lru_cache(maxsize=2)
def _corpus_log_probs(corpus: TokenizedCorpus, alpha: float) -> np.ndarray:
    """Smoothed log unigram probabilities of the whole corpus, for tokens and preceding tokens (float64 (2, V))."""
    b = log_unigram(np.asarray(corpus.tokens, dtype=np.int64), corpus.vocab_size, alpha)
    return np.stack([b, b])


@functools.lru_cache(maxsize=2)
def _corpus_negatives(corpus: TokenizedCorpus, n: int, seed: int) -> np.ndarray:
    """`n` seeded corpus tokens with their preceding tokens (int64 (n, 2)), the same for every neuron."""
    g = np.random.default_rng(seed).integers(1, len(corpus.tokens), n)
    return np.stack([np.asarray(corpus.tokens[g], dtype=np.int64), np.asarray(corpus.tokens[g - 1], dtype=np.int64)], 1)


def describe(corpus: TokenizedCorpus, scan: NeuronScan, hook: str, neuron: int, *, n_random: int = 1000,
             alpha: float = 0.5, seed: int = 0) -> Description:
    """A one-line description of a neuron without an LLM, and how well it detects the neuron's activations
    (`describe.describe_tokens`, Delphi's detection score).

    The positives are the tokens of the neuron's top-k examples and of its two highest quantile bins (each
    once), described against the whole corpus's unigram distribution; the negatives are `n_random` seeded corpus
    tokens with their preceding tokens.
    """
    st, T = scan.neuron(hook, neuron), scan.context
    toks = [g for _, g in st.top] + [g for b in st.intervals[-2:] for _, g in b.examples]
    ids = np.asarray([(int(corpus.doc(d)[p]), int(corpus.doc(d)[p - 1]) if p > start else -1)
                      for d, p, start in ((scan.token(g)[1], scan.token(g)[2], int(scan.windows[g // T, 1]))
                                          for g in dict.fromkeys(toks))], dtype=np.int64).reshape(-1, 2)
    return describe_tokens(ids, _corpus_negatives(corpus, n_random, seed), _corpus_log_probs(corpus, alpha),
                           TokenText(corpus.tokenizer), alpha=alpha)


def scan_records(model, corpus: TokenizedCorpus, scan: NeuronScan, hook: str, neurons: Sequence[int], *,
                 links: dict | None = None, before: int = 12, after: int = 4, n_logits: int = 10,
                 batch_size: int = 16, descriptions: Sequence[Description] | None = None) -> list[NeuronRecord]:
    """One record per neuron (the fields `pages.neuron_page` shows), from a complete or partial scan.

    The examples' token activations are recomputed on the scan's own windows (so the marked value is the one
    the scan kept); `before`/`after` tokens are shown around it, clipped at the window's edges.

    Parameters
    ----------
    model : lm.LoadedModel
        The scanned model.
    corpus : TokenizedCorpus
        The scanned corpus.
    hook : str
        A scanned hook.
    neurons : sequence of int
        Neurons to build records for.
    links : dict or None
        `QuantaNeurons.to_dict()` of the same hook: each record lists the quanta it serves (`serves`).
    descriptions : sequence of Description or None
        `describe` of every neuron of the hook, indexed by neuron, when the caller already has them.

    Returns
    -------
    list of NeuronRecord

    Raises
    ------
    KeyError
        `hook` was not scanned.
    IndexError
        A neuron outside the hook's width.
    """
    from ..capture.activations import record_activations

    neurons = [int(i) for i in neurons]
    stats = [scan.neuron(hook, i) for i in neurons]
    T = scan.context
    wins = sorted({t // T for s in stats for _, t in [*s.top, *(e for b in s.intervals for e in b.examples)]})
    tokens = np.stack([corpus.doc(int(d))[s: s + T] for d, s in scan.windows[wins]]).astype(np.int64) if wins \
        else np.zeros((0, T), np.int64)
    acts = (record_activations(model.bridge, tokens, [hook], batch_size=batch_size, neurons=np.asarray(neurons))[hook]
            .numpy() if wins else np.zeros((0, T, len(neurons)), np.float32))
    row = {w: r for r, w in enumerate(wins)}
    layer = int(hook.split(".")[1]) if hook.startswith("blocks.") else None
    logits = (logit_effects(model.bridge, layer, np.asarray(neurons), n_logits)
              if layer is not None and hook == DEFAULT_HOOK.format(layer=layer) else None)
    text = TokenText(corpus.tokenizer)
    served = serves(links, hook)

    def example(j, value, g, kind):
        w, p = divmod(g, T)
        lo, hi = max(0, p - before), min(T, p + after + 1)
        doc, start = (int(x) for x in scan.windows[w])
        return {"tokens": text(tokens[row[w], lo:hi]), "values": _r(acts[row[w], lo:hi, j]),
                "maxValue": round(value, 4), "maxValueTokenIndex": p - lo, "doc": doc,
                "doc_name": corpus.doc_names[doc], "pos": start + p, "kind": kind}

    records = []
    for j, (i, s) in enumerate(zip(neurons, stats, strict=True)):
        counts = np.asarray(s.hist_counts)
        used = np.flatnonzero(counts)
        a, b = (used[0], used[-1] + 1) if used.size else (0, len(counts))
        edges = np.asarray(s.hist_edges)[a: b + 1]
        rec = {
            "model": scan.config.model, "hook": hook, "layer": layer, "index": i,
            "maxValue": round(s.max, 4), "minValue": round(s.min, 4), "meanValue": round(s.mean, 4),
            "frac_nonzero": round(s.density, 5), "n_tokens": s.n_tokens, "n_windows": int(len(scan.windows)),
            "context": T, "freq_hist_data_bar_heights": counts[a:b].tolist(),
            "freq_hist_data_bar_values": _r((edges[:-1] + edges[1:]) / 2), "hist_edges": _r(edges, 6),
            "hist_note": f"every scanned token; signed log-spaced bins, {scan.config.bins_per_decade} per decade of "
                         "|activation|",
            "activations": [example(j, v, t, "top") for v, t in s.top],
            "intervals": {"binning": "quantile", "bins": [
                {"lo": round(bn.lo, 6), "hi": round(bn.hi, 6), "n": bn.n,
                 "examples": [example(j, v, t, "interval") for v, t in bn.examples]} for bn in s.intervals]},
            "pos_str": [], "pos_values": [], "neg_str": [], "neg_values": [], "logit_note": None, "clusters": [],
            "quanta": served.get(i, []), "discover": (links or {}).get("discover"),
            "description": (describe(corpus, scan, hook, i) if descriptions is None else descriptions[i]).to_dict(),
        }
        if logits is not None:
            rec.update(logits.record_fields(j, text))
        records.append(NeuronRecord(rec))
    return records


def index_rows(model, corpus: TokenizedCorpus, scan: NeuronScan, hook: str, pages: Sequence[int] = (), *,
               links: dict | None = None, descriptions: Sequence[Description] | None = None) -> list[dict]:
    """A row per neuron of `hook` for `pages.index_page`: max, density, the top example's token, the three tokens
    it promotes most (direct path), the quanta it serves and its `describe` line with its detection AUC; `href`
    only for neurons in `pages`. `descriptions`: as in `scan_records`."""
    s = scan.state[hook]
    width = s["sum"].shape[0]
    top_tok = s["top_tok"][0].numpy()
    text = TokenText(corpus.tokenizer)
    layer = int(hook.split(".")[1]) if hook.startswith("blocks.") else None
    logits = (logit_effects(model.bridge, layer, np.arange(width), 3)
              if layer is not None and hook == DEFAULT_HOOK.format(layer=layer) else None)
    served, pages = serves(links, hook), set(int(p) for p in pages)
    rows = []
    for i in range(width):
        _, doc, pos = scan.token(int(top_tok[i]))
        d = describe(corpus, scan, hook, i) if descriptions is None else descriptions[i]
        rows.append({"index": i, "href": neuron_filename(i) if i in pages else None,
                     "maxValue": round(float(s["top_val"][0, i]), 4),
                     "frac_nonzero": round(int(s["pos"][i]) / max(int(s["n"]), 1), 5),
                     "top_token": text.one(int(corpus.doc(doc)[pos])),
                     "promotes": text(logits.pos_idx[i]) if logits is not None else [],
                     "cluster": " ".join(f"Q{q['quantum']}" for q in served.get(i, [])),
                     "description": d.text, "auc": d.auc})
    return rows


def write_scan_pages(config, out, device: str = "cpu") -> LayerPages:
    """Pages for a `PagesConfig`'s neurons and an index of every neuron of the layer, written into `out`; with
    links, also `quanta.html`: the linked discover run's browser.html with each quantum's neurons listed and
    linked to their pages (each neuron page links back to the quanta it serves).

    Returns
    -------
    LayerPages
        With `neurons` (those with pages) and `quanta` (quanta.html, None without links or when the discover run
        has no browser.html).

    Raises
    ------
    ParameterError
        No scan in the folder, or a scan of another model than the links (`scan`); a layer the scan lacks
        (`layer`); neurons that are not a list or lie outside the layer (`neurons`).
    """
    from ..config import ParameterError, parse_int_list
    from ..io import read_json
    from ..lm import load
    from ..lm.losses import model_corpus
    from ..quanta.browser import link_neurons
    from .pages import write_layer
    from .quanta_link import same_model

    path = Path(config.scan) / "scan_state.pt"
    if not path.exists():
        raise ParameterError("scan", f"{config.scan} holds no scan_state.pt: run `quanta neurons scan --out` first")
    scan = NeuronScan.load(path)
    layers = list(scan.config.layers)
    layer = layers[0] if config.layer is None else config.layer
    if layer not in layers:
        raise ParameterError("layer", f"{layer} was not scanned in {config.scan}: it holds layers {layers}")
    hook = scan.hooks[layers.index(layer)]
    width = scan.state[hook]["sum"].shape[0]
    links = read_json(config.links) if config.links else None
    if links is not None and not same_model(str(links.get("model")), scan.config.model):
        raise ParameterError("links", f"{config.links} ranks neurons of {links.get('model')!r}, not the scanned "
                                      f"{scan.config.model!r}")
    chosen = list(parse_int_list(config.neurons)) if config.neurons else None
    if chosen is None:
        chosen = sorted(serves(links, hook)) or np.argsort(-scan.state[hook]["top_val"][0].numpy())[:20].tolist()
    if max(chosen) >= width:
        raise ParameterError("neurons", f"{max(chosen)} is out of range: {hook} has neurons 0..{width - 1}")
    model = load(scan.config.model, device=device)
    corpus = model_corpus(model, scan.config.corpus)
    descriptions = [describe(corpus, scan, hook, i) for i in range(width)]  # once for the index and the pages
    records = scan_records(model, corpus, scan, hook, chosen, links=links, batch_size=config.batch_size,
                           descriptions=descriptions)
    rows = index_rows(model, corpus, scan, hook, chosen, links=links, descriptions=descriptions)
    browser = Path(links["discover"]) / "browser.html" if links is not None and links.get("hook") == hook else None
    quanta = None
    if browser is not None and browser.exists():
        for r in records:
            r["quanta_page"] = "quanta.html"
        note = (f"neurons ranked by attribution Σ (μ − a)·∂L/∂a over each quantum's sampled members "
                f"(≤ {links['max_members']}; μ: {links['mean_source']}); ablation tests in the links JSON")
        quanta = link_neurons(browser, Path(out) / "quanta.html", hook=hook, note=note,
                              neurons=quantum_links(links, chosen, [d.text for d in descriptions]))
    title = f"{scan.config.model} · {hook} · {scan.tokens_done} tokens"
    return replace(write_layer(records, out, title=title, rows=rows), neurons=chosen, quanta=quanta)
