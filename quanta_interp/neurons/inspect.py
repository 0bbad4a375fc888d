"""Inspect the neurons of one layer of any loaded LM over a corpus sample.

`LayerInspector.fit` records every selected neuron of a hook in one pass over the sample (one
forward per batch, stopped after the hook), then `record(i)` / `records()` build Neuronpedia-like
records: max activation, density, histogram, top-k and interval examples, direct logit effects.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..capture.activations import record_activations
from ..corpora import TokenizedCorpus, Tokenizer
from ..io import progress
from .config import DEFAULT_HOOK, INSPECTOR_CHECKS, resolve_hook
from .pages import NeuronRecord

__all__ = ["CorpusSample", "corpus_sample", "logit_effects", "LogitEffects", "TokenText", "LayerInspector", "Inspection",
           "write_inspection"]



@dataclass
class CorpusSample:
    """Windows of `context` tokens drawn from a corpus: `tokens[w]` = doc `docs[w]` from `starts[w]`.

    Attributes
    ----------
    tokens : int64 ndarray (n_windows, context)
        Token ids of each window.
    docs : int64 ndarray (n_windows,)
        Corpus document index of each window (windows are sorted by document, then start).
    starts : int64 ndarray (n_windows,)
        Position in its document of each window's first token.
    doc_names : list of str
        Names of all the corpus's documents, indexed by `docs`.
    tokenizer : corpora.Tokenizer
        The corpus's tokenizer, to show the tokens.
    """

    tokens: np.ndarray
    docs: np.ndarray
    starts: np.ndarray
    doc_names: list[str]
    tokenizer: Tokenizer


def corpus_sample(corpus: TokenizedCorpus, *, n_windows: int = 64, context: int = 64, split: str | None = None,
                  seed: int = 0) -> CorpusSample:
    """Seeded windows, documents drawn in proportion to their length (shorter windows if every doc is short).

    Windows are drawn with replacement: each picks a document with probability ∝ its number of possible
    starts, then a uniform start. When no document has `context` tokens, the context shrinks to the
    longest document's length; documents shorter than the context are skipped.

    Parameters
    ----------
    split : str or None
        Corpus split to draw from ("train", "val"); None for every document.

    Raises
    ------
    ValueError
        An unknown `split`, `n_windows` < 1, `context` < 2, or no document of ≥ 2 tokens in `split`.
    """
    docs = np.array([d for d in corpus.doc_ids(split) if corpus.doc_lengths[d] >= 2], dtype=np.int64)
    if n_windows < 1 or context < 2 or docs.size == 0:
        raise ValueError(f"the corpus sample is empty (split={split!r}, n_windows={n_windows}, context={context}): "
                         "pass a corpus with documents of ≥ 2 tokens, n_windows ≥ 1 and context ≥ 2")
    lengths = corpus.doc_lengths[docs]
    ctx = int(min(context, lengths.max()))
    docs, lengths = docs[lengths >= ctx], lengths[lengths >= ctx]
    rng = np.random.default_rng(seed)
    room = (lengths - ctx + 1).astype(float)
    pick = rng.choice(docs.size, size=n_windows, p=room / room.sum())
    starts = (rng.random(n_windows) * room[pick]).astype(np.int64)
    order = np.lexsort((starts, docs[pick]))
    chosen, starts = docs[pick][order], starts[order]
    tokens = np.stack([corpus.doc(d)[s: s + ctx] for d, s in zip(chosen, starts, strict=True)]).astype(np.int64)
    return CorpusSample(tokens, chosen, starts, list(corpus.doc_names), corpus.tokenizer)


def _r(values, digits: int = 4) -> list[float]:
    """Rounded float64 values as a list (float32 would print as 0.9498999714851379 in JSON)."""
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


@dataclass(frozen=True)
class LogitEffects:
    """`logit_effects`' result for n neurons.

    Attributes
    ----------
    pos_idx, neg_idx : int64 ndarray (n, k)
        Token ids with the largest / smallest direct effect.
    pos_val, neg_val : float32 ndarray (n, k)
        Their effects (logits per unit activation before the final norm's scale).
    note : str
        What was folded in.
    """

    pos_idx: np.ndarray
    pos_val: np.ndarray
    neg_idx: np.ndarray
    neg_val: np.ndarray
    note: str

    def record_fields(self, j: int, text) -> dict[str, list | str]:
        """The page record's fields for the j-th neuron (`pos_str`, `pos_values`, `neg_str`, `neg_values`,
        `logit_note`), token ids turned into text by `text` (a `TokenText`)."""
        return {"pos_str": text(self.pos_idx[j]), "pos_values": _r(self.pos_val[j]), "neg_str": text(self.neg_idx[j]),
                "neg_values": _r(self.neg_val[j]), "logit_note": self.note}


def logit_effects(model, layer: int, neurons: np.ndarray, k: int = 10, chunk: int = 256) -> LogitEffects:
    """Direct logit effect of each neuron: top/bottom `k` tokens of W_out[i] · diag(γ_final) · W_U.

    The final norm's weight γ (and LayerNorm's centring) is folded in; its per-token 1/RMS scale is not
    (positive, so the ranking is unchanged; divide values by it for logits per unit of activation).

    Parameters
    ----------
    model
        A bridge (TransformerBridge) whose blocks have an MLP with `W_out`.
    neurons : int ndarray (n_neurons,)
        MLP hidden units of block `layer`.
    k : int
        Tokens kept per side; at most d_vocab.
    chunk : int
        Neurons multiplied by W_U at a time (bounds memory to chunk × d_vocab).

    Returns
    -------
    LogitEffects
    """
    import torch

    with torch.no_grad():
        w_out = model.blocks[layer].mlp.W_out.detach().float()
        if w_out.shape[0] != model.cfg.d_mlp:
            w_out = w_out.T
        w_u = model.W_U.detach().float()
        norm = getattr(model, "ln_final", None)
        gamma = getattr(norm, "weight", None)
        centre = str(model.cfg.normalization_type or "").startswith("LN")
        res = {"pos_idx": [], "pos_val": [], "neg_idx": [], "neg_val": []}
        for i in range(0, len(neurons), chunk):
            v = w_out[torch.as_tensor(neurons[i: i + chunk], device=w_out.device)]
            if centre:
                v = v - v.mean(-1, keepdim=True)
            if gamma is not None:
                v = v * gamma.detach().float()
            eff = v @ w_u
            top, bot = eff.topk(k, dim=-1), eff.topk(k, dim=-1, largest=False)
            for key, t in (("pos", top), ("neg", bot)):
                res[f"{key}_idx"].append(t.indices.cpu().numpy())
                res[f"{key}_val"].append(t.values.cpu().numpy())
    note = ("W_out[i] · " + ("centred, " if centre else "") + ("× final-norm weight γ, " if gamma is not None else "")
            + "· W_U; the final norm's per-token 1/scale is not applied (positive: ranking unchanged)")
    return LogitEffects(**{key: np.concatenate(v) for key, v in res.items()}, note=note)


_BYTE_DECODER: dict[str, int] = {}


def _byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's bytes→unicode map, used to show byte-level pieces of split UTF-8 characters."""
    if not _BYTE_DECODER:
        bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
        cs, n = list(bs), 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        _BYTE_DECODER.update({chr(c): b for b, c in zip(bs, cs, strict=True)})
    return _BYTE_DECODER


