"""Neuron inspection on a tiny native model: batch = per-neuron, numbers match a plain cache, links to quanta."""

import json

import numpy as np
import pytest
import torch

from quanta_interp import lm
from quanta_interp.corpora import Document, Tokenizer, make_tokenizer
from quanta_interp.io import atomic_write_json
from quanta_interp.neurons import ClusterProfile, LayerInspector, TokenText, corpus_sample, write_layer
from quanta_interp.neurons.cli import parse_indices


@pytest.fixture(scope="module")
def setup(tmp_path_factory, make_tiny_lm):
    root = tmp_path_factory.mktemp("neurons")
    corpus, model = make_tiny_lm(root, [300] * 4)
    sample = corpus_sample(corpus, n_windows=24, context=40, seed=1)
    layer = LayerInspector(1, top_k=5, before=6, after=2, n_intervals=4, per_interval=2).fit(model, sample)
    return root, corpus, model, sample, layer


def test_sample_is_seeded_and_inside_documents(setup):
    _, corpus, _, sample, _ = setup
    again = corpus_sample(corpus, n_windows=24, context=40, seed=1)
    assert np.array_equal(sample.tokens, again.tokens) and sample.tokens.shape == (24, 40)
    for w in range(len(sample.tokens)):
        assert np.array_equal(sample.tokens[w], corpus.doc(sample.docs[w])[sample.starts[w]: sample.starts[w] + 40])


def test_layer_record_matches_run_with_cache_and_single_neuron_mode(setup):
    _, _, model, sample, layer = setup
    hook = "blocks.1.mlp.hook_post"
    _, cache = model.bridge.run_with_cache(torch.as_tensor(sample.tokens), names_filter=lambda n: n == hook)
    ref = cache[hook][..., 7].reshape(-1).numpy()
    rec = layer.record(7)
    assert rec["maxValue"] == pytest.approx(ref.max(), abs=1e-4)
    assert rec["frac_nonzero"] == pytest.approx((ref > 0).mean(), abs=1e-5)
    assert sum(rec["freq_hist_data_bar_heights"]) == ref.size == rec["n_tokens"]
    top = rec["activations"]
    assert len(top) == 5 and top[0]["maxValue"] == rec["maxValue"]
    assert [t["maxValue"] for t in top] == sorted((t["maxValue"] for t in top), reverse=True)
    for t in top:  # the marked token is the example's maximum and its doc/pos point at the right token
        assert t["values"][t["maxValueTokenIndex"]] == t["maxValue"]
        assert t["tokens"][t["maxValueTokenIndex"]] == layer.sample_.tokenizer.token_str(int(
            np.asarray(setup[1].doc(t["doc"]))[t["pos"]]))
    # batch mode (all 48 neurons, one pass) gives exactly the single-neuron record
    single = LayerInspector(1, neurons=[7], top_k=5, before=6, after=2, n_intervals=4, per_interval=2).fit(model, sample)
    assert json.dumps(single.record(7)) == json.dumps(rec)
    assert [r["index"] for r in layer.records(chunk=10)] == list(range(48))


def test_interval_bins_quantile_and_equal_width(setup):
    _, _, model, sample, layer = setup
    bins = layer.record(3)["intervals"]["bins"]
    counts = [b["n"] for b in bins]
    assert max(counts) - min(counts) <= 2 and sum(counts) == int((layer.acts_[:, 3] > 0).sum())
    for b in bins:
        assert all(b["lo"] - 1e-4 <= e["maxValue"] <= b["hi"] + 1e-4 for e in b["examples"])
    ew = LayerInspector(1, neurons=[3], intervals="equal-width", n_intervals=4).fit(model, sample).record(3)
    widths = np.diff([b["lo"] for b in ew["intervals"]["bins"]] + [ew["intervals"]["bins"][-1]["hi"]])
    assert ew["intervals"]["binning"] == "equal-width" and np.allclose(widths, widths[0], atol=1e-3)
    assert ew["intervals"]["bins"][-1]["hi"] == pytest.approx(ew["maxValue"], abs=1e-3)


def test_logit_effect_finds_a_planted_token(setup):
    _, corpus, model, sample, _ = setup
    target = corpus.tokenizer.encode("w")[0]
    weight = model.bridge.unembed.weight
    saved = weight.detach().clone()
    w_out = model.bridge.blocks[0].mlp.W_out.detach()[5]
    try:
        with torch.no_grad():
            weight[target] = 50 * (w_out - w_out.mean())  # token `w` reads exactly this neuron's output direction
        rec = LayerInspector(0, neurons=[5]).fit(model, sample).record(5)
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert rec["pos_str"][0] == "w" and rec["neg_str"][0] != "w"
    assert rec["pos_values"][0] > 5 * abs(rec["pos_values"][1])
    assert "W_U" in rec["logit_note"] and "final-norm weight" in rec["logit_note"]


