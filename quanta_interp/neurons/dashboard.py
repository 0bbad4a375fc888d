"""Neuronpedia-style records from a `NeuronScan`: the scan's statistics and examples, the examples' contexts
(one forward over the windows they come from), direct logit effects, and the quanta each neuron serves.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from ..corpora import TokenizedCorpus
from .inspect import DEFAULT_HOOK, TokenText, _r, logit_effects
from .pages import NeuronRecord, neuron_filename
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


def quantum_links(links: dict, rank: int, pages: str = "") -> list[dict]:
    """The neurons of quantum `rank` (1 = largest) from `QuantaNeurons.to_dict()`, for a quanta browser to list:
    `neuron`, `attribution` (A_i, nats) and `href` (`pages` + the neuron's page file name), most attributed first;
    [] when the links do not cover the quantum. The hook for `quanta.browser`: give each quantum these links."""
    for q in links.get("quanta", []):
        if int(q["rank"]) == int(rank):
            return [{"neuron": int(i), "attribution": a, "href": pages + neuron_filename(int(i))}
                    for i, a in zip(q["top_attribution"], q["attribution"], strict=True)]
    return []


@functools.lru_cache(maxsize=2)
def _corpus_log_probs(corpus: TokenizedCorpus, alpha: float) -> np.ndarray:
    """Smoothed log unigram probabilities of the whole corpus (float64 (V,))."""
    counts = np.bincount(np.asarray(corpus.tokens, dtype=np.int64), minlength=corpus.vocab_size).astype(float)
    return np.log((counts + alpha) / (counts.sum() + alpha * corpus.vocab_size))


def describe(corpus: TokenizedCorpus, scan: NeuronScan, hook: str, neuron: int, *, n_random: int = 1000,
             alpha: float = 0.5, seed: int = 0) -> dict:
    """A one-line description of a neuron without an LLM, and how well it detects the neuron's activations.

    The positives are the tokens of the neuron's top-k examples and of its two highest quantile bins; every other
    one describes (fit half), the rest are held out. Each token id t and each preceding token p gets the smoothed
    log-odds of the fit half against the whole corpus, log((c_fit + α)/(n_fit + αV)) − log((c_corpus + α)/(N + αV));
    the description names the three most over-represented tokens seen ≥ 2 times (else the top one) and the most
    over-represented preceding token. Detection, as Delphi scores explanations (Paulo et al. 2024): the AUC with
    which score = lo_token(t) + lo_prev(p) separates the held-out positives from `n_random` seeded corpus tokens.

    Returns
    -------
    dict
        `text` (the line), `tokens`, `after` (token strings), `auc` (float, None with < 2 held-out positives),
        `n_fit`, `n_heldout`.
    """
    from sklearn.metrics import roc_auc_score

    st, T = scan.neuron(hook, neuron), scan.context
    toks = [g for _, g in st["top"]] + [g for b in st["intervals"][-2:] for _, g in b["examples"]]
    ids = np.asarray([(int(corpus.doc(d)[p]), int(corpus.doc(d)[p - 1]) if p > start else -1)
                      for d, p, start in ((scan.token(g)[1], scan.token(g)[2], int(scan.windows[g // T, 1]))
                                          for g in dict.fromkeys(toks))], dtype=np.int64).reshape(-1, 2)
    fit, held = ids[0::2], ids[1::2]
    V = corpus.vocab_size
    base = _corpus_log_probs(corpus, alpha)

    def log_odds(col):
        c = np.bincount(col[col >= 0], minlength=V).astype(float)
        return np.log((c + alpha) / (c.sum() + alpha * V)) - base, c

    lo_t, c_t = log_odds(fit[:, 0])
    lo_p, c_p = log_odds(fit[:, 1])
    text = TokenText(corpus.tokenizer)
    best = [int(i) for i in np.argsort(-lo_t) if c_t[i] >= 2][:3] or [int(np.argmax(lo_t))]
    after = [int(i) for i in np.argsort(-lo_p) if c_p[i] >= 2][:1]
    line = " | ".join(repr(t) for t in text(best)) + (f" (after {text(after)[0]!r})" if after else "")
    auc = None
    if len(held) >= 2:
        rng = np.random.default_rng(seed)
        g = rng.integers(1, len(corpus.tokens), n_random)
        neg = np.stack([np.asarray(corpus.tokens[g], dtype=np.int64), np.asarray(corpus.tokens[g - 1], dtype=np.int64)], 1)
        score = lambda r: lo_t[r[:, 0]] + np.where(r[:, 1] >= 0, lo_p[np.maximum(r[:, 1], 0)], 0.0)  # noqa: E731
        auc = round(float(roc_auc_score(np.r_[np.ones(len(held)), np.zeros(n_random)],
                                        np.r_[score(held), score(neg)])), 3)
    return {"text": line, "tokens": text(best), "after": text(after), "auc": auc, "n_fit": len(fit),
            "n_heldout": len(held)}


def scan_records(model, corpus: TokenizedCorpus, scan: NeuronScan, hook: str, neurons: Sequence[int], *,
                 links: dict | None = None, before: int = 12, after: int = 4, n_logits: int = 10,
                 batch_size: int = 16) -> list[NeuronRecord]:
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
    wins = sorted({t // T for s in stats for _, t in [*s["top"], *(e for b in s["intervals"] for e in b["examples"])]})
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
        counts = np.asarray(s["hist_counts"])
        used = np.flatnonzero(counts)
        a, b = (used[0], used[-1] + 1) if used.size else (0, len(counts))
        edges = np.asarray(s["hist_edges"])[a: b + 1]
        rec = {
            "model": scan.config.model, "hook": hook, "layer": layer, "index": i,
            "maxValue": round(s["max"], 4), "minValue": round(s["min"], 4), "meanValue": round(s["mean"], 4),
            "frac_nonzero": round(s["density"], 5), "n_tokens": s["n_tokens"], "n_windows": int(len(scan.windows)),
            "context": T, "freq_hist_data_bar_heights": counts[a:b].tolist(),
            "freq_hist_data_bar_values": _r((edges[:-1] + edges[1:]) / 2), "hist_edges": _r(edges, 6),
            "hist_note": f"every scanned token; signed log-spaced bins, {scan.config.bins_per_decade} per decade of "
                         "|activation|",
            "activations": [example(j, v, t, "top") for v, t in s["top"]],
            "intervals": {"binning": "quantile", "bins": [
                {"lo": round(bn["lo"], 6), "hi": round(bn["hi"], 6), "n": bn["n"],
                 "examples": [example(j, v, t, "interval") for v, t in bn["examples"]]} for bn in s["intervals"]]},
            "pos_str": [], "pos_values": [], "neg_str": [], "neg_values": [], "logit_note": None, "clusters": [],
            "quanta": served.get(i, []), "discover": (links or {}).get("discover"),
            "description": describe(corpus, scan, hook, i),
        }
        if logits is not None:
            rec.update(pos_str=text(logits["pos_idx"][j]), pos_values=_r(logits["pos_val"][j]),
                       neg_str=text(logits["neg_idx"][j]), neg_values=_r(logits["neg_val"][j]),
                       logit_note=logits["note"])
        records.append(NeuronRecord(rec))
    return records


def index_rows(model, corpus: TokenizedCorpus, scan: NeuronScan, hook: str, pages: Sequence[int] = (), *,
               links: dict | None = None) -> list[dict]:
    """A row per neuron of `hook` for `pages.index_page`: max, density, the top example's token, the three tokens
    it promotes most (direct path), the quanta it serves and its `describe` line with its detection AUC; `href`
    only for neurons in `pages`."""
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
        d = describe(corpus, scan, hook, i)
        rows.append({"index": i, "href": neuron_filename(i) if i in pages else None,
                     "maxValue": round(float(s["top_val"][0, i]), 4),
                     "frac_nonzero": round(int(s["pos"][i]) / max(int(s["n"]), 1), 5),
                     "top_token": text.one(int(corpus.doc(doc)[pos])),
                     "promotes": text(logits["pos_idx"][i]) if logits is not None else [],
                     "cluster": " ".join(f"Q{q['quantum']}" for q in served.get(i, [])),
                     "description": d["text"], "auc": d["auc"]})
    return rows


def write_scan_pages(config, out, device: str = "cpu") -> dict:
    """Pages for a `PagesConfig`'s neurons and an index of every neuron of the layer, written into `out`.

    Returns
    -------
    dict
        As `pages.write_layer` (`index`, `pages`, `seconds`, `pages_per_s`) plus `neurons` (those with pages).

    Raises
    ------
    ParameterError
        No scan in the folder, or a scan of another model than the links (`scan`); a layer the scan lacks
        (`layer`); neurons that are not a list or lie outside the layer (`neurons`).
    """
    from pathlib import Path

    from ..config import ParameterError, parse_int_list
    from ..io import read_json
    from ..lm import load
    from ..lm.losses import model_corpus
    from .pages import write_layer

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
    if links is not None and links.get("model") != scan.config.model:
        raise ParameterError("links", f"{config.links} ranks neurons of {links.get('model')!r}, not the scanned "
                                      f"{scan.config.model!r}")
    chosen = list(parse_int_list(config.neurons)) if config.neurons else None
    if chosen is None:
        chosen = sorted(serves(links, hook)) or np.argsort(-scan.state[hook]["top_val"][0].numpy())[:20].tolist()
    if max(chosen) >= width:
        raise ParameterError("neurons", f"{max(chosen)} is out of range: {hook} has neurons 0..{width - 1}")
    model = load(scan.config.model, device=device)
    corpus = model_corpus(model, scan.config.corpus)
    records = scan_records(model, corpus, scan, hook, chosen, links=links, batch_size=config.batch_size)
    rows = index_rows(model, corpus, scan, hook, chosen, links=links)
    title = f"{scan.config.model} · {hook} · {scan.tokens_done} tokens"
    return write_layer(records, out, title=title, rows=rows) | {"neurons": chosen}
