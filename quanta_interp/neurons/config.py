"""`NeuronConfig`: which neurons of which model are inspected on which corpus sample, checked once."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import SPLITS, Config, ParameterError, check_choice, check_positive_int

__all__ = ["NeuronConfig", "INTERVALS", "SPLITS"]

INTERVALS = ("quantile", "equal-width")


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

        positive = check_positive_int
        return [("layer", layer), ("split", check_choice(SPLITS)), ("windows", positive), ("context", context),
                ("top_k", positive), ("intervals", check_choice(INTERVALS)), ("batch_size", positive)]
