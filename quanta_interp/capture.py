"""Activations and per-token gradients of a TransformerLens bridge, streamed to disk.

Per-token gradients (QDG): the context is cut at the target (a window of W tokens ending just
before it) and only the last position is supervised, so the per-window gradient *is* the
per-target gradient and a batch of B windows gives B gradients from one backward pass. Forward
hooks on the chosen `nn.Linear` modules keep each layer's input a; a tensor hook on its output
receives the output gradient g; the per-example weight gradient is Σ_s g_s a_sᵀ (a bias joins as a
constant input 1). *Projected* mode stores a seeded TensorSketch of the whole gradient in k numbers
(`GradientCapture`): inner products unbiased, memory O(k) per token, the full gradient never exists.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .io import Sweep, atomic_save_npy, atomic_write_json, progress, read_json

__all__ = ["DEFAULT_PROJECTION_DIM", "PRESETS", "linear_modules", "select_modules", "GradientCapture", "window_batch",
           "capture_gradients", "capture_gradients_sharded", "per_sample_gradients", "GradientStore",
           "capture_activations"]

DEFAULT_PROJECTION_DIM = 4096  # sketch size k: cosine error ≈ 0.8·√((1 + cos²)/k) ≈ 0.013
PRESETS = {"all": r".", "mlp": r"(^|\.)mlp\.", "attn": r"attn"}
_UNEMBED = re.compile(r"^(unembed|lm_head)\b|\.lm_head$")


def _clean(name: str) -> str:
    """A bridge module name without the wrapper levels: `blocks.3.mlp.up_proj`."""
    return name.replace("._original_component", "")


def linear_modules(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """Every non-embedding, non-unembedding `nn.Linear`, keyed by a readable name (`blocks.3.mlp.up_proj`)."""
    found = {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            clean = _clean(name)
            if not _UNEMBED.search(clean):
                found[clean] = mod
    return found


def _pattern(params: str) -> str:
    """A preset ("all", "mlp", "attn", "layers 3-5") or a regular expression, as a regex."""
    if params in PRESETS:
        return PRESETS[params]
    m = re.fullmatch(r"layers?\s*(\d+)(?:\s*-\s*(\d+))?", params.strip())
    if m:
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        return r"^blocks\.(" + "|".join(str(i) for i in range(lo, hi + 1)) + r")\."
    return params


def select_modules(model: torch.nn.Module, params: str = "all") -> dict[str, torch.nn.Linear]:
    """The weight matrices named by `params`; one ValueError if it matches nothing."""
    try:
        rx = re.compile(_pattern(params))
    except re.error as e:
        raise ValueError(f"--params {params!r} is neither a preset ({', '.join(PRESETS)}, 'layers A-B') "
                         f"nor a valid regular expression ({e})") from e
    chosen = {n: m for n, m in linear_modules(model).items() if rx.search(n)}
    if not chosen:
        raise ValueError(f"--params {params!r} matches no weight matrix; accepted: {', '.join(PRESETS)}, "
                         f"'layers A-B' or a regex over names like {next(iter(linear_modules(model)), '?')}")
    return chosen


class GradientCapture:
    """Per-example gradients w.r.t. the weights of `modules` from one backward pass.

    `projection_dim=None` is exact (Σ d_out·(d_in+bias) numbers). An int k sketches the whole gradient,
    all layers together, into k numbers with a seeded TensorSketch (Pham & Pagh 2013): a layer's
    Σ_s g_s a_sᵀ becomes Σ_s CountSketch(g_s) ⊛ CountSketch(a_s) (circular convolution by FFT), so no
    d_out × d_in matrix and no k × d projection ever exists. Inner products are unbiased and their error
    is O(‖x‖‖y‖/√k) however the gradient norm is spread over layers.
    Use as a context manager around forward + backward, then read `vectors()` (B × dim).
    """

    def __init__(self, modules: dict[str, torch.nn.Linear], projection_dim: int | None = None, seed: int = 0):
        if projection_dim is not None and projection_dim <= 0:
            raise ValueError(f"--projection-dim must be a positive integer (or omitted for exact), got {projection_dim}")
        self.modules, self.projection_dim, self.seed = modules, projection_dim, seed
        self._hashes: dict[str, tuple[torch.Tensor, ...]] = {}
        if projection_dim is not None:
            gen, k = torch.Generator().manual_seed(seed), projection_dim
            for name, mod in modules.items():  # (bucket, sign) for each output row, then each input column (+ bias)
                d_in = mod.in_features + (mod.bias is not None)
                self._hashes[name] = tuple(t.to(mod.weight.device) for d in (mod.out_features, d_in) for t in
                                           (torch.randint(k, (d,), generator=gen),
                                            torch.randint(2, (d,), generator=gen).float() * 2 - 1))
        self._grads: dict[str, torch.Tensor] = {}
        self._handles: list = []

    @property
    def dims(self) -> dict[str, int]:
        """Exact gradient size of each layer."""
        return {n: m.out_features * (m.in_features + (m.bias is not None)) for n, m in self.modules.items()}

    @property
    def dim(self) -> int:
        return self.projection_dim or sum(self.dims.values())

    def _sketch(self, name: str, g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """TensorSketch of Σ_s g_s a_sᵀ for each example: (B, S, d_out), (B, S, d_in) → (B, k)."""
        k, (h_out, s_out, h_in, s_in) = self.projection_dim, self._hashes[name]

        def count_sketch(x, h, sign):
            return x.new_zeros(*x.shape[:-1], k).index_add_(-1, h[: x.shape[-1]], x * sign[: x.shape[-1]])

        ca = count_sketch(a.float(), h_in, s_in)
        if a.shape[-1] < h_in.numel():  # the bias: a constant input 1 in the last hashed column
            ca[..., h_in[-1]] += s_in[-1]
        spectrum = torch.fft.rfft(count_sketch(g.float(), h_out, s_out)) * torch.fft.rfft(ca)
        return torch.fft.irfft(spectrum.sum(1), n=k)

    def _hook(self, name: str):
        def forward_hook(mod, inputs, out):
            a = inputs[0].detach()
            a = a[:, None] if a.dim() == 2 else a  # (batch, features) inputs: one position per example
            if mod.bias is not None and not self.projection_dim:
                a = torch.cat([a, a.new_ones(*a.shape[:-1], 1)], -1)

            def backward_hook(g):
                g = g.detach()
                g = g[:, None] if g.dim() == 2 else g
                self._grads[name] = (self._sketch(name, g, a) if self.projection_dim
                                     else torch.einsum("bso,bsi->boi", g, a).flatten(1))

            if out.requires_grad:
                out.register_hook(backward_hook)
        return forward_hook

    def __enter__(self) -> GradientCapture:
        self._grads.clear()
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def vectors(self) -> torch.Tensor:
        missing = [n for n in self.modules if n not in self._grads]
        if missing:
            raise RuntimeError(f"no gradient reached {missing[:3]}: the backward pass did not run through them")
        if self.projection_dim:
            return torch.stack([self._grads[n] for n in self.modules]).sum(0)
        return torch.cat([self._grads[n] for n in self.modules], 1)


@contextmanager
def grads_only_for(model: torch.nn.Module, params: Sequence[torch.nn.Parameter] = ()):
    """Within the block only `params` require gradients; every flag is restored afterwards."""
    chosen = {id(p) for p in params}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(id(p) in chosen)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def _activation_grads_only(model: torch.nn.Module):
    """Backward computes activation gradients only: weights are frozen, embedding outputs become leaves."""
    handles = [m.register_forward_hook(lambda mod, i, out: out.detach().requires_grad_(True))
               for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    try:
        with grads_only_for(model):
            yield
    finally:
        for h in handles:
            h.remove()


def window_batch(docs: Sequence[np.ndarray], targets: np.ndarray, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of `context` tokens ending just before each target (doc, pos), and the target ids."""
    rows, ys = [], []
    for d, p in targets:
        if p < context:
            raise ValueError(f"target at position {p} of document {d} has fewer than --context={context} tokens before it")
        doc = docs[int(d)]
        rows.append(np.asarray(doc[p - context: p], dtype=np.int64))
        ys.append(int(doc[p]))
    return torch.from_numpy(np.stack(rows)), torch.tensor(ys)


