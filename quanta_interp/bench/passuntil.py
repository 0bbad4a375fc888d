"""`quanta bench passuntil`: sampler throughput vs a batched forward, and adaptive vs fixed-K sampling.

1. Samples/s of the bridge sampler (exact-match path, and the any-checker path that writes full
   continuations) beside sequences/s of one batched forward over prompt + answer, same model, same batch.
2. Samples needed so that ≥ 90% of instances get a 95% CI no wider than `rel_width` × estimate:
   sampling until r passes (adaptive) vs one fixed K for every instance, on simulated Bernoulli
   instances with log-uniform pass rates.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from ..passuntil.estimators import estimate_pass_rate
from .results import BenchResult


@dataclass(frozen=True)
class SamplerThroughput(BenchResult):
    """Samples/s of `bridge_sampler` (exact-match and any-checker paths) beside sequences/s of one batched forward,
    and their ratios (sampler / forward)."""

    model: str
    batch: int
    torch_threads: int
    sequence_tokens: int
    forward_sequences_per_s: float
    sampler_exact_match_samples_per_s: float
    sampler_any_checker_samples_per_s: float
    ratio_exact_match: float
    ratio_any_checker: float
    note: str


@dataclass(frozen=True)
class Allocation(BenchResult):
    """Samples needed for `quota` of instances to get a CI no wider than `rel_ci_width` × the estimate: sampling
    until r passes (adaptive: {"r", "samples"}) vs one fixed K (fixed: {"k", "samples"}); None if never met."""

    instances: int
    pass_rates: str
    rel_ci_width: float
    quota: float
    adaptive: dict | None
    fixed: dict | None
    fixed_over_adaptive: float | None


@dataclass(frozen=True)
class PassuntilBench(BenchResult):
    """Both measurements of `run`."""

    throughput: SamplerThroughput
    allocation: Allocation


def _throughput(quick: bool, seed: int) -> SamplerThroughput:
    import torch

    from ..lm import TrainConfig, build_model
    from ..passuntil.sampler import bridge_sampler
    from ..passuntil.tasks import addition_tokenizer, builtin_instances

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and fair to both sides on shared cores
    tok = addition_tokenizer()
    model = build_model(TrainConfig(n_layers=2, d_model=64, n_heads=4, d_mlp=256, n_ctx=32, d_vocab=tok.vocab_size,
                             act_fn="gelu", seed=seed)).eval()
    inst = builtin_instances("addition", 1, digits=3, seed=seed)[0]
    batch, reps = (256, 3) if quick else (1024, 10)
    ids = torch.tensor(tok.encode(inst.prompt + inst.answer)).repeat(batch, 1)

    def rate(fn) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return batch * reps / (time.perf_counter() - t0)

    with torch.inference_mode():
        forward = rate(lambda: model(ids))
    exact = bridge_sampler(model, tok, stop_on_mismatch=True)
    full = bridge_sampler(model, tok)
    s_exact = rate(lambda: exact(inst, batch, seed))
    s_full = rate(lambda: full(inst, batch, seed))
    return SamplerThroughput(model="2 layers, d_model 64, char vocab 13", batch=batch, torch_threads=1,
                             sequence_tokens=int(ids.shape[1]), forward_sequences_per_s=forward,
                             sampler_exact_match_samples_per_s=s_exact, sampler_any_checker_samples_per_s=s_full,
                             ratio_exact_match=s_exact / forward, ratio_any_checker=s_full / forward,
                             note="the sampler runs each distinct prefix once per step (all rows share the prompt); "
                                  "exact-match rows stop at their first wrong token")


def _meets(passes, samples, r: int, rel_width: float, quota: float) -> bool:
    rates = estimate_pass_rate(passes, samples, r=r)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (rates.upper - rates.lower) / rates.estimate
    return float(np.mean(rel <= rel_width)) >= quota


def _allocation(quick: bool, seed: int, rel_width: float = 1.0, quota: float = 0.9) -> Allocation:
    rng = np.random.default_rng(seed)
    p = np.exp(rng.uniform(np.log(1e-4), np.log(1e-1), 100 if quick else 500))
    adaptive = None
    for r in range(1, 200):  # smallest r whose negative-binomial CIs meet the target
        k = rng.geometric(p[None, :], (r, p.size)).sum(axis=0)
        if _meets(np.full(p.size, r), k, r, rel_width, quota):
            adaptive = {"r": r, "samples": int(k.sum())}
            break
    fixed = None
    for big_k in np.unique(np.geomspace(10, 1e9, 400).astype(np.int64)):  # smallest common K that does
        passes = rng.binomial(big_k, p)
        if _meets(passes, np.full(p.size, big_k), int(big_k), rel_width, quota):
            fixed = {"k": int(big_k), "samples": int(big_k) * p.size}
            break
    return Allocation(instances=int(p.size), pass_rates="log-uniform on [1e-4, 1e-1]", rel_ci_width=rel_width,
                      quota=quota, adaptive=adaptive, fixed=fixed,
                      fixed_over_adaptive=fixed["samples"] / adaptive["samples"] if fixed and adaptive else None)


def run(args: argparse.Namespace) -> PassuntilBench:
    """Both measurements, side by side in this process.

    Sets torch to one thread for the rest of the process.

    Returns
    -------
    PassuntilBench
        "throughput": samples/s of `bridge_sampler` (exact-match and any-checker paths) on a random
        2-layer model for 3-digit addition, beside sequences/s of one batched forward ("ratio_exact_match",
        "ratio_any_checker": sampler / forward). "allocation": on log-uniform pass rates in [1e-4, 1e-1],
        the samples needed for 90% of instances to get a 95% CI no wider than the estimate, sampling until
        r passes ("adaptive": smallest r and its samples) vs one fixed K ("fixed": smallest K and its
        samples), and "fixed_over_adaptive" (None if either never met the quota). No target is recorded.
    """
    return PassuntilBench(throughput=_throughput(args.quick, args.seed), allocation=_allocation(args.quick, args.seed))
