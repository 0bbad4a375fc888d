"""Per-token next-token losses of any bridge model, with sliding windows so every token is scored once."""

from __future__ import annotations

import numpy as np

from ..io import progress as _progress

__all__ = ["token_losses", "next_token_losses", "as_documents", "windows", "model_corpus", "unseen_characters"]


def model_corpus(model, source: str, *, flag: str = "corpus", **kwargs):
    """`source` tokenized with `model`'s own tokenizer: the only ids a model may be fed.

    A corpus tokenized any other way (a fresh char vocabulary built from itself, another BPE) maps the
    same id to another token, and the model answers confidently about text it never saw.

    Parameters
    ----------
    model
        A `LoadedModel` or a bridge with a `.tokenizer` (see `lm.corpus_tokenizer`).
    source : str
        As for `corpora.load_corpus`.
    flag : str
        The parameter named in the error (the CLI shows it as its flag).
    **kwargs
        Passed to `load_corpus` (seed, edition, val_fraction, max_documents).

    Returns
    -------
    corpora.TokenizedCorpus

    Raises
    ------
    ParameterError
        The model reads characters (a char tokenizer) and `source` holds characters outside them.
    ValueError
        The model has no tokenizer, or `source` cannot be read (see `load_corpus`).
    """
    from ..corpora import load_corpus
    from .loading import corpus_tokenizer

    tokenizer = corpus_tokenizer(model)
    try:
        return load_corpus(source, tokenizer, **kwargs)
    except ValueError as e:
        raise unseen_characters(e, flag, repr(source), "pass a corpus written in the characters the model was "
                                                       "trained on") from None


def unseen_characters(error: ValueError, param: str, what: str, fix: str) -> ValueError:
    """The error to raise for `error` from a model's tokenizer: a char tokenizer's refusal of characters it
    never saw becomes `ParameterError(param, "{what} holds characters '…' (n in all) that the model's own
    vocabulary lacks: {fix}")`; any other error comes back unchanged."""
    from ..config import ParameterError

    text = str(error)
    if not text.startswith("characters "):  # corpora.Tokenizer's wording for unseen characters
        return error
    return ParameterError(param, f"{what} holds {text.split(' are not')[0]} that the model's own vocabulary lacks "
                                 f"(it never saw them): {fix}")


def next_token_losses(logits, targets):
    """Per-position next-token cross-entropy in nats, computed on flattened (B·T, V) logits.

    Flattened because, on the CPU, cross-entropy over a transposed (B, V, T) view is 4× slower at V = 49152.

    Parameters
    ----------
    logits : float tensor (B, T, V)
        Cast to float32.
    targets : int64 tensor (B, T)
        Token ids in [0, V).

    Returns
    -------
    float32 tensor (B, T)
        Loss in nats at each position, on the logits' device.
    """
    import torch

    flat = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                             reduction="none")
    return flat.reshape(targets.shape)


def as_documents(docs, d_vocab: int | None = None) -> list[np.ndarray]:
    """Normalise `docs` (a list of 1-D token arrays, a 2-D array of rows, or one 1-D array) and validate ids.

    Returns
    -------
    list of ndarray (doc_len,)
        One flattened array per document, dtype unchanged.

    Raises
    ------
    ValueError
        No documents or no tokens, a negative id, or an id ≥ `d_vocab` (when given).
    """
    if isinstance(docs, np.ndarray) and docs.ndim == 1:
        docs = [docs]
    out = [np.asarray(d).reshape(-1) for d in docs]
    if not out or sum(d.size for d in out) == 0:
        raise ValueError("docs: the corpus is empty (no documents or no tokens); pass at least one non-empty document")
    top = max(int(d.max()) for d in out if d.size)
    low = min(int(d.min()) for d in out if d.size)
    if low < 0 or (d_vocab is not None and top >= d_vocab):
        raise ValueError(f"docs: token ids span [{low}, {top}] but the model's vocabulary is [0, {d_vocab}); "
                         "tokenize the corpus with the model's tokenizer (lm.corpus_tokenizer(model))")
    return out


