"""QDG, quanta discovery from gradients (Michaud et al. 2023, §5), as a Python API: `discover(config, out)`.

Stages, each resumable in `out`: (1) scan corpus blocks for low-loss tokens (`scan/`); (2) per-token
gradients of those tokens, sketched, streamed to `gradients/`; with `family`, every member of a model family
scores the same targets (`family/`, `family.family_stage`); (3) analysis without the model: quanta
clusters, the rank-frequency envelope over many cluster counts, its fit, UMAP, `summary.json`,
`clusters.json` and `browser.html` (`analysis.analyse`) and, with a family, each quantum's loss curve and
learning scale N* with the quantization model's predictions tested (`quanta_scaling.json`, `scaling`).

What defines the captured gradients (model, corpus, context, threshold, parameters, projection, seed) is
kept apart from the analysis settings: a rerun on the same `out` with other clusters, counts or fit ranks
re-clusters the stored gradients in seconds; a rerun asking for more tokens extends the capture; a rerun
with another capture identity is refused. The corpus is known by its content (`corpora.corpus_identity`).

A run folder cannot lie: one process at a time writes it (`io.RunLock`); every input is checked before
anything is written, and `identity.json` is written only when the capture starts, so a refused run leaves
the folder as it found it; every bookkeeping file and every captured row is checked when read (the store's
checksums, `capture.store`), and a damaged one stops the run with one line naming the file and the fix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

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
from ..io import DamagedFileError, RunLock, atomic_write_json, read_json
from .clustering import AFFINITIES, ASSIGN_LABELS, METHODS

__all__ = ["QDGConfig", "discover", "capture_stage", "PRESETS", "IDENTITY"]

# Settings that define the captured gradients; every other field only changes the analysis or the speed.
IDENTITY = ("model", "corpus", "context", "min_context", "loss_threshold", "keep_induction", "params",
            "projection_dim", "matrix_sketch_dim", "seed")

MAX_TOKENS = 10_000_000  # n_tokens above this is refused: the paper clusters 10^4, a dense affinity tops out ~10^5
STORE_BYTES = 64e9  # the largest gradient store (n_tokens × projection_dim float32) accepted


def _parse_context(text: str) -> int | str:
    if text == "doc":
        return text
    try:
        return int(text)
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(f"expected a number of tokens or 'doc', got {text!r}") from None


def _parse_ranks(text: str) -> tuple[int, int]:
    import argparse

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


@dataclass(frozen=True)
class QDGConfig(Config):
    """Everything `quanta discover` does, checked on construction, before any model loads.

    Defaults are sized for a 2-core CPU (≥ 2000 tokens in ≥ 60 clusters within 10 minutes on SmolLM2);
    `QDGConfig.preset("paper")` gives the paper's procedure.
    """

    model: str = "smollm2"
    """'smollm2', a Hugging Face name or folder, or a `quanta lm train` run folder."""
    corpus: str = "shakespeare"
    """'shakespeare', a text file or folder, or hf:NAME."""
    n_tokens: int = 2000
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
    scan_tokens: int | None = field(default=None, metadata={"parse": int})
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
    recapture: bool = False
    """Capture again the stored rows that no longer match the checksums recorded when they were written (a
    store damaged on disk is otherwise refused)."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1, … (an unavailable device is an error, never a silent CPU run)."""
    batch_tokens: int = 1024
    """Tokens per forward/backward pass (windows of similar length are batched together); raise on a GPU."""

    # ------------------------------------------------------------------ validation

    def _checks(self):
        def positive(name, v):
            check_positive_int(name, v)

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

        def n_clusters(name, v):
            check_positive_int(name, v)
            if not 2 <= v <= self.n_tokens:
                raise ParameterError(name, f"must be between 2 and n_tokens ({self.n_tokens}), got {v}")

        def over(name, v):
            check_positive_int(name, v)
            if v * self.n_clusters >= self.n_tokens:
                raise ParameterError(name, f"× n_clusters ({v} × {self.n_clusters}) must be below n_tokens "
                                           f"({self.n_tokens}): each fine cluster needs tokens")

        def method(name, v):
            check_choice(METHODS)(name, v)
            if v == "knn" and self.affinity in ("unsigned", "abs"):
                raise ParameterError(name, f"knn needs affinity angular or cosine (its neighbour search is by signed "
                                           f"distance), got affinity {self.affinity!r}")
            if v == "knn" and self.refine:
                raise ParameterError(name, "knn needs refine 0 (refining reads the dense n × n affinity)")

        def counts(name, v):
            if v is None:
                return
            if not v or any(isinstance(c, bool) or not isinstance(c, int) for c in v):
                raise ParameterError(name, f"must be a non-empty list of integers, got {v!r}")
            bad = [c for c in v if not 2 <= c <= self.n_tokens]
            if bad:
                raise ParameterError(name, f"must lie between 2 and n_tokens ({self.n_tokens}); got {bad[:3]}")
            top = self.over_cluster * self.n_clusters
            if self.over_cluster > 1 and max(v) > top:
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
            from .stability import check_resamples

            check_resamples(name, v, self.n_tokens)

        def alpha(name, v):
            if isinstance(v, (int, float)):
                check_finite(name, v, low=0.0)
            elif v is not None:
                from .frequencies import alpha_n_from

                alpha_n_from(v)

        def device(name, v):
            check_device(v)

        def family(name, v):
            if v is not None:
                from .family import check_members, check_run_tokenizers, resolve_family

                members = resolve_family(v)
                check_members(members, steps=self.family_steps is not None)
                check_run_tokenizers(members, self)

        def steps(name, v):
            if v is None:
                return
            if self.family is None:
                raise ParameterError(name, "needs family (the checkpoints the steps belong to)")
            from .family import resolve_family

            n = len(resolve_family(self.family))
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

        return [("model", model), ("corpus", corpus), ("projection_dim", dims), ("n_tokens", n_tokens),
                ("loss_threshold", threshold), ("context", context),
                ("min_context", min_context), ("scan_tokens", scan_tokens), ("params", params),
                ("seed", lambda n, v: check_positive_int(n, v, low=0)), ("n_clusters", n_clusters),
                ("affinity", check_choice(AFFINITIES)), ("refine", lambda n, v: check_positive_int(n, v, low=0)),
                ("method", method), ("assign_labels", check_choice(ASSIGN_LABELS)), ("n_init", positive),
                ("over_cluster", over), ("cluster_counts", counts),
                ("fit_ranks", ranks), ("resamples", resamples), ("alpha_n", alpha), ("batch_tokens", positive), ("device", device),
                ("family", family), ("family_steps", steps), ("token_classes", classes), ("recapture", _bool)]

    # ------------------------------------------------------------------ derived settings

    @classmethod
    def preset(cls, name: str, **changes) -> QDGConfig:
        """'cpu' (the defaults) or 'paper': 10k tokens, whole-document context (≤ 1024 tokens), the angular
        affinity without merging, 400 clusters, the envelope over 30 counts from 10 to 1500 fitted over ranks
        100–900, k-means with 30 restarts."""
        if name not in PRESETS:
            raise ParameterError("preset", f"must be one of {', '.join(PRESETS)}, got {name!r}")
        return cls(**{**PRESETS[name], **changes})

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

    def identity(self) -> dict:
        """The settings that define the captured gradients (`IDENTITY`); the corpus by its content
        (`corpora.corpus_identity`: a digest of its files' names and bytes), its source beside it."""
        from ..corpora import corpus_identity

        return {**{k: getattr(self, k) for k in IDENTITY}, "corpus": corpus_identity(self.corpus),
                "corpus_source": self.corpus}


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


