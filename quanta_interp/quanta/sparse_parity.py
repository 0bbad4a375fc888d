"""Multitask sparse parity (Michaud et al. 2023, §3.1 of DESIGN): the toy whose quanta are known.

Input = one-hot control bits (n_tasks) ‖ n_bits random bits; subtask i's label is the parity of the
bits in its fixed k-subset S_i, and subtask i is drawn with probability p_i ∝ i^-zipf_exponent.
Naming: `zipf_exponent` is the paper's α + 1 (the original code calls it `alpha`, e.g. 1.4 ↔ α = 0.4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .sparse_parity_stack import BlockMLP

__all__ = ["MultitaskSparseParity", "build_mlp", "train_sparse_parity", "train_sparse_parity_batched",
           "DEFAULTS", "LEARNED_BITS", "task_from_config", "check_config"]

LEARNED_BITS = 0.1  # a subtask counts as learned when its loss is below 0.1 bits
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}
DEFAULTS = {"depth": 1, "activation": "relu", "lr": 1e-3, "weight_decay": 0.0, "n_train": None, "log_every": 100,
            "eval_samples": 200, "task_seed": 0}
REQUIRED = ("n_tasks", "n_bits", "k", "zipf_exponent", "width", "steps", "batch_size", "seed")
# Members of one batched training may differ only in these keys; all else is shared.
MEMBER_KEYS = ("width", "seed", "n_train")


class MultitaskSparseParity:
    """The task: fixed distinct k-subsets, Zipf task frequencies, vectorised sampling in torch."""

    def __init__(self, n_tasks: int, n_bits: int, k: int, zipf_exponent: float, seed: int = 0):
        for name, v in (("n_tasks", n_tasks), ("n_bits", n_bits), ("k", k)):
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if k > n_bits:
            raise ValueError(f"k must be ≤ n_bits ({n_bits}), got {k}")
        if math.comb(n_bits, k) < n_tasks:
            raise ValueError(f"n_tasks must be ≤ C(n_bits, k) = {math.comb(n_bits, k)} distinct subsets, got {n_tasks}")
        if not zipf_exponent > 0:
            raise ValueError(f"zipf_exponent (= α + 1) must be > 0, got {zipf_exponent}")
        self.n_tasks, self.n_bits, self.k = int(n_tasks), int(n_bits), int(k)
        self.zipf_exponent, self.seed = float(zipf_exponent), int(seed)
        rng = np.random.default_rng(seed)
        chosen: dict[tuple[int, ...], None] = {}
        while len(chosen) < n_tasks:  # rejection is fast unless n_tasks is close to C(n_bits, k)
            chosen.setdefault(tuple(sorted(rng.choice(n_bits, k, replace=False).tolist())), None)
        self.subsets = np.array(list(chosen), dtype=np.int64).reshape(n_tasks, k)
        w = np.arange(1, n_tasks + 1, dtype=float) ** -self.zipf_exponent
        self.probs = w / w.sum()
        self._subsets_t = torch.from_numpy(self.subsets)
        self._probs_t = torch.from_numpy(self.probs)

    def to(self, device: str | torch.device) -> MultitaskSparseParity:
        """Sample on `device` (pass generators made for that device)."""
        self._subsets_t, self._probs_t = self._subsets_t.to(device), self._probs_t.to(device)
        return self

    @property
    def alpha(self) -> float:
        """The paper's α = zipf_exponent − 1 (predicted α_N)."""
        return self.zipf_exponent - 1.0

    @property
    def n_inputs(self) -> int:
        return self.n_tasks + self.n_bits

    def draw(self, n: int, generator: torch.Generator | None = None, task: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw samples: task ids t [n] (Zipf, or all `task`) and bits [n, n_bits] int64."""
        dev = self._probs_t.device
        if task is None:
            t = torch.multinomial(self._probs_t, n, replacement=True, generator=generator)
        elif 0 <= task < self.n_tasks:
            t = torch.full((n,), task, dtype=torch.int64, device=dev)
        else:
            raise ValueError(f"i must be a task id in [0, {self.n_tasks}), got {task}")
        return t, torch.randint(0, 2, (n, self.n_bits), generator=generator, device=dev)

    def labels(self, t: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """Parity of each row's bits on its task's subset (int64 in {0, 1})."""
        return bits.gather(1, self._subsets_t[t]).sum(1) % 2

    def encode(self, t: torch.Tensor, bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (control one-hot ‖ bits, float32) and parity labels."""
        x = torch.cat([nn.functional.one_hot(t, self.n_tasks), bits], dim=1).float()
        return x, self.labels(t, bits)

    def sample(self, n: int, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`n` samples: x [n, n_tasks + n_bits] float32, y int64 in {0, 1}, task ids t ~ Zipf."""
        t, bits = self.draw(n, generator)
        return (*self.encode(t, bits), t)

    def sample_task(self, i: int, n: int, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` samples of subtask `i` only (for per-subtask evaluation)."""
        return self.encode(*self.draw(n, generator, task=i))


def task_from_config(config: dict) -> MultitaskSparseParity:
    return MultitaskSparseParity(config["n_tasks"], config["n_bits"], config["k"], config["zipf_exponent"],
                                 config.get("task_seed", 0))


def check_config(config: dict) -> dict:
    """The config with defaults filled in, or one ValueError naming the bad key."""
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise ValueError(f"config is missing {', '.join(missing)} (required: {', '.join(REQUIRED)})")
    cfg = {**DEFAULTS, **config}
    for key in ("width", "depth", "steps", "batch_size", "log_every", "eval_samples"):
        if int(cfg[key]) != cfg[key] or cfg[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {cfg[key]!r}")
    if cfg["n_train"] is not None and (int(cfg["n_train"]) != cfg["n_train"] or cfg["n_train"] < 1):
        raise ValueError(f"n_train must be None (fresh batches) or a positive integer, got {cfg['n_train']!r}")
    if cfg["activation"] not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {cfg['activation']!r}")
    if not cfg["lr"] > 0:
        raise ValueError(f"lr must be > 0, got {cfg['lr']}")
    if not cfg["weight_decay"] >= 0:
        raise ValueError(f"weight_decay must be ≥ 0, got {cfg['weight_decay']}")
    task_from_config(cfg)  # validates n_tasks, n_bits, k, zipf_exponent
    return cfg


def build_mlp(n_inputs: int, width: int, depth: int = 1, activation: str = "relu") -> nn.Sequential:
    """The paper's MLP: `depth` hidden layers of `width` units, 2 logits out."""
    dims = [n_inputs] + [width] * depth
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers, nn.Linear(width, 2))


def _init_state(net: nn.Sequential, seed: int) -> dict:
    """PyTorch's default Linear init (uniform ±1/√fan_in), drawn from a generator seeded by `seed`."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, p in net.state_dict().items():
        fan_in = net[int(name.split(".")[0])].in_features
        bound = 1.0 / math.sqrt(fan_in)
        state[name] = (torch.rand(p.shape, generator=g) * 2 - 1) * bound
    return state


class _DataStream:
    """Training batches (t, bits, y) for one (seed, n_train): fresh samples, or a fixed set of n_train
    cycled in reshuffled epochs (a batch wraps into the next epoch when n_train < batch_size)."""

    def __init__(self, task: MultitaskSparseParity, seed: int, n_train: int | None, batch_size: int,
                 device: torch.device):
        self.task, self.batch_size = task, batch_size
        self.g = torch.Generator(device).manual_seed(seed + 1_000_003)
        self.fixed = self._with_labels(task.draw(n_train, self.g)) if n_train is not None else None
        self.perm, self.pos = torch.empty(0, dtype=torch.int64), 0

    def _with_labels(self, tb: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return (*tb, self.task.labels(*tb))

    def next(self) -> tuple[torch.Tensor, ...]:
        if self.fixed is None:
            return self._with_labels(self.task.draw(self.batch_size, self.g))
        n, need, parts = self.fixed[0].shape[0], self.batch_size, []
        while need:
            if self.pos == len(self.perm):
                self.perm, self.pos = torch.randperm(n, generator=self.g, device=self.g.device), 0
            take = min(need, n - self.pos)
            parts.append(self.perm[self.pos:self.pos + take])
            self.pos, need = self.pos + take, need - take
        idx = torch.cat(parts)
        return tuple(a[idx] for a in self.fixed)


def to_bits(nats: torch.Tensor) -> torch.Tensor:
    return nats / math.log(2)


def train_sparse_parity_batched(configs: Sequence[dict], run_dir=None, *, device: str | torch.device = "cpu"
                                ) -> tuple[list[nn.Module], list[dict]]:
    """Train several MLPs at once in one stacked model; each equals training its config alone.

    Configs may differ only in width, seed (init and data) and n_train; everything else is shared.
    `run_dir` (an `io.RunDir`) receives one metrics row per member every `log_every` steps. Returned
    models are on the CPU; `device` (e.g. "cuda") only changes where training runs. On the CPU it runs
    single-threaded (these matrices are too small for intra-op threads; parallelise with processes).
    """
    device = torch.device(device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return _train_batched(configs, run_dir, device)
    finally:
        torch.set_num_threads(threads)


def _train_batched(configs: Sequence[dict], run_dir, device: torch.device) -> tuple[list[nn.Module], list[dict]]:
    if not configs:
        raise ValueError("configs must hold at least one config")
    cfgs = [check_config(dict(c)) for c in configs]
    shared = {k: v for k, v in cfgs[0].items() if k not in MEMBER_KEYS}
    for c in cfgs[1:]:
        diff = [k for k in set(c) | set(shared) if k not in MEMBER_KEYS and c.get(k) != shared.get(k)]
        if diff:
            raise ValueError(f"configs of one batched run may differ only in {', '.join(MEMBER_KEYS)}; "
                             f"they differ in {', '.join(sorted(diff))}")
    task = task_from_config(shared).to(device)
    keys = [(c["seed"], c["n_train"]) for c in cfgs]
    streams = {key: _DataStream(task, key[0], key[1], shared["batch_size"], device) for key in dict.fromkeys(keys)}
    order = list(streams)
    depth, act = shared["depth"], shared["activation"]
    model = BlockMLP(task.n_inputs, [c["width"] for c in cfgs], [order.index(k) for k in keys], depth,
                     ACTIVATIONS[act]())
    for m, c in enumerate(cfgs):
        model.load_member(m, _init_state(build_mlp(task.n_inputs, c["width"], depth, act), c["seed"]))
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=shared["lr"], weight_decay=shared["weight_decay"])

    g_eval = torch.Generator(device).manual_seed(shared["task_seed"] + 7_777)
    ev = [task.draw(shared["eval_samples"], g_eval, task=i) for i in range(task.n_tasks)]
    t_eval, b_eval = torch.cat([e[0] for e in ev]), torch.cat([e[1] for e in ev])
    y_eval = task.labels(t_eval, b_eval)
    probs = torch.from_numpy(task.probs).float().to(device)
    M, T, steps = len(cfgs), task.n_tasks, shared["steps"]
    first_learned = torch.full((M, T), -1, dtype=torch.int64, device=device)
    curve: list[list] = []

    def evaluate(step: int, train_loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            S = len(order)
            logits = torch.cat([model(t_eval[None, j:j + 8192].expand(S, -1), b_eval[None, j:j + 8192].expand(S, -1, -1))
                                for j in range(0, len(t_eval), 8192)], dim=1)
            ce = nn.functional.cross_entropy(logits.reshape(-1, 2), y_eval.repeat(M), reduction="none")
            loss = to_bits(ce.view(M, T, -1).mean(-1))
            acc = (logits.argmax(-1) == y_eval).float().view(M, T, -1).mean(-1)
        newly = (loss < LEARNED_BITS) & (first_learned < 0)
        first_learned[newly] = step
        test = loss @ probs
        curve.append([step, test.tolist(), train_loss.tolist()])
        if run_dir is not None:
            for m in range(M):
                run_dir.log_metrics({"step": step, "member": m, "train_loss": float(train_loss[m]),
                                     "test_loss": float(test[m]), "per_task_loss": loss[m].tolist(),
                                     "per_task_acc": acc[m].tolist()})
        return loss, acc

    train_loss = torch.full((M,), float("nan"), device=device)
    for step in range(steps + 1):
        if step % shared["log_every"] == 0 or step == steps:
            loss, acc = evaluate(step, train_loss)
        if step == steps:
            break
        t, bits, y = (torch.stack(a) for a in zip(*(streams[k].next() for k in order), strict=True))
        logits = model(t, bits)
        y = y[model.stream_idx]
        ce = nn.functional.cross_entropy(logits.reshape(-1, 2), y.reshape(-1), reduction="none").view(M, -1)
        per_member = ce.mean(1)
        opt.zero_grad(set_to_none=True)
        per_member.sum().backward()  # members share no parameters: each gets its own gradient
        opt.step()
        train_loss = to_bits(per_member.detach())

    model, loss, acc, probs, first_learned = model.cpu(), loss.cpu(), acc.cpu(), probs.cpu(), first_learned.cpu()
    models = []
    for m, c in enumerate(cfgs):
        models.append(build_mlp(task.n_inputs, c["width"], depth, act))
        models[-1].load_state_dict(model.member_state(m))
    results = []
    for m, c in enumerate(cfgs):
        learned = torch.nonzero(loss[m] < LEARNED_BITS).flatten().tolist()
        results.append({
            "config": c, "loss_unit": "bits", "per_task_loss": loss[m].tolist(), "per_task_acc": acc[m].tolist(),
            "learned": learned, "n_learned": len(learned), "test_loss": float(loss[m] @ probs),
            "train_loss": float(train_loss[m]), "n_params": sum(p.numel() for p in models[m].parameters()),
            "steps_to_learn": [None if s < 0 else int(s) for s in first_learned[m].tolist()],
            "curve": {"step": [r[0] for r in curve], "test_loss": [r[1][m] for r in curve],
                      "train_loss": [r[2][m] for r in curve]},
        })
    return models, results


def train_sparse_parity(config: dict, run_dir=None, *, device: str | torch.device = "cpu"
                        ) -> tuple[nn.Module, dict]:
    """Train one MLP on multitask sparse parity; returns the model (x → logits [n, 2]) and a result dict.

    Losses are in bits; `learned` lists subtasks below 0.1 bits. With `run_dir`, per-subtask loss and
    accuracy go to `metrics.jsonl` every `log_every` steps and the weights to safetensors.
    """
    models, results = train_sparse_parity_batched([config], run_dir, device=device)
    if run_dir is not None:
        run_dir.save_weights(models[0].state_dict())
    return models[0], results[0]
