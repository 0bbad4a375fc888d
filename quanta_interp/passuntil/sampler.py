"""Sample until pass: per instance, draw continuations in growing batches until r passes or K_max.

The model is a TransformerLens `TransformerBridge` (sampled here, batched, with temperature / top-k) or
any callable `sample(instance, n, seed) -> list[str]`. Each batch gets its own seed derived from
(seed, instance, batch), so results do not depend on order and a killed run resumes per instance.
`exact_probability` gives P(answer | prompt) by teacher forcing, to validate sampler and estimators.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import RunDir, jsonl_lines, progress

__all__ = ["Instance", "InstanceRecord", "exact_match", "PassUntil", "bridge_sampler", "exact_probability",
           "load_instances"]

Checker = Callable[[str, str], bool]
SampleFn = Callable[["Instance", int, int], Sequence[str]]


@dataclass(frozen=True)
class Instance:
    """A prompt and its reference answer; the checker decides whether a continuation passes.

    Attributes
    ----------
    prompt : str
        Text the model continues.
    answer : str
        Reference continuation (non-empty); the sampler draws as many tokens as it has.
    id : str
        Optional name; records and resumed runs are keyed by `key`.

    Raises
    ------
    ValueError
        An empty `answer`.
    """

    prompt: str
    answer: str
    id: str = ""

    def __post_init__(self):
        if not self.answer:
            raise ValueError(f"instance {self.id or self.prompt[:30]!r}: answer must be a non-empty string")

    @property
    def key(self) -> str:
        """Stable identifier: `id`, or the CRC-32 (8 hex digits) of prompt and answer when `id` is empty."""
        return self.id or f"{zlib.crc32((self.prompt + chr(0) + self.answer).encode()):08x}"


@dataclass(frozen=True)
class InstanceRecord:
    """What `PassUntil.run_instance` measured on one instance: the counts that `estimate_pass_rate` and
    `task_pass_rate` take (PassUntil, Hu et al. ICLR 2024: PU = r/K), one line of a run's metrics.jsonl.

    Attributes
    ----------
    id : str
        The instance's `Instance.key`.
    passes : int
        Passes counted, ≤ r; fewer than r marks a censored instance (k_max reached).
    samples : int
        K: draws up to and including the r-th pass, or all draws when censored.
    drawn : int
        All draws, including the rest of the batch that held the r-th pass.
    passes_drawn : int
        Passes among all `drawn`.
    errors : int
        Checker calls that raised (each counted as a fail).
    error : str or None
        The first of them as "ExceptionType: message"; None when the checker never raised.
    """

    id: str
    passes: int
    samples: int
    drawn: int
    passes_drawn: int
    errors: int
    error: str | None

    def to_dict(self) -> dict:
        """The record as its metrics.jsonl line holds it (fields in order)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict) -> InstanceRecord:
        """A record read back from metrics.jsonl (a resumed run)."""
        return cls(**row)


def exact_match(completion: str, answer: str) -> bool:
    """The default checker: the continuation equals the answer."""
    return completion == answer


def load_instances(path: str | Path) -> list[Instance]:
    """Instances from a JSONL file of {"prompt": ..., "answer": ..., "id"?: ...}; blank lines are skipped.

    Raises
    ------
    ValueError
        A line that is not a JSON object with 'prompt' and 'answer', an empty answer, or no instance at all.
    OSError
        The file cannot be read.
    """
    out = []
    for i, line in jsonl_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(Instance(str(row["prompt"]), str(row["answer"]), str(row.get("id", ""))))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{i}: each line must be a JSON object with 'prompt' and 'answer' ({e})") from e
    if not out:
        raise ValueError(f"{path} holds no instances")
    return out


def _encode(tokenizer: Any, text: str) -> list[int]:
    try:
        return list(tokenizer.encode(text, add_special_tokens=False))
    except TypeError:
        return list(tokenizer.encode(text))


def _filter_logits(logits, temperature: float, top_k: int | None):
    import torch

    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits


def bridge_sampler(model, tokenizer=None, *, temperature: float = 1.0, top_k: int | None = None,
                   max_new_tokens: int | None = None, stop_on_mismatch: bool = False,
                   device: str | None = None) -> SampleFn:
    """A `sample(instance, n, seed)` for a TransformerBridge: n continuations of the answer's length.

    Each step runs the model once per distinct prefix (all rows start from the same prompt), which
    is exact. With `stop_on_mismatch` (for exact-match checking) a continuation is judged on its text over
    the answer's length: a row stops when its first len(answer) characters equal the answer (it passes,
    and is returned cut there) or can no longer become it (it fails), within a budget of the answer's
    length in UTF-8 bytes, which no tokenization of the answer exceeds. The decision is on text, so a
    continuation that spells the answer with other tokens than the answer's own tokenization passes; a
    row that is not stopped would reach the same verdict, so stopping only saves model calls.

    Parameters
    ----------
    tokenizer
        Anything with `encode`/`decode` (HF or corpora); default `model.tokenizer`.
    temperature : float
        Logits are divided by it before sampling; must be > 0 (not checked here; `PassUntil` checks it).
    top_k : int or None
        Keep only the `top_k` most likely tokens at each step (ties at the k-th logit are kept).
    max_new_tokens : int or None
        Tokens drawn per continuation; default the number of answer tokens (without `stop_on_mismatch`).
    device : str or None
        Where the sampled tokens live; default the device of the model's first parameter.

    Returns
    -------
    callable
        `sample(instance, n, seed) -> list[str]`: n decoded continuations, reproducible for a given seed.
        It raises ValueError when the prompt is empty or prompt + new tokens exceed the model's n_ctx.

    Raises
    ------
    ValueError
        No tokenizer given and the model has none.
    """
    import torch

    tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tok is None:
        raise ValueError("tokenizer: the model has no .tokenizer; pass one with encode/decode")
    n_ctx = int(model.cfg.n_ctx)
    dev = torch.device(device) if device else next(model.parameters()).device

    @torch.inference_mode()
    def sample(instance: Instance, n: int, seed: int) -> list[str]:
        prompt, answer = _encode(tok, instance.prompt), _encode(tok, instance.answer)
        target = instance.answer
        steps = max_new_tokens or (len(target.encode("utf-8")) if stop_on_mismatch else len(answer))
        if not prompt or len(prompt) + steps > n_ctx:
            raise ValueError(f"instance {instance.key}: prompt + {steps} new tokens must fit n_ctx={n_ctx} "
                             "and the prompt must not be empty")
        gen = torch.Generator(device=dev).manual_seed(int(seed))
        seqs = torch.tensor(prompt, device=dev).repeat(n, 1)
        seqs = torch.cat([seqs, torch.zeros(n, steps, dtype=seqs.dtype, device=dev)], dim=1)
        alive = torch.arange(n, device=dev)
        length = torch.full((n,), steps, device=dev)
        decoded: dict[tuple, str] = {}
        passed: dict[int, str] = {}
        for t in range(steps):
            pos = len(prompt) + t
            # rows with the same prefix share one next-token distribution: run each prefix once
            prefixes, inverse = torch.unique(seqs[alive, :pos], dim=0, return_inverse=True)
            logits = _filter_logits(model(prefixes)[:, -1, :], temperature, top_k)
            nxt = torch.multinomial(torch.softmax(logits, -1)[inverse], 1, generator=gen).squeeze(1)
            seqs[alive, pos] = nxt
            if stop_on_mismatch:
                rows = [tuple(r) for r in seqs[alive, len(prompt): pos + 1].tolist()]
                texts = [decoded.setdefault(r, tok.decode(list(r)))[: len(target)] for r in rows]
                # a trailing U+FFFD may be half a character that the next byte token completes: undecided
                done = [x == target for x in texts]
                stop = torch.tensor([ok or not (target.startswith(x) or x.endswith("\ufffd"))
                                     for x, ok in zip(texts, done, strict=True)], dtype=torch.bool, device=dev)
                passed.update({int(i): target for i, ok in zip(alive.tolist(), done, strict=True) if ok})
                length[alive[stop]] = t + 1
                alive = alive[~stop]
                if alive.numel() == 0:
                    break
        rows = seqs[:, len(prompt):].tolist()
        return [passed.get(i) or tok.decode(row[: int(k)]) for i, (row, k) in enumerate(zip(rows, length.tolist(),
                                                                                           strict=True))]

    return sample


