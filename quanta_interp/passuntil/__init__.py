"""PassUntil (Hu et al., ICLR 2024): sample until pass, estimate tiny pass rates with honest error bars,
fit the task scaling law PU(N) = exp(−c·N^−α), predict larger models, classify emergence."""

from .estimators import PassRates, estimate_pass_rate, pass_at_k, pass_at_k_from_rate, task_pass_rate
from .sampler import Instance, PassUntil, bridge_sampler, exact_match, exact_probability, load_instances
from .scaling import TaskScalingFit, classify_emergence, fit_emergence_models, fit_task_scaling
from .tasks import addition_split, addition_text, builtin_instances

__all__ = [
    "PassRates", "estimate_pass_rate", "task_pass_rate", "pass_at_k", "pass_at_k_from_rate",
    "Instance", "PassUntil", "bridge_sampler", "exact_match", "exact_probability", "load_instances",
    "TaskScalingFit", "fit_task_scaling", "classify_emergence", "fit_emergence_models",
    "addition_split", "addition_text", "builtin_instances",
]
