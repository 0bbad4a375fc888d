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

import dataclasses
import time
from pathlib import Path

import numpy as np

from ..config import ParameterError
from ..io import DamagedFileError, RunLock, atomic_write_json, read_json
from .config import QDGConfig
from .run import CaptureInfo, RunFolder

__all__ = ["discover", "capture_stage"]


_RESTORE = "restore it, or rerun into a new --out folder"


def _check_identity(run: RunFolder, config: QDGConfig) -> list[str]:
    """Refuse an `out` that holds gradients of another capture identity (reads only); returns notes.

    identity.json of a run made before corpora were known by content holds the corpus's path: the same path
    (as given, or resolved) is accepted with a note, and `discover` then records the corpus's digest.
    """
    path, out = run.identity, run.root
    if not path.exists():
        return []
    stored = read_json(path, expect=dict, fix=_RESTORE)
    mine, notes = config.capture.identity(), []
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
              for k in mine if k != "corpus_source" and stored.get(k) != mine[k]]
    if differ:
        raise ParameterError(differ[0].split(" ")[0], f"differs from the gradients stored in {out}: "
                             f"{'; '.join(differ)}. Use another out folder; analysis settings alone may change")
    return notes


def _same_path(old: str, new: str, out: Path) -> bool:
    a, b = Path(old).expanduser(), Path(new).expanduser().resolve()
    return old == new or a.resolve() == b or (not a.is_absolute() and (out.parent / a).resolve() == b)


def _write_identity(run: RunFolder, config: QDGConfig) -> None:
    """Record the capture identity (and the config) when the capture starts: the first write of a run."""
    atomic_write_json(run.identity, config.capture.identity())
    atomic_write_json(run.config, config.to_dict())


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


def capture_stage(config: QDGConfig, out: str | Path) -> CaptureInfo:
    """Scan and capture until `n_tokens` tokens pass the threshold on recheck (or the corpus runs out).

    Loads the model only when there is work left, and writes identity.json once the model and corpus are
    loaded and checked, just before the first scan. Rows left pending by a kill are captured, not counted as
    failed. At a context longer than a block (`context="doc"`, or one capped at the model's n_ctx) targets
    get the paper's context by `capture.doc.doc_windows` (the whole document before them up to the block
    length C, then ≥ C/2 tokens of it) and share one forward per window (`shared_windows`, then true in the
    summary). Documents too short for `min_context` hold no target; their count, when there are any, is kept
    with the model's info for the summary (`documents_shorter_than_min_context`).
    Returns notes, the model's info and timings for the summary.

    Raises
    ------
    ValueError
        The scan finds fewer than 2 tokens, or fewer than `n_clusters`, in the whole corpus (or in
        `scan_tokens`): the message says what to change.
    ParameterError
        With shared windows, `batch_tokens` is below the block length (one line naming that minimum),
        before anything is written.
    DamagedFileError
        A bookkeeping file of `out` is damaged (the message names it and the fix).
    """
    from ..capture import capture_gradients
    from ..capture.doc import doc_windows, window_groups
    from ..capture.store import recapture_damaged
    from .scan import Scan, block_length, scan_low_loss

    run = RunFolder(out)
    notes, timings, repaired = [], {}, []
    model = corpus = docs = None
    t_capture = t_scan = 0.0
    tokens_captured = 0
    n_bad = recapture_damaged(run.gradients) if config.recapture else 0
    if n_bad:
        repaired.append(f"recaptured {n_bad} damaged rows of the gradient store")
    while True:
        store = run.store()
        state = read_json(run.state, expect=dict, fix=_RESTORE) if run.state.exists() else {}
        passing = _passing(store, config.loss_threshold)
        n_have = 0 if store is None else len(store.targets)
        n_pending = 0 if store is None else int(store.pending.sum())
        dry = {"exhausted_at": n_have, "scan_tokens": config.scan_tokens}
        if not n_pending and (len(passing) >= config.n_tokens or state == dry):
            break
        if model is None:
            t0 = time.perf_counter()
            model, corpus, docs = _load(config)
            timings["load_seconds"] = round(time.perf_counter() - t0, 2)
            block, note = block_length(config.context, int(model.cfg.n_ctx))
            if note:
                notes.append(note)
            shared = config.context == "doc" or int(config.context) > block
            if shared:  # one forward per window of up to `block` tokens: batch_tokens must hold one
                window_groups(np.array([[0, 0, block]]), config.batch_tokens)
            if not run.identity.exists():
                _write_identity(run, config)  # the capture starts here: the run's first write
        n_fail = n_have - n_pending - len(passing)  # finished rows that did not pass; pending ones are still to do
        t0 = time.perf_counter()
        scan = scan_low_loss(model.bridge, docs, run.scan, n_needed=config.n_tokens + n_fail, block=block,
                             min_context=config.min_context, loss_threshold=config.loss_threshold,
                             exclude_induction=not config.keep_induction, seed=config.seed,
                             batch_tokens=config.batch_tokens, max_tokens=config.scan_tokens)
        t_scan += time.perf_counter() - t0
        rows = scan.candidates[: max(n_have, config.n_tokens + n_fail)]
        if shared:  # the paper's context: each target sees its document, ≥ block/2 tokens of it (doc_windows)
            rows = doc_windows(rows, block)
        if len(rows) <= n_have and not n_pending:  # nothing new to capture: the scan has run dry
            atomic_write_json(run.state, dry)
            break
        records = _targets_json(run, n_have, len(scan.candidates))[: len(rows)]
        atomic_write_json(run.targets, records + _records(corpus, rows[len(records):]))
        t0 = time.perf_counter()
        capture_gradients(model.bridge, docs, rows, run.gradients, params=config.params,
                          projection_dim=config.projection_dim, matrix_sketch_dim=config.matrix_sketch_dim,
                          batch_tokens=config.batch_tokens, seed=config.seed, shared_windows=shared)
        t_capture += time.perf_counter() - t0
        tokens_captured += len(rows) - n_have + n_pending
    store = run.store()
    passing = _passing(store, config.loss_threshold)
    _targets_json(run, 0 if store is None else len(store.targets), np.inf)  # what the analysis reads, checked
    scan = Scan.load(run.scan, 0)
    if len(passing) < max(2, config.n_clusters):
        where = (f"the first {scan.tokens_scored} scored tokens (scan_tokens)" if config.scan_tokens
                 and scan.tokens_scored >= config.scan_tokens else f"the whole corpus ({scan.tokens_scored} tokens scored)")
        raise ValueError(f"loss_threshold {config.loss_threshold} keeps {len(passing)} tokens in {where}, fewer "
                         f"than n_clusters ({config.n_clusters}); raise loss_threshold"
                         + (" or scan_tokens" if config.scan_tokens else "") + ", or lower n_clusters")
    if len(passing) < config.n_tokens:
        notes.append(f"only {len(passing)} of the {config.n_tokens} tokens asked for pass loss_threshold "
                     f"{config.loss_threshold} in the {scan.tokens_scored} tokens scanned; all are clustered")
    if model is not None:  # what only the loaded model knows, kept for reruns that do not load it
        short = sum(len(d) - 1 < config.min_context for d in docs)  # no token has min_context tokens before it
        atomic_write_json(run.model_info, {"model_note": model.note, "tokenizer": corpus.tokenizer.fingerprint(),
                                           "n_layers": int(model.cfg.n_layers), "block_length": block,
                                           **({"shared_windows": True} if shared else {}),
                                           **({"documents_shorter_than_min_context": short} if short else {}),
                                           "notes": list(notes)})
    model_info = read_json(run.model_info, expect=dict, fix=_RESTORE) if run.model_info.exists() else {}
    stored = model_info.pop("notes", [])
    notes = list(dict.fromkeys((stored if isinstance(stored, list) else []) + notes)) + repaired
    if t_scan:
        timings["scan_seconds"] = round(t_scan, 2)
    if t_capture:
        timings["capture_seconds"] = round(t_capture, 2)
        timings["capture_tokens_per_second"] = round(tokens_captured / t_capture, 2)
    return CaptureInfo(notes=tuple(notes), model_info=model_info, timings=timings)


