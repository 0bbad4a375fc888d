"""A streaming neuron scan: one pass over a corpus, bounded per-neuron state, resumable after a kill.

For every neuron of the scanned hooks it keeps, whatever the number of tokens:

- count, sum (float64) → mean; count of activations > 0 → density; minimum;
- a histogram over fixed signed log-spaced bins (`bins_per_decade` per decade of |a| from 1e-4 to 1e3, one
  bin below, one above, one for 0), so nothing about the range has to be known in advance;
- the top-k windows by their maximum activation (one example per window, like Neuroscope's max-activating
  texts): an exact top-k, merged batch by batch;
- per positive histogram bin, a uniform random sample of `per_interval` tokens (priority sampling: each token
  gets a seeded uniform key and each bin keeps its smallest keys — Efraimidis & Spirakis 2006 with equal
  weights). Because the keys are shared, the `per_interval` smallest keys over any union of bins are a uniform
  sample of that union: the activation-quantile bins of the pages (quantiles of the positive activations read
  off the histogram, so their edges fall on the fine bins' edges) get exact uniform examples at the end.

State per hook and neuron, in bytes: 12·top_k + 8·(2·R + 1) + 20·R·per_interval + 24, R = 7·bins_per_decade + 2
(`NeuronScan.state_bytes`); with the defaults (top_k 20, 8 bins per decade, 4 per interval) 5.5 kB, 8.5 MB
for SmolLM2's 1536 neurons of a layer. Batches add (B·T + R·r) × width × 32 bytes while they are merged.

The windows are consecutive `context`-token pieces of each document (remainders shorter than the context are
skipped); the random keys of batch b come from a generator seeded with (seed, b), so a scan resumed from its
checkpoint ends in exactly the state of one that was never interrupted.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..capture.activations import activation_batches
from ..config import ParameterError
from ..corpora import TokenizedCorpus
from ..io import atomic_write_bytes, atomic_write_json, progress
from .config import ScanConfig

__all__ = ["ScanConfig", "NeuronScan", "NeuronStats", "QuantileBin", "scan_windows", "scan_neurons", "run_scan", "log_bins"]

LOG_RANGE = (-4, 3)  # decades of |activation| covered by the fine bins; anything outside falls in an end bin
EMPTY = torch.iinfo(torch.int64).max  # the key of an empty reservoir slot


def log_bins(bins_per_decade: int) -> np.ndarray:
    """Edges of the fine bins of |activation|: 10^(lo + j / bins_per_decade), j = 0..7·bins_per_decade (float64)."""
    lo, hi = LOG_RANGE
    return 10.0 ** (lo + np.arange((hi - lo) * bins_per_decade + 1) / bins_per_decade)


def scan_windows(corpus: TokenizedCorpus, context: int, split: str = "all", max_tokens: int | None = None) -> np.ndarray:
    """(doc, start) of consecutive `context`-token windows of each document, in corpus order, at most
    `max_tokens // context` of them (int64 (n_windows, 2)); documents' remainders are skipped."""
    rows = [(d, s) for d in corpus.doc_ids(None if split == "all" else split)
            for s in range(0, int(corpus.doc_lengths[d]) - context + 1, context)]
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    return rows if max_tokens is None else rows[: max_tokens // context]


@dataclass(frozen=True)
class QuantileBin:
    """An activation-quantile bin of a neuron's positive activations: `lo`, `hi` (fine-bin edges), `n` (tokens
    in it) and `examples` [(activation, scan token)], a uniform sample, highest first."""

    lo: float
    hi: float
    n: int
    examples: list


@dataclass(frozen=True)
class NeuronStats:
    """One neuron's statistics over a scan (`NeuronScan.neuron`).

    Attributes
    ----------
    n_tokens : int
        Tokens scanned.
    mean, density, max, min : float
        Mean activation, fraction > 0, largest (NaN with no top window) and smallest activation.
    hist_counts : list of int
        Counts over the signed fine bins.
    hist_edges : list of float
        Their 2R + 2 edges, ±inf at the ends replaced by ±1e3·10^(1/bpd).
    top : list of (float, int)
        (activation, scan token) of the top-k windows, highest first.
    intervals : list of QuantileBin
        The positive activations' quantile bins.
    """

    n_tokens: int
    mean: float
    density: float
    max: float
    min: float
    hist_counts: list
    hist_edges: list
    top: list
    intervals: list


@dataclass
class NeuronScan:
    """The state of a scan (see the module docstring): everything a neuron page needs, per hook.

    Attributes
    ----------
    config : ScanConfig
    hooks : list of str
        Resolved hook names, one per layer.
    windows : int64 ndarray (n_windows, 2)
        (doc, start) of every window the scan will read; token g of the scan is window g // T, position g % T.
    context : int
        T, tokens per window.
    batches_done : int
        Batches merged so far; the scan is complete when it reaches `n_batches`.
    seconds : float
        Wall time spent scanning (summed over resumed runs).
    state : dict of str to dict of str to tensor
        Per hook: `n` (scalar int64), `sum` (float64 (W,)), `pos` (int64 (W,), count > 0), `min` (float32 (W,)),
        `hist` (int64 (W, 2R + 1)), `top_val`/`top_tok` (float32/int64 (top_k, W), sorted descending;
        −inf/−1 while fewer windows are seen), `res_key`/`res_val`/`res_tok` (int64/float32/int64
        (W, R, per_interval), sorted by key; key = a seeded uniform integer, `EMPTY` when the slot is).
    """

    config: ScanConfig
    hooks: list[str]
    windows: np.ndarray
    context: int
    batches_done: int = 0
    seconds: float = 0.0
    state: dict = field(default_factory=dict)

    @property
    def n_batches(self) -> int:
        """Forward passes of the whole scan."""
        return math.ceil(len(self.windows) / self.config.batch_size)

    @property
    def tokens_done(self) -> int:
        """Tokens merged so far."""
        return min(self.batches_done * self.config.batch_size, len(self.windows)) * self.context

    @property
    def edges(self) -> np.ndarray:
        """Fine bin edges of |activation| (`log_bins`)."""
        return log_bins(self.config.bins_per_decade)

    def state_bytes(self) -> int:
        """Bytes of the kept state, all hooks (the bound stated in the module docstring)."""
        return sum(t.element_size() * t.numel() for s in self.state.values() for t in s.values())

    # -- building -----------------------------------------------------------------------------------------
    def init(self, width: dict[str, int]) -> None:
        """Empty state for hooks of the given widths."""
        cfg, n_res = self.config, len(self.edges) + 1
        for h in self.hooks:
            w = width[h]
            self.state[h] = {
                "n": torch.zeros((), dtype=torch.int64), "sum": torch.zeros(w, dtype=torch.float64),
                "pos": torch.zeros(w, dtype=torch.int64), "min": torch.full((w,), math.inf),
                "hist": torch.zeros(w, 2 * n_res + 1, dtype=torch.int64),
                "top_val": torch.full((cfg.top_k, w), -math.inf), "top_tok": torch.full((cfg.top_k, w), -1),
                "res_key": torch.full((w, n_res, cfg.per_interval), EMPTY),
                "res_val": torch.zeros(w, n_res, cfg.per_interval),
                "res_tok": torch.full((w, n_res, cfg.per_interval), -1),
            }

    def merge(self, hook: str, acts: torch.Tensor, first_window: int, batch: int) -> None:
        """Fold one batch of activations (float32 (B, T, W)) of windows first_window.. into the state."""
        s, cfg = self.state[hook], self.config
        B, T, W = acts.shape
        flat = acts.reshape(B * T, W)
        s["n"] += B * T
        s["sum"] += flat.double().sum(0)
        s["pos"] += (flat > 0).sum(0)
        s["min"] = torch.minimum(s["min"], flat.min(0).values)
        # histogram: signed fine bins around a zero bin; mag = number of edges ≤ |a| (0 below 1e-4)
        n_res = len(self.edges) + 1
        lo = LOG_RANGE[0]
        mag = (((flat.abs().log10() - lo) * cfg.bins_per_decade).floor() + 1).clamp(0, n_res - 1).long()
        signed = n_res + torch.sign(flat).long() * (mag + 1)
        cols = torch.arange(W).unsqueeze(0)
        s["hist"] += torch.bincount((signed + cols * (2 * n_res + 1)).reshape(-1),
                                    minlength=W * (2 * n_res + 1)).reshape(W, 2 * n_res + 1)
        # exact top-k of the per-window maxima
        win_max, arg = acts.max(1)  # (B, W)
        win_tok = (first_window + torch.arange(B)).unsqueeze(1) * T + arg
        vals = torch.cat([s["top_val"], win_max])
        toks = torch.cat([s["top_tok"], win_tok])
        best = vals.topk(cfg.top_k, dim=0)
        s["top_val"], s["top_tok"] = best.values, toks.gather(0, best.indices)
        # per-bin priority samples of the positive activations: each token's key is a seeded uniform integer;
        # a bin keeps its per_interval smallest keys (found by per_interval scatter-min passes, row in the low bits)
        shift = int(B * T).bit_length()
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + batch)
        key = torch.randint(0, 2 ** (62 - shift), (B * T, W), generator=gen)
        row, col = (flat > 0).nonzero(as_tuple=True)
        packed = (key[row, col] << shift) | row
        slot = col * n_res + mag[row, col]
        new_key = torch.full((cfg.per_interval, W * n_res), EMPTY)
        for r in range(cfg.per_interval):
            best = torch.full((W * n_res,), EMPTY).scatter_reduce(0, slot, packed, "amin")
            new_key[r] = best
            packed = torch.where(packed == best[slot], EMPTY, packed)
        found = new_key != EMPTY
        rows = new_key & ((1 << shift) - 1)
        cols_all = torch.arange(W * n_res) // n_res
        new_val = torch.where(found, flat[rows.clamp_max(B * T - 1), cols_all], 0.0)
        new_tok = torch.where(found, first_window * T + rows, -1)
        new_key = torch.where(found, new_key >> shift, EMPTY)
        shape = (W, n_res, cfg.per_interval)
        keys = torch.cat([s["res_key"], new_key.T.reshape(shape)], -1)
        order = keys.argsort(dim=-1, stable=True)[..., : cfg.per_interval]
        s["res_key"] = keys.gather(-1, order)
        s["res_val"] = torch.cat([s["res_val"], new_val.T.reshape(shape)], -1).gather(-1, order)
        s["res_tok"] = torch.cat([s["res_tok"], new_tok.T.reshape(shape)], -1).gather(-1, order)

    # -- reading ------------------------------------------------------------------------------------------
    def token(self, g: int) -> tuple[int, int, int]:
        """(window, doc, position in the doc) of scan token `g`."""
        w, p = divmod(int(g), self.context)
        return w, int(self.windows[w, 0]), int(self.windows[w, 1]) + p

    def neuron(self, hook: str, i: int) -> NeuronStats:
        """One neuron's statistics and example tokens (`NeuronStats`).

        Raises
        ------
        KeyError
            `hook` was not scanned.
        IndexError
            `i` is outside the hook's width.
        """
        s, cfg = self.state[hook], self.config
        width = s["sum"].shape[0]
        if not 0 <= i < width:
            raise IndexError(f"neuron {i} is out of range: {hook} has neurons 0..{width - 1}")
        n = int(s["n"])
        e = self.edges
        n_res = len(e) + 1
        step = 10 ** (1 / cfg.bins_per_decade)
        pos_edges = np.concatenate([[0.0], e, [e[-1] * step]])  # positive fine bin b spans pos_edges[b:b+2]
        hist_edges = np.concatenate([-pos_edges[::-1], pos_edges])  # zero bin [−0, 0] in the middle
        hist = s["hist"][i].numpy()
        pos_counts = hist[n_res + 1:]
        top = [(float(v), int(t)) for v, t in zip(s["top_val"][:, i], s["top_tok"][:, i], strict=True) if t >= 0]
        cdf = np.cumsum(pos_counts)
        intervals = []
        if cdf[-1] > 0:
            cuts = np.searchsorted(cdf, cdf[-1] * np.arange(1, cfg.intervals) / cfg.intervals)  # bin holding each quantile
            groups = np.unique(np.concatenate([[0], cuts + 1, [n_res]]))
            key, val, tok = (s[k][i].reshape(n_res, -1) for k in ("res_key", "res_val", "res_tok"))
            for a, b in zip(groups[:-1], groups[1:], strict=True):
                if pos_counts[a:b].sum() == 0:
                    continue
                k, v, t = key[a:b].reshape(-1), val[a:b].reshape(-1), tok[a:b].reshape(-1)
                pick = k.argsort(stable=True)[: cfg.per_interval]
                pick = pick[k[pick] != EMPTY]
                ex = sorted(((float(v[j]), int(t[j])) for j in pick), reverse=True)
                intervals.append(QuantileBin(lo=float(pos_edges[a]), hi=float(pos_edges[b]),
                                             n=int(pos_counts[a:b].sum()), examples=ex))
        return NeuronStats(n_tokens=n, mean=float(s["sum"][i]) / max(n, 1), density=int(s["pos"][i]) / max(n, 1),
                           max=top[0][0] if top else float("nan"), min=float(s["min"][i]),
                           hist_counts=hist.tolist(), hist_edges=hist_edges.tolist(), top=top, intervals=intervals)

    def means(self, hook: str) -> np.ndarray:
        """Mean activation of every neuron of `hook` over the scanned tokens (float64 (W,))."""
        s = self.state[hook]
        return (s["sum"] / s["n"].clamp_min(1)).numpy()

    def to_dict(self) -> dict:
        """The scan's identity and progress (JSON-able): config, hooks, tokens, batches, seconds, state bytes."""
        return {"config": self.config.to_dict(), "hooks": self.hooks, "context": self.context,
                "windows": int(len(self.windows)), "tokens": int(len(self.windows)) * self.context,
                "tokens_done": self.tokens_done, "batches_done": self.batches_done, "n_batches": self.n_batches,
                "complete": self.batches_done >= self.n_batches, "seconds": round(self.seconds, 1),
                "tokens_per_s": round(self.tokens_done / max(self.seconds, 1e-9), 1),
                "state_bytes": self.state_bytes(),
                "state_note": "per hook and neuron: top-k windows, a signed log histogram, count/sum/min and per-bin "
                              "reservoirs of per_interval tokens; independent of the tokens scanned"}

    # -- checkpoints ----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the whole state atomically (torch.save through a temp file and a rename); returns `path`."""
        buf = io.BytesIO()
        torch.save({"meta": self.to_dict(), "windows": torch.as_tensor(self.windows), "state": self.state,
                    "seconds": self.seconds, "batches_done": self.batches_done}, buf)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> NeuronScan:
        """A scan saved by `save` (complete or not)."""
        data = torch.load(path, weights_only=True)
        meta = data["meta"]
        return cls(ScanConfig.from_dict(meta["config"]), list(meta["hooks"]), data["windows"].numpy(),
                   int(meta["context"]), int(data["batches_done"]), float(data["seconds"]), data["state"])


