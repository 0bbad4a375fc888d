"""Activations at the position that predicts each target, written to disk as they are produced."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..io import progress
from ..lm.hooks import check_hooks_fired
from .windows import window_batch

__all__ = ["capture_activations"]


def capture_activations(model, docs: Sequence[np.ndarray], targets: np.ndarray, hook_names: Sequence[str],
                        out: str | Path, *, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Activations of `hook_names` at the last window position of each (doc, start, pos) target, written to
    `out/<hook name>.npy` as they are produced, so n × d never has to fit in memory.

    The position read is the one that predicts the target token (`doc[pos - 1]`), the same forward that
    `capture_gradients` differentiates; windows are batched `batch_size` at a time, without gradients.

    Parameters
    ----------
    model : TransformerBridge
        Anything with `run_with_cache(tokens, names_filter=...)` (TransformerLens), on any device.
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
    arrays: dict[str, np.ndarray] = {}
    device = next(model.parameters()).device
    for start in progress(range(0, len(targets), batch_size), desc="activations"):
        windows, lengths, _ = window_batch(docs, targets[start: start + batch_size])
        with torch.no_grad():
            _, cache = model.run_with_cache(windows.to(device), names_filter=lambda n: n in hook_names)
        check_hooks_fired(model, hook_names, cache.keys())
        for name in hook_names:
            act = cache[name][torch.arange(len(lengths)), lengths.to(device) - 1].float().cpu().numpy()
            if name not in arrays:
                out.mkdir(parents=True, exist_ok=True)
                arrays[name] = np.lib.format.open_memmap(out / f"{name}.npy", "w+", np.float32,
                                                         (len(targets), *act.shape[1:]))
            arrays[name][start: start + len(act)] = act
    for arr in arrays.values():
        arr.flush()
    return arrays