def _last_position_logits(model: torch.nn.Module) -> list:
    """Hooks that feed only the last position to the unembedding: the other logits are never needed."""
    return [m.register_forward_pre_hook(lambda mod, args: (args[0][:, -1:], *args[1:]))
            for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and _UNEMBED.search(_clean(name))]


def per_token_gradients(model, capture: GradientCapture, windows: torch.Tensor, targets: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B × dim gradients, B losses in nats) of each window's last-position loss, from one backward."""
    device = next(model.parameters()).device
    handles = _last_position_logits(model)
    try:
        with _activation_grads_only(model), capture, torch.enable_grad():
            logits = model(windows.to(device))[:, -1].float()
            losses = torch.nn.functional.cross_entropy(logits, targets.to(device), reduction="none")
            losses.sum().backward()
            return capture.vectors().float().cpu(), losses.detach().cpu()
    finally:
        for h in handles:
            h.remove()


def per_sample_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, params: str = ".",
                         projection_dim: int | None = None, seed: int = 0) -> torch.Tensor:
    """Per-sample gradients of the cross-entropy of any classifier made of `nn.Linear` layers (e.g. the
    sparse-parity MLP), one backward for the batch; `params` as in `select_modules`."""
    cap = GradientCapture(select_modules(model, params), projection_dim, seed)
    with cap, torch.enable_grad():
        torch.nn.functional.cross_entropy(model(x), y, reduction="sum").backward()
    model.zero_grad(set_to_none=True)
    return cap.vectors()


