"""LM layer on tiny models: training, round trips, per-token losses, resume after SIGKILL, bad input."""

import dataclasses
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from quanta_interp import lm

VOCAB = 13


def _tokens(n: int, seed: int = 0) -> np.ndarray:
    """A learnable stream: a noisy walk through the vocabulary (next = current + 1 mod V, mostly)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, dtype=np.int64)
    for i in range(1, n):
        out[i] = (out[i - 1] + 1) % VOCAB if rng.random() < 0.9 else rng.integers(VOCAB)
    return out


CFG = lm.TrainConfig(d_vocab=VOCAB, n_layers=1, d_model=32, n_heads=2, n_ctx=32, steps=40, batch_size=8, warmup=5,
                     eval_every=20, checkpoint_every=10, eval_batches=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("lm") / "run"
    result = lm.train(CFG, _tokens(4000), val_tokens=_tokens(1000, seed=1), run_dir=run, progress=False)
    return run, result


def test_train_learns_and_writes_a_run(trained):
    run, result = trained
    for name in ("config.json", "metrics.jsonl", "weights.safetensors", "model_config.json", "result.json"):
        assert (run / name).exists(), name
    # the walk has entropy ≈ 0.9·0 + H(noise) ≈ 0.6 nats; chance is ln 13 = 2.56
    assert result.val_loss < 1.5 < np.log(VOCAB)
    assert result.best_val_loss <= result.val_loss
    assert result.steps == 40 and result.n_params > result.n_params_non_embedding > 0
    # non-embedding: attention 4·(32·32+32) + MLP (32·128+128+128·32+32) + 2 block LayerNorms + ln_final
    assert result.n_params_non_embedding == 4 * (32 * 32 + 32) + (2 * 32 * 128 + 128 + 32) + 3 * 2 * 32


def test_load_run_round_trip_gives_same_logits(trained):
    run, _ = trained
    model = lm.load(str(run)).bridge
    again = lm.load(run).bridge
    x = torch.from_numpy(_tokens(32, seed=3))[None]
    assert torch.equal(model(x), again(x))
    assert lm.load(run).spec == str(run) and model.cfg.n_ctx == 32
    fresh = lm.build_model(CFG)
    assert not torch.allclose(model(x), fresh(x))


def test_token_losses_match_direct_forward(trained):
    model = lm.load(trained[0]).bridge
    docs = [_tokens(100, seed=5), _tokens(7, seed=6)]
    losses = lm.token_losses(model, docs, context=16, stride=4, batch_size=3, progress=False)
    assert losses.shape == (2, 100)
    assert np.isnan(losses[:, 0]).all() and np.isnan(losses[1, 7:]).all() and not np.isnan(losses[0, 1:]).any()
    with torch.inference_mode():
        for d, p in [(0, 1), (0, 15), (0, 16), (0, 17), (0, 50), (0, 99), (1, 6)]:
            start = max(0, (max(p - 16, 0) + 3) // 4 * 4)  # the window that first scores target p
            ctx = torch.from_numpy(docs[d][start:p])[None]
            want = torch.log_softmax(model(ctx)[0, -1], -1)[docs[d][p]].neg().item()
            assert losses[d, p] == pytest.approx(want, abs=1e-5), (d, p)
    # a longer context never hurts a trained model on average; a 2-D array of rows is accepted too
    short = lm.token_losses(model, np.stack([docs[0]] * 2), context=2, progress=False)
    assert np.nanmean(short) > np.nanmean(losses[0]) - 0.05


def test_train_resumes_after_sigkill_with_identical_weights(tmp_path):
    from safetensors.torch import load_file

    cfg = CFG.replace(steps=30)
    script = textwrap.dedent(f"""
        import time, numpy as np, torch
        torch.set_num_threads({torch.get_num_threads()})
        import quanta_interp.lm.training as T
        slow = T._lr
        T._lr = lambda s, c: (time.sleep(0.05), slow(s, c))[1]
        from tests.lm.test_lm import _tokens, CFG
        T.train(CFG.replace(steps=30), _tokens(4000), val_tokens=_tokens(1000, seed=1), run_dir={str(tmp_path / 'k')!r},
                progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    ckpt = tmp_path / "k" / "checkpoint.safetensors"
    deadline = time.time() + 60
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "k" / "result.json").exists()
    resumed = lm.train(cfg, _tokens(4000), val_tokens=_tokens(1000, seed=1), run_dir=tmp_path / "k", progress=False)
    straight = lm.train(cfg, _tokens(4000), val_tokens=_tokens(1000, seed=1), run_dir=tmp_path / "s", progress=False)
    a, b = load_file(tmp_path / "k" / "weights.safetensors"), load_file(tmp_path / "s" / "weights.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert resumed == dataclasses.replace(straight, train_tokens_per_s=resumed.train_tokens_per_s)
    steps = [r["step"] for r in map(__import__("json").loads, (tmp_path / "k" / "metrics.jsonl").read_text().splitlines())]
    assert steps == [10, 20, 30]


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    cfg = CFG.replace(steps=20, warmup=0, lr=1e30, checkpoint_every=1, grad_clip=1e30)
    with pytest.raises(ValueError, match=r"training loss became .* at step \d+; stopped, the last good checkpoint"):
        lm.train(cfg, _tokens(2000), run_dir=tmp_path / "nan", progress=False)
    weights = lm.load(tmp_path / "nan").bridge.state_dict()
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_bad_input_is_one_clear_line(trained, tmp_path):
    model = lm.load(trained[0]).bridge
    with pytest.raises(ValueError, match=r"context must be in \[1, 32\]"):
        lm.token_losses(model, [_tokens(50)], context=64)
    with pytest.raises(ValueError, match=r"vocabulary is \[0, 13\)"):
        lm.token_losses(model, [np.array([1, 2, 40])], context=16)
    with pytest.raises(ValueError, match="corpus is empty"):
        lm.token_losses(model, [np.zeros(0, dtype=np.int64)], context=16)
    with pytest.raises(ValueError, match="corpus is empty"):
        lm.train(CFG, np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match=r"vocabulary is \[0, 13\)"):
        lm.train(CFG, np.full(100, 20))
    with pytest.raises(ValueError, match="unknown keys"):
        lm.train(lm.TrainConfig.from_dict(dict(CFG.to_dict(), stepz=3)), _tokens(100))
    with pytest.raises(ValueError, match="neither an HF model"):
        lm.load(tmp_path)


def test_convergence_rule_stops_a_constant_lr_run_and_keeps_its_checkpoints(tmp_path):
    """A constant learning rate with converge_tol stops at the first evaluation s ≥ 4·eval_every whose held-out
    loss fell < tol since s/2; the run is the prefix of a longer one (same weights at every kept step), and a
    kept checkpoint loads as a model."""
    from quanta_interp.lm.training import checkpoint_steps

    cfg = CFG.replace(steps=400, eval_every=10, schedule="constant", converge_tol=0.05, keep_checkpoints=True)
    result = lm.train(cfg, _tokens(4000), val_tokens=_tokens(1000, seed=1), run_dir=tmp_path / "c", progress=False)
    assert result.converged and 40 <= result.steps < 400 and result.steps % 20 == 0
    evals = {r["step"]: r["val_loss"] for r in map(__import__("json").loads,
                                                   (tmp_path / "c" / "metrics.jsonl").read_text().splitlines())}
    s = result.steps
    assert evals[s] > 0.95 * evals[s // 2]  # the rule held where it stopped …
    assert all(evals[t] <= 0.95 * evals[t // 2] for t in range(40, s, 20))  # … and nowhere before
    kept = checkpoint_steps(tmp_path / "c")
    assert sorted(kept) == list(range(10, s + 1, 10))
    # a run with twice the ceiling and no rule passes through the same weights (constant lr, batches by step)
    longer = lm.train(cfg.replace(steps=2 * s, converge_tol=None), _tokens(4000), val_tokens=_tokens(1000, seed=1),
                      run_dir=tmp_path / "l", progress=False)
    assert longer.converged is None and "converged" not in longer.to_dict() and longer.steps == 2 * s
    x = torch.from_numpy(_tokens(32, seed=3))[None]
    half = lm.load(str(kept[s // 2]))
    assert half.spec == str(kept[s // 2]) and half.tokenizer is None
    assert torch.equal(half.bridge(x), lm.load(checkpoint_steps(tmp_path / "l")[s // 2]).bridge(x))
    assert not torch.equal(half.bridge(x), lm.load(tmp_path / "c").bridge(x))
    assert lm.train(cfg, _tokens(4000), val_tokens=_tokens(1000, seed=1), run_dir=tmp_path / "c") == result
    with pytest.raises(ValueError, match="converge_tol stops on the held-out loss; pass val_tokens"):
        lm.train(cfg, _tokens(4000))
    with pytest.raises(ValueError, match="schedule"):
        CFG.replace(schedule="linear")
