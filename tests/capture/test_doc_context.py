"""Shared-prefix capture at the paper's context: each target's row equals the per-window path (gradients and
losses), with fewer forwards than targets; the windowing rule, batching by window and its bad input."""

import numpy as np
import pytest
import torch

from quanta_interp.capture import DEFAULT_MATRIX_DIM, DEFAULT_PROJECTION_DIM, GradientCapture, select_modules
from quanta_interp.capture.doc import doc_windows, forward_groups, shared_prefix_gradients, window_groups
from quanta_interp.capture.windows import per_token_gradients, window_batch
from quanta_interp.config import ParameterError


@pytest.fixture(scope="module")
def tiny():
    """Four layers (two give the sketch too few matrices to spread the gradient over, see `TensorSketch`)."""
    from transformer_lens.config import TransformerBridgeConfig as Config
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_native(Config(n_layers=4, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=23,
                                                n_ctx=32, act_fn="gelu", seed=0, normalization_type="LN"))


@pytest.fixture(scope="module")
def docs():
    rng = np.random.default_rng(5)
    return [rng.integers(0, 23, 60), rng.integers(0, 23, 30)]


# two windows of doc 0 and one of doc 1; prefixes from 2 to 28 tokens, one target alone in its window
ROWS = np.array([[0, 0, 20], [0, 0, 5], [0, 0, 19], [0, 16, 44], [1, 0, 2], [0, 0, 18], [0, 16, 40], [1, 0, 28],
                 [0, 0, 12]])


def _per_window(model, cap, docs, rows):
    out = [per_token_gradients(model, cap, *window_batch(docs, r[None])) for r in rows]
    return torch.cat([v for v, _ in out]), torch.cat([loss for _, loss in out])


@pytest.mark.parametrize("projection_dim", [None, 256])
def test_shared_windows_equal_the_per_window_path(tiny, docs, projection_dim):
    cap = GradientCapture.for_model(select_modules(tiny, "all"), projection_dim, matrix_dim=64, seed=1)
    forwards = []
    handle = tiny.register_forward_hook(lambda *_: forwards.append(1))
    try:
        got, loss = shared_prefix_gradients(tiny, cap, docs, ROWS)
    finally:
        handle.remove()
    ref, ref_loss = _per_window(tiny, cap, docs, ROWS)
    assert got.shape == (9, cap.dim) and cap.positions is None and not cap.retain
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-6)
    # one forward per prefix group of each window: (0, 0) holds prefixes 5…20, (0, 16) 24 and 28, (1, 0) 2 and 28
    groups = [forward_groups(np.array(p)) for p in ([5, 12, 18, 19, 20], [24, 28], [2, 28])]
    assert [len(g) for g in groups] == [2, 1, 2] and len(forwards) == 5
    assert all(p.requires_grad for p in tiny.parameters()) and all(p.grad is None for p in tiny.parameters())


def test_sketched_cosines_track_exact_ones(tiny, docs):
    mods = select_modules(tiny, "all")
    rows = doc_windows(np.array([[d, 0, p] for d, p in [(0, 9), (0, 13), (0, 17), (0, 24), (0, 27), (0, 33),
                                                        (0, 38), (0, 45), (0, 51), (0, 58), (1, 7), (1, 21)]]), 16)
    exact, _ = shared_prefix_gradients(tiny, GradientCapture.for_model(mods, None), docs, rows)
    default = GradientCapture.for_model(mods, DEFAULT_PROJECTION_DIM, matrix_dim=DEFAULT_MATRIX_DIM, seed=0)
    sketched, _ = shared_prefix_gradients(tiny, default, docs, rows)

    def cosines(v):
        v = v.double() / v.double().norm(dim=1, keepdim=True)
        return (v @ v.T)[np.triu_indices(len(v), 1)]

    err = (cosines(sketched) - cosines(exact)).abs()
    assert 0 < err.mean() <= 0.02 and cosines(exact).abs().mean() > 0.05


