"""Which weight matrices a capture covers: every non-embedding, non-unembedding `nn.Linear` of a model,
narrowed by a preset or a regular expression over readable names (`blocks.3.mlp.up_proj`)."""

from __future__ import annotations

import re

import torch

from ..config import ParameterError

__all__ = ["PRESETS", "linear_modules", "select_modules", "compile_params", "is_unembedding", "clean_name"]

PRESETS = {"all": r".", "mlp": r"(^|\.)mlp\.", "attn": r"attn"}
_UNEMBED = re.compile(r"^(unembed|lm_head)\b|\.lm_head$")


def clean_name(name: str) -> str:
    """A bridge module name without the wrapper levels: `blocks.3.mlp.up_proj`."""
    return name.replace("._original_component", "")


def is_unembedding(name: str) -> bool:
    """True for the unembedding (`unembed`, `lm_head`), which QDG leaves out like the paper."""
    return bool(_UNEMBED.search(clean_name(name)))


def linear_modules(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """Every `nn.Linear` but the unembedding, keyed by its readable name, in module order.

    Embeddings are `nn.Embedding`, so they are never included (the paper's "non-embedding" parameters);
    layer norms are not linear layers either.
    """
    return {clean_name(n): m for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and not is_unembedding(n)}


def _pattern(params: str) -> str:
    """A preset ("all", "mlp", "attn", "layers 3-5") or a regular expression, as a regex."""
    if params in PRESETS:
        return PRESETS[params]
    m = re.fullmatch(r"layers?\s*(\d+)(?:\s*-\s*(\d+))?", params.strip())
    if m:
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        return r"^blocks\.(" + "|".join(str(i) for i in range(lo, hi + 1)) + r")\."
    return params


def compile_params(params: str) -> re.Pattern:
    """`params` as a compiled regex; `ParameterError('params', …)` when it is neither preset nor regex.

    Parameters
    ----------
    params : str
        "all", "mlp" (names with an `mlp.` segment), "attn" (names containing `attn`), "layer N" or
        "layers A-B" (blocks A to B inclusive), or any regular expression.

    Returns
    -------
    re.Pattern
        To be `search`ed (not matched) in the readable module names.

    Raises
    ------
    ParameterError
        `params` is not a preset and not a valid regular expression.
    """
    try:
        return re.compile(_pattern(params))
    except re.error as e:
        raise ParameterError("params", f"{params!r} is neither a preset ({', '.join(PRESETS)}, 'layers A-B') "
                                       f"nor a valid regular expression ({e})") from e


def select_modules(model: torch.nn.Module, params: str = "all") -> dict[str, torch.nn.Linear]:
    """The weight matrices named by `params` (a preset, 'layers A-B' or a regex searched in each name).

    Parameters
    ----------
    params : str
        As in `compile_params`; the default "all" is every linear layer of `linear_modules`, the paper's
        QDG parameters (no embedding, unembedding or layer norm).

    Returns
    -------
    dict name → nn.Linear
        Readable names (`blocks.3.mlp.up_proj`), in module order: the order of the exact gradient's blocks.

    Raises
    ------
    ParameterError
        `params` is not a valid regex, or it matches no weight matrix of `model`.
    """
    rx = compile_params(params)
    chosen = {n: m for n, m in linear_modules(model).items() if rx.search(n)}
    if not chosen:
        raise ParameterError("params", f"{params!r} matches no weight matrix; accepted: {', '.join(PRESETS)}, "
                                       f"'layers A-B' or a regex over names like {next(iter(linear_modules(model)), '?')}")
    return chosen
