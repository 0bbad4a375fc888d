"""PassUntil (Hu et al., ICLR 2024): sample until pass, estimate tiny pass rates with honest error bars,
fit the task scaling law PU(N) = exp(−c·N^−α), predict larger models, classify emergence."""

from .._exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "config": ["PassUntilConfig"],
    "estimators": ["PassRates", "TaskPassRate", "estimate_pass_rate", "task_pass_rate", "pass_at_k", "pass_at_k_from_rate"],
    "sampler": ["Instance", "InstanceRecord", "PassUntil", "bridge_sampler", "exact_match", "exact_probability", "load_instances"],
    "scaling": ["TaskScalingFit", "EmergenceTest", "EmergenceModels", "fit_task_scaling", "classify_emergence", "fit_emergence_models"],
    "tasks": ["addition_split", "addition_text", "builtin_instances"],
})
