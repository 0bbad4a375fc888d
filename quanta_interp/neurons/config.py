"""The neurons subpackage's configs (`NeuronConfig`, `ScanConfig`, `LinkConfig`, `PagesConfig`), each checked once,
and the hook a layer's neurons are read at (`resolve_hook`)."""

from __future__ import annotations

import argparse
import difflib
from dataclasses import dataclass, field

from ..config import SPLITS, Config, ParameterError, check_choice, check_positive_int, parse_int_list

__all__ = ["NeuronConfig", "ScanConfig", "LinkConfig", "PagesConfig", "check_ablate", "resolve_hook", "DEFAULT_HOOK",
           "INTERVALS", "SPLITS"]

DEFAULT_HOOK = "blocks.{layer}.mlp.hook_post"


def resolve_hook(model, layer: int, hook: str | None = None) -> str:
    """The hook name for `layer` (default the MLP hidden activations); one-line errors name the valid choices.

    Parameters
    ----------
    model
        A bridge (TransformerBridge).
    hook : str or None
        A hook name or template with `{layer}`; default `DEFAULT_HOOK`, "blocks.{layer}.mlp.hook_post".

    Raises
    ------
    ValueError
        `layer` outside 0..n_layers−1, or a name that is not a hook of the model (close matches listed).
    """
    n_layers = int(model.cfg.n_layers)
    if not 0 <= int(layer) < n_layers:
        raise ValueError(f"layer {layer} is out of range: this model has layers 0..{n_layers - 1}")
    name = (hook or DEFAULT_HOOK).format(layer=int(layer))
    names = list(model.hook_dict)
    if name not in model.hook_dict:
        close = difflib.get_close_matches(name, names, n=4, cutoff=0.5)
        raise ValueError(f"hook {name!r} is not a hook of this model; close matches: {', '.join(close) or 'none'}")
    return name


INTERVALS = ("quantile", "equal-width")

# The rules of `LayerInspector`'s parameters, written once: the inspector runs them and `NeuronConfig` delegates
# the fields it shares to them, so both name the same parameter in the same words.
INSPECTOR_CHECKS = {"top_k": check_positive_int, "n_bins": check_positive_int, "intervals": check_choice(INTERVALS),
                    "n_intervals": check_positive_int, "batch_size": check_positive_int}


@dataclass(frozen=True)
class NeuronConfig(Config):
    """One layer's neurons seen on a seeded corpus sample: statistics, top examples, interval examples and
    direct logit effects, optionally linked to the clusters of a `quanta discover` run of the same model."""

    model: str = "smollm2"
    """Model spec for lm.load."""
    layer: int | None = None
    """Layer index (required)."""
    hook: str | None = None
    """Hook template with {layer} (default: blocks.{layer}.mlp.hook_post)."""
    corpus: str = "shakespeare"
    """Corpus source for load_corpus."""
    split: str = "all"
    """Documents sampled: train, val or all."""
    windows: int = 64
    """Windows sampled."""
    context: int = 64
    """Tokens per window (capped at the model's n_ctx)."""
    top_k: int = 20
    """Top-activating examples per neuron."""
    intervals: str = "quantile"
    """Activation-interval bins: quantile (equal counts) or equal-width."""
    batch_size: int = 8
    """Windows per forward pass."""
    discover: str | None = None
    """A `quanta discover` folder of the same model: link neurons to its clusters."""
    seed: int = 0
    """Seeds the corpus sample."""

    def _checks(self):
        def layer(name, v):
            if v is None:
                raise ParameterError(name, "is required: the index of the layer to inspect")
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ParameterError(name, f"must be an integer ≥ 0, got {v!r}")

        def context(name, v):
            check_positive_int(name, v)
            if v < 2:
                raise ParameterError(name, f"must be ≥ 2 tokens, got {v}")

        shared = INSPECTOR_CHECKS
        return [("layer", layer), ("split", check_choice(SPLITS)), ("windows", check_positive_int), ("context", context),
                ("top_k", shared["top_k"]), ("intervals", shared["intervals"]), ("batch_size", shared["batch_size"])]


def _required(what: str):
    def check(name, v):
        if v is None:
            raise ParameterError(name, f"is required: {what}")
    return check


def _layer(name, v):
    if v is None:
        raise ParameterError(name, "is required: the index of the layer whose neurons are ranked")
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ParameterError(name, f"must be an integer ≥ 0, got {v!r}")