class TokenText:
    """Readable text per token id, cached: byte-level pieces decoded, special tokens literal, and a piece
    of a split UTF-8 character shown as its bytes (`\\xe2\\x80`) instead of U+FFFD.

    Calling it on a sequence of ids returns their texts as a list.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self._cache: dict[int, str] = {}

    def __call__(self, ids) -> list[str]:
        return [self.one(int(i)) for i in ids]

    def one(self, i: int) -> str:
        """The text of token id `i`."""
        if i not in self._cache:
            text = self.tokenizer.token_str(i)
            raw = self.tokenizer.backend.id_to_token(i) or ""
            if "\ufffd" in text and raw and all(c in _byte_decoder() for c in raw):
                data = bytes(_byte_decoder()[c] for c in raw)
                text = data.decode("utf-8", errors="backslashreplace")
            self._cache[i] = text
        return self._cache[i]


class LayerInspector:
    """All neurons (or `neurons`) of one hook over a corpus sample; `fit` makes one pass over the sample.

    `intervals` is "quantile" (bins hold equal numbers of positive activations) or "equal-width"
    (bins split (0, max] evenly); `per_interval` examples are drawn at random from each bin.

    Parameters
    ----------
    layer : int
        Block index.
    hook : str or None
        Hook name or template with `{layer}`; default the MLP hidden activations, `DEFAULT_HOOK`. Direct
        logit effects are computed only for the default hook.
    neurons : sequence of int or None
        Indices in the hook's last dimension to inspect; None for all.
    top_k : int
        Top-activation examples per record, at most one per window neighbourhood.
    before, after : int
        Tokens shown before and after the example's token.
    n_bins : int
        Bins of the activation histogram (equal-width, all sampled tokens).
    n_intervals, per_interval : int
        Activation intervals over the positive activations and random examples shown per interval.
    n_logits : int
        Tokens listed per side of the direct logit effect.
    batch_size : int
        Windows per forward pass.
    seed : int
        Seed of the interval examples (per neuron).

    Attributes
    ----------
    hook_ : str
        The resolved hook name.
    neurons_ : int64 ndarray (n_neurons,)
        The inspected neurons.
    acts_ : float32 tensor (n_windows · context, n_neurons)
        Activations at every sampled token, windows laid end to end.
    logits_ : LogitEffects or None
        `logit_effects` of the inspected neurons; None for a non-default hook.
    model_ : str
        The model's spec, shown on the pages.
    sample_ : CorpusSample
        The sample fitted on.
    text_ : TokenText
        Token texts of the sample's tokenizer.
    clusters_ : ClusterProfile or None
        Set by `link`.
    """

    def __init__(self, layer: int, *, hook: str | None = None, neurons: Sequence[int] | None = None,
                 top_k: int = 20, before: int = 12, after: int = 4, n_bins: int = 40,
                 intervals: str = "quantile", n_intervals: int = 5, per_interval: int = 3,
                 n_logits: int = 10, batch_size: int = 8, seed: int = 0):
        self.layer, self.hook, self.neurons = layer, hook, neurons
        self.top_k, self.before, self.after, self.n_bins = top_k, before, after, n_bins
        self.intervals, self.n_intervals, self.per_interval = intervals, n_intervals, per_interval
        self.n_logits, self.batch_size, self.seed = n_logits, batch_size, seed

    def fit(self, model, sample: CorpusSample, *, desc: str | None = None) -> LayerInspector:
        """Record the layer's activations on `sample` in one pass per batch. `model` is a `lm.LoadedModel`
        (its spec names the pages); returns self.

        Parameters
        ----------
        desc : str or None
            Progress bar label; None shows no bar.

        Raises
        ------
        ParameterError
            An unknown `intervals`; `top_k`, `n_bins`, `n_intervals` or `batch_size` not a positive integer
            (`config.INSPECTOR_CHECKS`).
        ValueError
            A layer or hook the model lacks; a neuron outside the hook's width; or sample tokens outside the
            model's vocabulary.
        """
        spec, model = model.spec, model.bridge
        for name, check in INSPECTOR_CHECKS.items():
            check(name, getattr(self, name))
        self.hook_ = resolve_hook(model, self.layer, self.hook)
        width = record_activations(model, sample.tokens[:1, :2], [self.hook_])[self.hook_].shape[-1]
        self.neurons_ = np.arange(width) if self.neurons is None else np.asarray(self.neurons, dtype=np.int64)
        bad = self.neurons_[(self.neurons_ < 0) | (self.neurons_ >= width)]
        if bad.size:
            raise ValueError(f"neuron {int(bad[0])} is out of range: {self.hook_} has neurons 0..{width - 1}")
        acts = record_activations(model, sample.tokens, [self.hook_], batch_size=self.batch_size,
                                  neurons=None if self.neurons is None else self.neurons_, desc=desc)[self.hook_]
        self.acts_ = acts.reshape(-1, acts.shape[-1])
        self.logits_ = (logit_effects(model, self.layer, self.neurons_, self.n_logits)
                        if self.hook_ == DEFAULT_HOOK.format(layer=self.layer) else None)
        self.model_ = spec
        self.sample_, self.text_ = sample, TokenText(sample.tokenizer)
        self.clusters_ = None
        return self

    def link(self, profile) -> LayerInspector:
        """Attach a fitted `ClusterProfile` so records list the quanta clusters activating each neuron most.

        Call after `fit`; returns self.

        Raises
        ------
        ValueError
            The profile was not fitted on this inspector's hook.
        """
        if self.hook_ not in profile.means_:
            raise ValueError(f"the cluster profile has no activations for {self.hook_}; fit it with this layer")
        self.clusters_ = profile
        return self

    def _column(self, neuron: int) -> int:
        hit = np.flatnonzero(self.neurons_ == neuron)
        if not hit.size:
            raise ValueError(f"neuron {neuron} was not inspected; inspected: {self.neurons_[0]}..{self.neurons_[-1]}")
        return int(hit[0])

    def record(self, neuron: int) -> NeuronRecord:
        """One neuron's record (Neuronpedia-like fields).

        Parameters
        ----------
        neuron : int
            Index in the hook's last dimension; must be among the inspected `neurons_`.

        Returns
        -------
        NeuronRecord
            `maxValue`/`minValue`/`meanValue`, `frac_nonzero` (fraction of tokens > 0), histogram
            (`freq_hist_data_bar_heights`, `hist_edges`), `activations` (top examples), `intervals`
            (examples per activation bin), logit effects (`pos_str`/`pos_values`, `neg_str`/`neg_values`)
            and `clusters` (when linked), plus model, hook, layer and sample sizes.

        Raises
        ------
        ValueError
            The neuron was not inspected.
        """
        j = self._column(neuron)
        m = min(len(self.acts_), self.top_k * 8)
        cand = self.acts_[:, j].topk(m).indices.numpy()
        return self._record(j, cand)

    def records(self, chunk: int = 256) -> Iterator[NeuronRecord]:
        """Every inspected neuron's record, in `neurons_` order; top-k candidates are found for `chunk`
        neurons at a time.

        Yields
        ------
        NeuronRecord
            As `record` returns.
        """
        m = min(len(self.acts_), self.top_k * 8)
        for c in range(0, self.acts_.shape[1], chunk):
            cand = self.acts_[:, c: c + chunk].topk(m, dim=0).indices.numpy()
            for k in range(cand.shape[1]):
                yield self._record(c + k, cand[:, k])

    def _example(self, flat: int, col: np.ndarray, kind: str) -> dict:
        s, T = self.sample_, self.sample_.tokens.shape[1]
        w, p = divmod(int(flat), T)
        lo, hi = max(0, p - self.before), min(T, p + self.after + 1)
        vals = col[w * T + lo: w * T + hi]
        doc = int(s.docs[w])
        return {"tokens": self.text_(s.tokens[w, lo:hi]), "values": _r(vals),
                "maxValue": round(float(col[flat]), 4), "maxValueTokenIndex": p - lo,
                "doc": doc, "doc_name": s.doc_names[doc], "pos": int(s.starts[w]) + p, "kind": kind}

    def _top(self, cand: np.ndarray, T: int) -> list[int]:
        """Up to top_k positions from `cand` (sorted by value), at most one per window neighbourhood."""
        chosen: list[int] = []
        for f in cand:
            if all(f // T != c // T or abs(int(f) - c) > self.before for c in chosen):
                chosen.append(int(f))
                if len(chosen) == self.top_k:
                    break
        return chosen

    def _record(self, j: int, cand: np.ndarray) -> NeuronRecord:
        col = self.acts_[:, j].numpy()
        T = self.sample_.tokens.shape[1]
        neuron = int(self.neurons_[j])
        heights, edges = np.histogram(col, bins=self.n_bins)
        pos = col[col > 0]
        if self.intervals == "quantile" and pos.size:
            iv = np.quantile(pos, np.linspace(0, 1, self.n_intervals + 1))
        else:
            iv = np.linspace(0.0, max(float(col.max()), 0.0), self.n_intervals + 1)
        rng = np.random.default_rng([self.seed, neuron])
        bins = []
        for b, (lo, hi) in enumerate(zip(iv[:-1], iv[1:], strict=True)):
            inside = np.flatnonzero((col > 0) & (col >= lo) & ((col < hi) if b < len(iv) - 2 else (col <= hi)))
            pick = rng.choice(inside, size=min(self.per_interval, inside.size), replace=False) if inside.size else []
            bins.append({"lo": round(float(lo), 4), "hi": round(float(hi), 4), "n": int(inside.size),
                         "examples": [self._example(f, col, "interval") for f in sorted(pick, key=lambda f: -col[f])]})
        rec = {
            "model": self.model_, "hook": self.hook_, "layer": int(self.layer), "index": neuron,
            "maxValue": round(float(col.max()), 4), "minValue": round(float(col.min()), 4),
            "meanValue": round(float(col.mean()), 4), "frac_nonzero": round(float(pos.size / col.size), 5),
            "n_tokens": int(col.size), "n_windows": int(len(self.sample_.tokens)), "context": int(T),
            "freq_hist_data_bar_heights": heights.tolist(),
            "freq_hist_data_bar_values": _r((edges[:-1] + edges[1:]) / 2),
            "hist_edges": _r(edges), "hist_note": "all sampled tokens, equal-width bins",
            "activations": [self._example(f, col, "top") for f in self._top(cand, T)],
            "intervals": {"binning": self.intervals, "bins": bins},
            "pos_str": [], "pos_values": [], "neg_str": [], "neg_values": [], "logit_note": None, "clusters": [],
        }
        if self.logits_ is not None:
            rec.update(self.logits_.record_fields(j, self.text_))
        if self.clusters_ is not None:
            rec["clusters"] = self.clusters_.clusters_for(self.hook_, neuron)
            rec["discover"] = self.clusters_.source_
        return NeuronRecord(rec)


@dataclass(frozen=True)
class Inspection:
    """What `write_inspection` wrote: `page` (the neuron page, or index.html for a layer), `pages` written,
    `pages_per_s`, and `notes` for the user (settings the model capped)."""

    page: str
    pages: int
    pages_per_s: float
    notes: tuple[str, ...]

    def to_dict(self) -> dict:
        """The fields as JSON-able values."""
        return {"page": self.page, "pages": self.pages, "pages_per_s": self.pages_per_s, "notes": list(self.notes)}


def write_inspection(config, out, *, neurons: Sequence[int] | None = None, single: int | None = None,
                     device: str = "cpu") -> Inspection:
    """Inspect a `NeuronConfig`'s layer on its corpus sample and write the pages under
    `out/<model>/<hook>/`: one neuron's page (`single`), or a page per neuron of `neurons` (None: all) and
    `index.html`. With `config.discover`, records list the quanta clusters activating each neuron most.

    Raises
    ------
    ParameterError
        An unknown corpus, or a discover folder of another model (checked before the model loads); as
        `LayerInspector.fit` and `ClusterProfile.fit`.
    """
    import re
    from pathlib import Path

    import torch

    from ..corpora import check_corpus_source
    from ..lm import load
    from ..lm.losses import model_corpus
    from .pages import write_layer, write_neuron
    from .quanta_link import ClusterProfile, check_model, discover_corpus, read_discover

    cfg = config
    torch.manual_seed(cfg.seed)
    check_corpus_source(cfg.corpus)  # the cheap checks, before a model loads
    if cfg.discover:
        check_model(read_discover(cfg.discover)[0], cfg.model, cfg.discover)
    model = load(cfg.model, device=device)
    corpus = model_corpus(model, cfg.corpus)
    n_ctx, notes = int(model.cfg.n_ctx), []
    if cfg.context > n_ctx:
        notes.append(f"context {cfg.context} is more than model {cfg.model!r} reads; windows of its n_ctx "
                     f"({n_ctx}) tokens are used")
    if cfg.top_k > cfg.windows * min(cfg.context, n_ctx):
        notes.append(f"top_k {cfg.top_k} is more than the {cfg.windows} windows hold; every position is shown")
    sample = corpus_sample(corpus, n_windows=cfg.windows, context=min(cfg.context, n_ctx),
                           split=None if cfg.split == "all" else cfg.split, seed=cfg.seed)
    insp = LayerInspector(cfg.layer, hook=cfg.hook, neurons=[single] if single is not None else neurons,
                          top_k=cfg.top_k, intervals=cfg.intervals, batch_size=cfg.batch_size,
                          seed=cfg.seed).fit(model, sample, desc="forward")
    if cfg.discover:
        summary, _ = read_discover(cfg.discover)
        profile = ClusterProfile([cfg.layer], hook=cfg.hook).fit(model, cfg.discover, discover_corpus(model, summary),
                                                                  desc="cluster members")
        insp.link(profile)
    folder = Path(out) / re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(cfg.model).name or cfg.model) / insp.hook_.replace(".", "_")
    if single is not None:
        start = time.perf_counter()
        path = write_neuron(insp.record(single), folder)
        return Inspection(str(path), 1, round(1 / max(time.perf_counter() - start, 1e-9), 1), tuple(notes))
    records = list(progress(insp.records(), total=len(insp.neurons_), desc="records"))
    res = write_layer(records, folder, title=f"{cfg.model} · {insp.hook_}")
    return Inspection(str(res.index), res.pages, round(res.pages_per_s, 1), tuple(notes))
