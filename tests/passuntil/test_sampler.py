import json

import numpy as np
import pytest
import torch

from quanta_interp.io import RunDir
from quanta_interp.passuntil import (
    Instance,
    PassUntil,
    builtin_instances,
    estimate_pass_rate,
    exact_probability,
    load_instances,
    task_pass_rate,
)
from quanta_interp.passuntil.tasks import addition_tokenizer


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and far faster than on two when cores are shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny():
    """An untrained 1-layer bridge over the addition alphabet; the answers are the first two characters
    of the sum, so pass rates span ~2e-4 to 3e-2 and are known exactly."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    tok = addition_tokenizer()
    cfg = TransformerBridgeConfig(n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=16,
                                  d_vocab=tok.vocab_size, act_fn="gelu", seed=3)
    model = TransformerBridge.boot_native(cfg).eval()
    inst = [Instance(i.prompt, i.answer[:2], i.key) for i in builtin_instances("addition", 40, digits=2)]
    return model, tok, inst


def counts(records):
    return [r.passes for r in records], [r.samples for r in records]


def test_sampler_estimates_agree_with_exact_teacher_forced_probability(tiny):
    model, tok, inst = tiny
    exact = np.exp(exact_probability(model, inst, tok))
    assert exact.max() / exact.min() > 30  # a real spread of difficulties
    records = PassUntil(r=3, k_max=8000, batch_size=2048, seed=0).run(model, inst, tokenizer=tok,
                                                                      show_progress=False)
    passes, samples = counts(records)
    assert 0 < sum(p < 3 for p in passes) < len(inst)  # some runs hit k_max: censored estimates are checked too
    rates = estimate_pass_rate(passes, samples, r=3, method="unbiased")
    inside = (rates.lower <= exact) & (exact <= rates.upper)
    assert inside.mean() >= 0.85  # 95% intervals; 40 instances
    task = task_pass_rate(passes, samples, r=3, method="unbiased")
    assert task.ci[0] <= exact.mean() <= task.ci[1]
    done = ~rates.censored
    assert abs(np.mean(rates.log_p[done] - np.log(exact[done]))) < 0.5  # unbiased log-p: error averages out


def test_temperature_and_top_k_sample_the_distribution_exact_probability_scores(tiny):
    model, tok, inst = tiny
    inst = inst[:8]
    for kwargs in ({"temperature": 0.5}, {"top_k": 1}):
        exact = np.exp(exact_probability(model, inst, tok, **kwargs))
        records = PassUntil(r=3, k_max=3000, batch_size=1024, **kwargs).run(model, inst, tokenizer=tok,
                                                                            show_progress=False)
        rates = estimate_pass_rate(*counts(records), r=3)
        assert np.mean((rates.lower <= exact) & (exact <= rates.upper)) >= 0.75
    assert set(np.round(exact, 6)) <= {0.0, 1.0}  # top-1 sampling is greedy: pass rate 0 or 1


def test_any_checker_gets_full_continuations(tiny):
    model, tok, inst = tiny
    first = [Instance(i.prompt, i.answer[0], i.key) for i in inst[:6]]
    exact_first = np.exp(exact_probability(model, first, tok))  # P(first answer token)
    sampler = PassUntil(r=3, k_max=4000, checker=lambda text, ans: len(text) == len(ans) and text[0] == ans[0])
    records = sampler.run(model, inst[:6], tokenizer=tok, show_progress=False)
    rates = estimate_pass_rate(*counts(records), r=3)
    assert np.mean((rates.lower <= exact_first) & (exact_first <= rates.upper)) >= 0.8


def test_same_seed_same_records_and_resume_skips_finished_instances(tiny, tmp_path):
    model, tok, inst = tiny
    inst = inst[:6]
    pu = PassUntil(r=2, k_max=500, batch_size=256, seed=7)
    full = pu.run(model, inst, tokenizer=tok, show_progress=False)
    assert full == pu.run(model, inst, tokenizer=tok, show_progress=False)
    assert full != PassUntil(r=2, k_max=500, batch_size=256, seed=8).run(model, inst, tokenizer=tok,
                                                                        show_progress=False)
    run = RunDir(tmp_path / "run")
    pu.run(model, inst[:3], tokenizer=tok, run_dir=run, show_progress=False)  # "killed" after 3 instances
    calls = []

    def spy(instance, n, seed):
        calls.append(instance.key)
        raise AssertionError("finished instances must not be sampled again")

    assert pu.run(spy, inst[:3], run_dir=run, show_progress=False) == full[:3] and not calls
    assert pu.run(model, inst, tokenizer=tok, run_dir=run, show_progress=False) == full


def bernoulli_model(p: dict):
    """A callable model: each continuation is the answer with probability p[key]."""
    def sample(instance, n, seed):
        hits = np.random.default_rng(seed).random(n) < p[instance.key]
        return [instance.answer if h else "wrong" for h in hits]
    return sample


def test_callable_model_and_a_raising_checker(tmp_path):
    inst = [Instance("q", "a", id=f"i{j}") for j in range(3)]
    p = {"i0": 0.5, "i1": 0.01, "i2": 0.0}
    records = PassUntil(r=2, k_max=2000, batch_size=64).run(bernoulli_model(p), inst, show_progress=False)
    assert [r.passes for r in records] == [2, 2, 0] and records[2].samples == 2000
    assert records[0].samples < 40 < records[1].samples

    def checker(text, answer):
        if text == "wrong":
            raise RuntimeError("checker broke")
        return True

    rec = PassUntil(r=1, k_max=100, checker=checker).run(bernoulli_model({"i0": 0.0}), inst[:1], show_progress=False)
    assert rec[0].errors == 100 and rec[0].passes == 0 and "checker broke" in rec[0].error


def test_bad_input_raises_one_line(tmp_path):
    with pytest.raises(ValueError, match="r must be"):
        PassUntil(r=0)
    with pytest.raises(ValueError, match="k_max must be"):
        PassUntil(r=5, k_max=3)
    with pytest.raises(ValueError, match="answer must be a non-empty"):
        Instance("1+1=", "")
    path = tmp_path / "inst.jsonl"
    path.write_text(json.dumps({"prompt": "1+1=", "answer": "2\n"}) + "\n" + json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"inst.jsonl:2"):
        load_instances(path)
    path.write_text(json.dumps({"prompt": "1+1=", "answer": "2\n", "id": "a"}) + "\n")
    assert load_instances(path) == [Instance("1+1=", "2\n", "a")]