def scan_neurons(model, corpus: TokenizedCorpus, config: ScanConfig, out: str | Path | None = None, *,
                 desc: str | None = "scan") -> NeuronScan:
    """Scan `config.layers`' hook over `config.tokens` tokens of `corpus` in one pass (see the module docstring).

    With `out`, the state is saved to `out/scan_state.pt` every `checkpoint_every` batches and at the end, and
    `out/scan.json` describes it; a scan found there with the same config resumes where it stopped.

    Parameters
    ----------
    model : lm.LoadedModel
        Its bridge runs the windows (on its device); its spec must be `config.model`'s.
    corpus : TokenizedCorpus
        Tokenized with the model's tokenizer.
    desc : str or None
        Progress bar label; None shows no bar.

    Returns
    -------
    NeuronScan
        Complete.

    Raises
    ------
    ParameterError
        A layer outside the model (names `layers`), a hook the model lacks (`hook`), `top_k` above the
        windows scanned, or a checkpoint in `out` made with another config (`out`).
    """
    from .config import resolve_hook

    bridge = model.bridge
    n_layers = int(bridge.cfg.n_layers)
    if max(config.layers) >= n_layers:
        raise ParameterError("layers", f"{max(config.layers)} is out of range: this model has layers 0..{n_layers - 1}")
    try:
        hooks = [resolve_hook(bridge, layer, config.hook) for layer in config.layers]
    except ValueError as err:
        raise ParameterError("hook", str(err).removeprefix("hook ")) from None
    context = min(config.context, int(bridge.cfg.n_ctx))
    windows = scan_windows(corpus, context, config.split, config.tokens)
    if len(windows) < config.top_k:
        raise ParameterError("top_k", f"{config.top_k} is more than the {len(windows)} windows of {context} tokens "
                                      "scanned (one example per window): lower --top-k or scan more --tokens")
    path = None if out is None else Path(out) / "scan_state.pt"
    scan = NeuronScan(config, hooks, windows, context)
    if path is not None and path.exists():
        scan = NeuronScan.load(path)
        if scan.config != config or scan.hooks != hooks or not np.array_equal(scan.windows, windows):
            raise ParameterError("out", f"{out} holds a scan with another config or corpus; pass a new --out")
    docs = [corpus.doc(int(d)) for d in range(len(corpus.doc_lengths))]
    bs = config.batch_size

    def batches():
        for b in range(scan.batches_done, scan.n_batches):
            rows = windows[b * bs: (b + 1) * bs]
            yield np.stack([docs[d][s: s + context] for d, s in rows]).astype(np.int64), None

    bar = progress(total=scan.n_batches, initial=scan.batches_done, desc=desc, disable=desc is None, unit="batch")
    start = time.perf_counter()
    for got in activation_batches(bridge, batches(), hooks):
        if not scan.state:
            scan.init({h: a.shape[-1] for h, a in got.items()})
        b = scan.batches_done
        for h in hooks:
            scan.merge(h, got[h], b * bs, b)
        scan.batches_done += 1
        bar.update(1)
        if path is not None and (scan.batches_done % config.checkpoint_every == 0 or scan.batches_done == scan.n_batches):
            scan.seconds += time.perf_counter() - start
            start = time.perf_counter()
            scan.save(path)
            atomic_write_json(path.with_name("scan.json"), scan.to_dict())
    bar.close()
    scan.seconds += time.perf_counter() - start
    return scan


def run_scan(config: ScanConfig, out: str | Path, device: str = "cpu") -> NeuronScan:
    """`scan_neurons` for a config: checks the corpus source, loads the model and its tokenization of the corpus,
    scans into `out` (resuming a scan found there).

    Raises
    ------
    ParameterError
        An unknown corpus (before the model loads); as `scan_neurons`.
    """
    from ..corpora import check_corpus_source
    from ..lm import load
    from ..lm.losses import model_corpus

    check_corpus_source(config.corpus)
    saved = Path(out) / "scan_state.pt"
    if saved.exists():  # a finished scan of the same config: nothing to load or run
        done = NeuronScan.load(saved)
        if done.config == config and done.batches_done >= done.n_batches:
            return done
    model = load(config.model, device=device)
    return scan_neurons(model, model_corpus(model, config.corpus), config, out)
