"""`QDGConfig`: every setting of `quanta discover`, in three parts checked on their own — `CaptureConfig` (what
the captured gradients are: model, corpus, context, threshold, weights, sketch, seed), `ClusteringConfig` (how
they are clustered, passed whole to `analysis.cluster_quanta` and `clustering.QuantaClustering`) and
`FamilyConfig` (quanta across scale) — and the analysis and run settings beside them; `QDGConfig._checks` holds
only the rules between the parts. Each setting keeps its flat name (`config.n_clusters`, `--clusters`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..capture.dims import DEFAULT_MATRIX_DIM, DEFAULT_PROJECTION_DIM, validate_dims
from ..config import (
    Config,
    ParameterError,
    check_choice,
    check_device,
    check_finite,
    check_positive_int,
    parse_float_list,
    parse_int_list,
)

__all__ = ["QDGConfig", "CaptureConfig", "ClusteringConfig", "FamilyConfig", "PRESETS", "AFFINITIES", "METHODS",
           "ASSIGN_LABELS", "MAX_RESAMPLES", "check_resamples"]

AFFINITIES = ("angular", "cosine", "unsigned", "abs")
METHODS = ("dense", "knn")
ASSIGN_LABELS = ("kmeans", "cluster_qr")
MAX_TOKENS = 10_000_000  # n_tokens above this is refused: the paper clusters 10^4, a dense affinity tops out ~10^5
STORE_BYTES = 64e9  # the largest gradient store (n_tokens × projection_dim float32) accepted
MAX_RESAMPLES = 200


def check_resamples(name: str, v: int) -> None:
    """0 (no resampling) or 2 … `MAX_RESAMPLES` resamples (`stability.resample_quanta`).

    Raises
    ------
    ParameterError
        Not an integer, 1 (one resample has no spread), or more than `MAX_RESAMPLES`.
    """
    check_positive_int(name, v, low=0)
    if v == 1 or v > MAX_RESAMPLES:
        raise ParameterError(name, f"must be 0 (no resampling) or between 2 and {MAX_RESAMPLES}, got {v}")


def _parse_context(text: str) -> int | str:
    if text == "doc":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens or 'doc', got {text!r}") from None


def _parse_ranks(text: str) -> tuple[int, int]:
    parts = text.replace("-", ",").split(",")
    try:
        lo, hi = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO-HI ranks, e.g. 100-900, got {text!r}") from None
    return lo, hi


def _parse_alpha(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _positive(name, v):
    check_positive_int(name, v)


def _non_negative(name, v):
    check_positive_int(name, v, low=0)


@dataclass(frozen=True)
class CaptureConfig(Config):
    """What the captured gradients are and how many: every field but `n_tokens` and `scan_tokens` is the capture
    identity (`identity()`), which a run folder's stored gradients must match; those two only extend it."""

    model: str = "smollm2"
    """'smollm2', a Hugging Face name or folder, or a `quanta lm train` run folder."""
    corpus: str = "shakespeare"
    """'shakespeare', a text file or folder, or hf:NAME."""
    n_tokens: int = field(default=2000, metadata={"identity": False})
    """Low-loss tokens to cluster: the scan and the capture go on until this many pass."""
    loss_threshold: float = 0.1
    """Keep tokens whose loss is below this, in nats (the paper: 0.1)."""
    context: int | str = field(default=64, metadata={"parse": _parse_context, "metavar": "N|doc"})
    """Tokens of context: documents are cut into blocks of this many tokens and each token sees the part
    of its block before it; 'doc' is the paper's whole document, capped at 1024 tokens (and at the model's
    n_ctx)."""
    min_context: int = 8
    """Tokens need at least this many tokens of context to be candidates."""
    keep_induction: bool = False
    """Keep tokens that complete a trigram already seen in their context (the paper drops them)."""
    scan_tokens: int | None = field(default=None, metadata={"parse": int, "identity": False})
    """Stop scanning after this many scored tokens (default: until n_tokens are found or the corpus ends)."""
    params: str = "all"
    """Weights whose gradients are taken: all, mlp, attn, 'layers 3-5' or a regex over matrix names."""
    projection_dim: int = DEFAULT_PROJECTION_DIM
    """k: each token's gradient is tensor-sketched to k numbers (cosine error ≈ 1/√k); 0 stores exact
    gradients (small models only)."""
    matrix_sketch_dim: int = DEFAULT_MATRIX_DIM
    """m: buckets of each weight matrix's own sketch before the k-vector (its FFT length; ≤ k)."""
    seed: int = 0
    """Seeds the scan order, the sketch, the clustering and the bootstrap."""

    def _checks(self):
        def model(name, v):
            from ..lm.loading import check_model_spec

            try:
                check_model_spec(v)
            except ValueError as e:
                raise ParameterError(name, f"{v!r}: {e}") from None

        def n_tokens(name, v):
            check_positive_int(name, v)
            top = min(MAX_TOKENS, int(STORE_BYTES // (4 * self.projection_dim))) if self.projection_dim else MAX_TOKENS
            if v > top:
                raise ParameterError(name, f"must be at most {top:,} (a store of n_tokens × projection_dim "
                                           f"({self.projection_dim}) float32 numbers stays under "
                                           f"{STORE_BYTES / 1e9:.0f} GB, and the paper clusters 10,000), got {v:,}")

        def corpus(name, v):
            from ..corpora import check_corpus_source

            check_corpus_source(v)

        def threshold(name, v):
            check_finite(name, v, low=0.0, low_open=True)

        def context(name, v):
            if v != "doc" and (isinstance(v, bool) or not isinstance(v, int) or v < 2):
                raise ParameterError(name, f"must be a number of tokens ≥ 2 or 'doc', got {v!r}")

        def min_context(name, v):
            check_positive_int(name, v)
            if self.context != "doc" and v >= self.context:
                raise ParameterError(name, f"must be smaller than context ({self.context}), got {v}")

        def scan_tokens(name, v):
            if v is not None:
                check_positive_int(name, v)

        def params(name, v):
            from ..capture.modules import compile_params, select_modules
            from ..lm.loading import skeleton

            compile_params(v)
            modules = skeleton(self.model)  # a run folder's module names, read without its weights
            if modules is not None:
                select_modules(modules, v)

        def dims(name, v):
            validate_dims(self.projection_dim, self.matrix_sketch_dim)

        return [("model", model), ("corpus", corpus), ("projection_dim", dims), ("n_tokens", n_tokens),
                ("loss_threshold", threshold), ("context", context), ("min_context", min_context),
                ("scan_tokens", scan_tokens), ("params", params)]

    def identity(self) -> dict[str, Any]:
        """The settings that define the captured gradients; the corpus by its content
        (`corpora.corpus_identity`: a digest of its files' names and bytes), its source beside it.

        A mapping {setting: JSON value}, not a result type: it is identity.json as written, and a rerun compares
        it key by key with the stored file (`qdg._check_identity`), whose keys may predate this class's fields."""
        from ..corpora import corpus_identity

        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("identity", True)},
                "corpus": corpus_identity(self.corpus), "corpus_source": self.corpus}


