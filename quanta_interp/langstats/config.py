"""Configs of the language-statistics pipelines (Cagnetta et al. 2026): corpus statistics (β, γ), the
data-limited sweep that measures α_D, and the Random Hierarchy Model check."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..config import (
    SPLITS,
    Config,
    ParameterError,
    check_choice,
    check_finite,
    check_positive_int,
    check_tokenizer,
    parse_int_list,
)

__all__ = ["StatsConfig", "MeasureConfig", "BudgetRunConfig", "RHMConfig", "DEFAULT_MODEL", "SPLITS"]

DEFAULT_MODEL = {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_mlp": 256, "n_ctx": 64, "batch_size": 32,
                 "lr": 3e-3, "warmup": 50, "eval_every": 50}


def _positive_list(name, v):
    if v is not None and (not v or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in v)):
        raise ParameterError(name, f"must be positive integers, got {v!r}")


@dataclass(frozen=True)
class StatsConfig(Config):
    """Correlation decay ‖C(n)‖ ∝ n^−β and conditional-entropy decay H_n − H_∞ ∝ n^−γ of a tokenized corpus."""

    corpus: str = "shakespeare"
    """'shakespeare', a text file or folder, or hf:NAME."""
    tokenizer: str | None = None
    """'char' or 'bpe-N' (default: char; with model, the model's own tokenizer, the only one it reads)."""
    split: str | None = None
    """Documents used: train, val or all (default: train; the LM of model reads val, its held-out documents)."""
    max_lag: int = 1000
    """Largest lag n of the default log-spaced lags."""
    n_lags: int = 20
    """Number of log-spaced lags from 1 to max_lag."""
    lags: tuple[int, ...] | None = field(default=None, metadata={"parse": parse_int_list, "metavar": "A,B,…"})
    """Explicit lags, e.g. 1,2,4,8 (override max_lag and n_lags)."""
    max_pairs: int | None = field(default=None, metadata={"parse": int})
    """Sample this many token pairs per lag (default: all)."""
    floor_factor: float = 2.0
    """Fit only lags whose norm exceeds this × the sampling-noise floor ≈ const/√P."""
    n_max: int = 6
    """Largest n-gram context for H_n."""
    model: str | None = None
    """A trained LM (run folder or name) whose per-position validation loss gives H_n at long contexts."""
    n_ctx: int | None = field(default=None, metadata={"parse": int})
    """Context the LM is evaluated at, ≥ 6 (γ is fitted on H_2 … H_(n_ctx−1)) (default: the model's n_ctx)."""
    seed: int = 0
    """Seeds pair sampling and the bootstrap."""

    def _checks(self):
        def optional_positive(name, v):
            if v is not None:
                check_positive_int(name, v)

        def tokenizer(name, v):
            if v is not None and self.model is not None:
                raise ParameterError(name, "is not used with a model: the model reads the corpus only through its own "
                                           "tokenizer; leave tokenizer out")
            if v is not None:
                check_tokenizer(name, v)

        def n_ctx(name, v):
            optional_positive(name, v)
            if v is not None and v < 6:
                raise ParameterError(name, f"must be ≥ 6 (γ is fitted on H_2 … H_(n_ctx−1), ≥ 4 points), got {v}")

        def split(name, v):
            if v is not None:
                check_choice(SPLITS)(name, v)

        return [("tokenizer", tokenizer), ("split", split), ("max_lag", check_positive_int),
                ("n_lags", check_positive_int), ("lags", _positive_list),
                ("max_pairs", optional_positive), ("floor_factor", lambda n, v: check_finite(n, v, low=0.0)),
                ("n_max", check_positive_int), ("n_ctx", n_ctx)]

    def split_for(self, part: str) -> str:
        """The split a part reads: `split` when given, else "val" for the LM ("lm") and "train" otherwise."""
        return self.split or ("val" if part == "lm" else "train")


def _json_object(text: str) -> dict:
    import argparse

    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"is not valid JSON ({e.msg} at character {e.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object of model settings, got {text!r}")
    return value


