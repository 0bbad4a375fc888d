"""QDG's analysis stage, without the model: quanta clusters of the stored gradients, the rank-frequency
envelope over many cluster counts and its fit, UMAP, and the outputs (`summary.json`, `clusters.json`,
`rank_frequency.*`, `umap.png`, `browser.html`)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..describe import Description, describe_tokens, log_unigram
from ..io import atomic_write_json, progress, read_json
from .config import ClusteringConfig
from .curves import QuantaScaling
from .frequencies import RankFrequencyFit
from .run import CaptureInfo, RunFolder

__all__ = ["analyse", "cluster_quanta", "clustered_rows", "quantum_records", "quantum_descriptions", "QuantaFit",
           "QDGResult"]


@dataclass
class QDGResult:
    """What `discover` found; `summary` is the whole `summary.json`.

    Attributes
    ----------
    out : Path
    n_tokens : int
        Tokens clustered.
    cluster_sizes : list[int]
        Sizes of the quanta, largest first (n_clusters of them, or fewer when refinement emptied one).
    slope, slope_ci
        Rank-frequency slope of the envelope over the fitted ranks, with its bootstrap CI (None if unfit).
    predicted_slope : float or None
        −(α_N + 1), labelled in `summary['rank_frequency']['alpha_N_source']`.
    timings : dict
        Seconds and tokens/s of each stage run now.
    """

    out: Path
    n_tokens: int
    cluster_sizes: list[int]
    slope: float | None
    slope_ci: list[float] | None
    predicted_slope: float | None
    timings: dict
    summary: dict

    def to_dict(self) -> dict:
        return {"out": str(self.out), "n_tokens": self.n_tokens, "cluster_sizes": self.cluster_sizes,
                "slope": self.slope, "slope_ci": self.slope_ci, "predicted_slope": self.predicted_slope,
                "timings": self.timings}


def clustered_rows(store, config) -> np.ndarray:
    """The rows QDG clusters: the first `config.n_tokens` passing rows, in (doc, pos) order so that the quanta do
    not depend on the order they were captured in (a permuted order gave AMI 0.84 on the README run)."""
    rows = store.passing_rows(config.loss_threshold)[: config.n_tokens]
    return rows[np.lexsort((store.targets[rows, 2], store.targets[rows, 0]))]


@dataclass
class QuantaFit:
    """Quanta of a set of gradients: the clustering, sizes at every cluster count, and the envelope's fit.

    Attributes
    ----------
    labels : int ndarray (n,)
        Quantum of each row at n_clusters.
    sizes_by_k : dict int → int ndarray
        Cluster sizes, largest first, at each cluster count of the envelope.
    fit : frequencies.RankFrequencyFit
        `frequencies.rank_frequency_fit` of the envelope; with resamples also `slope_interval` (the 95 % interval
        over resamples, `stability.slope_interval`), `slope_interval_covers` and `slope_median_resampled`.
    clustering : QuantaClustering
        The fitted estimator (embedding, merge tree, …).
    stability : stability.Stability or None
        The resamples behind each quantum's stability and the slope interval (None when `resamples` is 0).
    """

    labels: np.ndarray
    sizes_by_k: dict
    fit: RankFrequencyFit
    clustering: object
    stability: object = None


def cluster_quanta(G: np.ndarray, clustering: ClusteringConfig, *, counts, fit_ranks, alpha_n: float | None = None,
                   alpha_n_source: str | None = None, seed: int = 0, resamples: int = 0,
                   show_progress: bool = True) -> QuantaFit:
    """QDG's analysis of gradient rows G (n × dim): quanta as `clustering` says, the rank-frequency envelope over
    `counts` and its fit over `fit_ranks` (Michaud et al. 2023, §5). The one code path of `quanta discover`
    and of the sparse-parity ground truth (`ground_truth`). With `resamples` ≥ 2 the clustering is repeated with
    other seeds and counted on bootstrap draws (`stability.resample_quanta`): every quantum's stability and a
    slope interval that includes the clustering's variance. `seed` seeds the clustering and the bootstraps.

    Raises
    ------
    ParameterError
        A cluster count outside what the clustering can give (see `QuantaClustering`).
    """
    from .clustering import QuantaClustering
    from .frequencies import envelope, rank_frequency_fit, rank_sizes

    qc = QuantaClustering.of(clustering, counts=counts, random_state=seed).fit(G)
    sizes_by_k = {k: rank_sizes(qc.labels_for(k))
                  for k in progress(counts, desc="clusterings for the envelope", leave=False, disable=not show_progress)}
    fit = rank_frequency_fit(envelope(list(sizes_by_k.values())), total=len(G), fit_ranks=fit_ranks,
                             alpha_n=alpha_n, alpha_n_source=alpha_n_source, seed=seed)
    stability = None
    if resamples:
        from .stability import resample_quanta, slope_interval

        stability = resample_quanta(G, clustering, counts=counts, fit_ranks=fit_ranks, resamples=resamples,
                                    reference=qc.labels_, alpha_n=alpha_n, alpha_n_source=alpha_n_source, seed=seed,
                                    show_progress=show_progress)
        interval = slope_interval([fit, *stability.interval_fits()], seed=seed)
        slopes = stability.slopes
        fit = replace(fit, slope_interval=interval,
                      slope_median_resampled=None if np.all(np.isnan(slopes)) else float(np.nanmedian(slopes)),
                      slope_interval_covers=f"the full-data fit and {resamples} resamples (the tokens reclustered with "
                                        "their own seed; the spread of counting them on a bootstrap draw added, its "
                                        "mean removed), each with its rank bootstrap; the gradients and the "
                                        "clustering method are held fixed")
    return QuantaFit(qc.labels_, sizes_by_k, fit, qc, stability)


def _quanta_scaling(run: RunFolder, config, rows: np.ndarray, reference: np.ndarray, order: np.ndarray,
                    labels: np.ndarray, fit: RankFrequencyFit, alpha: float | None,
                    source: str | None) -> tuple[QuantaScaling, dict]:
    """`quanta_scaling.json` and its figure from the family losses of the clustered rows (α_N and its source
    as `alpha_n_from` gave them)."""
    from .family import read_family
    from .scaling import plot_quanta_scaling, quanta_scaling

    losses, x, listing = read_family(run.root)
    rank_of = np.zeros(int(labels.max()) + 1, np.int64)
    rank_of[order] = np.arange(len(order))
    names = [m["name"] for m in listing["members"]]
    result = quanta_scaling(losses[rows], x, rank_of[labels], reference, axis=listing["axis"], members=names,
                            rank_slope=fit.slope, alpha_n=alpha, alpha_n_source=source,
                            thresholds=dict(zip(("high", "low", "slope", "r2"), config.token_classes, strict=True)),
                            seed=config.seed)
    atomic_write_json(run.quanta_scaling.with_suffix(".json"), result)
    plot_quanta_scaling(run.quanta_scaling, result, title=f"quanta of {config.model} across {len(x)} family members")
    return result, {"x": listing["x"], "axis": listing["axis"]}


def quantum_records(quanta: QuantaFit, G: np.ndarray, rows: np.ndarray, losses: np.ndarray,
                    targets: list[dict]) -> list[dict]:
    """One record per non-empty quantum, largest first: rank, label, size, top_targets (10 (target, count)
    pairs), members (the `targets.json` record of each row, its loss added, lowest loss first), cos (the
    cosines between its first 20 members' gradients, 2 decimals) and, with resamples, stability.

    Parameters
    ----------
    G : float32 (n, dim)
        The clustered gradients; `rows` (n,) their store rows, `losses` (store rows,) the store's losses.
    targets : list of dict
        `targets.json`, indexed by store row.
    """
    from .clustering import unit_rows

    labels, stab = quanta.labels, quanta.stability
    sizes = np.bincount(labels)
    order = np.flatnonzero(sizes)[np.argsort(-sizes[sizes > 0], kind="stable")]  # quanta with members only
    clusters = []
    for rank, c in enumerate(order):
        idx = sorted(np.flatnonzero(labels == c), key=lambda i: losses[rows[i]])
        recs = [{**{f: targets[r][f] for f in ("doc", "start", "pos", "doc_name", "context", "target")},
                 "loss": float(losses[r]), "tokens": targets[r]["tokens"]} for r in (int(rows[i]) for i in idx)]
        top = Counter(r["target"] for r in recs).most_common(10)
        shown = unit_rows(G[idx[:20]])  # clustering already refused zero rows
        clusters.append({"rank": rank + 1, "label": int(c), "size": len(recs), "top_targets": top, "members": recs,
                         "cos": np.round(shown @ shown.T, 2).tolist(),
                         **({} if stab is None else {"stability": round(float(stab.quantum_stability[c]), 3)})})
    for c, d in zip(clusters, quantum_descriptions([c["members"] for c in clusters]), strict=True):
        c["description"] = d.to_dict()
    return clusters


def quantum_descriptions(members: list[list[dict]]) -> list[Description]:
    """A one-line description of each quantum without an LLM, with its detection AUC (`describe.describe_tokens`).

    The positives are a quantum's members as (answer token, preceding token), in the given order (fit and
    held-out halves alternate); the log-odds are taken against the answer and preceding tokens of every
    clustered token, and the held-out members are told apart from every clustered token outside the quantum.

    Parameters
    ----------
    members : list of list of dict
        Per quantum, its `targets.json` records (`target` and `tokens`, the target last).
    """
    def prev(m):
        return m["tokens"][-2] if len(m["tokens"]) >= 2 else None

    texts = sorted({t for ms in members for m in ms for t in (m["target"], prev(m)) if t is not None})
    vocab = {t: i for i, t in enumerate(texts)}
    pairs = [np.asarray([(vocab[m["target"]], vocab.get(prev(m), -1)) for m in ms], dtype=np.int64).reshape(-1, 2)
             for ms in members]
    every = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    base = np.stack([log_unigram(every[:, 0], len(texts)), log_unigram(every[:, 1], len(texts))])
    return [describe_tokens(p, np.concatenate([q for j, q in enumerate(pairs) if j != k] or [every[:0]]), base,
                            lambda ids: [texts[i] for i in ids]) for k, p in enumerate(pairs)]


def analyse(out: str | Path, config, info: CaptureInfo | None = None, *,
            seconds_before: float | None = None) -> QDGResult:
    """Cluster the gradients stored in `out` with `config`'s analysis settings and write every output:
    `cluster_quanta` → `quantum_records` (→ the family's curves) → summary.json, clusters.json, the figures and
    browser.html.

    The clustered tokens are the first `config.n_tokens` captured rows whose recheck loss is below the
    threshold (all of them when fewer pass). `info` (`qdg.capture_stage`'s) carries the capture's notes, model
    info and timings into the summary; `seconds_before` is the wall time of the stages before this one.

    Raises
    ------
    FileNotFoundError
        `out` holds no captured gradients.
    """
    from ..capture import GradientStore
    from .frequencies import alpha_n_from
    from .scan import Scan
    from .stability import SUBSAMPLE, subsample_fits

    run, t0 = RunFolder(out), time.perf_counter()
    info = info or CaptureInfo()
    store, targets = GradientStore(run.gradients), read_json(run.targets)
    rows = clustered_rows(store, config)
    G = np.asarray(store.gradients[rows])
    counts = config.counts()
    alpha, source = alpha_n_from(config.alpha_n)
    notes = list(info.notes)
    resamples = config.resamples
    if resamples and not subsample_fits(len(rows), config.n_clusters, counts):
        notes.append(f"no resampling: a resample of {SUBSAMPLE:.0%} of {len(rows)} tokens cannot hold cluster counts up "
                     f"to {max(counts)}, so quanta carry no stability and the slope no resampled interval")
        resamples = 0
    quanta = cluster_quanta(G, config.clustering, counts=counts, fit_ranks=config.ranks(), alpha_n=alpha,
                            alpha_n_source=source, seed=config.seed, resamples=resamples)
    _draw(run, config, quanta, G, notes)
    clusters = quantum_records(quanta, G, rows, store.losses, targets)
    fit = quanta.fit
    if len(clusters) < config.n_clusters:
        notes.append(f"{len(clusters)} quanta, not the {config.n_clusters} asked for: refinement emptied "
                     f"{config.n_clusters - len(clusters)} (a token alone in its cluster has no other member to "
                     "resemble, so it leaves)")
    if fit.slope is not None and (fit.n_ranks_fitted < 10 or len(rows) < 500):
        notes.append(f"the slope rests on {fit.n_ranks_fitted} ranks of {len(rows)} tokens: too little for a "
                     "trustworthy exponent; cluster more tokens (n_tokens) before reading it")
    scaling, family = None, None
    if config.family:
        order = np.array([c["label"] for c in clusters])
        scaling, family = _quanta_scaling(run, config, rows, store.losses[rows], order, quanta.labels, fit, alpha,
                                          source)
        for c, s in zip(clusters, scaling.clusters, strict=True):
            c.update(n_star=s.n_star, n_star_ci=s.n_star_ci, censored=s.censored, drop=s.drop,
                     curve={"mean": s.mean, "q25": s.q25, "q75": s.q75})
    scan = Scan.load(run.scan, 0)
    timings = {**info.timings, "analysis_seconds": round(time.perf_counter() - t0, 2)}
    if scan.seconds:
        timings["scan_tokens_per_second_total"] = round(scan.tokens_forwarded / scan.seconds, 1)
    lengths = store.targets[rows, 2] - store.targets[rows, 1]
    summary = {
        "model": config.model, "corpus": config.corpus, **info.model_info,
        **({} if seconds_before is None else
           {"wall_seconds_this_run": round(round(seconds_before, 1) + timings["analysis_seconds"], 1)}),
        "settings": {**config.to_dict(), "cluster_counts": list(counts), "fit_ranks": list(config.ranks()),
                     "gradient_dim": store.meta["dim"], "n_weight_matrices": len(store.meta["layers"])},
        "n_scanned": scan.tokens_scored, "n_candidates": len(scan.losses), "n_tokens": int(len(rows)),
        "context_tokens": {"mean": float(lengths.mean()), "min": int(lengths.min()), "max": int(lengths.max())},
        "n_nan_gradients": int((store.status == -1).sum()),
        "n_above_threshold_on_recheck": int((store.ok & (store.losses >= config.loss_threshold)).sum()),
        "clusters": [{"rank": c["rank"], "label": c["label"], "size": c["size"], "top_targets": c["top_targets"][:5],
                      **({"stability": c["stability"]} if "stability" in c else {}),
                      "description": c["description"]["text"], "detection_auc": c["description"]["auc"]}
                     for c in clusters],
        "descriptions": _description_summary(clusters),
        **({} if quanta.stability is None else {"stability": quanta.stability.to_dict()}),
        "rank_frequency": fit.to_dict(), "envelope_ks": list(counts), "timings": timings, "notes": notes,
    }
    if scaling is not None:
        whole = scaling.to_dict()
        summary["quanta_scaling"] = {k: whole[k] for k in ("axis", "x", "members", "spearman_rank_n_star",
                                                            "n_learned", "sharpness", "token_classes")}
    _write(run, config, summary, clusters, family, lengths, resamples)
    return QDGResult(out=run.root, n_tokens=int(len(rows)), cluster_sizes=[c["size"] for c in clusters],
                     slope=fit.slope, slope_ci=None if fit.slope_ci is None else list(fit.slope_ci), predicted_slope=fit.predicted_slope,
                     timings=timings, summary=summary)


def _description_summary(clusters: list[dict]) -> dict:
    """Median detection AUC of the quanta's descriptions and how many could be scored."""
    aucs = [c["description"]["auc"] for c in clusters if c["description"]["auc"] is not None]
    return {"median_detection_auc": round(float(np.median(aucs)), 3) if aucs else None, "scored": len(aucs),
            "quanta": len(clusters), "method": "answer and preceding tokens most over-represented (log-odds against "
            "every clustered token), fit on every other member; AUC of the held-out members against every clustered "
            "token outside the quantum (Delphi's detection score)"}


def _draw(run: RunFolder, config, quanta: QuantaFit, G: np.ndarray, notes: list[str]) -> None:
    """rank_frequency.{csv,json,png,svg} and umap.png (a note when UMAP cannot draw the tokens)."""
    from ..report import plot_umap
    from .clustering import umap_embedding
    from .frequencies import plot_rank_frequency, write_rank_frequency

    stab = quanta.stability
    write_rank_frequency(run.rank_frequency, quanta.sizes_by_k, quanta.fit)
    plot_rank_frequency(run.rank_frequency, quanta.sizes_by_k, quanta.fit, title=f"QDG quanta: {config.model}",
                        resampled=None if stab is None else stab.envelopes)
    try:
        plot_umap(run.umap, umap_embedding(G, random_state=config.seed), quanta.labels)
    except ValueError as e:
        notes.append(f"umap.png not drawn: {e}")


def _write(run: RunFolder, config, summary: dict, clusters: list[dict], family: dict | None, lengths: np.ndarray,
           resamples: int) -> None:
    """clusters.json (members without their tokens, no cosines or curves), summary.json and browser.html."""
    from .browser import write_browser

    atomic_write_json(run.clusters, [{**{k: v for k, v in c.items() if k not in ("cos", "curve")},
                                      "members": [{f: v for f, v in m.items() if f != "tokens"}
                                                  for m in c["members"]]} for c in clusters])
    atomic_write_json(run.summary, summary)
    n = summary["n_tokens"]
    ctx = f"{lengths.min()}–{lengths.max()} tokens of context (mean {lengths.mean():.0f})"
    write_browser(run.browser, [{**c, "examples": c["members"]} for c in clusters],
                  title=f"Quanta of {config.model} on {config.corpus}",
                  subtitle=f"{n} tokens with loss < {config.loss_threshold} nats, {len(clusters)} clusters "
                           f"of per-token gradients ({ctx})."
                           + (f" Loss curves over {len(family['x'])} family members." if family else "")
                           + f" {summary.get('model_note', '')}",
                  n_tokens=n, family=family, n_resamples=resamples)
