"""QDG's analysis stage, without the model: quanta clusters of the stored gradients, the rank-frequency
envelope over many cluster counts and its fit, UMAP, and the outputs (`summary.json`, `clusters.json`,
`rank_frequency.*`, `umap.png`, `browser.html`)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_write_json, progress, read_json

__all__ = ["analyse", "cluster_quanta", "clustered_rows", "QuantaFit", "QDGResult", "passing_rows"]


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


def passing_rows(store, threshold: float) -> np.ndarray:
    """Rows of the store whose gradient is finite and whose recheck loss is below the threshold."""
    if store is None:
        return np.zeros(0, np.int64)
    return np.flatnonzero(store.ok & (store.losses < threshold))


def clustered_rows(store, config) -> np.ndarray:
    """The rows QDG clusters: the first `config.n_tokens` passing rows, in (doc, pos) order so that the quanta do
    not depend on the order they were captured in (a permuted order gave AMI 0.84 on the README run)."""
    rows = passing_rows(store, config.loss_threshold)[: config.n_tokens]
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
    fit : dict
        `frequencies.rank_frequency_fit` of the envelope; with resamples also `slope_interval` (the 95 % interval
        over resamples, `stability.slope_interval`), `slope_interval_covers` and `slope_median_resampled`.
    clustering : QuantaClustering
        The fitted estimator (embedding, merge tree, …).
    stability : stability.Stability or None
        The resamples behind each quantum's stability and the slope interval (None when `resamples` is 0).
    """

    labels: np.ndarray
    sizes_by_k: dict
    fit: dict
    clustering: object
    stability: object = None


def cluster_quanta(G: np.ndarray, *, n_clusters: int, counts, fit_ranks, affinity: str = "unsigned",
                   method: str = "dense", assign_labels: str = "kmeans", n_init: int = 10, over_cluster: int = 1,
                   refine: int = 0, alpha_n: float | None = None, alpha_n_source: str | None = None, seed: int = 0,
                   resamples: int = 0, show_progress: bool = True) -> QuantaFit:
    """QDG's analysis of gradient rows G (n × dim): quanta at `n_clusters`, the rank-frequency envelope over
    `counts` and its fit over `fit_ranks` (Michaud et al. 2023, §5). The one code path of `quanta discover`
    and of the sparse-parity ground truth (`ground_truth`). With `resamples` ≥ 2 the clustering is repeated with
    other seeds and counted on bootstrap draws (`stability.resample_quanta`): every quantum's stability and a
    slope interval that includes the clustering's variance.

    Raises
    ------
    ParameterError
        A cluster count outside what the clustering can give (see `QuantaClustering`).
    """
    from .clustering import QuantaClustering
    from .frequencies import envelope, rank_frequency_fit, rank_sizes

    qc = QuantaClustering(n_clusters, affinity=affinity, method=method,
                          n_components=max(counts) if over_cluster == 1 else None, assign_labels=assign_labels,
                          n_init=n_init, over_cluster=over_cluster, refine=refine, random_state=seed)
    qc.fit(G)
    sizes_by_k = {k: rank_sizes(qc.labels_ if k == n_clusters else qc.labels_for(k))
                  for k in progress(counts, desc="clusterings for the envelope", leave=False, disable=not show_progress)}
    fit = rank_frequency_fit(envelope(list(sizes_by_k.values())), total=len(G), fit_ranks=fit_ranks,
                             alpha_n=alpha_n, alpha_n_source=alpha_n_source, seed=seed)
    stability = None
    if resamples:
        from .stability import resample_quanta, slope_interval

        stability = resample_quanta(G, n_clusters=n_clusters, counts=counts, fit_ranks=fit_ranks, resamples=resamples,
                                    reference=qc.labels_, affinity=affinity, method=method, assign_labels=assign_labels,
                                    n_init=n_init, over_cluster=over_cluster, refine=refine, alpha_n=alpha_n,
                                    alpha_n_source=alpha_n_source, seed=seed, show_progress=show_progress)
        interval = slope_interval([fit, *stability.interval_fits()], seed=seed)
        slopes = stability.slopes
        fit = {**fit, "slope_interval": None if interval is None else list(interval),
               "slope_median_resampled": None if np.all(np.isnan(slopes)) else float(np.nanmedian(slopes)),
               "slope_interval_covers": f"the full-data fit and {resamples} resamples (the tokens reclustered with "
                                        "their own seed; the spread of counting them on a bootstrap draw added, its "
                                        "mean removed), each with its rank bootstrap; the gradients and the "
                                        "clustering method are held fixed"}
    return QuantaFit(qc.labels_, sizes_by_k, fit, qc, stability)