def windows(length: int, context: int, stride: int) -> list[tuple[int, int]]:
    """(start, first scored offset) of input windows tokens[start:start+context] over a document.

    Window k starts at k·stride and scores the targets start+1 … start+context not scored before,
    so target p is predicted from min(p, context) or at least context−stride+1 previous tokens.

    Parameters
    ----------
    length : int
        Tokens in the document.
    stride : int
        Must be in [1, context] (not checked here; `token_losses` checks it).

    Returns
    -------
    list of (int, int)
        (start, f) per window: its targets are tokens start+1 … and the new ones begin at target index
        f, i.e. token start+1+f. Empty when length ≤ 1.
    """
    out, scored = [], 0  # targets < scored+1 are done
    start = 0
    while scored < length - 1:
        first = scored + 1 - start  # offset (in targets) of the first new target
        out.append((start, first - 1))
        scored = min(start + context, length - 1)
        start += stride
    return out


def token_losses(model, docs, *, context: int = 128, batch_size: int = 16, progress: bool = True,
                 stride: int | None = None) -> np.ndarray:
    """Loss (nats) of predicting token p of doc d from at most `context` previous tokens, shape (n_docs, max_len).

    Entry [d, 0] and padding are NaN. Windows advance by `stride` (default context//2) and score only
    their new targets, so each position is scored once with at least context−stride+1 tokens of context.

    Parameters
    ----------
    model
        A bridge (TransformerBridge) in eval mode; the inputs go to the device of its first parameter.
    docs
        Token ids: a list of 1-D arrays, a 2-D array of rows or one 1-D array (see `as_documents`).
    batch_size : int
        Windows per forward pass.
    progress : bool
        Show a progress bar.

    Returns
    -------
    float32 ndarray (n_docs, max_len)
        Loss in nats of each token given its context; NaN at position 0 and past a document's end.

    Raises
    ------
    ValueError
        `context` outside [1, n_ctx], `stride` outside [1, context], `batch_size` < 1, an empty corpus, or
        token ids outside the model's vocabulary.
    """
    import torch

    n_ctx = int(model.cfg.n_ctx)
    if not 1 <= context <= n_ctx:
        raise ValueError(f"context must be in [1, {n_ctx}] (the model's n_ctx), got {context}")
    stride = max(context // 2, 1) if stride is None else stride
    if not 1 <= stride <= context:
        raise ValueError(f"stride must be in [1, context={context}], got {stride}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    docs = as_documents(docs, int(model.cfg.d_vocab))
    out = np.full((len(docs), max(d.size for d in docs)), np.nan, dtype=np.float32)
    jobs = [(d, s, f) for d, doc in enumerate(docs) for s, f in windows(doc.size, context, stride)]
    device = next(model.parameters()).device
    bar = _progress(total=len(jobs), desc="token losses", unit="win", disable=not progress)
    with torch.inference_mode():
        for b in range(0, len(jobs), batch_size):
            chunk = jobs[b: b + batch_size]
            width = max(min(context, docs[d].size - s) for d, s, _ in chunk)
            batch = np.zeros((len(chunk), width + 1), dtype=np.int64)  # right padding: causal, never attended
            for i, (d, s, _) in enumerate(chunk):
                piece = docs[d][s: s + width + 1]
                batch[i, : piece.size] = piece
            tokens = torch.from_numpy(batch).to(device)
            logits = model(tokens[:, :-1], return_type="logits").float()
            nll = next_token_losses(logits, tokens[:, 1:]).cpu().numpy()
            for i, (d, s, f) in enumerate(chunk):
                n = min(context, docs[d].size - 1 - s)
                out[d, s + 1 + f: s + 1 + n] = nll[i, f:n]
            bar.update(len(chunk))
    bar.close()
    return out