def _passing(store, threshold: float) -> np.ndarray:
    return np.zeros(0, np.int64) if store is None else store.passing_rows(threshold)


def _targets_json(run: RunFolder, n_least: int, n_most: float) -> list:
    """targets.json, checked: a list of target records, at least the `n_least` captured, at most `n_most`."""
    path = run.targets
    if not path.exists():
        if n_least:
            raise DamagedFileError(path, f"missing, while {n_least} targets are captured", _RESTORE)
        return []
    records = read_json(path, expect=list, fix=_RESTORE)
    if not n_least <= len(records) <= n_most or not all(isinstance(r, dict) and "context" in r for r in records):
        raise DamagedFileError(path, f"lists {len(records)} target records where {n_least} are captured", _RESTORE)
    return records


def _load(config: QDGConfig):
    from .. import lm
    from ..capture.modules import select_modules
    from ..corpora import load_corpus

    model = lm.load(config.model, device=config.device)
    select_modules(model.bridge, config.params)  # params checked against this model before anything is written
    corpus = load_corpus(config.corpus, tokenizer=lm.corpus_tokenizer(model), seed=config.seed)
    return model, corpus, corpus.documents()


def discover(config: QDGConfig, out: str | Path):
    """Run (or resume, extend or re-analyse) QDG in `out` and return what it found (`analysis.QDGResult`).

    Holds `out`'s `RunLock` throughout. Every input is checked before anything is written in `out`, and a
    refused run leaves `out` as it found it.

    Parameters
    ----------
    config : QDGConfig
        Validated on construction: every setting is checked before the model loads or the scan starts.
    out : folder
        Holds every stage's state and outputs (`run.RunFolder`).

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

    run = RunFolder(out)
    config.validate()
    _check_corpus(config)
    with RunLock(run.root) as lock:
        run.check_layout()
        notes = _check_identity(run, config)
        if notes:
            _write_identity(run, config)  # a pre-digest identity.json, upgraded
        t0 = time.perf_counter()
        info = capture_stage(config, run.root)
        info = dataclasses.replace(info, notes=(*([lock.note] if lock.note else []), *notes, *info.notes))
        atomic_write_json(run.config, config.to_dict())
        if config.family:
            from .family import family_stage

            stage = family_stage(config, run.root)
            info = dataclasses.replace(info, timings={**info.timings, **stage.to_dict()})
        return analyse(run.root, config, info, seconds_before=time.perf_counter() - t0)