def _check_layout(out: Path) -> None:
    """Refuse a non-empty `out` without identity.json: a QDG run of an older layout (or something else)."""
    if out.is_dir() and any(p.name != ".lock" for p in out.iterdir()) and not (out / "identity.json").exists():
        raise ParameterError("out", f"{out} holds files but no identity.json: a QDG run from an older quanta_interp "
                                    "layout, or another folder; run `quanta discover` into a new out folder")


_RESTORE = "restore it, or rerun into a new --out folder"


def _check_identity(out: Path, config: QDGConfig) -> list[str]:
    """Refuse an `out` that holds gradients of another capture identity (reads only); returns notes.

    identity.json of a run made before corpora were known by content holds the corpus's path: the same path
    (as given, or resolved) is accepted with a note, and `discover` then records the corpus's digest.
    """
    path = out / "identity.json"
    if not path.exists():
        return []
    stored = read_json(path, expect=dict, fix=_RESTORE)
    mine, notes = config.identity(), []
    old_corpus = stored.get("corpus")
    if isinstance(old_corpus, str) and old_corpus != mine["corpus"]:
        if old_corpus.startswith("sha256:") and mine["corpus"].startswith("sha256:"):
            raise ParameterError("corpus", f"{config.corpus!r}: the corpus changed since the capture in {out} (its "
                                           "files' names or bytes differ from those captured): use a new --out")
        legacy = old_corpus not in ("shakespeare",) and not old_corpus.startswith(("hf:", "sha256:"))
        if legacy and _same_path(old_corpus, config.corpus, out):
            stored["corpus"] = mine["corpus"]
            notes.append(f"identity.json predates corpus digests: the corpus at {config.corpus} is taken to be the one "
                         "captured, and its digest is recorded from now on")
    differ = [f"{k} ({stored.get(k)!r} there, {getattr(config, k)!r} now)" if k != "corpus" else
              f"corpus ({stored.get('corpus_source', stored.get(k))!r} there, {config.corpus!r} now)"
              for k in IDENTITY if stored.get(k) != mine[k]]
    if differ:
        raise ParameterError(differ[0].split(" ")[0], f"differs from the gradients stored in {out}: "
                             f"{'; '.join(differ)}. Use another out folder; analysis settings alone may change")
    return notes


