"""`TrainConfig`: one fresh language model trained by `lm.train`, every setting documented and checked once."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Config, ParameterError, check_choice, check_finite, check_positive_int

__all__ = ["TrainConfig", "ACT_FNS", "SCHEDULES", "UNCONVERGED"]

# The activations a native TransformerLens MLP accepts (transformer_lens.model_bridge.sources.native.model),
# listed here so a bad --act-fn is refused before anything is written (a test keeps the two in step).
ACT_FNS = ("gelu", "gelu_new", "relu", "silu", "swish", "solu", "solu_ln")
SCHEDULES = ("cosine", "constant")
# What `quanta lm scaling` does with family members their convergence rule did not stop (lm.scaling.converged_members).
UNCONVERGED = ("refuse", "drop", "keep")
# Fields added to TrainConfig after run folders were written, with their defaults (see TrainConfig.to_dict).
LATER_FIELDS = {"schedule": "cosine", "converge_tol": None, "keep_checkpoints": False}


@dataclass(frozen=True)
class TrainConfig(Config):
    """A native TransformerLens model (`TransformerBridge.boot_native`) and how it is trained: AdamW with
    linear warm-up and cosine decay, gradient clipping, held-out evaluation, resumable checkpoints."""

    d_vocab: int | None = field(default=None, metadata={"parse": int})
    """Vocabulary size: the tokenizer's vocab_size (required)."""
    n_layers: int = 2
    """Transformer blocks."""
    d_model: int = 64
    """Residual stream width."""
    n_heads: int = 4
    """Attention heads (d_model must be divisible by it)."""
    d_mlp: int | None = field(default=None, metadata={"parse": int})
    """MLP hidden width (default: 4 · d_model)."""
    n_ctx: int = 128
    """Context length in tokens: training windows and the model's maximum."""
    act_fn: str = "gelu"
    """MLP activation: gelu, gelu_new, relu, silu, swish, solu or solu_ln (TransformerLens's names)."""
    steps: int = 1000
    """Optimiser steps."""
    batch_size: int = 32
    """Windows of n_ctx tokens per step."""
    lr: float = 3e-3
    """Peak AdamW learning rate."""
    warmup: int = 50
    """Steps of linear warm-up before the cosine decay."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    eval_every: int = 200
    """Steps between held-out evaluations."""
    eval_batches: int = 8
    """Held-out batches per evaluation (the same windows each time)."""
    seed: int = 0
    """Seeds the initial weights and the batches (a resumed run equals an unkilled one)."""
    device: str = "cpu"
    """torch device to train on."""
    checkpoint_every: int = 200
    """Steps between checkpoints (model + optimiser) that a rerun resumes from."""
    schedule: str = "cosine"
    """Learning rate after the warm-up: cosine (decays to 0 at `steps`) or constant (a run is then the prefix
    of any longer one, so `steps` is only a ceiling)."""
    converge_tol: float | None = field(default=None, metadata={"parse": float})
    """Stop once the held-out loss fell by less than this fraction over the last doubling of steps (checked
    at evaluations s ≥ 4·eval_every against s/2; `steps` is then the ceiling); default: train all `steps`."""
    keep_checkpoints: bool = False
    """Keep the weights of every evaluation as checkpoints/step-NNNNNNN.safetensors (follow a model over its
    training, e.g. `quanta discover --family-steps`)."""

    def to_dict(self) -> dict:
        """As `Config.to_dict`, leaving out the fields added after runs were written (`LATER_FIELDS`) while
        they hold their defaults, so those runs' config.json and sweep hashes stay the same."""
        d = super().to_dict()
        for name, default in LATER_FIELDS.items():
            if d[name] == default:
                del d[name]
        return d

    def __post_init__(self) -> None:
        if self.d_mlp is None and isinstance(self.d_model, int):
            object.__setattr__(self, "d_mlp", 4 * self.d_model)
        super().__post_init__()

    def _checks(self):
        def tol(name, v):
            if v is not None:
                check_finite(name, v, low=0.0, high=0.5, low_open=True)

        def flag(name, v):
            if not isinstance(v, bool):
                raise ParameterError(name, f"must be true or false, got {v!r}")

        def positive(name, v):
            check_positive_int(name, v)

        def vocab(name, v):
            if v is None:
                raise ParameterError(name, "is required (the tokenizer's vocab_size)")
            check_positive_int(name, v)

        def heads(name, v):
            check_positive_int(name, v)
            if isinstance(self.d_model, int) and self.d_model % v:
                raise ParameterError("d_model", f"({self.d_model}) must be divisible by n_heads ({v})")

        ints = ("n_layers", "d_model", "d_mlp", "n_ctx", "steps", "batch_size", "eval_every", "eval_batches",
                "checkpoint_every")
        return [("d_vocab", vocab), *[(k, positive) for k in ints], ("n_heads", heads), ("act_fn", check_choice(ACT_FNS)),
                ("lr", lambda n, v: check_finite(n, v, low=0.0, low_open=True)),
                ("warmup", lambda n, v: check_finite(n, v, low=0)),
                ("weight_decay", lambda n, v: check_finite(n, v, low=0.0)),
                ("grad_clip", lambda n, v: check_finite(n, v, low=0.0, low_open=True)),
                ("schedule", check_choice(SCHEDULES)), ("converge_tol", tol), ("keep_checkpoints", flag)]
