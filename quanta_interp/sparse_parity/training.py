"""Train multitask-sparse-parity MLPs: one at a time, or many widths/seeds/dataset sizes in one stacked
model (`BlockMLP`) whose members each compute exactly what they would alone."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..config import ParameterError
from .config import ACTIVATIONS, MEMBER_KEYS, SparseParityConfig
from .stack import BlockMLP
from .task import LEARNED_BITS, MultitaskSparseParity, to_bits

__all__ = ["build_mlp", "train_sparse_parity", "train_sparse_parity_batched", "load_trained"]


def build_mlp(n_inputs: int, width: int, depth: int = 1, activation: str = "relu") -> nn.Sequential:
    """The paper's MLP: `depth` hidden layers of `width` units, 2 logits out; float32 (B, n_inputs) → (B, 2).

    Returns
    -------
    nn.Sequential
        [Linear, activation] × depth, then Linear(width, 2): the linear layers are modules 0, 2, …, 2·depth.

    Raises
    ------
    KeyError
        `activation` is not one of relu, gelu, tanh, silu.
    """
    dims = [n_inputs] + [width] * depth
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        layers += [nn.Linear(a, b), getattr(nn, ACTIVATIONS[activation])()]
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
        """The next batch: (t, bits, y), each with `batch_size` rows."""
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


def train_sparse_parity_batched(configs: Sequence[SparseParityConfig], run_dir=None, *,
                                device: str | torch.device = "cpu") -> tuple[list[nn.Module], list[dict]]:
    """Train several MLPs at once in one stacked model; each equals training its config alone.

    Configs may differ only in width, seed (init and data) and n_train; everything else is shared.
    `run_dir` (an `io.RunDir`) receives one metrics row per member every `log_every` steps. Returned
    models are on the CPU; `device` (e.g. "cuda") only changes where training runs. On the CPU it runs
    single-threaded (these matrices are too small for intra-op threads; parallelise with processes).

    Parameters
    ----------
    configs : sequence of SparseParityConfig
        One per member.
    run_dir : io.RunDir or None
        Receives metrics rows: step, member, train_loss, test_loss, per_task_loss, per_task_acc.
    device : str or torch.device
        Where training runs.

    Returns
    -------
    models : list of nn.Sequential
        Plain MLPs (`build_mlp`), float32 encoded inputs (B, n_tasks + n_bits) → logits (B, 2).
    results : list of dict
        Per member: `config` (its `to_dict()`), `loss_unit` ("bits"), `per_task_loss` (bits) and
        `per_task_acc` (fraction) on `eval_samples` fresh samples of each subtask at the last step,
        `learned` (ids below 0.1 bits) and `n_learned`, `test_loss` (Σ_i p_i · loss_i, bits), `train_loss`
        (last batch, bits), `n_params`, `steps_to_learn` (per subtask, the first evaluation step below
        0.1 bits, or None) and `curve` (lists "step", "test_loss", "train_loss" at each evaluation).

    Raises
    ------
    ParameterError
        No configs, or configs that differ in a shared setting.
    """
    device = torch.device(device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return _train_batched(configs, run_dir, device)
    finally:
        torch.set_num_threads(threads)


def _train_batched(configs: Sequence[SparseParityConfig], run_dir, device: torch.device) -> tuple[list[nn.Module], list[dict]]:
    if not configs:
        raise ParameterError("configs", "must hold at least one config")
    cfgs = [c.to_dict() for c in configs]
    shared = {k: v for k, v in cfgs[0].items() if k not in MEMBER_KEYS}
    for c in cfgs[1:]:
        diff = [k for k in set(c) | set(shared) if k not in MEMBER_KEYS and c.get(k) != shared.get(k)]
        if diff:
            raise ParameterError("configs", f"of one batched run may differ only in {', '.join(MEMBER_KEYS)}; "
                                            f"they differ in {', '.join(sorted(diff))}")
    task = MultitaskSparseParity.of(configs[0]).to(device)
    keys = [(c["seed"], c["n_train"]) for c in cfgs]
    streams = {key: _DataStream(task, key[0], key[1], shared["batch_size"], device) for key in dict.fromkeys(keys)}
    order = list(streams)
    depth, act = shared["depth"], shared["activation"]
    model = BlockMLP(task.n_inputs, [c["width"] for c in cfgs], [order.index(k) for k in keys], depth,
                     getattr(nn, ACTIVATIONS[act])())
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


def train_sparse_parity(config: SparseParityConfig, run_dir=None, *, device: str | torch.device = "cpu"
                        ) -> tuple[nn.Module, dict]:
    """Train one MLP on multitask sparse parity; returns the model (float32 x (B, n_inputs) → logits (B, 2))
    and its result dict (see `train_sparse_parity_batched`).

    Losses are in bits; `learned` lists subtasks below 0.1 bits. With `run_dir`, per-subtask loss and
    accuracy go to `metrics.jsonl` every `log_every` steps and the weights to safetensors.

    Returns
    -------
    model : nn.Sequential
        The `build_mlp` network, on the CPU.
    result : dict
        As one member of `train_sparse_parity_batched`.
    """
    models, results = train_sparse_parity_batched([config], run_dir, device=device)
    if run_dir is not None:
        run_dir.save_weights(models[0].state_dict())
    return models[0], results[0]


def train_run(config: SparseParityConfig, out, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """`train_sparse_parity` into the run folder `out` (`io.RunDir`: config, metrics, weights), its result
    written as result.json; returns the model and the result.

    Raises
    ------
    ParameterError
        `out` holds a run of another config (see `io.RunDir`).
    """
    from ..io import RunDir

    run = RunDir(out, config.to_dict())
    model, result = train_sparse_parity(config, run, device=device)
    run.write_result(result)
    return model, result


def load_trained(folder, device: str = "cpu") -> tuple[nn.Sequential, SparseParityConfig, dict]:
    """The model (on `device`), config and result of a finished `train_sparse_parity` run folder (`io.RunDir`).

    Raises
    ------
    FileNotFoundError
        `folder` holds no finished run (weights.safetensors and result.json).
    ParameterError
        `device` is not usable here (`config.check_device`).
    """
    from ..config import check_device
    from ..io import RunDir

    check_device(device)
    run = RunDir(folder)
    if not (run.path / "weights.safetensors").exists() or not run.done:
        raise FileNotFoundError(f"{folder} holds no finished run (weights.safetensors, result.json); train one with "
                                "`quanta sparse-parity train`")
    cfg = SparseParityConfig.from_dict(run.config)
    model = build_mlp(cfg.n_tasks + cfg.n_bits, cfg.width, cfg.depth, cfg.activation)
    model.load_state_dict(run.load_weights())
    return model.to(device), cfg, run.result()