@dataclass(frozen=True)
class LinkConfig(Config):
    """A layer's neurons ranked for the largest quanta of a `quanta discover` run by attribution, tested by
    mean-ablation against random neurons, the z-score ranking and other quanta's tokens."""

    discover: str | None = None
    """A `quanta discover --out` folder (required)."""
    layer: int | None = None
    """Layer whose neurons are ranked (required)."""
    hook: str | None = None
    """Hook template with {layer} (default: blocks.{layer}.mlp.hook_post)."""
    scan: str | None = None
    """A `quanta neurons scan` folder of the same model and layer: its means are the ablation values."""
    quanta: int = 4
    """Quanta whose neurons are ranked, largest first."""
    ablate: int | None = None
    """Of those, how many (largest first) are tested by ablation (default: all)."""
    top_n: int = 20
    """Neurons ablated per set."""
    draws: int = 5
    """Random sets of top_n neurons."""
    max_members: int = 48
    """Members sampled per quantum."""
    n_other: int = 48
    """Tokens of the smaller quanta sampled as 'other tokens'."""
    batch_size: int = 16
    """Windows per forward pass."""
    seed: int = 0
    """Seeds the samples and the random draws."""

    def _checks(self):
        positive = check_positive_int
        return [("discover", _required("a `quanta discover --out` folder")), ("layer", _layer), ("quanta", positive),
                ("ablate", lambda name, v: check_ablate(v, self.quanta, name)), ("top_n", positive),
                ("draws", positive), ("max_members", positive), ("n_other", positive), ("batch_size", positive)]


def check_ablate(ablate: int | None, quanta: int, name: str = "ablate") -> int:
    """`ablate` (None: all `quanta`) as the number of quanta tested by ablation.

    Raises
    ------
    ParameterError
        Outside 0..quanta.
    """
    if ablate is None:
        return quanta
    if not 0 <= ablate <= quanta:
        raise ParameterError(name, f"must be between 0 and quanta ({quanta}), got {ablate}")
    return int(ablate)


@dataclass(frozen=True)
class PagesConfig(Config):
    """Neuron pages and a layer index from a `quanta neurons scan` folder, optionally linked to quanta."""

    scan: str | None = None
    """A `quanta neurons scan` folder (required)."""
    layer: int | None = None
    """Scanned layer to show (default: the first scanned)."""
    neurons: str | None = None
    """Pages for these neurons, e.g. 0-99 or 3,17 (default: the linked quanta's top neurons, else the 20 largest)."""
    links: str | None = None
    """A JSON written by `quanta neurons link`: pages list the quanta each neuron serves."""
    batch_size: int = 16
    """Windows per forward pass."""

    def _checks(self):
        def layer(name, v):
            if v is not None:
                _layer(name, v)

        def neurons(name, v):
            if v is None:
                return
            try:
                values = parse_int_list(v)
            except argparse.ArgumentTypeError:
                values = ()
            if not values or min(values) < 0:
                raise ParameterError(name, f"must look like 0-99 or 3,17,42, got {v!r}")

        return [("scan", _required("a `quanta neurons scan` folder")), ("layer", layer), ("neurons", neurons),
                ("batch_size", check_positive_int)]


@dataclass(frozen=True)
class ScanConfig(Config):
    """One streaming pass of a model over a corpus, recording every neuron of the chosen layers' hook."""

    model: str = "smollm2"
    """Model spec for lm.load."""
    layers: tuple[int, ...] = field(default=(10,), metadata={"parse": parse_int_list, "metavar": "LIST"})
    """Layers to scan, e.g. 10 or 0-29."""
    hook: str | None = None
    """Hook template with {layer} (default: blocks.{layer}.mlp.hook_post)."""
    corpus: str = "shakespeare"
    """Corpus source for load_corpus."""
    split: str = "all"
    """Documents scanned: train, val or all."""
    tokens: int = 1_000_000
    """Tokens to scan (whole windows; fewer if the corpus is shorter)."""
    context: int = 128
    """Tokens per window (capped at the model's n_ctx)."""
    batch_size: int = 16
    """Windows per forward pass."""
    top_k: int = 20
    """Max-activating windows kept per neuron."""
    intervals: int = 5
    """Activation-quantile bins of the examples."""
    per_interval: int = 4
    """Random examples kept per fine bin and shown per quantile bin."""
    bins_per_decade: int = 8
    """Histogram bins per decade of |activation|."""
    checkpoint_every: int = 25
    """Batches between checkpoints of the state."""
    seed: int = 0
    """Seeds the examples' random keys."""

    def _checks(self):
        def layers(name, v):
            if not v or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in v):
                raise ParameterError(name, f"must list layer indices ≥ 0, e.g. 10 or 0-29, got {v!r}")

        def context(name, v):
            check_positive_int(name, v, low=2)

        positive = check_positive_int
        return [("layers", layers), ("split", check_choice(SPLITS)), ("tokens", positive), ("context", context),
                ("batch_size", positive), ("top_k", positive), ("intervals", positive), ("per_interval", positive),
                ("bins_per_decade", positive), ("checkpoint_every", positive)]
