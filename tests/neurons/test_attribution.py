"""Neurons ↔ quanta by attribution on a tiny native model: the gradient formula, the ablations, bad input."""

import numpy as np
import pytest
import torch

from quanta_interp.config import ParameterError
from quanta_interp.io import atomic_write_json
from quanta_interp.neurons.attribution import quanta_neurons

HOOK = "blocks.1.mlp.hook_post"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, make_tiny_lm):
    root = tmp_path_factory.mktemp("attr")
    corpus, model = make_tiny_lm(root, [120] * 3)
    # a fake discover run: quanta = targets grouped by their character (' ', 'a', 't', then the rest)
    tok = corpus.tokenizer.token_str
    groups = {" ": [], "a": [], "t": [], "other": []}
    for d in range(3):
        ids = corpus.doc(d)
        for pos in range(20, len(ids), 7):
            t = tok(int(ids[pos]))
            groups[t if t in groups else "other"].append({"doc": d, "start": pos - 16, "pos": pos, "target": t})
    clusters = [{"rank": r + 1, "size": len(m), "top_targets": [[k, len(m)]], "members": m}
                for r, (k, m) in enumerate(sorted(groups.items(), key=lambda kv: -len(kv[1])))]
    run = root / "discover"
    atomic_write_json(run / "summary.json", {"model": "tiny", "tokenizer": corpus.tokenizer.fingerprint()})
    atomic_write_json(run / "clusters.json", clusters)
    return corpus, model, run, clusters


def loss_with(model, corpus, rows, edit):
    """Summed loss of the members' targets with `edit(act)` applied at HOOK (all positions)."""
    from quanta_interp.capture.windows import window_batch

    w, lengths, targets = window_batch([corpus.doc(d) for d in range(3)], rows)
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=[(HOOK, lambda a, hook: edit(a))]):
        logits = model.bridge(w)
    return torch.nn.functional.cross_entropy(logits[torch.arange(len(w)), lengths - 1], targets, reduction="sum").item()


def test_attribution_is_the_derivative_and_ablations_are_measured(tiny):
    corpus, model, run, clusters = tiny
    means = np.linspace(-0.1, 0.2, 48).astype(np.float32)
    res = quanta_neurons(model, corpus, run, 1, means=means, mean_source="given", quanta=2, top_n=5, draws=4,
                         max_members=1000, n_other=1000, desc=None)
    assert res.hook == HOOK and [q.rank for q in res.quanta] == [1, 2]
    q = res.quanta[0]
    rows = np.array([(m["doc"], m["start"], m["pos"]) for m in clusters[0]["members"]])
    assert q.n_members == len(rows) == clusters[0]["size"]
    mu = torch.as_tensor(means)
    base = loss_with(model, corpus, rows, lambda a: a)
    assert q.base_loss == pytest.approx(base / len(rows), abs=1e-4)
    # A_i = d/dε L(a + ε(μ − a)) at ε = 0 for neuron i, all positions: central finite difference
    eps = 1e-3
    for i, a_i in zip(q.top_attribution[:2], q.attribution[:2], strict=True):
        def move(a, s, i=i):
            a = a.clone()
            a[..., i] += s * eps * (mu[i] - a[..., i])
            return a
        fd = (loss_with(model, corpus, rows, lambda a, m=move: m(a, 1)) -
              loss_with(model, corpus, rows, lambda a, m=move: m(a, -1))) / (2 * eps)
        assert a_i == pytest.approx(fd, rel=2e-2, abs=1e-3)
    assert q.attribution == sorted(q.attribution, reverse=True)

    def ablate(a, idx=q.top_attribution):
        a = a.clone()
        a[..., idx] = mu[idx]
        return a
    assert q.delta_top == pytest.approx((loss_with(model, corpus, rows, ablate) - base) / len(rows), abs=1e-4)
    assert len(q.delta_random) == 4 and q.ratio_interval[0] <= q.ratio_interval[1]
    assert q.overlap_z == len(set(q.top_z) & set(q.top_attribution))
    # the payload is JSON-ready
    assert res.to_dict()["quanta"][0]["top_attribution"] == q.top_attribution
    # ranking more quanta than are ablated: the same ranking, no ablation figures for the rest
    more = quanta_neurons(model, corpus, run, 1, means=means, quanta=3, ablate=1, top_n=5, draws=4,
                          max_members=1000, n_other=1000, desc=None)
    assert [x.top_attribution for x in more.quanta[:2]] == [x.top_attribution for x in res.quanta]
    assert more.quanta[0].delta_top is not None and more.quanta[0].ratio_interval is not None
    assert [x.delta_top for x in more.quanta[1:]] == [None, None] and more.quanta[2].rank == 3


def test_bad_input_is_one_line_naming_the_parameter(tiny, tmp_path):
    corpus, model, run, clusters = tiny
    for kwargs, msg in [({"layer": 2}, "layer 2 is out of range: this model has layers 0..1"),
                        ({"layer": 1, "hook": "blocks.{layer}.mlp.nope"}, "hook 'blocks.1.mlp.nope' is not a hook"),
                        ({"layer": 1, "quanta": 2, "top_n": 49, "means": np.zeros(48)}, "top_n must be between 1 and"),
                        ({"layer": 1, "quanta": 2, "ablate": 3}, "ablate must be between 0 and quanta (2), got 3"),
                        ({"layer": 1, "quanta": 4, "ablate": 4}, "ablate 4 leaves no smaller quanta")]:
        with pytest.raises(ParameterError) as err:
            quanta_neurons(model, corpus, run, desc=None, **kwargs)
        assert str(err.value).startswith(msg) and "\n" not in str(err.value)
    atomic_write_json(tmp_path / "summary.json", {"model": "tiny", "tokenizer": "0123abcd"})
    atomic_write_json(tmp_path / "clusters.json", clusters)
    with pytest.raises(ParameterError, match="^discover .* was tokenized with tokenizer 0123abcd"):
        quanta_neurons(model, corpus, tmp_path, 1, desc=None)
    atomic_write_json(tmp_path / "summary.json", {"model": "smollm2"})
    with pytest.raises(ParameterError, match="^discover .* was made with model 'smollm2', not 'tiny'"):
        quanta_neurons(model, corpus, tmp_path, 1, desc=None)