def test_cluster_profile_means_match_plain_forward(setup, tmp_path):
    _, corpus, model, _, _ = setup
    rng = np.random.default_rng(0)
    clusters = []
    for c, ch in enumerate("ae"):  # cluster c: targets right after the character `ch`
        want = corpus.tokenizer.encode(ch)[0]
        members = []
        for d in range(2):
            doc = np.asarray(corpus.doc(d))
            hits = np.flatnonzero(doc[:-1] == want) + 1
            for pos in rng.choice(hits, 6, replace=False):
                members.append({"doc": d, "start": max(0, int(pos) - 16), "pos": int(pos),
                                "doc_name": corpus.doc_names[d], "context": "",
                                "target": corpus.tokenizer.token_str(int(doc[pos])), "loss": 0.01})
        members.append({"doc": 3, "start": 0, "pos": 2, "doc_name": "doc3", "context": "", "target": "x",
                        "loss": 0.0})  # short
        clusters.append({"rank": c + 1, "label": 7 - c, "size": len(members), "members": members})
    # the layout `quanta discover` writes: each member's window doc[start:pos], clusters.json ranked by size
    atomic_write_json(tmp_path / "summary.json", {"model": "tiny", "corpus": "text", "settings": {"context": 16}})
    atomic_write_json(tmp_path / "clusters.json", clusters)
    prof = ClusterProfile([0, 1]).fit(model, tmp_path, corpus)
    hook = "blocks.0.mlp.hook_post"
    for c, cl in enumerate(clusters):
        windows = [np.asarray(corpus.doc(m["doc"]))[max(0, m["pos"] - 16): m["pos"]].astype(np.int64)
                   for m in cl["members"]]
        ref = []
        for length in sorted({len(w) for w in windows}):  # unpadded reference, one forward per window length
            _, cache = model.bridge.run_with_cache(torch.as_tensor(np.stack([w for w in windows if len(w) == length])),
                                            names_filter=lambda n: n == hook)
            ref.append(cache[hook][:, -1].numpy())
        assert np.allclose(prof.means_[hook][c], np.concatenate(ref).mean(0), atol=1e-4)
    by_mean = prof.clusters_for(hook, 4)
    assert [r["mean_activation"] for r in by_mean] == sorted((r["mean_activation"] for r in by_mean), reverse=True)
    assert prof.cluster_ids_ == [1, 2]
    top = prof.neurons_for(1, 5)
    assert top[0]["z"] == pytest.approx(max(z[0].max() for z in prof.z_.values()), abs=1e-3)
    assert {r["layer"] for r in top} <= {0, 1}
    linked = LayerInspector(0, neurons=[4]).fit(model, corpus_sample(corpus, n_windows=4, context=20)).link(prof)
    assert linked.record(4)["clusters"][0]["cluster"] == by_mean[0]["cluster"]
    # a discover folder made with another model is refused in one line
    atomic_write_json(tmp_path / "summary.json", {"model": "smollm2", "settings": {"context": 16}})
    with pytest.raises(ValueError, match="made with model 'smollm2', not 'tiny'"):
        ClusterProfile([0]).fit(model, tmp_path, corpus)
    with pytest.raises(ValueError, match="^cluster 9 is not in the discover output"):
        prof.neurons_for(9)


def test_bad_input_is_one_clear_line(setup, tmp_path):
    _, corpus, model, sample, _ = setup
    with pytest.raises(ValueError, match=r"layer 5 is out of range: this model has layers 0\.\.1"):
        LayerInspector(5).fit(model, sample)
    with pytest.raises(ValueError, match=r"neuron 48 is out of range: blocks.1.mlp.hook_post has neurons 0\.\.47"):
        LayerInspector(1, neurons=[48]).fit(model, sample)
    with pytest.raises(ValueError, match="close matches: blocks.1.mlp.hook_post"):
        LayerInspector(1, hook="blocks.{layer}.mlp.hook_posst").fit(model, sample)
    with pytest.raises(ValueError, match="corpus sample is empty"):
        corpus_sample(corpus, n_windows=0)
    with pytest.raises(ValueError, match="intervals must be one of quantile, equal-width"):
        LayerInspector(1, intervals="log").fit(model, sample)
    with pytest.raises(ValueError, match="not a `quanta discover` output"):
        ClusterProfile([0]).fit(model, tmp_path, corpus)
    with pytest.raises(ValueError, match="--neurons must look like"):
        parse_indices("1..3", "neurons")
    assert parse_indices("0-2,7", "neurons") == [0, 1, 2, 7]