def _same_path(old: str, new: str, out: Path) -> bool:
    a, b = Path(old).expanduser(), Path(new).expanduser().resolve()
    return old == new or a.resolve() == b or (not a.is_absolute() and (out.parent / a).resolve() == b)


def _write_identity(out: Path, config: QDGConfig) -> None:
    """Record the capture identity (and the config) when the capture starts: the first write of a run."""
    atomic_write_json(out / "identity.json", config.identity())
    atomic_write_json(out / "config.json", config.to_dict())


def _check_corpus(config: QDGConfig) -> None:
    """A file or folder corpus must be readable and hold a non-empty document: checked before any write."""
    if config.corpus == "shakespeare" or config.corpus.startswith("hf:"):
        return
    from ..corpora import load_documents

    try:
        load_documents(config.corpus)
    except ValueError as e:
        raise ParameterError("corpus", f"{config.corpus!r} cannot be used: {e}") from None
    except OSError as e:
        raise ParameterError("corpus", f"{config.corpus!r} cannot be read: {e.strerror or e}") from None


def _records(corpus, rows: np.ndarray, show: int = 48) -> list[dict]:
    """What the browser shows of each target: up to `show` tokens of its context, the target last."""
    tok, out = corpus.tokenizer, []
    for d, s, p in rows:
        doc = corpus.doc(int(d))
        lo = max(int(s), int(p) - show)
        out.append({"doc": int(d), "start": int(s), "pos": int(p), "doc_name": corpus.doc_names[d],
                    "context": corpus.text(int(d), lo, int(p)), "target": tok.token_str(int(doc[p])),
                    "tokens": [tok.token_str(int(t)) for t in doc[lo: p + 1]]})
    return out