@dataclass(frozen=True)
class ClusteringConfig(Config):
    """How gradients are clustered into quanta (`clustering.QuantaClustering`); every rule on these settings is
    checked here, once, wherever the clustering is used."""

    n_clusters: int = field(default=80, metadata={"flag": "--clusters"})
    """Number of quanta (the paper: 400 for 10k tokens)."""
    method: str = "dense"
    """Spectral-clustering graph: dense (all pairs) or knn (sparse, for 10^5 tokens)."""
    affinity: str = "unsigned"
    """unsigned = (1 + |cos|)/2 (the default: it recovers sparse-parity quanta, whose gradients' sign only
    encodes the label), angular = 1 − arccos(cos)/π (the paper's), cosine = (1 + cos)/2, or abs = |cos|."""
    assign_labels: str = "kmeans"
    """kmeans (the paper) or cluster_qr (deterministic, much faster at large cluster counts)."""
    n_init: int = 10
    """k-means restarts per clustering (the paper: 30)."""
    over_cluster: int = 8
    """Spectral clusters per quantum before fine clusters are merged back (average |cos|) to n_clusters; 8
    recovers sparse-parity subtasks, which split into 2^3 bit-pattern groups (ARI 0.95 vs 0.22 without);
    1 is the paper's plain spectral clustering."""
    refine: int = 10
    """Rounds in which each token moves to the quantum whose other members it has the highest mean |cos| with
    (applied to the fine clusters and to every cut; stops early when no token moves); sparse parity: ARI
    0.95 → 0.97, the slope of the rarest quanta corrected. 0 is the paper's clustering (needed by --method knn)."""

    def _checks(self):
        def method(name, v):
            check_choice(METHODS)(name, v)
            if v == "knn" and self.affinity in ("unsigned", "abs"):
                raise ParameterError(name, f"knn needs affinity angular or cosine (its neighbour search is by signed "
                                           f"distance), got affinity {self.affinity!r}")
            if v == "knn" and self.refine:
                raise ParameterError(name, "knn needs refine 0 (refining reads the dense n × n affinity)")

        return [("n_clusters", _positive), ("affinity", check_choice(AFFINITIES)), ("refine", _non_negative),
                ("method", method), ("assign_labels", check_choice(ASSIGN_LABELS)), ("n_init", _positive),
                ("over_cluster", _positive)]


