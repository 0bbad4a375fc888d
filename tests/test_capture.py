"""Per-token gradients: exact equals autograd, projection is a TensorSketch, streaming, resume, NaN rows."""

import numpy as np
import pytest
import torch

from quanta_interp import capture
from quanta_interp.capture import (
    GradientCapture,
    capture_activations,
    capture_gradients,
    per_token_gradients,
    select_modules,
)


@pytest.fixture(scope="module")
def tiny():
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg = TransformerBridgeConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=23, n_ctx=16,
                                  act_fn="gelu", seed=0, normalization_type="LN")
    return TransformerBridge.boot_native(cfg)


def _autograd(model, modules, x, y):
    """Reference: one backward per example, weight (and bias) .grad flattened in module order."""
    rows = []
    for b in range(len(x)):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[b: b + 1])[:, -1], y[b: b + 1]).backward()
        rows.append(torch.cat([torch.cat([m.weight.grad, m.bias.grad[:, None]], 1).flatten() for m in modules.values()]))
    model.zero_grad()
    return torch.stack(rows)


def test_exact_gradients_match_autograd_from_one_backward(tiny):
    mods = select_modules(tiny, "all")
    assert len(mods) == 12 and not any("unembed" in n for n in mods)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(0, 23, (4, 10), generator=g), torch.randint(0, 23, (4,), generator=g)
    cap = GradientCapture(mods)
    vec, loss = per_token_gradients(tiny, cap, x, y)
    assert vec.shape == (4, cap.dim) and cap.dim == sum(m.weight.numel() + m.bias.numel() for m in mods.values())
    torch.testing.assert_close(vec, _autograd(tiny, mods, x, y), atol=1e-5, rtol=1e-4)
    ref_loss = torch.nn.functional.cross_entropy(tiny(x)[:, -1], y, reduction="none")
    torch.testing.assert_close(loss, ref_loss.detach(), atol=1e-5, rtol=1e-5)
    assert all(p.requires_grad for p in tiny.parameters())  # weights unfrozen afterwards


def _tensor_sketch(cap, exact, mods):
    """Reference: hash every entry of each layer's exact gradient G[o, i] to bucket (h_o + h_i) mod k."""
    k, out, off = cap.projection_dim, torch.zeros(len(exact), cap.projection_dim), 0
    for name, m in mods.items():
        h_out, s_out, h_in, s_in = cap._hashes[name]
        n = m.out_features * (m.in_features + 1)
        G = exact[:, off: off + n].reshape(len(exact), m.out_features, m.in_features + 1)
        buckets = ((h_out[:, None] + h_in[None]) % k).flatten()
        out.index_add_(1, buckets, (G * (s_out[:, None] * s_in[None])).flatten(1))
        off += n
    return out


def test_projection_is_a_tensor_sketch_with_unbiased_inner_products(tiny):
    mods = select_modules(tiny, "mlp")
    g = torch.Generator().manual_seed(2)
    x, y = torch.randint(0, 23, (6, 8), generator=g), torch.randint(0, 23, (6,), generator=g)
    exact, _ = per_token_gradients(tiny, GradientCapture(mods), x, y)
    cap = GradientCapture(mods, projection_dim=64, seed=3)
    proj, _ = per_token_gradients(tiny, cap, x, y)
    assert proj.shape == (6, 64) and cap.dim == 64
    torch.testing.assert_close(proj, _tensor_sketch(cap, exact, mods), atol=1e-4, rtol=1e-3)
    # averaged over seeds the inner products are unbiased; one sketch's error shrinks like 1/√k
    exact_gram, unit = exact @ exact.T, exact / exact.norm(dim=1, keepdim=True)
    grams = torch.stack([(v := _tensor_sketch(GradientCapture(mods, 16, s), exact, mods)) @ v.T for s in range(2000)])
    assert torch.allclose(grams.mean(0), exact_gram, atol=0.05 * exact_gram.diag().mean().item())
    iu = torch.triu_indices(6, 6, 1)

    def cos_error(k, seed):
        v = _tensor_sketch(GradientCapture(mods, k, seed), exact, mods)
        v = v / v.norm(dim=1, keepdim=True)
        return ((v @ v.T - unit @ unit.T)[iu[0], iu[1]]).abs().mean().item()

    small, large = (np.mean([cos_error(k, s) for s in range(10)]) for k in (64, 4096))
    assert large < 0.03 and 4 < small / large < 16  # √(4096/64) = 8


def test_parameter_presets_and_bad_input(tiny):
    assert set(select_modules(tiny, "layers 1")) == {n for n in capture.linear_modules(tiny) if n.startswith("blocks.1.")}
    assert all(".mlp." in n for n in select_modules(tiny, "mlp"))
    assert list(select_modules(tiny, r"attn\.q$")) == ["blocks.0.attn.q", "blocks.1.attn.q"]
    with pytest.raises(ValueError, match="matches no weight"):
        select_modules(tiny, "layers 7-9")
    with pytest.raises(ValueError, match="projection-dim"):
        GradientCapture(select_modules(tiny), projection_dim=0)


def test_capture_streams_resumes_and_counts_nan(tiny, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 22, 60), rng.integers(0, 22, 40)]
    docs[1][20] = 22  # token 22's embedding is set to NaN below: windows containing it give NaN gradients
    targets = np.array([[0, p] for p in range(8, 40, 4)] + [[1, 12], [1, 25], [1, 30]])
    fresh = capture_gradients(tiny, docs, targets, tmp_path / "a", context=8, projection_dim=4, batch_size=3)
    assert fresh.ok.all() and fresh.gradients.shape == (11, 4)

    calls = {"n": 0}
    real = capture.per_token_gradients

    def dies_after_two(*a, **k):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(capture, "per_token_gradients", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        capture_gradients(tiny, docs, targets, tmp_path / "b", context=8, projection_dim=4, batch_size=3)
    monkeypatch.setattr(capture, "per_token_gradients", real)
    assert (np.load(tmp_path / "b" / "status.npy") == 1).sum() == 6
    resumed = capture_gradients(tiny, docs, targets, tmp_path / "b", context=8, projection_dim=4, batch_size=3)
    np.testing.assert_allclose(resumed.gradients, fresh.gradients, atol=1e-5)
    with pytest.raises(ValueError, match="other settings"):
        capture_gradients(tiny, docs, targets, tmp_path / "b", context=8, projection_dim=5)

    with torch.no_grad():
        emb = tiny.embed._original_component.weight
        saved = emb[22].clone()
        emb[22] = float("nan")
    try:
        nan = capture_gradients(tiny, docs, targets, tmp_path / "c", context=8, projection_dim=4, batch_size=3)
    finally:
        with torch.no_grad():
            emb[22] = saved
    assert nan.status.tolist() == [1] * 8 + [1, -1, 1]  # only the window holding position 20 of doc 1
    idx, vectors = nan.valid()
    assert idx.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10] and np.isfinite(vectors).all()


def test_activations_at_the_predicting_position(tiny, tmp_path):
    docs = [np.arange(30) % 23]
    acts = capture_activations(tiny, docs, np.array([[0, 10], [0, 20]]), ["blocks.1.hook_resid_post"], tmp_path,
                               context=6)
    arr = np.load(tmp_path / "blocks.1.hook_resid_post.npy")
    _, cache = tiny.run_with_cache(torch.tensor(docs[0][14:20])[None], names_filter=["blocks.1.hook_resid_post"])
    np.testing.assert_allclose(arr[1], cache["blocks.1.hook_resid_post"][0, -1].numpy(), atol=1e-5)
    assert acts["blocks.1.hook_resid_post"].shape == (2, 16)
