"""Per-token gradients: exact equals autograd (padded windows too), the projection is a TensorSketch with
unbiased inner products, weight sharing sums, streaming, resume, extension and NaN rows."""

import numpy as np
import pytest
import torch

from quanta_interp import capture
from quanta_interp.capture import (
    GradientCapture,
    capture_activations,
    capture_gradients,
    length_batches,
    per_sample_gradients,
    per_token_gradients,
    select_modules,
    window_batch,
)
from quanta_interp.config import ParameterError


@pytest.fixture(scope="module")
def tiny():
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg = TransformerBridgeConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=23, n_ctx=16,
                                  act_fn="gelu", seed=0, normalization_type="LN")
    return TransformerBridge.boot_native(cfg)


def _autograd(model, modules, windows):
    """Reference: one backward per (tokens, target) example, weight (and bias) .grad flattened in module order."""
    rows = []
    for x, y in windows:
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[None])[:, -1], y[None]).backward()
        rows.append(torch.cat([torch.cat([m.weight.grad, m.bias.grad[:, None]], 1).flatten() for m in modules.values()]))
    model.zero_grad()
    return torch.stack(rows)


def test_exact_gradients_match_autograd_from_one_backward(tiny):
    mods = select_modules(tiny, "all")
    assert len(mods) == 12 and not any("unembed" in n for n in mods)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(0, 23, (4, 10), generator=g), torch.randint(0, 23, (4,), generator=g)
    cap = GradientCapture.for_model(mods, None)
    vec, loss = per_token_gradients(tiny, cap, x, torch.full((4,), 10), y)
    assert vec.shape == (4, cap.dim) and cap.dim == sum(m.weight.numel() + m.bias.numel() for m in mods.values())
    torch.testing.assert_close(vec, _autograd(tiny, mods, zip(x, y, strict=True)), atol=1e-5, rtol=1e-4)
    ref_loss = torch.nn.functional.cross_entropy(tiny(x)[:, -1], y, reduction="none")
    torch.testing.assert_close(loss, ref_loss.detach(), atol=1e-5, rtol=1e-5)
    assert all(p.requires_grad for p in tiny.parameters())  # weights unfrozen afterwards


def test_padded_windows_of_different_lengths_equal_unpadded_ones(tiny):
    rng = np.random.default_rng(4)
    docs = [rng.integers(0, 23, 30), rng.integers(0, 23, 25)]
    rows = np.array([[0, 3, 12], [1, 0, 4], [0, 10, 25], [1, 20, 21]])  # windows of 9, 4, 15 and 1 tokens
    windows, lengths, ys = window_batch(docs, rows)
    assert windows.shape == (4, 15) and lengths.tolist() == [9, 4, 15, 1] and ys.tolist() == [docs[0][12], docs[1][4],
                                                                                             docs[0][25], docs[1][21]]
    mods = select_modules(tiny, "all")
    exact, loss = per_token_gradients(tiny, GradientCapture.for_model(mods, None), windows, lengths, ys)
    ref = _autograd(tiny, mods, [(torch.from_numpy(docs[d][s:p]), torch.tensor(docs[d][p])) for d, s, p in rows])
    torch.testing.assert_close(exact, ref, atol=1e-5, rtol=1e-4)
    sketch = GradientCapture.for_model(mods, 256, matrix_dim=64, seed=1)
    packed, _ = per_token_gradients(tiny, sketch, windows, lengths, ys)
    one_by_one = torch.cat([per_token_gradients(tiny, sketch, *window_batch(docs, r[None]))[0] for r in rows])
    torch.testing.assert_close(packed, one_by_one, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="outside the document"):
        window_batch(docs, np.array([[1, 10, 25]]))