@dataclass(frozen=True)
class FamilyConfig(Config):
    """Quanta across scale: the family of models that score the clustered tokens (`family.family_stage`)."""

    family: str | None = field(default=None, metadata={"parse": str, "metavar": "SWEEP|A,B,C"})
    """Quanta across scale: a `quanta lm family` folder, or ≥ 3 comma-separated models (smallest or earliest
    first) sharing the model's tokenizer. Every member scores the clustered tokens; each quantum gets its
    loss curve and learning scale N* (`quanta_scaling.json`, curves in browser.html)."""
    family_steps: tuple[int, ...] | None = field(default=None, metadata={"parse": parse_int_list, "metavar": "S1,S2,…"})
    """Training steps of the family's members when they are checkpoints of one model (the scale axis then
    is the step; default: non-embedding parameters N)."""
    token_classes: tuple[float, ...] = field(default=(5.0, 0.3, -0.3, 0.98),
                                             metadata={"parse": parse_float_list, "metavar": "HIGH,LOW,SLOPE,R2"})
    """Monogenic/polygenic thresholds over the family (`lm.scaling.TokenClasses`; the paper's for Pythia)."""

    def _checks(self):
        def steps(name, v):
            if v is None:
                return
            if self.family is None:
                raise ParameterError(name, "needs family (the checkpoints the steps belong to)")
            from .family import resolve_family

            try:
                n = len(resolve_family(self.family, v))
            except ParameterError as e:
                if e.param == "family_steps":
                    raise
                return  # a fault of the family itself: its own check ("scale") names it
            if len(v) != n or any(s <= 0 for s in v) or any(np.diff(v) <= 0):
                raise ParameterError(name, f"must be {n} increasing positive steps, one per family member, got {list(v)}")

        def classes(name, v):
            from ..lm.scaling import TokenClasses

            if len(v) != 4:
                raise ParameterError(name, f"must be 4 numbers HIGH,LOW,SLOPE,R2, got {list(v)}")
            try:
                TokenClasses(*v)
            except ValueError as e:
                raise ParameterError(name, str(e)) from None

        return [("family_steps", steps), ("token_classes", classes)]