def exact_probability(model, instances: Sequence[Instance], tokenizer=None, *, temperature: float = 1.0,
                      top_k: int | None = None, batch_size: int = 256) -> np.ndarray:
    """log P(answer tokens | prompt) under the sampling distribution, by one teacher-forced pass.

    Exact for the sampler's pass rate when the answer has a unique tokenisation (e.g. characters);
    otherwise a lower bound (other token sequences may spell the same answer). Used to validate the
    sampler and the PassUntil estimators on tiny models.

    Parameters
    ----------
    temperature, top_k
        The sampler's settings: the same logit filtering is applied before the softmax.
    batch_size : int
        Instances per forward pass.

    Returns
    -------
    float64 ndarray (n_instances,)
        Natural log of the probability, ≤ 0; −inf where `top_k` filters out an answer token.
    """
    import torch

    tok = tokenizer if tokenizer is not None else model.tokenizer
    pairs = [(_encode(tok, i.prompt), _encode(tok, i.answer)) for i in instances]
    out = np.empty(len(pairs))
    with torch.inference_mode():
        for s in range(0, len(pairs), batch_size):
            chunk = pairs[s:s + batch_size]
            width = max(len(p) + len(a) for p, a in chunk)
            x = torch.zeros(len(chunk), width, dtype=torch.long)  # right padding: causal, never attended
            for j, (p, a) in enumerate(chunk):
                x[j, : len(p) + len(a)] = torch.tensor(p + a)
            logp = torch.log_softmax(_filter_logits(model(x), temperature, top_k), -1)
            for j, (p, a) in enumerate(chunk):
                pos = torch.arange(len(p) - 1, len(p) + len(a) - 1)
                out[s + j] = float(logp[j, pos, torch.tensor(a)].sum())
    return out


