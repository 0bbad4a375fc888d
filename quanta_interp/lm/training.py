"""Train a fresh TransformerLens model (`TransformerBridge.boot_native`) on a token stream.

AdamW with linear warm-up and cosine decay, gradient clipping, held-out evaluation, and
checkpoints (model + optimizer in one safetensors file) that a rerun resumes from after a kill.
Batches are drawn from a generator seeded by (seed, step), so a resumed run is identical to an
unkilled one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..corpora import Tokenizer
from ..io import (
    RunDir,
    atomic_write_json,
    atomic_write_text,
    progress,
    read_json,
    to_jsonable,
)
from .config import TrainConfig
from .loading import n_params, non_embedding_params
from .losses import as_documents

__all__ = ["train", "TrainResult", "checkpoint_steps", "build_model", "split_tokens"]

_CKPT = "checkpoint.safetensors"
CHECKPOINTS = "checkpoints"  # the weights kept at each evaluation (TrainConfig.keep_checkpoints)


def _model_config(cfg: TrainConfig) -> dict[str, Any]:
    """The `TransformerBridgeConfig` keywords of `cfg` (also written as model_config.json)."""
    return dict(d_model=cfg.d_model, d_head=cfg.d_model // cfg.n_heads, n_layers=cfg.n_layers, n_ctx=cfg.n_ctx,
                n_heads=cfg.n_heads, d_vocab=cfg.d_vocab, d_mlp=cfg.d_mlp, act_fn=cfg.act_fn, seed=cfg.seed)


def build_model(config: TrainConfig):
    """A freshly initialised native bridge (`TransformerBridge.boot_native`) for `config`, on its device."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_native(TransformerBridgeConfig(**_model_config(config)), device=config.device)


