"""What to say when a TransformerLens hook exists but did not fire in a forward pass.

TransformerLens keeps some hooks off unless the model is told to run them (`hook_mlp_in` needs
`use_hook_mlp_in`, `attn.hook_result` needs `use_attn_result`, the split q/k/v inputs need
`use_split_qkv_input`, `hook_attn_in` needs `use_attn_in`): their names are in `model.hook_dict`, yet
a forward pass never calls them. Reporting such a hook as "not a hook of this model" sends users hunting.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["check_hooks_fired"]

_SWITCHES = (("hook_mlp_in", "set_use_hook_mlp_in(True)"), ("hook_result", "set_use_attn_result(True)"),
             ("hook_q_input", "set_use_split_qkv_input(True)"), ("hook_k_input", "set_use_split_qkv_input(True)"),
             ("hook_v_input", "set_use_split_qkv_input(True)"), ("hook_attn_in", "set_use_attn_in(True)"))


def check_hooks_fired(model, names: Iterable[str], fired: Iterable[str]) -> None:
    """Raise one ValueError for the first of `names` that did not fire, saying whether it exists at all.

    Raises
    ------
    ValueError
        A name that is no hook of `model` (close matches listed), or a hook that exists but stayed off
        (with the switch that turns it on, when known).
    """
    import difflib

    fired = set(fired)
    for name in names:
        if name in fired:
            continue
        hook_dict = getattr(model, "hook_dict", {})
        if name not in hook_dict:
            close = difflib.get_close_matches(name, list(hook_dict), n=4, cutoff=0.5)
            raise ValueError(f"hook {name!r} is not a hook of this model; close matches: {', '.join(close) or 'none'}")
        switch = next((fix for key, fix in _SWITCHES if name.endswith(key)), None)
        raise ValueError(f"hook {name!r} exists but did not fire in the forward pass: TransformerLens runs it only "
                         f"when enabled" + (f" (model.{switch})" if switch else "") + "; turn it on or pick another hook")