class GradientStore:
    """On-disk gradients: `gradients.npy` (n × dim, float32), `status.npy` (0 pending, 1 ok, −1 NaN),
    `losses.npy`, `capture.json` (settings, layer names and dims). Memory-mapped; rows fill in order."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.meta = read_json(self.path / "capture.json")
        self.gradients = np.load(self.path / "gradients.npy", mmap_mode="r")
        self.status = np.load(self.path / "status.npy")
        self.losses = np.load(self.path / "losses.npy")
        self.targets = np.load(self.path / "targets.npy")

    @property
    def ok(self) -> np.ndarray:
        return self.status == 1

    def valid(self) -> tuple[np.ndarray, np.ndarray]:
        """(row indices with finite gradients, their vectors loaded into memory)."""
        idx = np.flatnonzero(self.ok)
        return idx, np.asarray(self.gradients[idx])


def capture_gradients(model, docs: Sequence[np.ndarray], targets: np.ndarray, out: str | Path, *,
                      context: int, params: str = "all", projection_dim: int | None = DEFAULT_PROJECTION_DIM, batch_size: int = 16,
                      seed: int = 0) -> GradientStore:
    """Per-token gradients for `targets` ((doc, pos) rows) streamed to `out`; a rerun resumes."""
    out = Path(out)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1, 2)
    modules = select_modules(model, params)
    cap = GradientCapture(modules, projection_dim, seed)
    meta = {"context": context, "params": params, "projection_dim": projection_dim, "seed": seed,
            "n": len(targets), "dim": cap.dim, "layers": cap.dims}
    files = {k: out / f"{k}.npy" for k in ("gradients", "status", "losses", "targets")}
    if (out / "capture.json").exists():
        old = read_json(out / "capture.json")
        if old != meta or not np.array_equal(np.load(files["targets"]), targets):
            raise ValueError(f"{out} holds gradients captured with other settings or tokens; use another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        if cap.dim * len(targets) * 4 > 64e9:
            raise ValueError(f"exact gradients need {cap.dim * len(targets) * 4 / 1e9:.0f} GB; pass --projection-dim")
        np.lib.format.open_memmap(files["gradients"], "w+", np.float32, (len(targets), cap.dim)).flush()
        for k, dtype in (("status", np.int8), ("losses", np.float32)):
            atomic_save_npy(files[k], np.zeros(len(targets), dtype))
        atomic_save_npy(files["targets"], targets)
        atomic_write_json(out / "capture.json", meta)
    grads = np.load(files["gradients"], mmap_mode="r+")
    status, losses = np.load(files["status"]), np.load(files["losses"])
    todo = np.flatnonzero(status == 0)
    bar = progress(total=len(targets), initial=len(targets) - len(todo), desc="per-token gradients", unit="tok")
    try:
        for start in range(0, len(todo), batch_size):
            rows = todo[start: start + batch_size]
            windows, ys = window_batch(docs, targets[rows], context)
            vec, loss = per_token_gradients(model, cap, windows, ys)
            finite = torch.isfinite(vec).all(1) & torch.isfinite(loss)
            grads[rows] = torch.where(finite[:, None], vec, 0.0).numpy()
            grads.flush()
            losses[rows], status[rows] = loss.numpy(), np.where(finite.numpy(), 1, -1)
            atomic_save_npy(files["losses"], losses)
            atomic_save_npy(files["status"], status)  # written after the vectors: a kill never marks a row it lost
            bar.update(len(rows))
    finally:
        bar.close()
    return GradientStore(out)


def capture_activations(model, docs: Sequence[np.ndarray], targets: np.ndarray, hook_names: Sequence[str],
                        out: str | Path, *, context: int, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Activations at the last window position (the one predicting each target) for `hook_names`,
    written to `out/<hook name>.npy` as they are produced; returns memory maps."""
    out = Path(out)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1, 2)
    arrays: dict[str, np.ndarray] = {}
    device = next(model.parameters()).device
    for start in progress(range(0, len(targets), batch_size), desc="activations"):
        windows, _ = window_batch(docs, targets[start: start + batch_size], context)
        with torch.no_grad():
            _, cache = model.run_with_cache(windows.to(device), names_filter=lambda n: n in hook_names)
        for name in hook_names:
            if name not in cache:
                raise ValueError(f"hook {name!r} is not a hook of this model (e.g. blocks.0.hook_resid_post)")
            act = cache[name][:, -1].float().cpu().numpy()
            if name not in arrays:
                out.mkdir(parents=True, exist_ok=True)
                arrays[name] = np.lib.format.open_memmap(out / f"{name}.npy", "w+", np.float32,
                                                         (len(targets), *act.shape[1:]))
            arrays[name][start: start + len(act)] = act
    for arr in arrays.values():
        arr.flush()
    return arrays


