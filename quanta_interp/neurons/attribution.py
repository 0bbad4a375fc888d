"""Neurons ↔ quanta by cause: rank a layer's neurons by attribution to a quantum's loss, confirm by ablation.

For a quantum Q of a `quanta discover` run (a cluster of target tokens, each predicted from its window
doc[start:pos]) and the MLP neurons a_i of one layer, the attribution of neuron i is the first-order
estimate of what mean-ablating it does to the quantum's summed loss (attribution patching, Nanda 2023;
Syed et al. 2023, "Attribution patching outperforms automated circuit discovery"):

    A_i = Σ_{m ∈ Q} Σ_t (μ_i − a_i(m, t)) · ∂L_m / ∂a_i(m, t)

summed over every position t of member m's window (positions after the predicting one get no gradient,
by causality), with μ_i the neuron's mean activation (over a `NeuronScan`, else over the windows used).
The top-n by A are then mean-ablated at every position of each window (the measured ΔL), beside n random
neurons (several draws → an interval for the ratio), beside the top-n by the z-score of their mean activation
at the predicting position (the `ClusterProfile` ranking, here on the same sampled windows), and beside the
loss change the same ablation causes on tokens of other quanta (specificity).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ParameterError
from ..corpora import TokenizedCorpus
from ..io import progress
from ..record import Record

__all__ = ["QuantumNeurons", "QuantaNeurons", "quanta_neurons", "link_quanta"]


@dataclass(frozen=True)
class QuantumNeurons(Record):
    """One quantum's neurons by attribution and the ablations that test them (losses in nats per token).

    Attributes
    ----------
    rank, size : int
        The cluster's rank in clusters.json (1 = largest) and its number of members.
    targets : list of str
        Its most common target tokens.
    n_members : int
        Members evaluated (a seeded sample of at most `max_members`).
    top_attribution, top_z : list of int
        The top-n neurons by attribution A_i and by z-score.
    attribution, z : list of float
        Their scores (A_i in nats summed over the members; z in standard deviations).
    predicted_delta : float
        Σ of the top-n A_i divided by n_members: the first-order estimate of `delta_top`.
    base_loss, base_loss_other : float
        Mean loss of the members and of the other tokens, nothing ablated.
    delta_top, delta_z : float
        Mean member loss increase when the top-n by attribution / by z-score are mean-ablated.
    delta_random : list of float
        The same for each draw of n random neurons.
    ratio, ratio_interval : float, [float, float]
        delta_top / mean(delta_random) and the 2.5–97.5 % percentiles of delta_top / mean over bootstrap
        resamples of the draws (inf where a resample's mean is ≤ 0; JSON writes inf as null).
    delta_other : float
        Mean loss increase of the other tokens when this quantum's top-n are ablated.
    specificity : float
        delta_top / delta_other (inf when delta_other ≤ 0).
    overlap_z : int
        Neurons in both top-n lists.
    """

    rank: int
    size: int
    targets: list
    n_members: int
    top_attribution: list
    attribution: list
    top_z: list
    z: list
    predicted_delta: float
    base_loss: float
    base_loss_other: float | None
    delta_top: float | None
    delta_z: float | None
    delta_random: list | None
    ratio: float | None
    ratio_interval: list | None
    delta_other: float | None
    specificity: float | None
    overlap_z: int


@dataclass(frozen=True)
class QuantaNeurons(Record):
    """`quanta_neurons`' result: the settings and one `QuantumNeurons` per quantum examined."""

    discover: str
    model: str
    hook: str
    top_n: int
    draws: int
    max_members: int
    n_other: int
    mean_source: str
    positions: str
    quanta: list


def _rows(corpus: TokenizedCorpus, members: list[dict], discover) -> np.ndarray:
    """(doc, start, pos) of members, each checked against the corpus (its target token's text), shortest window
    first (batches then need little padding)."""
    text = corpus.tokenizer.token_str
    rows = []
    for m in members:
        doc, start, pos = int(m["doc"]), int(m["start"]), int(m["pos"])
        if not (0 <= doc < len(corpus.doc_lengths) and 0 <= start < pos < corpus.doc_lengths[doc]) or (
                "target" in m and text(int(corpus.doc(doc)[pos])) != m["target"]):
            raise ParameterError("discover", f"{discover}: member doc {doc} pos {pos} is not the token the run "
                                             "recorded; the discover run used another corpus or tokenizer")
        rows.append((doc, start, pos))
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    return rows[np.argsort(rows[:, 2] - rows[:, 1], kind="stable")]


def _losses(bridge, docs, rows, hook, *, ablate=None, means=None, grad=False, batch_size=16):
    """Per-row loss of the target (float64 (n,)), the activation at the predicting position (float32 (n, W)) and,
    with `grad`, the attribution Σ_t (μ − a)·∂L/∂a summed over rows (float64 (W,))."""
    import torch

    from ..capture.windows import window_batch

    device = next(bridge.parameters()).device
    mu = torch.as_tensor(means, dtype=torch.float32, device=device)
    idx = None if ablate is None else torch.as_tensor(np.asarray(ablate), device=device)
    losses, last, attr = [], [], torch.zeros(len(means), dtype=torch.float64)
    held = {}

    def hook_fn(act, hook):
        if idx is not None:
            act = act.clone()
            act[..., idx] = mu[idx]
        if grad:
            act = act.detach().requires_grad_(True)
        held["a"] = act
        return act

    for i in range(0, len(rows), batch_size):
        windows, lengths, targets = (t.to(device) for t in window_batch(docs, rows[i: i + batch_size]))
        with torch.set_grad_enabled(grad), bridge.hooks(fwd_hooks=[(hook, hook_fn)]):
            logits = bridge(windows)
        at = torch.arange(len(lengths), device=device)
        loss = torch.nn.functional.cross_entropy(logits[at, lengths - 1].float(), targets, reduction="none")
        if grad:
            loss.sum().backward()
            a = held["a"]
            attr += ((mu - a.detach()) * a.grad).sum((0, 1)).double().cpu()
        losses.append(loss.detach().double().cpu())
        last.append(held["a"].detach()[at, lengths - 1].float().cpu())
    return torch.cat(losses).numpy(), torch.cat(last).numpy(), attr.numpy()


def quanta_neurons(model, corpus: TokenizedCorpus, discover, layer: int, *, means: np.ndarray | None = None,
                   mean_source: str = "", hook: str | None = None, quanta: int = 4, ablate: int | None = None,
                   top_n: int = 20, draws: int = 5, max_members: int = 48, n_other: int = 48, batch_size: int = 16,
                   seed: int = 0, desc: str | None = "quanta") -> QuantaNeurons:
    """For the `quanta` largest quanta of a discover run, the layer's neurons ranked by attribution, tested by
    mean-ablation against random neurons, the z-score ranking and other quanta's tokens (module docstring).

    Parameters
    ----------
    model : lm.LoadedModel
        The model the discover run used.
    corpus : TokenizedCorpus
        The run's corpus tokenized with the model's tokenizer (see `discover_corpus`).
    discover : str or Path
        A `quanta discover --out` folder.
    layer : int
        Block whose MLP neurons (`hook`, default blocks.{layer}.mlp.hook_post) are ranked.
    means : float ndarray (W,) or None
        μ, the mean activation used for ablation and attribution (e.g. `NeuronScan.means`); None takes the mean
        over every position of the windows evaluated (stated in `mean_source`).
    quanta, top_n, draws : int
        Quanta ranked (largest first), neurons ablated per set, random draws.
    ablate : int or None
        The first `ablate` of them are also tested by ablation (default: all); the others carry None in the
        ablation fields.
    max_members, n_other : int
        Members sampled per quantum; tokens sampled from the quanta ranked below `ablate` as "other tokens".
    seed : int
        Seeds the member samples and the random neuron draws.

    Returns
    -------
    QuantaNeurons

    Raises
    ------
    ParameterError
        Not a discover folder, another model or tokenizer (`discover`), a layer outside the model (`layer`), a
        hook the model lacks (`hook`), `top_n` above the layer's width (`top_n`), `ablate` above `quanta`
        (`ablate`), or `means` of another width.
    """
    import torch

    from .config import check_ablate, resolve_hook
    from .quanta_link import check_model, read_discover

    ablate = check_ablate(ablate, quanta)
    summary, clusters = read_discover(discover)
    check_model(summary, model.spec, discover)
    if summary.get("tokenizer") not in (None, corpus.tokenizer.fingerprint()):
        raise ParameterError("discover", f"{discover} was tokenized with tokenizer {summary['tokenizer']}, not this "
                                         f"corpus's {corpus.tokenizer.fingerprint()}; pass the run's corpus")
    bridge = model.bridge
    n_layers = int(bridge.cfg.n_layers)
    if not 0 <= int(layer) < n_layers:
        raise ParameterError("layer", f"{layer} is out of range: this model has layers 0..{n_layers - 1}")
    try:
        hook_name = resolve_hook(bridge, layer, hook)
    except ValueError as err:
        raise ParameterError("hook", str(err).removeprefix("hook ")) from None
    rng = np.random.default_rng(seed)
    docs = [corpus.doc(d) for d in range(len(corpus.doc_lengths))]
    ranked = sorted(clusters, key=lambda c: int(c.get("rank", 0)))
    top, rest = ranked[:quanta], [m for c in ranked[ablate:] for m in c.get("members", [])]
    if ablate and not rest:
        raise ParameterError("ablate", f"{ablate} leaves no smaller quanta in {discover} to sample 'other tokens' "
                                       "from: ablate fewer quanta")
    sample = [_rows(corpus, [c["members"][j] for j in np.sort(rng.choice(len(c["members"]), min(max_members,
              len(c["members"])), replace=False))], discover) for c in top]
    other = _rows(corpus, [rest[j] for j in np.sort(rng.choice(len(rest), min(n_other, len(rest)), replace=False))],
                  discover)
    params = list(bridge.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        if means is None:  # μ over every position of the windows evaluated
            from ..capture.activations import record_activations
            from ..capture.windows import window_batch

            acc, count = 0.0, 0
            for rows in [*sample, other]:
                w, lengths, _ = window_batch(docs, rows)
                a = record_activations(bridge, w.numpy(), [hook_name], batch_size=batch_size)[hook_name]
                mask = (torch.arange(w.shape[1])[None] < lengths[:, None]).float()
                acc, count = acc + (a * mask[..., None]).sum((0, 1)).double(), count + int(mask.sum())
            means, mean_source = (acc / count).numpy(), f"mean over the {count} positions of the windows evaluated"
        width = len(means)
        if not 1 <= top_n <= width:
            raise ParameterError("top_n", f"must be between 1 and the layer's {width} neurons, got {top_n}")
        run = dict(means=means, batch_size=batch_size)
        base_other, last_other, _ = _losses(bridge, docs, other, hook_name, **run)
        base = [_losses(bridge, docs, rows, hook_name, grad=True, **run)
                for rows in progress(sample, desc=desc and f"{desc}: attribution", disable=desc is None)]
        if last_other.shape[1] != width:
            raise ParameterError("means", f"has {width} values, but {hook_name} has {last_other.shape[1]} neurons")
        every = np.concatenate([b[1] for b in base] + [last_other])
        mu_all, sd_all = every.mean(0), np.maximum(every.std(0), 1e-6)
        out = []
        for k, (c, rows, (loss0, last, attr)) in enumerate(progress(list(zip(top, sample, base, strict=True)),
                                                                    desc=desc and f"{desc}: ablation",
                                                                    disable=desc is None)):
            best = np.argsort(-attr)[:top_n]
            z = (last.mean(0) - mu_all) / sd_all
            best_z = np.argsort(-z)[:top_n]
            ranking = dict(rank=int(c.get("rank", 0)), size=int(c.get("size", len(c["members"]))),
                           targets=[str(t[0] if isinstance(t, (list, tuple)) else t)
                                    for t in c.get("top_targets", [])[:3]],
                           n_members=len(rows), top_attribution=best.tolist(),
                           attribution=np.round(attr[best], 4).tolist(), top_z=best_z.tolist(),
                           z=np.round(z[best_z], 3).tolist(),
                           predicted_delta=round(float(attr[best].sum()) / len(rows), 5),
                           base_loss=round(float(loss0.mean()), 5),
                           overlap_z=len(set(best.tolist()) & set(best_z.tolist())))
            if k >= ablate:
                out.append(QuantumNeurons(**ranking, base_loss_other=None, delta_top=None, delta_z=None,
                                          delta_random=None, ratio=None, ratio_interval=None, delta_other=None,
                                          specificity=None))
                continue

            def delta(neurons, rows=rows, loss0=loss0):
                return float((_losses(bridge, docs, rows, hook_name, ablate=neurons, **run)[0] - loss0).mean())

            d_top, d_z = delta(best), delta(best_z)
            d_rand = [delta(rng.choice(width, top_n, replace=False)) for _ in range(draws)]
            d_other = float((_losses(bridge, docs, other, hook_name, ablate=best, **run)[0] - base_other).mean())
            boot = np.asarray(d_rand)[rng.integers(0, draws, (2000, draws))].mean(1)
            ratios = np.where(boot > 0, d_top / np.where(boot > 0, boot, 1.0), np.inf)
            mean_rand = float(np.mean(d_rand))
            out.append(QuantumNeurons(
                **ranking, base_loss_other=round(float(base_other.mean()), 5),
                delta_top=round(d_top, 5), delta_z=round(d_z, 5), delta_random=np.round(d_rand, 5).tolist(),
                ratio=round(d_top / mean_rand, 2) if mean_rand > 0 else float("inf"),
                ratio_interval=[round(float(np.percentile(ratios, q, method=m)), 2)
                                for q, m in ((2.5, "lower"), (97.5, "higher"))],
                delta_other=round(d_other, 5),
                specificity=round(d_top / d_other, 2) if d_other > 0 else float("inf")))
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
    return QuantaNeurons(discover=str(discover), model=model.spec, hook=hook_name, top_n=top_n, draws=draws,
                         max_members=max_members, n_other=n_other, mean_source=mean_source,
                         positions="attribution summed over every position of each member's window doc[start:pos] "
                                   "(later positions get no gradient); ablation at every position; z at the "
                                   "predicting position pos − 1", quanta=out)


def link_quanta(config, device: str = "cpu") -> QuantaNeurons:
    """`quanta_neurons` for a `LinkConfig`: loads the discover run's model and corpus, and the scan's means.

    Raises
    ------
    ParameterError
        As `quanta_neurons`; a scan folder without a scan, or one of another model or without this layer
        (`scan`), checked before the model loads.
    """
    from ..lm import load
    from .config import DEFAULT_HOOK
    from .quanta_link import discover_corpus, discover_model, read_discover, same_model
    from .scan import NeuronScan

    summary, _ = read_discover(config.discover)
    spec = discover_model(summary)
    scan = None
    if config.scan is not None:
        path = Path(config.scan) / "scan_state.pt"
        if not path.exists():
            raise ParameterError("scan", f"{config.scan} holds no scan_state.pt: run `quanta neurons scan --out` first")
        scan = NeuronScan.load(path)
        if not same_model(scan.config.model, spec) or config.layer not in scan.config.layers:
            raise ParameterError("scan", f"{config.scan} scanned layers {list(scan.config.layers)} of "
                                         f"{scan.config.model!r}, not layer {config.layer} of {spec!r}")
        if (scan.config.hook or DEFAULT_HOOK) != (config.hook or DEFAULT_HOOK):  # its means are of another hook
            raise ParameterError("hook", f"{config.hook or DEFAULT_HOOK!r} is not the hook {config.scan} scanned "
                                         f"({scan.config.hook or DEFAULT_HOOK!r}), whose means would be used")
    model = load(spec, device=device)
    corpus = discover_corpus(model, summary)
    means, source = None, ""
    if scan is not None:
        hook = scan.hooks[list(scan.config.layers).index(config.layer)]
        means, source = scan.means(hook), f"scan {config.scan}: mean over {scan.tokens_done} tokens"
    return quanta_neurons(model, corpus, config.discover, config.layer, means=means, mean_source=source,
                          hook=config.hook, quanta=config.quanta, ablate=config.ablate, top_n=config.top_n,
                          draws=config.draws,
                          max_members=config.max_members, n_other=config.n_other, batch_size=config.batch_size,
                          seed=config.seed)
