"""The one activation recorder of the package: hooks read during a forward that stops after the last of them.

`activation_batches` yields one batch at a time (streaming scans), `record_activations` concatenates them
(samples that fit in memory) and `capture_activations` writes each target's activations to `.npy` files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..io import progress
from ..lm.hooks import check_hooks_fired
from .windows import window_batch

__all__ = ["activation_batches", "record_activations", "capture_activations"]


class _Stop(Exception):
    """Raised by the last capture hook so the forward pass ends there."""


def activation_batches(model, batches: Iterable[tuple[np.ndarray, np.ndarray | None]], hooks: Sequence[str], *,
                       neurons: np.ndarray | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Activations at `hooks` for each batch of windows: one forward per batch, stopped after the last hook.

    Nothing after the deepest hook is computed, so reading layer 10 of a 30-layer model costs about a third
    of a forward. No gradients are kept.

    Parameters
    ----------
    model
        A bridge (TransformerBridge, anything with `hooks(fwd_hooks=...)` and `cfg.d_vocab`); inputs go to
        the device of its first parameter.
    batches : iterable of (int ndarray (rows, pos), int ndarray (rows,) or None)
        Token ids, one window per row, and optionally the one position to keep per row.
    hooks : sequence of str
        Hook names (see `neurons.resolve_hook`).
    neurons : int ndarray (n_neurons,) or None
        Keep only these columns of the hooks' last dimension.

    Yields
    ------
    dict of str to float32 CPU tensor
        Per hook: (rows, pos, width), or (rows, width) when the batch gives positions; width = n_neurons
        with `neurons`.

    Raises
    ------
    ValueError
        An empty batch, a token id ≥ the model's d_vocab, or a hook that did not fire.
    """
    device = next(model.parameters()).device
    d_vocab = int(model.cfg.d_vocab)
    cols = None if neurons is None else torch.as_tensor(neurons, device=device)
    got: dict[str, torch.Tensor] = {}
    where: list = [None]

    def grab(name, act):
        a = act.detach()
        a = a if cols is None else a.index_select(-1, cols)
        if where[0] is not None:
            a = a[torch.arange(a.shape[0], device=a.device), where[0]]
        got[name] = a.float().cpu()
        if len(got) == len(hooks):
            raise _Stop

    # Key results by the registered name: bridge hook aliases report another `hook.name`.
    fwd = [(h, lambda act, hook, h=h: grab(h, act)) for h in hooks]
    absent = [h for h in hooks if h not in model.hook_dict]
    if absent:
        check_hooks_fired(model, hooks, [h for h in hooks if h not in absent])  # names the absent hook, close matches
    try:
        adding = model.hooks(fwd_hooks=fwd)
        adding.__enter__()
    except ValueError:  # a hook TransformerLens keeps off until a switch is set: say which switch
        check_hooks_fired(model, hooks, ())
        raise
    with torch.no_grad(), contextlib.ExitStack() as stack:
        stack.push(adding)
        for tokens, last in batches:
            tokens = np.asarray(tokens)
            if tokens.size == 0:
                raise ValueError("the corpus sample is empty: there are no tokens to run the model on")
            if int(tokens.max()) >= d_vocab:
                raise ValueError(f"token id {int(tokens.max())} ≥ the model's vocabulary ({d_vocab}): "
                                 "tokenize the corpus with the model's tokenizer (lm.corpus_tokenizer)")
            where[0] = None if last is None else torch.as_tensor(np.asarray(last), device=device)
            got.clear()
            try:
                model(torch.as_tensor(tokens, dtype=torch.long, device=device))
            except _Stop:
                pass
            check_hooks_fired(model, hooks, got)
            yield dict(got)


def record_activations(model, tokens: np.ndarray, hooks: Sequence[str], *, batch_size: int = 8,
                       neurons: np.ndarray | None = None, last: np.ndarray | None = None,
                       desc: str | None = None) -> dict[str, torch.Tensor]:
    """All of `activation_batches` over rows of `tokens`, `batch_size` rows at a time, concatenated.

    Parameters
    ----------
    tokens : int ndarray (rows, pos)
        Token ids, one window per row.
    last : int ndarray (rows,) or None
        Keep only position `last[row]` of each row.
    desc : str or None
        Progress bar label; None shows no bar.

    Returns
    -------
    dict of str to float32 CPU tensor
        Per hook: (rows, pos, width), or (rows, width) with `last`.

    Raises
    ------
    ValueError
        No tokens, a token id ≥ the model's d_vocab, or a hook that did not fire.
    """
    if tokens.size == 0:
        raise ValueError("the corpus sample is empty: there are no tokens to run the model on")
    steps = progress(range(0, len(tokens), batch_size), desc=desc, disable=desc is None)
    batches = ((tokens[i: i + batch_size], None if last is None else last[i: i + batch_size]) for i in steps)
    out: dict[str, list] = {h: [] for h in hooks}
    for got in activation_batches(model, batches, hooks, neurons=neurons):
        for h in hooks:
            out[h].append(got[h])
    return {h: torch.cat(v) for h, v in out.items()}


def capture_activations(model, docs: Sequence[np.ndarray], targets: np.ndarray, hook_names: Sequence[str],
                        out: str | Path, *, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Activations of `hook_names` at the last window position of each (doc, start, pos) target, written to
    `out/<hook name>.npy` as they are produced, so n × d never has to fit in memory.

    The position read is the one that predicts the target token (`doc[pos - 1]`), the same forward that
    `capture_gradients` differentiates; windows are batched `batch_size` at a time, without gradients.

    Parameters
    ----------
    model : TransformerBridge
        As `activation_batches` takes it, on any device.
    docs : sequence of int ndarray (T_d,)
        Token ids, one array per document.
    targets : int ndarray (n, 3)
        (doc, start, pos) rows: the window `docs[doc][start:pos]` predicts token `pos`.
    hook_names : sequence of str
        TransformerLens hook names, e.g. `blocks.3.mlp.hook_post`.
    out : str or Path
        Folder for the `.npy` files; created on first write.

    Returns
    -------
    dict hook name → float32 memmap (n, *d)
        d is the hook's shape without its batch and position axes (e.g. (d_mlp,)). Empty when there
        are no targets.

    Raises
    ------
    ValueError
        A name is not a hook of the model; a window is empty (start ≥ pos) or runs outside its document.
    """
    out = Path(out)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1, 3)
    steps = progress(range(0, len(targets), batch_size), desc="activations")

    def batches():
        for start in steps:
            windows, lengths, _ = window_batch(docs, targets[start: start + batch_size])
            yield windows.numpy(), lengths.numpy() - 1

    arrays: dict[str, np.ndarray] = {}
    start = 0
    for got in activation_batches(model, batches(), list(hook_names)):
        for name in hook_names:
            act = got[name].numpy()
            if name not in arrays:
                out.mkdir(parents=True, exist_ok=True)
                arrays[name] = np.lib.format.open_memmap(out / f"{name}.npy", "w+", np.float32,
                                                         (len(targets), *act.shape[1:]))
            arrays[name][start: start + len(act)] = act
        start += len(next(iter(got.values())))
    for arr in arrays.values():
        arr.flush()
    return arrays
