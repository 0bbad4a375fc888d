"""Many sparse-parity MLPs as one block-masked model, so a width/seed/D sweep trains in one loop.

Members that see the same data stream are concatenated along the hidden axis: their first layer is
one matmul, and later layers are block-diagonal (a fixed mask zeroes cross-member weights, so their
gradients are zero and Adam leaves them at zero). Different streams are stacked on a leading axis,
padded to the widest stream. Each member therefore computes exactly what it would alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["BlockMLP"]


class BlockMLP(nn.Module):
    """Members m with hidden `widths[m]`, fed by data stream `streams[m]`; x = one-hot task ‖ bits.

    Weights start at zero; fill each member with `load_member`. Members of one stream are concatenated
    along the hidden axis, streams are stacked on a leading axis of size S = max(streams) + 1.

    Parameters
    ----------
    n_inputs : int
        n_tasks + n_bits.
    widths : sequence of int, length M
        Hidden units per layer of each member.
    streams : sequence of int, length M
        Data stream of each member, numbered from 0; members sharing a stream see the same batches.
    depth : int
        Hidden layers (≥ 1), shared by all members.
    activation : nn.Module
        The hidden activation, shared.

    Attributes
    ----------
    weights : ParameterList of float32 (S, d_out, d_in)
        One stacked matrix per layer; cross-member blocks are masked to zero.
    biases : ParameterList of float32 (S, d_out)
    mask0, mask1, … : float32 buffers, shaped like `weights`
        1 on each member's own blocks.
    stream_idx, slot_idx : int64 buffers (M,)
        Each member's stream and its output slot (pair of logits) within the stream.
    """

    def __init__(self, n_inputs: int, widths: Sequence[int], streams: Sequence[int], depth: int,
                 activation: nn.Module):
        super().__init__()
        self.widths, self.streams, self.depth, self.act = list(widths), list(streams), depth, activation
        n_streams = max(streams) + 1
        self.slot, self.offset, used, count = [], [], [0] * n_streams, [0] * n_streams
        for w, s in zip(widths, streams, strict=True):
            self.slot.append(count[s])
            self.offset.append(used[s])
            count[s] += 1
            used[s] += w
        hidden, slots = max(used), max(count)
        dims = [n_inputs] + [hidden] * depth + [2 * slots]
        self.weights = nn.ParameterList([nn.Parameter(torch.zeros(n_streams, b, a))
                                         for a, b in zip(dims[:-1], dims[1:], strict=True)])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(n_streams, b)) for b in dims[1:]])
        for j, w in enumerate(self.weights):
            mask = torch.zeros_like(w)
            for m in range(len(widths)):
                s, rows, cols = self._block(m, j)
                mask[s, rows, cols] = 1
            self.register_buffer(f"mask{j}", mask)
        self.register_buffer("stream_idx", torch.tensor(self.streams))
        self.register_buffer("slot_idx", torch.tensor(self.slot))

    def _block(self, m: int, layer: int) -> tuple[int, slice, slice]:
        """Stream, output rows and input columns of member m's weights in `layer`."""
        units = slice(self.offset[m], self.offset[m] + self.widths[m])
        rows = slice(2 * self.slot[m], 2 * self.slot[m] + 2) if layer == self.depth else units
        cols = slice(None) if layer == 0 else units
        return self.streams[m], rows, cols

    def load_member(self, m: int, state: dict) -> None:
        """Copy an `nn.Sequential` state dict (from `build_mlp`) into member m's blocks.

        Raises
        ------
        KeyError
            `state` lacks a layer ("0.weight", "2.weight", …) of a depth-`depth` MLP.
        RuntimeError
            A tensor's shape differs from member m's width.
        """
        with torch.no_grad():
            for j, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                s, rows, cols = self._block(m, j)
                w[s, rows, cols] = state[f"{2 * j}.weight"]
                b[s, rows] = state[f"{2 * j}.bias"]

    def member_state(self, m: int) -> dict[str, torch.Tensor]:
        """Member m's weights as an `nn.Sequential` state dict (a mapping by nature: torch's `load_state_dict`
        input, not a result).

        Returns
        -------
        dict str → float32 tensor
            "2j.weight" (d_out, d_in) and "2j.bias" (d_out,) for layer j, detached copies, loadable into
            `build_mlp(n_inputs, widths[m], depth)`.
        """
        state = {}
        for j, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            s, rows, cols = self._block(m, j)
            state[f"{2 * j}.weight"] = w[s, rows, cols].detach().clone()
            state[f"{2 * j}.bias"] = b[s, rows].detach().clone()
        return state

    def forward(self, t: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """Task ids t [S, B] and bits [S, B, n_bits] per stream → logits [M, B, 2] per member.

        The one-hot block of the first layer is a column lookup, so cost does not grow with n_tasks.

        Parameters
        ----------
        t : int64 tensor (S, B)
            Task ids in [0, n_tasks), one batch per stream.
        bits : int or float tensor (S, B, n_bits)
            Task bits in {0, 1}.

        Returns
        -------
        float32 tensor (M, B, 2)
            Member m's logits on its stream's batch, equal to its `build_mlp` model on the encoded input.
        """
        w0 = self.weights[0] * self.mask0
        n_tasks = w0.shape[2] - bits.shape[2]
        cols = w0[:, :, :n_tasks].transpose(1, 2)  # [S, n_tasks, H]
        h = torch.gather(cols, 1, t[:, :, None].expand(-1, -1, cols.shape[2]))
        h = torch.baddbmm(h + self.biases[0][:, None, :], bits.to(w0.dtype), w0[:, :, n_tasks:].transpose(1, 2))
        for j in range(1, self.depth + 1):
            w = self.weights[j] * getattr(self, f"mask{j}")
            h = torch.baddbmm(self.biases[j][:, None, :], self.act(h), w.transpose(1, 2))
        out = h.view(h.shape[0], h.shape[1], -1, 2)  # [S, B, slots, 2]
        return out[self.stream_idx, :, self.slot_idx, :]