def test_token_text_decodes_bytes_and_keeps_special_tokens():
    tok = make_tokenizer("bpe-270", [Document("d", "héllo wörld " * 20)])  # 日 is never merged
    tok.backend.add_special_tokens(["<|endoftext|>"])
    text = TokenText(Tokenizer("bpe-270", tok.backend))
    ids = tok.encode("日")
    assert len(ids) == 3 and text(ids) == ["\\xe6", "\\x97", "\\xa5"]  # split UTF-8 shown as bytes
    assert "".join(text(tok.encode("héllo wörld"))) == "héllo wörld"
    assert text([tok.backend.token_to_id("<|endoftext|>")]) == ["<|endoftext|>"]


def test_write_layer_pages_link_and_repr_html(setup, tmp_path):
    *_, layer = setup
    records = [layer.record(i) for i in (0, 1, 2)]
    res = write_layer(records, tmp_path, title="tiny · layer 1")
    assert res.pages == 3 and res.pages_per_s > 0
    index = json.loads((tmp_path / "index.json").read_text())
    assert [r["href"] for r in index["neurons"]] == ["neuron_00000.html", "neuron_00001.html", "neuron_00002.html"]
    saved = json.loads((tmp_path / "neuron_00001.json").read_text())
    assert saved == json.loads(json.dumps(records[1]))
    page = (tmp_path / "neuron_00001.html").read_text()
    assert '"prev":"neuron_00000.html"' in page.replace(" ", "") and "Content-Security-Policy" in page
    frame = records[0]._repr_html_()
    assert frame.startswith('<iframe sandbox="allow-scripts"') and "<script" not in frame


def test_cli_layer_inspect_cluster_on_a_trained_run(setup, tmp_path, monkeypatch, capsys):
    from quanta_interp.cli import main

    root, corpus, *_ = setup
    monkeypatch.setenv("QUANTA_CACHE", str(root / "cache"))
    run = tmp_path / "run"
    lm.train(lm.TrainConfig(**{"d_vocab": corpus.vocab_size, "d_model": 16, "n_heads": 2, "d_mlp": 24, "n_ctx": 32, "steps": 3,
              "batch_size": 4}), corpus.stream(), tokenizer=corpus.tokenizer, run_dir=run, progress=False)
    common = ["--model", str(run), "--corpus", str(root / "text"), "--windows", "6", "--context", "24"]
    out = tmp_path / "out"
    assert main(["neurons", "layer", *common, "--layer", "1", "--neurons", "0-4", "--out", str(out)]) == 0
    folder = out / "run" / "blocks_1_mlp_hook_post"
    index = json.loads((folder / "index.json").read_text())
    assert [r["index"] for r in index["neurons"]] == [0, 1, 2, 3, 4] and (folder / "index.html").exists()
    rec = json.loads((folder / "neuron_00003.json").read_text())
    assert rec["model"] == str(run) and rec["n_tokens"] == 6 * 24 and len(rec["pos_str"]) == 10
    # a discover folder of this model links neurons to clusters
    members = [{"doc": 0, "start": max(0, p - 12), "pos": p, "doc_name": "doc0.txt", "context": "", "target": "t",
                "loss": 0.0} for p in (5, 9, 30)]
    disc = tmp_path / "disc"
    atomic_write_json(disc / "summary.json", {"model": str(run), "corpus": str(root / "text"), "settings": {"context": 12}})
    atomic_write_json(disc / "clusters.json", [{"rank": 1, "size": 2, "members": members[:2]},
                                               {"rank": 2, "size": 1, "members": members[2:]}])
    assert main(["neurons", "inspect", *common, "--layer", "0", "--neuron", "2", "--discover", str(disc),
                 "--out", str(out)]) == 0
    rec = json.loads((out / "run" / "blocks_0_mlp_hook_post" / "neuron_00002.json").read_text())
    assert {c["cluster"] for c in rec["clusters"]} == {1, 2} and rec["discover"] == str(disc)
    assert main(["neurons", "cluster", "--discover", str(disc), "--cluster", "2", "--top", "3", "--out", str(out)]) == 0
    ranked = json.loads((out / "run" / "cluster_2.json").read_text())
    assert len(ranked["neurons"]) == 3 and ranked["neurons"][0]["z"] >= ranked["neurons"][-1]["z"]
    capsys.readouterr()
    assert main(["neurons", "inspect", *common, "--layer", "2", "--neuron", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "quanta neurons: error: layer 2 is out of range: this model has layers 0..1"
    assert main(["neurons", "cluster", "--discover", str(disc), "--cluster", "1", "--model", "smollm2"]) == 2
    err = capsys.readouterr().err.strip()  # refused before SmolLM2 is loaded
    assert err.startswith(f"quanta neurons: error: --discover {disc} was made with model '{run}', not 'smollm2'")
