"""Link neurons to quanta: mean activation of every neuron on each `quanta discover` cluster's member tokens.

A member is a target token (doc, pos) the model predicts well from the window doc[start:pos]; the
activation that matters is the one at the window's last position, pos − 1, where the model makes that
prediction, over the same window `quanta discover` used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..capture.activations import record_activations
from ..config import ParameterError
from ..corpora import TokenizedCorpus
from ..io import read_json
from .config import resolve_hook

__all__ = ["read_discover", "discover_corpus", "discover_model", "same_model", "check_model", "ClusterProfile",
           "ClusterNeurons", "cluster_neurons"]


def read_discover(folder: str | Path) -> tuple[dict, list[dict]]:
    """(summary, clusters) of a `quanta discover --out` folder; one-line errors for a wrong folder.

    Returns
    -------
    summary : dict
        summary.json (model spec, corpus, settings).
    clusters : list of dict
        clusters.json, one dict per cluster (id or rank, size, members with doc/start/pos, top targets).

    Raises
    ------
    ParameterError
        The folder lacks summary.json or clusters.json, or clusters.json lists no cluster.
    """
    folder = Path(folder)
    if not (folder / "summary.json").exists() or not (folder / "clusters.json").exists():
        raise ParameterError("discover", f"{folder} is not a `quanta discover` output: it needs summary.json and "
                                         "clusters.json")
    summary, clusters = read_json(folder / "summary.json"), read_json(folder / "clusters.json")
    if not clusters:
        raise ParameterError("discover", f"{folder}: clusters.json lists no clusters")
    return summary, clusters


def discover_corpus(model, summary: dict):
    """The corpus a discover run used, tokenized with `model`'s tokenizer (doc indices refer to it).

    `summary` is the run's summary.json: its `corpus` (a source string or a dict with source, seed, edition,
    val_fraction, max_documents; default "shakespeare") and `settings.seed` rebuild the same split.

    Raises
    ------
    ValueError
        The model has no tokenizer (see `lm.corpus_tokenizer`).
    """
    from ..lm.losses import model_corpus

    spec = summary.get("corpus") or "shakespeare"
    seed = (summary.get("settings") or {}).get("seed", 0)  # only the split depends on it; reusing it hits the cache
    if isinstance(spec, dict):
        keys = ("edition", "val_fraction", "max_documents")
        return model_corpus(model, spec.get("source", "shakespeare"), seed=spec.get("seed", seed),
                            **{k: spec[k] for k in keys if k in spec})
    return model_corpus(model, str(spec), seed=seed)


def discover_model(summary: dict) -> str:
    """The model spec a discover run used (`summary["model"]`; KeyError when absent)."""
    return str(summary["model"])


def same_model(a: str, b: str) -> bool:
    """Equal specs, or two spellings of the same local folder."""
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())


def check_model(summary: dict, spec: str, folder) -> None:
    """One-line error when a discover folder was made with another model than `spec`.

    `summary` is the folder's summary.json and `folder` its path, named in the message.

    Raises
    ------
    ParameterError
        The discover run's model is not `spec` (see `same_model`).
    """
    if not same_model(discover_model(summary), spec):
        raise ParameterError("discover", f"{folder} was made with model {discover_model(summary)!r}, not {spec!r}: "
                         "pass the same --model, or a discover folder of this model")


class ClusterProfile:
    """Per-cluster mean activation of every neuron of `hook` at `layers`, from one pass over all members.

    `means_[hook]` is (n_clusters, width); `z_[hook]` standardises each cluster mean by the neuron's mean
    and standard deviation over all members, so neurons with different scales can be ranked for a cluster.

    Parameters
    ----------
    layers : sequence of int
        Blocks to profile.
    hook : str or None
        Hook template with `{layer}`; default the MLP hidden activations (see `resolve_hook`).
    batch_size : int
        Member windows per forward pass.

    Attributes
    ----------
    means_ : dict of str to float32 ndarray (n_clusters, width)
        Per hook, each cluster's mean activation at the last context token before its members' targets.
    z_ : dict of str to float32 ndarray (n_clusters, width)
        (cluster mean − mean over all members) / sd over all members (sd floored at 1e-6).
    cluster_ids_ : list
        Each cluster's `id` (else its `rank`, else its position) in clusters.json order.
    sizes_ : list of int
        Cluster sizes as clusters.json gives them.
    n_members_ : list of int
        Members profiled per cluster (a cluster without members reports 1).
    labels_ : list of list of str
        Up to three most common target tokens per cluster.
    source_ : str
        The discover folder.
    context_ : int
        Width of the padded member windows (the longest window).
    """

    def __init__(self, layers: Sequence[int], *, hook: str | None = None, batch_size: int = 16):
        self.layers, self.hook, self.batch_size = layers, hook, batch_size

    def fit(self, model, discover: str | Path, corpus: TokenizedCorpus, *, desc: str | None = None) -> ClusterProfile:
        """Mean activations per cluster; `model` is the `lm.LoadedModel` the discover run used (its spec is
        checked against the run's). Returns self.

        Parameters
        ----------
        discover : str or Path
            A `quanta discover --out` folder.
        corpus : TokenizedCorpus
            The corpus the discover run used, tokenized with the model's tokenizer (see `discover_corpus`).
        desc : str or None
            Progress bar label; None shows no bar.

        Raises
        ------
        ParameterError
            Not a discover folder, another model, members without a context start (an older layout),
            members outside `corpus`, no member at all, or windows longer than the model's n_ctx.
        ValueError
            A layer or hook the model lacks (see `resolve_hook`), or token ids outside its vocabulary.
        """
        import torch

        summary, clusters = read_discover(discover)
        check_model(summary, model.spec, discover)
        model = model.bridge
        hooks = [resolve_hook(model, layer, self.hook) for layer in self.layers]
        windows, label = [], []
        for c, cl in enumerate(clusters):
            for mem in cl.get("members", []):
                if "start" not in mem:
                    raise ParameterError("discover", f"{discover} was written by an older `quanta discover` (members "
                                     "have no context start); rerun quanta discover on it")
                doc, start, pos = int(mem["doc"]), int(mem["start"]), int(mem["pos"])
                if not (0 <= start < pos <= len(corpus.doc(doc))):
                    raise ParameterError("discover", f"{discover}: member doc {doc} pos {pos} is outside the corpus; "
                                     "the discover run used another corpus or tokenizer")
                windows.append(np.asarray(corpus.doc(doc)[start: pos], dtype=np.int64))
                label.append(c)
        if not windows:
            raise ParameterError("discover", f"{discover}: the clusters have no members with a context")
        ctx = max(len(w) for w in windows)
        if ctx > int(model.cfg.n_ctx):
            raise ParameterError("discover", f"{discover}: windows of {ctx} tokens exceed the model's n_ctx "
                             f"{model.cfg.n_ctx}; the discover run used another model")
        rows = np.stack([np.pad(w, (0, ctx - len(w))) for w in windows])  # right padding: causal, so harmless
        acts = record_activations(model, rows, hooks, batch_size=self.batch_size,
                                  last=np.array([len(w) - 1 for w in windows]), desc=desc)
        label_t = torch.as_tensor(label)
        onehot = torch.nn.functional.one_hot(label_t, len(clusters)).float()
        counts = onehot.sum(0).clamp_min(1)[:, None]
        self.means_, self.z_ = {}, {}
        for h, a in acts.items():
            means = onehot.T @ a / counts
            sd = a.std(0).clamp_min(1e-6)
            self.means_[h] = means.numpy()
            self.z_[h] = ((means - a.mean(0)) / sd).numpy()
        self.cluster_ids_ = [cl.get("id", cl.get("rank", c)) for c, cl in enumerate(clusters)]  # rank: as in browser.html
        self.sizes_ = [int(cl.get("size", len(cl.get("members", [])))) for cl in clusters]
        self.n_members_ = counts[:, 0].long().tolist()
        self.labels_ = [_cluster_label(cl) for cl in clusters]
        self.source_, self.context_ = str(discover), ctx
        return self

    def clusters_for(self, hook: str, neuron: int, k: int = 5) -> list[dict]:
        """The `k` clusters whose members activate `neuron` most (by mean activation).

        Parameters
        ----------
        hook : str
            A fitted hook name (a key of `means_`).
        neuron : int
            Index in the hook's last dimension.

        Returns
        -------
        list of dict
            `cluster` (id), `size`, `label`, `mean_activation` and `z`, highest mean first.

        Raises
        ------
        KeyError
            `hook` was not fitted.
        IndexError
            `neuron` is outside the hook's width.
        """
        col = self.means_[hook][:, neuron]
        return [self._row(c, mean_activation=col[c], z=self.z_[hook][c, neuron]) for c in np.argsort(-col)[:k]]

    def neurons_for(self, cluster, k: int = 20) -> list[dict]:
        """The `k` neurons (over all fitted hooks) most selective for a cluster, ranked by z-scored mean.

        Parameters
        ----------
        cluster
            A cluster id as in `cluster_ids_` (for current discover output its rank, 1 = largest).

        Returns
        -------
        list of dict
            `hook`, `layer` (None for a hook outside `blocks.N`), `neuron`, `z` and `mean_activation`,
            highest z first.

        Raises
        ------
        ParameterError
            `cluster` is not among `cluster_ids_`.
        """
        if cluster not in self.cluster_ids_:
            raise ParameterError("cluster", f"{cluster} is not in the discover output; clusters: "
                             f"{self.cluster_ids_[0]}..{self.cluster_ids_[-1]}")
        c = self.cluster_ids_.index(cluster)
        scored = [(float(z[c, i]), h, i) for h, z in self.z_.items() for i in np.argsort(-z[c])[:k]]
        return [{"hook": h, "layer": _layer(h), "neuron": int(i), "z": round(s, 4),
                 "mean_activation": round(float(self.means_[h][c, i]), 4)}
                for s, h, i in sorted(scored, key=lambda t: -t[0])[:k]]

    def _row(self, c: int, **values) -> dict:
        return {"cluster": self.cluster_ids_[c], "size": self.sizes_[c], "label": self.labels_[c],
                **{k: round(float(v), 4) for k, v in values.items()}}


def _layer(hook: str) -> int | None:
    parts = hook.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "blocks" and parts[1].isdigit() else None


def _cluster_label(cluster: dict) -> list[str]:
    """A short label: the cluster's three most common target tokens."""
    from collections import Counter

    if cluster.get("top_targets"):
        return [str(t[0] if isinstance(t, (list, tuple)) else t) for t in cluster["top_targets"][:3]]
    return [t for t, _ in Counter(str(m.get("target", "")) for m in cluster.get("members", [])).most_common(3)]


@dataclass(frozen=True)
class ClusterNeurons:
    """`cluster_neurons`' result: the cluster, its size and label, and its top neurons by z-score.

    `neurons` rows are `ClusterProfile.neurons_for` rows (hook, layer, neuron, z, mean_activation); `path` is
    the JSON written.
    """

    model: str
    discover: str
    cluster: object
    size: int
    label: list
    context: int
    neurons: list
    path: str

    def to_dict(self) -> dict:
        """The JSON payload (without `path`)."""
        return {"model": self.model, "discover": self.discover, "cluster": self.cluster, "size": self.size,
                "label": self.label, "context": self.context, "ranking": "z = (cluster mean − mean over all members) "
                "/ sd over all members, at the last context token before each target", "neurons": self.neurons}


def cluster_neurons(discover, cluster: str, out, *, model: str | None = None, layers: Sequence[int] | None = None,
                    hook: str | None = None, top: int = 20, batch_size: int = 16, device: str = "cpu") -> ClusterNeurons:
    """The `top` neurons most selective for one cluster of a discover run (by z-score, `ClusterProfile`), written
    to `out/<model>/cluster_<id>.json`.

    Parameters
    ----------
    cluster : str
        The cluster's rank in clusters.json (1 = largest), as browser.html shows it.
    model : str or None
        Model spec; default the run's.
    layers : sequence of int or None
        Layers profiled; default all.

    Raises
    ------
    ParameterError
        Not a discover folder, another model, or a cluster the run lacks (checked before the model loads).
    """
    import re

    from ..io import atomic_write_json
    from ..lm import load

    summary, clusters = read_discover(discover)
    spec = model or discover_model(summary)
    check_model(summary, spec, discover)  # before loading the model
    ids = [str(cl.get("id", cl.get("rank", c))) for c, cl in enumerate(clusters)]
    if str(cluster) not in ids:
        raise ParameterError("cluster", f"{cluster} is not in {discover}: clusters are ranked "
                                        f"{ids[0]}..{ids[-1]} (1 = largest)")
    loaded = load(spec, device=device)
    layers = list(layers) if layers else list(range(int(loaded.cfg.n_layers)))
    profile = ClusterProfile(layers, hook=hook, batch_size=batch_size).fit(
        loaded, discover, discover_corpus(loaded, summary), desc="cluster members")
    key = int(cluster) if cluster.isdigit() and int(cluster) in profile.cluster_ids_ else cluster
    c = profile.cluster_ids_.index(key)
    slug = lambda t: re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(t).name or t)  # noqa: E731
    res = ClusterNeurons(spec, str(discover), key, profile.sizes_[c], profile.labels_[c], profile.context_,
                         profile.neurons_for(key, top), "")
    path = atomic_write_json(Path(out) / slug(spec) / f"cluster_{slug(str(key))}.json", res.to_dict())
    return ClusterNeurons(**{**res.__dict__, "path": str(path)})