def _lr(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    frac = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def _batch(tokens: np.ndarray, n: int, width: int, rng: np.random.Generator):
    """`n` random windows of `width` + 1 tokens: inputs and their next tokens."""
    import torch

    starts = rng.integers(0, tokens.size - width, size=n)
    return torch.from_numpy(np.stack([tokens[s: s + width + 1] for s in starts]).astype(np.int64))


def _window_loss(model, windows):
    """Mean next-token loss over all n_ctx positions of each window, the last one included
    (`return_type="loss"` on n_ctx tokens would leave the last position unsupervised)."""
    import torch.nn.functional as F

    logits = model(windows[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))


def split_tokens(corpus, source: str, split: str, need: int) -> np.ndarray:
    """The tokens of one split of a `TokenizedCorpus`, checked before any run folder opens.

    Parameters
    ----------
    corpus : corpora.TokenizedCorpus
    source : str
        The corpus as the user named it, for the message.
    split : {"train", "val"}
    need : int
        Fewest tokens accepted (one window of n_ctx + 1).

    Raises
    ------
    ParameterError
        ('corpus', …) the split holds fewer than `need` tokens (a one-document corpus has no 'val').
    """
    from ..config import ParameterError

    tokens, docs = corpus.stream(split), corpus.doc_ids(split)
    if tokens.size < need:
        fix = ("models are scored on held-out 'val' documents: pass a folder of several .txt files" if not docs else
               "pass a longer corpus or a smaller n_ctx")
        raise ParameterError("corpus", f"{source!r}: its {split!r} split holds {len(docs)} of {len(corpus.doc_ids())} "
                                       f"documents ({tokens.size} tokens), fewer than one window of n_ctx + 1 = {need}; "
                                       f"{fix}")
    return tokens


def _stream(tokens, name: str, cfg: TrainConfig) -> np.ndarray:
    docs = as_documents(tokens if isinstance(tokens, (list, tuple)) else [np.asarray(tokens)], cfg.d_vocab)
    flat = np.concatenate(docs)
    if flat.size < cfg.n_ctx + 1:
        raise ValueError(f"{name}: {flat.size} tokens is too short for one window of n_ctx+1={cfg.n_ctx + 1}")
    return flat


def _save_checkpoint(run: RunDir, model, opt, step: int, state: dict) -> None:
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    for i, (_, s) in enumerate(sorted(opt.state_dict()["state"].items())):
        tensors.update({f"opt/{i}/{k}": v for k, v in s.items()})
    run.save_weights(tensors, _CKPT, metadata={"step": str(step), "state": json.dumps(to_jsonable(state))})


def _model_weights(tensors: dict) -> dict:
    """The model's state dict inside a checkpoint (keys `model/...`)."""
    return {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}


def _load_checkpoint(run: RunDir, model, opt) -> tuple[int, dict]:
    from safetensors import safe_open

    with safe_open(run.path / _CKPT, framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model.load_state_dict(_model_weights(tensors))
    sd = opt.state_dict()
    for i, pid in enumerate(sorted(p for group in sd["param_groups"] for p in group["params"])):
        sd["state"][pid] = {k.split("/")[2]: v for k, v in tensors.items() if k.startswith(f"opt/{i}/")}
    opt.load_state_dict(sd)
    return int(meta["step"]), json.loads(meta["state"])


def _evaluate(model, val: np.ndarray, cfg: TrainConfig) -> float:
    import torch

    rng = np.random.default_rng([cfg.seed, 1])  # the same held-out windows at every evaluation
    model.eval()
    with torch.inference_mode():
        losses = [_window_loss(model, _batch(val, cfg.batch_size, cfg.n_ctx, rng).to(cfg.device)).item()
                  for _ in range(cfg.eval_batches)]
    model.train()
    return float(np.mean(losses))


@dataclass(frozen=True)
class TrainResult:
    """What `train` returns and writes as result.json (losses in nats per token).

    Attributes
    ----------
    final_train_loss : float
        Mean training loss of the last 50 steps.
    best_val_loss, val_loss : float or None
        Lowest and last held-out loss; None without `val_tokens`.
    n_params, n_params_non_embedding : int
        All parameters, and those outside the embedding and unembedding.
    steps : int
        Optimiser steps taken (fewer than `TrainConfig.steps` when the convergence rule stopped the run).
    tokens_seen : int
        steps · batch_size · n_ctx.
    train_tokens_per_s : float or None
        Throughput of this call (None when it resumed a finished run's last step).
    converged : bool or None
        With `TrainConfig.converge_tol`: whether the rule stopped the run before the `steps` ceiling; None
        (and absent from `to_dict`) when no rule was asked for.
    """

    final_train_loss: float
    best_val_loss: float | None
    val_loss: float | None
    n_params: int
    n_params_non_embedding: int
    steps: int
    tokens_seen: int
    train_tokens_per_s: float | None
    converged: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-able values, `converged` left out when None (result.json of runs without a rule)."""
        d = asdict(self)
        if self.converged is None:
            del d["converged"]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainResult:
        """The result from `to_dict()` output (a finished run's result.json)."""
        return cls(**data)


def train(config: TrainConfig, train_tokens, *, val_tokens=None, tokenizer: Tokenizer | None = None,
          run_dir: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Train a fresh native model on `train_tokens` (1-D int array or list of documents); see module docstring.

    With `run_dir`, writes config.json, metrics.jsonl, checkpoints, weights.safetensors,
    model_config.json, tokenizer.json and result.json, and resumes from the last checkpoint; a run
    folder that already holds result.json returns that result without training. With
    `config.keep_checkpoints`, the weights at every evaluation stay in checkpoints/ (`checkpoint_steps`).
    With `config.converge_tol`, training stops at the first evaluation step s ≥ 4·eval_every (s a multiple
    of 2·eval_every) whose held-out loss is above (1 − converge_tol) × the loss at s/2: the loss fell by less
    than that fraction over the last doubling of steps (the rule `sparse_parity.sweep.late_slope` reports).

    Parameters
    ----------
    train_tokens, val_tokens
        Token ids: one 1-D int array, or a list/tuple of documents concatenated into one stream (windows
        may cross document boundaries). Each needs ≥ n_ctx + 1 tokens; without `val_tokens` no evaluation.
    tokenizer : corpora.Tokenizer or None
        Saved as tokenizer.json so `lm.load_run` can attach it; its vocab_size must be ≤ d_vocab.
    progress : bool
        Show a progress bar.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        Empty tokens, fewer than n_ctx + 1 tokens, ids outside d_vocab, a tokenizer larger than d_vocab, a
        run folder holding another config, a convergence rule without `val_tokens`, or a loss that becomes
        NaN or inf (the last good checkpoint is kept).
    """
    import torch

    cfg = config
    train_flat = _stream(train_tokens, "train_tokens", cfg)
    val_flat = _stream(val_tokens, "val_tokens", cfg) if val_tokens is not None else None
    if tokenizer is not None and tokenizer.vocab_size > cfg.d_vocab:
        raise ValueError(f"config: d_vocab={cfg.d_vocab} is smaller than the tokenizer's vocab_size "
                         f"{tokenizer.vocab_size}")
    if cfg.converge_tol is not None and val_flat is None:
        raise ValueError("config: converge_tol stops on the held-out loss; pass val_tokens")
    torch.manual_seed(cfg.seed)
    model = build_model(config)  # before the run folder opens: a model that cannot be built writes nothing
    run = _open_run(run_dir, cfg, tokenizer)
    if run is not None and run.done:
        return TrainResult.from_dict(run.result())
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    step, state = 0, {"best_val_loss": None, "val_loss": None, "recent": [], "evals": {}, "converged": False}
    if run is not None and (run.path / _CKPT).exists():
        step, saved = _load_checkpoint(run, model, opt)
        state.update(saved)
        rows = [r for r in run.metrics() if r.get("step", 0) <= step]
        atomic_write_text(run.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    t0, start = time.perf_counter(), step
    bar = _bar(progress, cfg.steps, step)
    while step < cfg.steps and not state["converged"]:
        rng = np.random.default_rng([cfg.seed, 0, step])
        tokens = _batch(train_flat, cfg.batch_size, cfg.n_ctx, rng).to(cfg.device)
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg)
        loss = _window_loss(model, tokens)
        if not torch.isfinite(loss):
            _stop_nan(run, step, loss.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        state["recent"] = (state["recent"] + [loss.item()])[-50:]
        row = {"step": step, "train_loss": loss.item(), "lr": _lr(step - 1, cfg)}
        if val_flat is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
            row["val_loss"] = state["val_loss"] = _evaluate(model, val_flat, cfg)
            best = state["best_val_loss"]
            state["best_val_loss"] = row["val_loss"] if best is None else min(best, row["val_loss"])
            if cfg.converge_tol is not None:
                state["evals"][str(step)] = row["val_loss"]
                state["converged"] = _converged(state["evals"], step, cfg)
        if run is not None:
            if step % cfg.checkpoint_every == 0 or "val_loss" in row or step == cfg.steps:
                run.log_metrics(row)
                if cfg.keep_checkpoints and "val_loss" in row:
                    run.save_weights(model.state_dict(), f"{CHECKPOINTS}/step-{step:07d}.safetensors")
                _save_checkpoint(run, model, opt, step, state)
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    elapsed = time.perf_counter() - t0
    result = TrainResult(
        final_train_loss=float(np.mean(state["recent"])), best_val_loss=state["best_val_loss"],
        val_loss=state["val_loss"], n_params=n_params(model), n_params_non_embedding=non_embedding_params(model),
        steps=step, tokens_seen=step * cfg.batch_size * cfg.n_ctx,
        train_tokens_per_s=(step - start) * cfg.batch_size * cfg.n_ctx / elapsed if step > start else None,
        converged=bool(state["converged"]) if cfg.converge_tol is not None else None)
    if run is not None:
        run.save_weights(model.state_dict())
        run.write_result(result.to_dict())
    return result


def _converged(evals: dict[str, float], step: int, cfg: TrainConfig) -> bool:
    """The convergence rule of `train` at evaluation `step` (`evals`: held-out loss by str(step))."""
    if step % (2 * cfg.eval_every) or step < 4 * cfg.eval_every or str(step // 2) not in evals:
        return False
    return evals[str(step)] > (1 - cfg.converge_tol) * evals[str(step // 2)]


def checkpoint_steps(run_dir: str | Path) -> dict[int, Path]:
    """The weights a run kept at each evaluation (`TrainConfig.keep_checkpoints`), by step.

    Returns
    -------
    dict of int to Path
        Step → checkpoints/step-NNNNNNN.safetensors (the model's state dict), in increasing step; empty
        when the run kept none.
    """
    files = sorted((Path(run_dir) / CHECKPOINTS).glob("step-*.safetensors"))
    return {int(f.stem.split("-")[1]): f for f in files}


def _bar(enabled: bool, total: int, initial: int):
    return progress(total=total, initial=initial, desc="train", unit="step", disable=not enabled)


def _open_run(run_dir, cfg: TrainConfig, tokenizer: Tokenizer | None) -> RunDir | None:
    """The run folder, checked against `cfg` (a sweep's config.json may hold extra keys of its own)."""
    if run_dir is None:
        return None
    path = Path(run_dir)
    if (path / "config.json").exists():
        old = read_json(path / "config.json")
        diff = sorted(k for k, v in cfg.to_dict().items() if old.get(k) != v)
        if diff:
            raise ValueError(f"run_dir {path} already holds a run with different {diff}; use another folder")
    run = RunDir(path, None if (path / "config.json").exists() else cfg.to_dict())
    atomic_write_json(path / "model_config.json", _model_config(cfg))
    if tokenizer is not None:
        tokenizer.save(path / "tokenizer.json")
    return run


def _stop_nan(run: RunDir | None, step: int, value: float):
    where = "no checkpoint was written (no run_dir)"
    if run is not None and (run.path / _CKPT).exists():
        from safetensors.torch import load_file

        run.save_weights(_model_weights(load_file(run.path / _CKPT)))
        where = f"the last good checkpoint is in {run.path / 'weights.safetensors'}"
    raise ValueError(f"training loss became {value} at step {step}; stopped, {where}; lower lr or raise warmup")