@dataclass(frozen=True)
class QDGConfig(Config):
    """Everything `quanta discover` does, checked on construction, before any model loads: its parts
    (`capture`, `clustering`, `scale`) check themselves, `_checks` the rules between them.

    Build it from flat settings, `QDGConfig.build(n_tokens=2000, n_clusters=80)` (or `preset`); read and change
    them flat too (`config.n_clusters`, `config.replace(n_clusters=120)`). Defaults are sized for a 2-core CPU
    (≥ 2000 tokens in ≥ 60 clusters within 10 minutes on SmolLM2); `QDGConfig.preset("paper")` gives the paper's
    procedure.
    """

    capture: CaptureConfig = field(default_factory=CaptureConfig)
    """What the captured gradients are (`CaptureConfig`)."""
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    """How they are clustered (`ClusteringConfig`)."""
    cluster_counts: tuple[int, ...] | None = field(default=None, metadata={"parse": parse_int_list,
                                                                             "metavar": "A,B,…|geom:LO:HI:N"})
    """Cluster counts of the rank-frequency envelope (the paper: 30 counts from 10 to 1500); default 16
    counts from 10 to 15 % of the tokens, plus n_clusters."""
    fit_ranks: tuple[int, int] | None = field(default=None, metadata={"parse": _parse_ranks, "metavar": "LO-HI"})
    """Envelope ranks fitted, inclusive (the paper: 100-900 of 10k tokens); default: the paper's range scaled
    to n_tokens (1 % to 9 % of the tokens)."""
    resamples: int = 10
    """Resamples of the analysis behind every quantum's stability, the partition agreement (AMI) and the slope
    interval that includes the clustering's variance: each clusters the tokens again with its own seed and counts
    its quanta on a bootstrap draw of them (`stability.resample_quanta`); each costs about one clustering. 0 skips
    them, otherwise 2 … 200."""
    alpha_n: float | str | None = field(default=None, metadata={"parse": _parse_alpha, "metavar": "X|SUMMARY"})
    """α_N for the predicted slope −(α_N + 1): a number, or the summary.json of `quanta lm scaling` on this
    model's family (default: no prediction)."""
    scale: FamilyConfig = field(default_factory=FamilyConfig)
    """Quanta across scale (`FamilyConfig`)."""
    recapture: bool = False
    """Capture again the stored rows that no longer match the checksums recorded when they were written (a
    store damaged on disk is otherwise refused)."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1, … (an unavailable device is an error, never a silent CPU run)."""
    batch_tokens: int = 1024
    """Tokens per forward/backward pass (windows of similar length are batched together); raise on a GPU."""


    def _checks(self):
        n_tokens, n_clusters, over_cluster = self.n_tokens, self.n_clusters, self.over_cluster

        def clusters(name, v):
            if not 2 <= n_clusters <= n_tokens:
                raise ParameterError("n_clusters", f"must be between 2 and n_tokens ({n_tokens}), got {n_clusters}")
            if over_cluster * n_clusters >= n_tokens:
                raise ParameterError("over_cluster", f"× n_clusters ({over_cluster} × {n_clusters}) must be below "
                                                     f"n_tokens ({n_tokens}): each fine cluster needs tokens")

        def counts(name, v):
            if v is None:
                return
            if not v or any(isinstance(c, bool) or not isinstance(c, int) for c in v):
                raise ParameterError(name, f"must be a non-empty list of integers, got {v!r}")
            bad = [c for c in v if not 2 <= c <= n_tokens]
            if bad:
                raise ParameterError(name, f"must lie between 2 and n_tokens ({n_tokens}); got {bad[:3]}")
            top = over_cluster * n_clusters
            if over_cluster > 1 and max(v) > top:
                raise ParameterError(name, f"must be ≤ over_cluster × n_clusters ({top}): counts are cuts of the "
                                           f"merge tree of that many fine clusters; got {max(v)}")

        def ranks(name, v):
            if v is None:
                return
            if len(v) != 2 or not 1 <= v[0] < v[1]:
                raise ParameterError(name, f"must be (lo, hi) with 1 ≤ lo < hi, got {v!r}")
            top = max(self.counts())
            if v[1] > top:
                raise ParameterError(name, f"{v[0]}-{v[1]} go past the largest cluster count ({top}), so no "
                                           f"clustering has rank {v[1]}; lower the upper rank or raise cluster_counts")

        def resamples(name, v):
            check_resamples(name, v)

        def alpha(name, v):
            if isinstance(v, (int, float)):
                check_finite(name, v, low=0.0)
            elif v is not None:
                from .frequencies import alpha_n_from

                alpha_n_from(v)

        def family(name, v):
            if v.family is not None:
                from .family import check_members, check_run_tokenizers, resolve_family

                members = resolve_family(v.family, v.family_steps)
                check_members(members, steps=v.family_steps is not None)
                check_run_tokenizers(members, self)

        return [("clustering", clusters), ("cluster_counts", counts), ("fit_ranks", ranks), ("resamples", resamples),
                ("alpha_n", alpha), ("batch_tokens", _positive), ("device", lambda n, v: check_device(v)),
                ("scale", family), ("recapture", _bool)]

    # ------------------------------------------------------------------ derived settings

    @classmethod
    def preset(cls, name: str, **changes) -> QDGConfig:
        """'cpu' (the defaults) or 'paper': 10k tokens, whole-document context (≤ 1024 tokens), the angular
        affinity without merging, 400 clusters, the envelope over 30 counts from 10 to 1500 fitted over ranks
        100–900, k-means with 30 restarts; `changes` (flat settings) override it."""
        if name not in PRESETS:
            raise ParameterError("preset", f"must be one of {', '.join(PRESETS)}, got {name!r}")
        return cls.build(**{**PRESETS[name], **changes})

    def counts(self) -> tuple[int, ...]:
        """The envelope's cluster counts, n_clusters included, ascending."""
        base = self.cluster_counts
        if base is None:
            hi = max(10, int(0.15 * self.n_tokens))
            if self.over_cluster > 1:
                hi = min(hi, self.over_cluster * self.n_clusters)
            base = tuple(int(c) for c in np.unique(np.geomspace(min(10, hi), hi, 16).round()))
        return tuple(sorted({c for c in base if 2 <= c <= self.n_tokens} | {self.n_clusters}))

    def ranks(self) -> tuple[int, int]:
        """The fitted envelope ranks."""
        if self.fit_ranks is not None:
            return self.fit_ranks
        lo = max(1, round(0.01 * self.n_tokens))
        return lo, min(max(lo + 3, round(0.09 * self.n_tokens)), max(self.counts()))


def _bool(name, v):
    if not isinstance(v, bool):
        raise ParameterError(name, f"must be True or False, got {v!r}")


PRESETS: dict[str, dict] = {
    "cpu": {},
    "paper": dict(n_tokens=10000, context="doc", min_context=1, n_clusters=400, n_init=30, affinity="angular",
                  over_cluster=1, refine=0,
                  cluster_counts=tuple(int(c) for c in np.unique(np.geomspace(10, 1500, 30).round())),
                  fit_ranks=(100, 900)),
}