def _quanta_scaling(out: Path, config, rows: np.ndarray, reference: np.ndarray, order: np.ndarray,
                    labels: np.ndarray, fit: dict, alpha: float | None, source: str | None) -> tuple[dict, dict]:
    """`quanta_scaling.json` and its figure from the family losses of the clustered rows (α_N and its source
    as `alpha_n_from` gave them)."""
    from .family import read_family
    from .scaling import plot_quanta_scaling, quanta_scaling

    losses, x, listing = read_family(out)
    rank_of = np.zeros(int(labels.max()) + 1, np.int64)
    rank_of[order] = np.arange(len(order))
    names = [m["name"] for m in listing["members"]]
    result = quanta_scaling(losses[rows], x, rank_of[labels], reference, axis=listing["axis"], members=names,
                            rank_slope=fit.get("slope"), alpha_n=alpha, alpha_n_source=source,
                            thresholds=dict(zip(("high", "low", "slope", "r2"), config.token_classes, strict=True)),
                            seed=config.seed)
    atomic_write_json(out / "quanta_scaling.json", result)
    plot_quanta_scaling(out / "quanta_scaling", result,
                        title=f"quanta of {config.model} across {len(x)} family members")
    return result, {"x": listing["x"], "axis": listing["axis"]}


def analyse(out: str | Path, config, *, extra: dict | None = None):
    """Cluster the gradients stored in `out` with `config`'s analysis settings and write every output.

    The clustered tokens are the first `config.n_tokens` captured rows whose recheck loss is below the
    threshold (all of them when fewer pass). Returns a `QDGResult`.

    Raises
    ------
    FileNotFoundError
        `out` holds no captured gradients.
    """
    from ..capture import GradientStore
    from .browser import write_browser
    from .clustering import umap_embedding, unit_rows
    from .frequencies import alpha_n_from, plot_rank_frequency, plot_umap, write_rank_frequency
    from .stability import SUBSAMPLE, subsample_fits

    out, t0 = Path(out), time.perf_counter()
    store, targets = GradientStore(out / "gradients"), read_json(out / "targets.json")
    rows = clustered_rows(store, config)
    G = np.asarray(store.gradients[rows])
    counts = config.counts()
    alpha, source = alpha_n_from(config.alpha_n)
    notes = list((extra or {}).pop("notes", []))
    resamples = config.resamples
    if resamples and not subsample_fits(len(rows), config.n_clusters, counts):
        notes.append(f"no resampling: a resample of {SUBSAMPLE:.0%} of {len(rows)} tokens cannot hold cluster counts up "
                     f"to {max(counts)}, so quanta carry no stability and the slope no resampled interval")
        resamples = 0
    quanta = cluster_quanta(G, n_clusters=config.n_clusters, counts=counts, fit_ranks=config.ranks(),
                            affinity=config.affinity, method=config.method, assign_labels=config.assign_labels,
                            n_init=config.n_init, over_cluster=config.over_cluster, refine=config.refine, alpha_n=alpha,
                            alpha_n_source=source, seed=config.seed, resamples=resamples)
    qc, sizes_by_k, fit, stab = quanta.clustering, quanta.sizes_by_k, quanta.fit, quanta.stability
    write_rank_frequency(out, sizes_by_k, fit)
    plot_rank_frequency(out / "rank_frequency", sizes_by_k, fit, title=f"QDG quanta: {config.model}",
                        resampled=None if stab is None else stab.envelopes)
    try:
        plot_umap(out / "umap", umap_embedding(G, random_state=config.seed), qc.labels_)
    except ValueError as e:
        notes.append(f"umap.png not drawn: {e}")

    sizes = np.bincount(qc.labels_)
    order = np.flatnonzero(sizes)[np.argsort(-sizes[sizes > 0], kind="stable")]  # quanta with members only
    clusters = []
    for rank, c in enumerate(order):
        idx = sorted(np.flatnonzero(qc.labels_ == c), key=lambda i: store.losses[rows[i]])
        recs = [{**{f: targets[r][f] for f in ("doc", "start", "pos", "doc_name", "context", "target")},
                 "loss": float(store.losses[r]), "tokens": targets[r]["tokens"]} for r in (int(rows[i]) for i in idx)]
        top = Counter(r["target"] for r in recs).most_common(10)
        shown = unit_rows(G[idx[:20]])  # clustering already refused zero rows
        clusters.append({"rank": rank + 1, "label": int(c), "size": len(recs), "top_targets": top, "members": recs,
                         "cos": np.round(shown @ shown.T, 2).tolist(),
                         **({} if stab is None else {"stability": round(float(stab.quantum_stability[c]), 3)})})
    if len(clusters) < config.n_clusters:
        notes.append(f"{len(clusters)} quanta, not the {config.n_clusters} asked for: refinement emptied "
                     f"{config.n_clusters - len(clusters)} (a token alone in its cluster has no other member to "
                     "resemble, so it leaves)")
    if fit.get("slope") is not None and (fit["n_ranks_fitted"] < 10 or len(rows) < 500):
        notes.append(f"the slope rests on {fit['n_ranks_fitted']} ranks of {len(rows)} tokens: too little for a "
                     "trustworthy exponent; cluster more tokens (n_tokens) before reading it")
    scaling, family = None, None
    if config.family:
        scaling, family = _quanta_scaling(out, config, rows, store.losses[rows], order, qc.labels_, fit, alpha, source)
        for c, s in zip(clusters, scaling["clusters"], strict=True):
            c.update(n_star=s["n_star"], n_star_ci=s["n_star_ci"], censored=s["censored"], drop=s["drop"],
                     curve={k: s[k] for k in ("mean", "q25", "q75")})
    atomic_write_json(out / "clusters.json", [{**{k: v for k, v in c.items() if k not in ("cos", "curve")},
                                                "members": [{f: v for f, v in m.items() if f != "tokens"}
                                                            for m in c["members"]]} for c in clusters])
    scan = read_json(out / "scan" / "state.json")
    lengths = store.targets[rows, 2] - store.targets[rows, 1]
    timings = {k: v for k, v in (extra or {}).items() if k.endswith(("seconds", "per_second"))}
    timings["analysis_seconds"] = round(time.perf_counter() - t0, 2)
    if extra and "wall_seconds_this_run" in extra:  # discover measured the stages before this one
        extra = {**extra, "wall_seconds_this_run": round(extra["wall_seconds_this_run"] + timings["analysis_seconds"], 1)}
    if scan.get("seconds"):
        timings["scan_tokens_per_second_total"] = round(scan["tokens_forwarded"] / scan["seconds"], 1)
    summary = {
        "model": config.model, "corpus": config.corpus,
        **{k: v for k, v in (extra or {}).items() if k not in timings},
        "settings": {**config.to_dict(), "cluster_counts": list(counts), "fit_ranks": list(config.ranks()),
                     "gradient_dim": store.meta["dim"], "n_weight_matrices": len(store.meta["layers"])},
        "n_scanned": scan["tokens_scored"], "n_candidates": scan["n_candidates"], "n_tokens": int(len(rows)),
        "context_tokens": {"mean": float(lengths.mean()), "min": int(lengths.min()), "max": int(lengths.max())},
        "n_nan_gradients": int((store.status == -1).sum()),
        "n_above_threshold_on_recheck": int((store.ok & (store.losses >= config.loss_threshold)).sum()),
        "clusters": [{"rank": c["rank"], "label": c["label"], "size": c["size"], "top_targets": c["top_targets"][:5],
                      **({"stability": c["stability"]} if "stability" in c else {})} for c in clusters],
        **({} if stab is None else {"stability": stab.summary()}),
        "rank_frequency": fit, "envelope_ks": list(counts), "timings": timings, "notes": notes,
    }
    if scaling is not None:
        summary["quanta_scaling"] = {k: scaling[k] for k in ("axis", "x", "members", "spearman_rank_n_star",
                                                              "n_learned", "sharpness", "token_classes")}
    atomic_write_json(out / "summary.json", summary)
    ctx = f"{lengths.min()}–{lengths.max()} tokens of context (mean {lengths.mean():.0f})"
    write_browser(out / "browser.html", [{**c, "examples": c["members"]} for c in clusters],
                  title=f"Quanta of {config.model} on {config.corpus}",
                  subtitle=f"{len(rows)} tokens with loss < {config.loss_threshold} nats, {len(clusters)} clusters "
                           f"of per-token gradients ({ctx})."
                           + (f" Loss curves over {len(family['x'])} family members." if family else "")
                           + f" {summary.get('model_note', '')}",
                  n_tokens=len(rows), family=family, n_resamples=resamples)
    for note in notes:
        print(f"quanta discover: {note}")
    fitted = fit.get("slope")
    return QDGResult(out=out, n_tokens=int(len(rows)), cluster_sizes=[c["size"] for c in clusters], slope=fitted,
                     slope_ci=fit.get("slope_ci"), predicted_slope=fit.get("predicted_slope"), timings=timings,
                     summary=summary)