@dataclass(frozen=True)
class MeasureConfig(Config):
    """The data-limited sweep: LMs trained on P tokens for P over decades; L(P) − H_∞ ∝ P^−α_D is fitted."""

    corpus: str = "shakespeare"
    """'shakespeare', a text file or folder, or hf:NAME."""
    tokenizer: str = "char"
    """'char' or 'bpe-N'."""
    budgets: tuple[int, ...] = field(default=(16_000, 64_000, 256_000, 1_024_000),
                                     metadata={"parse": parse_int_list, "metavar": "P1,P2,…"})
    """Training-token budgets P (≥ 4 distinct, spanning ≥ 1.5 decades: the fit has an offset)."""
    model_config: dict = field(default_factory=dict, metadata={"parse": _json_object, "metavar": "JSON"})
    """JSON overrides of the model and training settings (an `lm.TrainConfig` subset) over DEFAULT_MODEL."""
    n_val_tokens: int = 200_000
    """Validation tokens (held-out documents)."""
    epochs: float = 30.0
    """Steps grow with P as ≈ epochs passes over the data, so every run can overfit."""
    min_steps: int = 200
    """Fewest steps of a run."""
    max_steps: int = 3000
    """Most steps of a run."""
    h_inf: float | None = field(default=None, metadata={"parse": float})
    """H_∞ from the entropy fit, for a second α_D fit with the offset fixed."""
    n_boot: int = 1000
    """Bootstrap resamples of the α_D fits."""
    seed: int = 0
    """Seeds every model and the bootstrap."""

    def _checks(self):
        def budgets(name, v):
            _positive_list(name, v)
            if len(set(v)) < 4 or max(v) / min(v) < 10 ** 1.5:
                raise ParameterError(name, f"must be ≥ 4 distinct values (the fit has an offset) spanning ≥ 1.5 "
                                           f"decades, got {list(v)}")

        def model(name, v):
            from ..lm.config import TrainConfig

            try:
                TrainConfig.from_dict({**self.train_settings(), "d_vocab": 1})
            except ParameterError as e:
                raise ParameterError(name, f"{e.detail if e.param == 'config' else f'sets {e.param}, which {e.detail}'}"
                                     ) from None

        def steps(name, v):
            check_positive_int(name, v)
            if name == "max_steps" and v < self.min_steps:
                raise ParameterError(name, f"must be ≥ min_steps ({self.min_steps}), got {v}")

        return [("tokenizer", check_tokenizer), ("budgets", budgets), ("model_config", model),
                ("n_val_tokens", check_positive_int),
                ("epochs", lambda n, v: check_finite(n, v, low=0.0, low_open=True)), ("min_steps", steps),
                ("max_steps", steps), ("n_boot", check_positive_int)]

    def train_settings(self) -> dict[str, Any]:
        """DEFAULT_MODEL with `model_config` applied (the per-run steps are added by the sweep).

        A mapping of `lm.TrainConfig` field → value, not a result: it is keyword arguments, incomplete until
        each run adds `steps`, `d_vocab` and `seed`, and it is stored as JSON in every budget's config
        (`BudgetRunConfig.model`), whose hash names the run folder a resumed sweep finds.
        """
        return {**DEFAULT_MODEL, **self.model_config}


@dataclass(frozen=True)
class BudgetRunConfig(Config):
    """One budget of the data-limited sweep, as `measure.sweep_configs` writes it and the worker rebuilds it
    (`BudgetRunConfig.from_dict(config)`); `MeasureConfig` checked every value already."""

    P: int
    """Training tokens."""
    source: str
    """The corpus."""
    tokenizer: str
    """'char' or 'bpe-N'."""
    seed: int
    """Seeds the corpus split and the model."""
    n_val_tokens: int
    """Validation tokens."""
    model: dict
    """`lm.TrainConfig` settings, `steps` included (without d_vocab and seed, which the run adds)."""


@dataclass(frozen=True)
class RHMConfig(Config):
    """A Random Hierarchy Model grammar (Cagnetta et al. 2024) whose β = ln m / ln s is known."""

    v: int = 8
    """Vocabulary size at every level."""
    m: int = 3
    """Synonymous production rules per symbol."""
    s: int = 3
    """Branching factor of each rule."""
    L: int = 4
    """Depth of the hierarchy (sequences have s^L tokens)."""
    samples: int = 100_000
    """Sequences sampled (≥ 16: one pair per sequence and lag, and the noise floor is fitted on 1/16 of them)."""
    floor_factor: float = 2.0
    """Fit only lags whose norm exceeds this × the sampling-noise floor."""
    seed: int = 0
    """Seeds the grammar and the samples."""

    def _checks(self):
        def samples(name, v):  # one pair per sequence and lag; the noise floor is fitted on 1/16, 1/4 and all
            check_positive_int(name, v, low=16)

        positive = check_positive_int
        return [(k, positive) for k in ("v", "m", "s", "L")] + [
            ("samples", samples), ("floor_factor", lambda n, v: check_finite(n, v, low=0.0))]