def _sketch_from_exact(cap, exact, mods):
    """Reference: every entry of each matrix's exact gradient added at its coordinate with its sign."""
    out, off = torch.zeros(len(exact), cap.dim), 0
    for name, m in mods.items():
        coord, sign = cap.sketch.bucket_of(name, m.in_features)
        n = m.out_features * (m.in_features + 1)
        G = exact[:, off: off + n].reshape(len(exact), m.out_features, m.in_features + 1)
        out.index_add_(1, coord.flatten(), (G * sign).flatten(1))
        off += n
    return out


def test_projection_is_a_tensor_sketch_with_unbiased_inner_products(tiny):
    mods = select_modules(tiny, "mlp")
    g = torch.Generator().manual_seed(2)
    x, y = torch.randint(0, 23, (6, 8), generator=g), torch.randint(0, 23, (6,), generator=g)
    full = torch.full((6,), 8)
    exact, _ = per_token_gradients(tiny, GradientCapture.for_model(mods, None), x, full, y)
    for k, m in ((64, 64), (256, 32)):  # one sketch of size k, and per-matrix sketches of m lifted into k
        cap = GradientCapture.for_model(mods, k, matrix_dim=m, seed=3)
        proj, _ = per_token_gradients(tiny, cap, x, full, y)
        assert proj.shape == (6, k) and cap.dim == k and cap.sketch.m == m
        torch.testing.assert_close(proj, _sketch_from_exact(cap, exact, mods), atol=1e-4, rtol=1e-3)
    # averaged over seeds the inner products are unbiased; one sketch's error shrinks like 1/√k
    exact_gram, unit = exact @ exact.T, exact / exact.norm(dim=1, keepdim=True)
    grams = torch.stack([(v := _sketch_from_exact(GradientCapture.for_model(mods, 16, seed=s), exact, mods)) @ v.T
                         for s in range(2000)])
    assert torch.allclose(grams.mean(0), exact_gram, atol=0.05 * exact_gram.diag().mean().item())
    iu = torch.triu_indices(6, 6, 1)

    def cos_error(k, seed):
        v = _sketch_from_exact(GradientCapture.for_model(mods, k, matrix_dim=k, seed=seed), exact, mods)
        v = v / v.norm(dim=1, keepdim=True)
        return ((v @ v.T - unit @ unit.T)[iu[0], iu[1]]).abs().mean().item()

    small, large = (np.mean([cos_error(k, s) for s in range(10)]) for k in (64, 4096))
    assert large < 0.03 and 4 < small / large < 16  # √(4096/64) = 8


def test_a_module_applied_twice_gets_the_sum_of_both_applications():
    torch.manual_seed(0)
    shared, head = torch.nn.Linear(5, 5), torch.nn.Linear(5, 3)
    model = torch.nn.Sequential(shared, torch.nn.Tanh(), shared, head)  # `shared` runs twice per forward
    x, y = torch.randn(4, 5), torch.tensor([0, 2, 1, 0])
    got = per_sample_gradients(model, x, y, params="^0$")
    ref = []
    for i in range(4):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i: i + 1]), y[i: i + 1]).backward()
        ref.append(torch.cat([shared.weight.grad, shared.bias.grad[:, None]], 1).flatten())
    torch.testing.assert_close(got, torch.stack(ref), atol=1e-5, rtol=1e-4)


def test_parameter_presets_and_bad_input(tiny):
    assert set(select_modules(tiny, "layers 1")) == {n for n in capture.linear_modules(tiny) if n.startswith("blocks.1.")}
    assert all(".mlp." in n for n in select_modules(tiny, "mlp"))
    assert list(select_modules(tiny, r"attn\.q$")) == ["blocks.0.attn.q", "blocks.1.attn.q"]
    with pytest.raises(ParameterError, match="^params 'layers 7-9' matches no weight"):
        select_modules(tiny, "layers 7-9")
    with pytest.raises(ParameterError, match="^projection_dim must be a positive integer"):
        GradientCapture.for_model(select_modules(tiny), -3)