def test_the_store_captures_shared_windows_as_the_per_window_path(tiny, docs, tmp_path):
    from quanta_interp.capture import GradientStore, capture_gradients

    rows = doc_windows(np.array([[d, 0, p] for d, p in [(0, 9), (0, 13), (0, 17), (0, 24), (0, 27), (0, 33), (0, 38),
                                                        (0, 45), (0, 51), (0, 58), (1, 7), (1, 21)]]), 16)
    kw = dict(batch_tokens=40, show_progress=False)
    exact = capture_gradients(tiny, docs, rows, tmp_path / "exact", projection_dim=None, **kw)
    shared = capture_gradients(tiny, docs, rows, tmp_path / "shared", projection_dim=None, shared_windows=True, **kw)
    np.testing.assert_array_equal(shared.targets, rows)
    assert shared.ok.all() and shared.meta == exact.meta
    np.testing.assert_allclose(shared.losses, exact.losses, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(shared.gradients, exact.gradients, atol=1e-5, rtol=1e-4)
    sketched = capture_gradients(tiny, docs, rows, tmp_path / "sketched", projection_dim=DEFAULT_PROJECTION_DIM,
                                 matrix_sketch_dim=DEFAULT_MATRIX_DIM, shared_windows=True, **kw)

    def cosines(v):
        v = np.asarray(v, np.float64)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        return (v @ v.T)[np.triu_indices(len(v), 1)]

    assert np.abs(cosines(sketched.gradients) - cosines(exact.gradients)).mean() <= 0.02
    longest = int((rows[:, 2] - rows[:, 1]).max())
    with pytest.raises(ParameterError, match=f"^batch_tokens must be at least {longest}, the longest shared window"):
        capture_gradients(tiny, docs, rows, tmp_path / "refused", shared_windows=True, batch_tokens=longest - 1)
    assert not (tmp_path / "refused").exists()
    assert isinstance(GradientStore(tmp_path / "shared"), GradientStore)  # reopened, checksums verified


def test_the_paper_context_rule_keeps_half_a_window():
    pos = np.arange(1, 200)
    rows = doc_windows(np.stack([np.zeros_like(pos), np.full_like(pos, 7), pos], 1), 64)
    context = pos - rows[:, 1]
    assert (rows[pos <= 64, 1] == 0).all() and (context[pos <= 64] == pos[pos <= 64]).all()
    assert context[pos > 64].min() == 32 and context[pos > 64].max() == 63 and (rows[:, 1] % 32 == 0).all()
    assert rows[pos == 65, 1] == 32 and rows[pos == 96, 1] == 64  # pos 96 would have 64 tokens in window 32
    # a window's tokens (longest context of its targets) never pass C
    for s in np.unique(rows[:, 1]):
        assert context[rows[:, 1] == s].max() <= 64
    with pytest.raises(ParameterError, match="^context must be at least 2"):
        doc_windows(rows, 1)


def test_forward_groups_split_off_short_prefixes():
    assert [g.tolist() for g in forward_groups(np.array([10, 11, 12, 100]))] == [[0, 1, 2], [3]]
    assert [g.tolist() for g in forward_groups(np.array([90, 95, 99, 100]))] == [[0, 1, 2, 3]]
    # a forward 20 times a backward: one forward for all
    assert [g.tolist() for g in forward_groups(np.array([10, 11, 12, 100]), forward_cost=100)] == [[0, 1, 2, 3]]


def test_batches_hold_whole_windows_and_bad_input(tiny, docs):
    batches = window_groups(ROWS, 40)
    assert sorted(np.concatenate(batches).tolist()) == list(range(9))
    windows = [{tuple(ROWS[i, :2]) for i in b} for b in batches]
    assert windows == [{(0, 0)}, {(0, 16)}, {(1, 0)}]  # 20 + 28 > 40 tokens: one window per batch
    assert len(window_groups(ROWS, 80)) == 1 and window_groups(np.zeros((0, 3)), 10) == []
    with pytest.raises(ParameterError, match="^batch_tokens must be at least 28, the longest shared window"):
        window_groups(ROWS, 27)
    cap = GradientCapture.for_model(select_modules(tiny, "all"), 16)
    with pytest.raises(ValueError, match="longer than the model's n_ctx = 32; cut the targets with doc_windows"):
        shared_prefix_gradients(tiny, cap, docs, np.array([[0, 0, 40]]))


def test_bench_rows_share_one_window_with_half_to_full_context(docs):
    from quanta_interp.bench.qdg_gradients import doc_rows

    rows = doc_rows(docs, context=32, n_targets=10, seed=3)
    context = rows[:, 2] - rows[:, 1]
    assert len(np.unique(rows[:, :2], axis=0)) == 1 and rows[0, 0] == 0  # doc 1 has only 30 tokens
    assert context.min() >= 16 and context.max() < 32 and len(np.unique(context)) == 10
    with pytest.raises(ValueError, match="longer than 64 tokens"):
        doc_rows(docs, context=64, n_targets=4, seed=0)

