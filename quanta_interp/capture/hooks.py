"""Per-example weight gradients from one backward pass, through hooks on `nn.Linear` modules.

A forward hook keeps each chosen layer's input a; a tensor hook on its output receives the output
gradient g; the per-example gradient is Σ_s g_s a_sᵀ over the example's positions s (a bias joins as a
constant input 1). Where it goes is decided elsewhere: exact vectors (`sketch=None`) or a `TensorSketch`.
A module applied several times in one forward gets the sum over its applications, as autograd would.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch

from .sketch import TensorSketch

__all__ = ["GradientCapture", "grads_only_for", "activation_grads_only"]


class GradientCapture:
    """Per-example gradients w.r.t. the weights (and biases) of `modules`, as a context manager around
    one forward + backward; then `vectors()` is float32 (B, dim).

    Each layer's per-example gradient is Σ_s g_s a_sᵀ over the example's positions s (output gradient g,
    input a), read by hooks during the one backward pass of the batch: no per-example backward.

    Parameters
    ----------
    modules : dict name → nn.Linear
        The matrices, in the order of the exact vector's blocks (see `select_modules`).
    sketch : TensorSketch or None
        None stores exact gradients (Σ d_out·(d_in + bias) numbers per example); a sketch stores `sketch.dim`.

    Attributes
    ----------
    valid : bool tensor (B, S) or None
        Set before the forward when examples are right-padded: positions outside it are skipped (their
        output gradient is zero anyway, as padding comes after each example's supervised position).
        Used by the sketch only, and only for inputs whose (B, S) matches its shape.
    positions : int or None
        Set before a backward pass whose gradient reaches only the first `positions` positions (a target
        inside a longer shared window): later positions are skipped, as their output gradient is zero.
    retain : bool
        Several backward passes through one forward (`retain_graph`): input spectra are kept for all of
        them (until `reset`), and each pass's vectors are read with `pop`.
    dims : dict name → int
        Exact gradient size of each matrix, d_out·(d_in + 1 if bias else d_in).
    dim : int
        Length of each row of `vectors()`.
    """

    def __init__(self, modules: dict[str, torch.nn.Linear], sketch: TensorSketch | None = None):
        self.modules, self.sketch = modules, sketch
        self.valid: torch.Tensor | None = None
        self.positions: int | None = None
        self.retain = False
        self._grads: dict[str, torch.Tensor] = {}
        self._spectra: dict[tuple, torch.Tensor] = {}  # input spectra shared by matrices reading one input
        self._readers: dict[tuple, int] = {}
        self._handles: list = []

    @classmethod
    def for_model(cls, modules: dict[str, torch.nn.Linear], projection_dim: int | None, *, matrix_dim: int = 512,
                  seed: int = 0) -> GradientCapture:
        """Exact when `projection_dim` is None or 0, else a `TensorSketch` on the modules' device.

        Parameters
        ----------
        projection_dim : int or None
            k, the sketch length per example; None or 0 for exact gradients.
        matrix_dim : int
            m, the buckets of each matrix's own TensorSketch (see `TensorSketch`).
        seed : int
            Seeds the sketch's hashes.

        Returns
        -------
        GradientCapture

        Raises
        ------
        ParameterError
            `projection_dim` is negative or not an integer, or `matrix_dim` is not a positive integer.
        """
        if not projection_dim:
            return cls(modules)
        device = next(iter(modules.values())).weight.device
        shapes = {n: (m.out_features, m.in_features, m.bias is not None) for n, m in modules.items()}
        return cls(modules, TensorSketch(shapes, projection_dim, matrix_dim=matrix_dim, seed=seed, device=device))

    @property
    def dims(self) -> dict[str, int]:
        """Exact gradient size of each matrix (weight plus bias)."""
        return {n: m.out_features * (m.in_features + (m.bias is not None)) for n, m in self.modules.items()}

    @property
    def dim(self) -> int:
        """Length of each row of `vectors()`: `sketch.dim`, or the sum of `dims` when exact."""
        return self.sketch.dim if self.sketch else sum(self.dims.values())

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, d) for sequences, (B, 1, d) for plain (B, d) inputs."""
        return x[:, None] if x.dim() == 2 else x

    def _contribution(self, name: str, mod: torch.nn.Linear, a: torch.Tensor, g: torch.Tensor, key: tuple):
        bias = mod.bias is not None
        cut = slice(None, self.positions)
        if self.sketch is None:
            if bias:
                a = torch.cat([a, a.new_ones(*a.shape[:-1], 1)], -1)
            return torch.einsum("bso,bsi->boi", g[:, cut].float(), a[:, cut].float()).flatten(1)
        valid = self.valid if self.valid is not None and self.valid.shape == a.shape[:2] else None
        spectrum = self._spectra.get(key)
        if spectrum is None:
            spectrum = self.sketch.input_spectrum(a[valid] if valid is not None else a, bias)
            self._spectra[key] = spectrum
        self._readers[key] -= 1
        if self._readers[key] == 0 and not self.retain:
            del self._spectra[key]
        if valid is None:
            return self.sketch.matrix_spectrum(name, g[:, cut], spectrum[:, cut])
        example = valid.nonzero()[:, 0]
        return self.sketch.matrix_spectrum(name, g[valid], spectrum, example, len(g))

    def _hook(self, name: str):
        def forward_hook(mod, inputs, out):
            if not out.requires_grad:
                return
            a = self._rows(inputs[0].detach())
            key = (a.data_ptr(), tuple(a.shape), tuple(a.stride()), a._version, mod.bias is not None)
            self._readers[key] = self._readers.get(key, 0) + 1

            def backward_hook(g):
                part = self._contribution(name, mod, a, self._rows(g.detach()), key)
                self._grads[name] = self._grads[name] + part if name in self._grads else part

            out.register_hook(backward_hook)
        return forward_hook

    def reset(self) -> None:
        """Forget gradients and input spectra: before a new forward when `retain` keeps them."""
        self._grads.clear()
        self._spectra.clear()
        self._readers.clear()

    def __enter__(self) -> GradientCapture:
        self.reset()
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._spectra.clear()

    def vectors(self) -> torch.Tensor:
        """float32 (B, dim): the exact gradients in module order, or their sketch.

        Call after the backward pass, inside or after the `with` block.

        Returns
        -------
        float32 tensor (B, dim), on the modules' device
            Exact: one block per module, in `modules` order, each the row-major (d_out, d_in [+ 1]) gradient
            of [W | b] (the bias is the last column), so not `cat(W.grad.flatten(), b.grad)`. Sketched: the
            `TensorSketch.combine` of all matrices. Row b is example b's own gradient of the loss backwarded,
            as long as examples do not interact in the forward (no batch statistics).

        Raises
        ------
        RuntimeError
            A chosen matrix received no gradient (the backward pass did not run through it).
        """
        missing = [n for n in self.modules if n not in self._grads]
        if missing:
            raise RuntimeError(f"no gradient reached {missing[:3]}: the backward pass did not run through them")
        if self.sketch is not None:
            return self.sketch.combine(self._grads)
        return torch.cat([self._grads[n] for n in self.modules], 1)

    def pop(self) -> torch.Tensor:
        """`vectors()` of the backward passes since the last `pop`, then cleared for the next one."""
        try:
            return self.vectors()
        finally:
            self._grads.clear()


@contextmanager
def grads_only_for(model: torch.nn.Module, params: Sequence[torch.nn.Parameter] = ()):
    """Within the block only `params` require gradients; every flag is restored afterwards.

    With no `params`, every parameter is frozen (see `activation_grads_only`).
    """
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
def activation_grads_only(model: torch.nn.Module):
    """Backward computes activation gradients only: weights are frozen, embedding outputs become leaves.

    The cheapest backward that still reaches every layer's output gradient g, which is all
    `GradientCapture` needs; no parameter `.grad` is written. Flags and hooks are restored afterwards.
    """
    handles = [m.register_forward_hook(lambda mod, i, out: out.detach().requires_grad_(True))
               for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    try:
        with grads_only_for(model):
            yield
    finally:
        for h in handles:
            h.remove()