def test_length_batches_group_similar_windows_within_the_token_budget():
    lengths = np.array([5, 40, 6, 38, 7, 100])
    batches = length_batches(lengths, 80)
    assert [b.tolist() for b in batches] == [[5], [1, 3], [4, 2, 0]]
    assert all(lengths[b].max() * len(b) <= 80 for b in batches if len(b) > 1)


def test_capture_streams_resumes_extends_and_counts_nan(tiny, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 22, 60), rng.integers(0, 22, 40)]
    docs[1][20] = 22  # token 22's embedding is set to NaN below: windows containing it give NaN gradients
    targets = np.array([[0, p - 8, p] for p in range(8, 40, 4)] + [[1, 4, 12], [1, 17, 25], [1, 22, 30]])
    kw = dict(projection_dim=4, batch_tokens=24, show_progress=False)
    fresh = capture_gradients(tiny, docs, targets, tmp_path / "a", **kw)
    assert fresh.ok.all() and fresh.gradients.shape == (11, 4) and fresh.targets.shape == (11, 3)

    calls = {"n": 0}
    real = capture.store.per_token_gradients

    def dies_after_two(*a, **k):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(capture.store, "per_token_gradients", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        capture_gradients(tiny, docs, targets, tmp_path / "b", **kw)
    monkeypatch.setattr(capture.store, "per_token_gradients", real)
    assert (np.load(tmp_path / "b" / "status.npy") == 1).sum() == 6  # two batches of three 8-token windows
    resumed = capture_gradients(tiny, docs, targets, tmp_path / "b", **kw)
    np.testing.assert_allclose(resumed.gradients, fresh.gradients, atol=1e-5)
    with pytest.raises(ValueError, match="other settings"):
        capture_gradients(tiny, docs, targets, tmp_path / "b", **{**kw, "projection_dim": 5})
    with pytest.raises(ValueError, match="other settings or tokens"):
        capture_gradients(tiny, docs, targets[::-1], tmp_path / "b", **kw)
    # more targets after the stored ones: only the new rows are captured
    extended = capture_gradients(tiny, docs, np.vstack([targets[:8], [[0, 40, 50]]]), tmp_path / "x", **kw)
    assert extended.ok.sum() == 9
    more = np.vstack([targets[:8], [[0, 40, 50]], targets[8:]])
    grown = capture_gradients(tiny, docs, more, tmp_path / "x", **kw)
    np.testing.assert_allclose(np.asarray(grown.gradients)[[*range(8), *range(9, 12)]], fresh.gradients, atol=1e-5)
    assert grown.meta["n"] == 12

    with torch.no_grad():
        emb = tiny.embed._original_component.weight
        saved = emb[22].clone()
        emb[22] = float("nan")
    try:
        nan = capture_gradients(tiny, docs, targets, tmp_path / "c", **kw)
    finally:
        with torch.no_grad():
            emb[22] = saved
    assert nan.status.tolist() == [1] * 8 + [1, -1, 1]  # only the window holding position 20 of doc 1
    idx, vectors = nan.valid()
    assert idx.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10] and np.isfinite(vectors).all()


def test_activations_at_the_predicting_position(tiny, tmp_path):
    docs = [np.arange(30) % 23]
    acts = capture_activations(tiny, docs, np.array([[0, 4, 10], [0, 14, 20]]), ["blocks.1.hook_resid_post"],
                               tmp_path)
    arr = np.load(tmp_path / "blocks.1.hook_resid_post.npy")
    _, cache = tiny.run_with_cache(torch.tensor(docs[0][14:20])[None], names_filter=["blocks.1.hook_resid_post"])
    np.testing.assert_allclose(arr[1], cache["blocks.1.hook_resid_post"][0, -1].numpy(), atol=1e-5)
    _, cache = tiny.run_with_cache(torch.tensor(docs[0][4:10])[None], names_filter=["blocks.1.hook_resid_post"])
    np.testing.assert_allclose(arr[0], cache["blocks.1.hook_resid_post"][0, -1].numpy(), atol=1e-5)
    assert acts["blocks.1.hook_resid_post"].shape == (2, 16)