def capture_stage(config: QDGConfig, out: Path) -> dict:
    """Scan and capture until `n_tokens` tokens pass the threshold on recheck (or the corpus runs out).

    Loads the model only when there is work left, and writes identity.json once the model and corpus are
    loaded and checked, just before the first scan. Rows left pending by a kill are captured, not counted as
    failed. Returns timings and notes for the summary.

    Raises
    ------
    ValueError
        The scan finds fewer than 2 tokens, or fewer than `n_clusters`, in the whole corpus (or in
        `scan_tokens`): the message says what to change.
    DamagedFileError
        A bookkeeping file of `out` is damaged (the message names it and the fix).
    """
    from ..capture import capture_gradients
    from ..capture.store import mark_pending, open_store
    from .analysis import passing_rows
    from .scan import Scan, block_length, scan_low_loss

    info: dict = {"notes": []}
    repaired = []
    store_dir, scan_dir = out / "gradients", out / "scan"
    model = corpus = None
    docs = None
    t_capture = t_scan = 0.0
    tokens_captured = 0
    if config.recapture and (store_dir / "capture.json").exists():
        from ..capture import GradientStore

        bad, _ = GradientStore(store_dir, verify=False).damaged_rows()
        mark_pending(store_dir, bad)
        if len(bad):
            repaired.append(f"recaptured {len(bad)} damaged rows of the gradient store")
    while True:
        store = open_store(store_dir)
        state = read_json(out / "state.json", expect=dict, fix=_RESTORE) if (out / "state.json").exists() else {}
        passing = passing_rows(store, config.loss_threshold)
        n_have = 0 if store is None else len(store.targets)
        n_pending = 0 if store is None else int(store.pending.sum())
        dry = {"exhausted_at": n_have, "scan_tokens": config.scan_tokens}
        if not n_pending and (len(passing) >= config.n_tokens or state == dry):
            break
        if model is None:
            model, corpus, docs = _load(config, info)
            block, note = block_length(config.context, int(model.cfg.n_ctx))
            if note:
                info["notes"].append(note)
            if not (out / "identity.json").exists():
                _write_identity(out, config)  # the capture starts here: the run's first write
        n_fail = n_have - n_pending - len(passing)  # finished rows that did not pass; pending ones are still to do
        t0 = time.perf_counter()
        scan = scan_low_loss(model.bridge, docs, scan_dir, n_needed=config.n_tokens + n_fail, block=block,
                             min_context=config.min_context, loss_threshold=config.loss_threshold,
                             exclude_induction=not config.keep_induction, seed=config.seed,
                             batch_tokens=config.batch_tokens, max_tokens=config.scan_tokens)
        t_scan += time.perf_counter() - t0
        rows = scan.candidates[: max(n_have, config.n_tokens + n_fail)]
        if len(rows) <= n_have and not n_pending:  # nothing new to capture: the scan has run dry
            atomic_write_json(out / "state.json", dry)
            break
        records = _targets_json(out, n_have, len(scan.candidates))[: len(rows)]
        atomic_write_json(out / "targets.json", records + _records(corpus, rows[len(records):]))
        t0 = time.perf_counter()
        store = capture_gradients(model.bridge, docs, rows, store_dir, params=config.params,
                                  projection_dim=config.projection_dim, matrix_sketch_dim=config.matrix_sketch_dim,
                                  batch_tokens=config.batch_tokens, seed=config.seed)
        t_capture += time.perf_counter() - t0
        tokens_captured += len(rows) - n_have + n_pending
    store = open_store(store_dir)
    passing = passing_rows(store, config.loss_threshold)
    _targets_json(out, 0 if store is None else len(store.targets), np.inf)  # what the analysis reads, checked
    scan = Scan.load(scan_dir, 0)
    if len(passing) < max(2, config.n_clusters):
        where = (f"the first {scan.tokens_scored} scored tokens (scan_tokens)" if config.scan_tokens
                 and scan.tokens_scored >= config.scan_tokens else f"the whole corpus ({scan.tokens_scored} tokens scored)")
        raise ValueError(f"loss_threshold {config.loss_threshold} keeps {len(passing)} tokens in {where}, fewer "
                         f"than n_clusters ({config.n_clusters}); raise loss_threshold"
                         + (" or scan_tokens" if config.scan_tokens else "") + ", or lower n_clusters")
    if len(passing) < config.n_tokens:
        info["notes"].append(f"only {len(passing)} of the {config.n_tokens} tokens asked for pass loss_threshold "
                             f"{config.loss_threshold} in the {scan.tokens_scored} tokens scanned; all are clustered")
    info_path = out / "model_info.json"
    if model is not None:  # what only the loaded model knows, kept for reruns that do not load it
        atomic_write_json(info_path, {"model_note": model.note, "tokenizer": corpus.tokenizer.fingerprint(),
                                      "n_layers": int(model.cfg.n_layers), "block_length": block,
                                      "notes": list(info["notes"])})
    if info_path.exists():
        stored = read_json(info_path, expect=dict, fix=_RESTORE)
        notes = stored.pop("notes", [])
        info["notes"] = list(dict.fromkeys((notes if isinstance(notes, list) else []) + info["notes"]))
        info.update(stored)
    info["notes"] += repaired
    if t_scan:
        info["scan_seconds"] = round(t_scan, 2)
    if t_capture:
        info["capture_seconds"] = round(t_capture, 2)
        info["capture_tokens_per_second"] = round(tokens_captured / t_capture, 2)
    return info