def _capture_shard(config: dict, run_dir, *, docs: Sequence[np.ndarray], targets: np.ndarray) -> dict:
    """`map_runs` worker: load the model by spec and capture one contiguous slice of the targets."""
    from . import lm

    lo, hi = config["rows"]
    model = lm.load(config["model"], device=config.get("device", "cpu"))
    store = capture_gradients(model, docs, targets[lo:hi], Path(run_dir.path) / "gradients", context=config["context"],
                              params=config["params"], projection_dim=config["projection_dim"],
                              batch_size=config["batch_size"], seed=config["seed"])
    return {"rows": [lo, hi], "n_ok": int(store.ok.sum())}  # the sweep's result.json: what each shard captured


def capture_gradients_sharded(model_spec: str, docs: Sequence[np.ndarray], targets: np.ndarray, out: str | Path, *,
                              shards: int, context: int, params: str = "all", projection_dim: int | None = 16,
                              batch_size: int = 16, seed: int = 0, device: str = "cpu", **executor) -> GradientStore:
    """`capture_gradients` split into `shards` tasks run by `executors.map_runs` (e.g. on Ray), each loading
    `model_spec` itself; the driver concatenates the shards in order into `out`. Shards hold whole batches, so
    the result equals the unsharded capture byte for byte."""
    from .executors import map_runs

    targets = np.asarray(targets, dtype=np.int64).reshape(-1, 2)
    if shards < 1:
        raise ValueError(f"shards must be ≥ 1, got {shards}")
    n_batches = -(-len(targets) // batch_size)
    bounds = [min(len(targets), batch_size * (n_batches * i // shards)) for i in range(shards + 1)]
    configs = [{"model": model_spec, "rows": [lo, hi], "context": context, "params": params, "device": device,
                "projection_dim": projection_dim, "batch_size": batch_size, "seed": seed}
               for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]
    out = Path(out)
    map_runs(partial(_capture_shard, docs=list(docs), targets=targets), configs, root=out / "shards",
             name="gradient-shards", desc="gradient shards", **executor)
    sweep = Sweep(out / "shards", configs, name="gradient-shards")
    parts = [GradientStore(sweep.run_dir(i).path / "gradients") for i in range(len(configs))]
    meta = {**parts[0].meta, "n": len(targets), "shards": len(parts)}
    out.mkdir(parents=True, exist_ok=True)
    for name in ("gradients", "status", "losses", "targets"):
        atomic_save_npy(out / f"{name}.npy", np.concatenate([np.asarray(getattr(p, name)) for p in parts]))
    atomic_write_json(out / "capture.json", meta)
    return GradientStore(out)
