"""`quanta bench lm`: training and evaluation tokens/s (a small native model and SmolLM2), and the speed of
`token_losses` against a plain HF forward + cross-entropy over the same windows (target ratio ≥ 0.9)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .results import BenchResult

__all__ = ["run", "LMBench", "SmallModelRates", "SmolLM2Rates"]


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _train_rate(model, vocab: int, batch: int, width: int, steps: int) -> float:
    """Tokens/s of forward + backward + AdamW steps on random tokens."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    x = torch.randint(0, vocab, (batch, width), generator=torch.Generator().manual_seed(0))

    def step():
        model(x, return_type="loss").backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    rate = batch * width / _best_of(step, steps)
    model.eval()
    return rate


def _hf_losses(hf, docs, context: int, batch_size: int) -> None:
    """The plain HF baseline: the same windows and batches as token_losses, no bridge, no bookkeeping."""
    import torch

    from ..lm.losses import next_token_losses, windows

    jobs = [(d, s) for d, doc in enumerate(docs) for s, _ in windows(doc.size, context, context // 2)]
    with torch.inference_mode():
        for b in range(0, len(jobs), batch_size):
            x = torch.from_numpy(np.stack([docs[d][s: s + context + 1] for d, s in jobs[b: b + batch_size]]).astype(np.int64))
            logits = hf(x[:, :-1]).logits
            next_token_losses(logits, x[:, 1:])


@dataclass(frozen=True)
class SmallModelRates(BenchResult):
    """The random-init native model: parameters, training and `token_losses` evaluation tokens/s."""

    n_params: int
    train_tokens_per_s: float
    eval_tokens_per_s: float


@dataclass(frozen=True)
class SmolLM2Rates(BenchResult):
    """SmolLM2: `token_losses` vs the plain HF forward + cross-entropy (tokens/s, ratio = HF time / ours against
    target_ratio), training tokens/s, and the windows' context, batch size and tokens."""

    eval_tokens_per_s: float
    hf_eval_tokens_per_s: float
    token_losses_vs_hf_speed_ratio: float
    target_ratio: float
    train_tokens_per_s: float
    context: int
    batch_size: int
    tokens: int


@dataclass(frozen=True)
class LMBench(BenchResult):
    """Torch threads, whether `--quick`, and both models' rates."""

    threads: int
    quick: bool
    small: SmallModelRates
    smollm2: SmolLM2Rates


def run(args) -> LMBench:
    """Measure side by side in one process; `--quick` shrinks every size.

    A random-init native model (2 layers, d_model 64, vocabulary 65) and SmolLM2-135M, on the CPU
    (`args.device` is not used): training tokens/s (forward + backward + AdamW on random tokens),
    evaluation tokens/s of `token_losses`, and for SmolLM2 `token_losses` against the plain HF model's
    forward + cross-entropy over the same windows and batches (best of interleaved repeats).

    Returns
    -------
    LMBench
        "threads", "quick"; "small": "n_params", "train_tokens_per_s", "eval_tokens_per_s"; "smollm2":
        "eval_tokens_per_s", "hf_eval_tokens_per_s", "token_losses_vs_hf_speed_ratio" (HF time / ours),
        "target_ratio" (0.9), "train_tokens_per_s", "context", "batch_size", "tokens".
    """
    import torch

    from ..lm import TrainConfig, build_model, load, n_params, token_losses
    from ..lm.loading import _smollm2_hf

    quick = getattr(args, "quick", False)
    rng = np.random.default_rng(args.seed)
    threads = torch.get_num_threads()

    small = build_model(TrainConfig(d_vocab=65, n_layers=2, d_model=64, n_heads=4, n_ctx=128, seed=args.seed))
    docs = [rng.integers(0, 65, 2048 if quick else 8192)]
    small_rates = SmallModelRates(
        n_params=n_params(small),
        train_tokens_per_s=_train_rate(small, 65, 32, 128, 3 if quick else 10),
        eval_tokens_per_s=docs[0].size / _best_of(lambda: token_losses(small, docs, context=128, progress=False), 2),
    )

    model = load("smollm2").bridge
    hf = _smollm2_hf()[0].eval()
    context, batch = (64, 4) if quick else (128, 8)
    per_doc = context + 1 + (context // 2) * (6 if quick else 14)  # every window full: stackable for the baseline
    docs = [rng.integers(0, 49152, per_doc) for _ in range(2)]
    n_tok = 2 * per_doc
    ours = lambda: token_losses(model, docs, context=context, batch_size=batch, progress=False)  # noqa: E731
    plain = lambda: _hf_losses(hf, docs, context, batch)  # noqa: E731
    ours(), plain()  # warm-up
    t_ours, t_hf = [], []
    for _ in range(2 if quick else 3):  # interleaved, so load changes hit both alike
        t_ours.append(_best_of(ours, 1))
        t_hf.append(_best_of(plain, 1))
    return LMBench(threads=threads, quick=quick, small=small_rates, smollm2=SmolLM2Rates(
        eval_tokens_per_s=n_tok / min(t_ours), hf_eval_tokens_per_s=n_tok / min(t_hf),
        token_losses_vs_hf_speed_ratio=min(t_hf) / min(t_ours), target_ratio=0.9,
        train_tokens_per_s=_train_rate(model, 49152, 2, 64, 1 if quick else 2),
        context=context, batch_size=batch, tokens=n_tok,
    ))
