"""`PassUntilConfig`: one PassUntil evaluation of a model on a task (Hu et al. 2024), checked once."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Config, ParameterError, check_finite, check_positive_int

__all__ = ["PassUntilConfig"]


@dataclass(frozen=True)
class PassUntilConfig(Config):
    """Sample each instance until r passes (or k_max samples); PU = r/K per instance, the task PU their mean."""

    model: str | None = None
    """lm.load spec: a run folder of `quanta lm train`, 'smollm2', an HF name or folder (required)."""
    instances: str | None = None
    """JSONL file of {"prompt": ..., "answer": ...} (or give task)."""
    task: str | None = None
    """A built-in task with held-out instances: addition (or give instances)."""
    n_instances: int = 100
    """Instances of the built-in task."""
    digits: int = 2
    """Operand digits of the built-in addition task."""
    r: int = 2
    """Passes to wait for per instance (r ≥ 2 allows the unbiased (r−1)/(K−1) estimate)."""
    k_max: int = 100_000
    """Samples per instance at most; a capped instance's estimate is passes/samples."""
    batch_size: int = 1024
    """Samples drawn per forward pass (batches double from 32 up to this)."""
    temperature: float = 1.0
    """Sampling temperature (> 0: PassUntil needs sampling)."""
    top_k: int | None = field(default=None, metadata={"parse": int})
    """Sample among the top k tokens only (default: the whole vocabulary)."""
    seed: int = 0
    """Seeds the built-in instances and every sample."""

    def _checks(self):
        def model(name, v):
            if not v:
                raise ParameterError(name, "is required: a run folder of `quanta lm train`, 'smollm2' or an HF name")

        def source(name, v):
            if (self.instances is None) == (self.task is None):
                raise ParameterError("instances", "or task: give exactly one of them")
            if self.task is not None and self.task != "addition":
                raise ParameterError("task", f"must be 'addition', got {self.task!r}")

        def r(name, v):
            check_positive_int(name, v)

        def k_max(name, v):
            check_positive_int(name, v)
            if v < self.r:
                raise ParameterError(name, f"must be ≥ r ({self.r}), got {v}")

        def top_k(name, v):
            if v is not None:
                check_positive_int(name, v)

        positive = check_positive_int
        return [("model", model), ("instances", source), ("n_instances", positive), ("digits", positive),
                ("r", r), ("k_max", k_max), ("batch_size", positive),
                ("temperature", lambda n, v: check_finite(n, v, low=0.0, low_open=True)), ("top_k", top_k)]