class PassUntil:
    """Sample each instance until `r` passes or `k_max` samples, in batches of up to `batch_size`.

    `run(model, instances)` returns one record per instance: passes, samples (K: draws up to the r-th
    pass, or all draws when censored), errors from the checker. Feed passes/samples to
    `estimate_pass_rate` / `task_pass_rate` (PassUntil, Hu et al. ICLR 2024: PU = r/K).

    Parameters
    ----------
    r : int
        Passes to wait for per instance (1 or 2 in the paper; r ≥ 2 allows the unbiased (r−1)/(K−1)).
    k_max : int
        Cap on samples per instance; a capped instance is censored, and PU = 0 then means "below ~3/k_max".
    batch_size : int
        Largest number of continuations requested from the model at once.
    temperature, top_k, max_new_tokens
        Sampling settings passed to `bridge_sampler` (unused when `run` gets a callable sampler).
    checker : callable or None
        `checker(completion, answer) -> bool`; default `exact_match`, which also lets the sampler stop
        rows at their first wrong token. A checker that raises counts as a fail.
    seed : int
        Base seed; each batch's seed derives from (seed, instance key, batch number).

    Raises
    ------
    ValueError
        r not an integer ≥ 1, k_max < r, batch_size < 1, temperature ≤ 0, or top_k < 1.
    """

    def __init__(self, r: int = 1, k_max: int = 100_000, *, batch_size: int = 1024, temperature: float = 1.0,
                 top_k: int | None = None, max_new_tokens: int | None = None, checker: Checker | None = None,
                 seed: int = 0):
        if int(r) != r or r < 1:
            raise ValueError(f"r must be an integer ≥ 1, got {r}")
        if k_max < r:
            raise ValueError(f"k_max must be ≥ r ({r}), got {k_max}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (PassUntil needs sampling), got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be ≥ 1 or None, got {top_k}")
        self.r, self.k_max, self.batch_size = int(r), int(k_max), int(batch_size)
        self.temperature, self.top_k, self.max_new_tokens = temperature, top_k, max_new_tokens
        self.checker, self.seed = checker, seed

    def _sampler(self, model, tokenizer) -> SampleFn:
        import torch

        if not isinstance(model, torch.nn.Module):
            if not callable(model):
                raise ValueError("model must be a TransformerBridge or a callable sample(instance, n, seed)")
            return model
        return bridge_sampler(model, tokenizer, temperature=self.temperature, top_k=self.top_k,
                              max_new_tokens=self.max_new_tokens, stop_on_mismatch=self.checker is None)

    def run_instance(self, sample: SampleFn, instance: Instance) -> InstanceRecord:
        """Sample one instance until r passes or k_max; batch sizes double from 32 up to batch_size.

        Returns
        -------
        InstanceRecord
            Its passes (≤ r), samples K, all draws and checker errors.
        """
        check = self.checker or exact_match
        base = zlib.crc32(instance.key.encode())
        passes, drawn, k_at_r, errors, first_error, batch_no = 0, 0, None, 0, None, 0
        while k_at_r is None and drawn < self.k_max:
            n = min(self.batch_size, self.k_max - drawn, max(32, drawn))
            seed = int(np.random.SeedSequence([self.seed, base, batch_no]).generate_state(1)[0])
            for text in sample(instance, n, seed):
                drawn += 1
                try:
                    ok = bool(check(text, instance.answer))
                except Exception as e:  # a user checker may raise: count it as a fail and go on
                    ok, errors = False, errors + 1
                    first_error = first_error or f"{type(e).__name__}: {e}"
                passes += ok
                if passes == self.r and k_at_r is None:
                    k_at_r = drawn
            batch_no += 1
        return InstanceRecord(id=instance.key, passes=min(passes, self.r), samples=k_at_r or drawn, drawn=drawn,
                              passes_drawn=passes, errors=errors, error=first_error)

    def run(self, model, instances: Sequence[Instance], *, tokenizer=None, run_dir: RunDir | None = None,
            show_progress: bool = True) -> list[InstanceRecord]:
        """Records in instance order; with `run_dir`, each finished instance is logged and skipped on rerun.

        Parameters
        ----------
        model
            A TransformerBridge (sampled by `bridge_sampler`) or a callable `sample(instance, n, seed)`
            returning n continuations.
        tokenizer
            For a bridge without `.tokenizer`; see `bridge_sampler`.
        run_dir : RunDir or None
            Per-instance records are appended to its metrics.jsonl and reused on rerun, keyed by
            `Instance.key` (a folder made without a config does not check r, k_max or the model).

        Returns
        -------
        list of InstanceRecord
            One `run_instance` record per instance, in the order of `instances`.

        Raises
        ------
        ValueError
            `model` is neither a torch module nor callable, two instances share a key, or a bridge has
            no tokenizer.
        """
        sample = self._sampler(model, tokenizer)
        done = {}
        if run_dir is not None:
            done = {rec.id: rec for rec in map(InstanceRecord.from_dict, run_dir.metrics())}
        keys = [i.key for i in instances]
        if len(set(keys)) != len(keys):
            raise ValueError("instances: two instances share an id (or prompt and answer)")
        bar = progress(total=len(instances), initial=sum(k in done for k in keys), desc="passuntil",
                       disable=not show_progress)
        for inst in instances:
            if inst.key in done:
                continue
            done[inst.key] = self.run_instance(sample, inst)
            if run_dir is not None:
                run_dir.log_metrics(done[inst.key].to_dict())
            bar.update()
        bar.close()
        return [done[k] for k in keys]