def _targets_json(out: Path, n_least: int, n_most: float) -> list:
    """targets.json, checked: a list of target records, at least the `n_least` captured, at most `n_most`."""
    path = out / "targets.json"
    if not path.exists():
        if n_least:
            raise DamagedFileError(path, f"missing, while {n_least} targets are captured", _RESTORE)
        return []
    records = read_json(path, expect=list, fix=_RESTORE)
    if not n_least <= len(records) <= n_most or not all(isinstance(r, dict) and "context" in r for r in records):
        raise DamagedFileError(path, f"lists {len(records)} target records where {n_least} are captured", _RESTORE)
    return records


def _load(config: QDGConfig, info: dict):
    from .. import lm
    from ..capture.modules import select_modules
    from ..corpora import load_corpus

    t0 = time.perf_counter()
    model = lm.load(config.model, device=config.device)
    select_modules(model.bridge, config.params)  # params checked against this model before anything is written
    corpus = load_corpus(config.corpus, tokenizer=lm.corpus_tokenizer(model), seed=config.seed)
    info["load_seconds"] = round(time.perf_counter() - t0, 2)
    return model, corpus, corpus.documents()


def discover(config: QDGConfig, out: str | Path):
    """Run (or resume, extend or re-analyse) QDG in `out` and return what it found.

    Holds `out`'s `RunLock` throughout. Every input is checked before anything is written in `out`, and a
    refused run leaves `out` as it found it.

    Parameters
    ----------
    config : QDGConfig
        Validated on construction: every setting is checked before the model loads or the scan starts.
    out : folder
        Holds every stage's state and outputs (see module docstring).

    Raises
    ------
    ParameterError
        `out` holds gradients of another capture identity or another corpus's content, an analysis setting
        does not fit the data, or the corpus is unreadable or empty.
    ValueError
        Too few tokens pass the loss threshold in the corpus.
    DamagedFileError
        A bookkeeping file or captured rows of `out` are damaged (the message names the file and the fix).
    FolderBusyError
        Another process is writing `out`.
    OSError
        The disk is full (the message says how much space the store needs); a rerun resumes.
    """
    from .analysis import analyse

    out = Path(out)
    config.validate()
    _check_corpus(config)
    with RunLock(out) as lock:
        _check_layout(out)
        notes = _check_identity(out, config)
        if notes:
            _write_identity(out, config)  # a pre-digest identity.json, upgraded
        t0 = time.perf_counter()
        info = capture_stage(config, out)
        info["notes"] = [*([lock.note] if lock.note else []), *notes, *info["notes"]]
        atomic_write_json(out / "config.json", config.to_dict())
        if config.family:
            from .family import family_stage

            info.update(family_stage(config, out))
        return analyse(out, config, extra={**info, "wall_seconds_this_run": round(time.perf_counter() - t0, 1)})
