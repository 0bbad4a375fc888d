"""The streaming neuron scan on a tiny native model: exact against a brute-force pass, resumable, bad input."""

import numpy as np
import pytest
import torch

from quanta_interp.config import ParameterError
from quanta_interp.neurons.config import ScanConfig
from quanta_interp.neurons.scan import NeuronScan, scan_neurons, scan_windows

HOOK = "blocks.1.mlp.hook_post"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, make_tiny_lm):
    root = tmp_path_factory.mktemp("scan")
    corpus, model = make_tiny_lm(root, [150, 190, 230])
    config = ScanConfig(model="tiny", layers=(0, 1), corpus="x", tokens=100_000, context=32, batch_size=5, top_k=6,
                        intervals=4, per_interval=3, bins_per_decade=4, checkpoint_every=1)
    return root, corpus, model, config


def brute(model, corpus, config, hook):
    windows = scan_windows(corpus, config.context)
    tokens = np.stack([corpus.doc(d)[s: s + config.context] for d, s in windows]).astype(np.int64)
    _, cache = model.bridge.run_with_cache(torch.as_tensor(tokens), names_filter=lambda n: n == hook)
    return windows, cache[hook].numpy()  # (n_windows, T, W)


def test_scan_is_exact_against_a_brute_force_pass(tiny):
    root, corpus, model, config = tiny
    scan = scan_neurons(model, corpus, config, desc=None)
    windows, acts = brute(model, corpus, config, HOOK)
    n_win, T, W = acts.shape
    assert len(scan.windows) == n_win > config.top_k and scan.tokens_done == n_win * T
    flat = acts.reshape(-1, W)
    for i in (0, 7, 31, 47):
        rec = scan.neuron(HOOK, i)
        col = flat[:, i]
        assert rec.n_tokens == col.size and sum(rec.hist_counts) == col.size
        assert rec.mean == pytest.approx(col.mean(), abs=1e-6)
        assert rec.density == pytest.approx((col > 0).mean())
        assert rec.min == pytest.approx(col.min()) and rec.max == pytest.approx(col.max())
        # top-k = argsort of the per-window maxima, with the token of each window's maximum
        win_max = acts[:, :, i].max(1)
        order = np.argsort(-win_max)[: config.top_k]
        np.testing.assert_allclose([v for v, _ in rec.top], win_max[order], rtol=1e-6)
        # (ties are real: position 0 sees one character), so check each token instead of the window order
        assert len({t // T for _, t in rec.top}) == config.top_k
        for v, t in rec.top:
            assert flat[t, i] == pytest.approx(v) == pytest.approx(win_max[t // T])
        # histogram counts = np.histogram over the stated edges (signed log bins, zero in the middle)
        edges = np.asarray(rec.hist_edges)
        mid = len(edges) // 2
        expect = np.histogram(col[col > 0], bins=edges[mid:])[0]
        assert rec.hist_counts[mid:] == expect.tolist()
        # quantile bins: each example lies in its bin, counts add up to the positive tokens, samples are distinct
        ivs = rec.intervals
        assert sum(b.n for b in ivs) == int((col > 0).sum()) and 2 <= len(ivs) <= config.intervals
        for b in ivs:
            inside = int(((col >= b.lo) & (col < b.hi) & (col > 0)).sum())
            assert b.n == inside
            toks = [t for _, t in b.examples]
            assert len(toks) == min(config.per_interval, inside) == len(set(toks))
            for v, t in b.examples:
                assert v == pytest.approx(col[t]) and b.lo <= v < b.hi


def test_samples_are_uniform_within_a_bin(tiny):
    """Priority sampling: over seeds, every token of a bin is drawn about equally often."""
    _, corpus, model, config = tiny
    cfg = config.replace(layers=(1,), per_interval=1, intervals=1, bins_per_decade=1)
    hits = {}
    for seed in range(40):
        rec = scan_neurons(model, corpus, cfg.replace(seed=seed), desc=None).neuron(HOOK, 5)
        t = rec.intervals[0].examples[0][1]
        hits[t] = hits.get(t, 0) + 1
    # with a few hundred positive tokens, 40 uniform draws rarely repeat a token more than 3 times
    assert max(hits.values()) <= 3 and len(hits) >= 30


def test_a_killed_scan_resumes_to_the_same_state(tiny, tmp_path, monkeypatch):
    root, corpus, model, config = tiny
    whole = scan_neurons(model, corpus, config, desc=None)
    from quanta_interp.neurons import scan as mod

    real = mod.NeuronScan.merge
    calls = {"n": 0}

    def dying(self, hook, acts, first, batch):
        if batch == 3:
            raise KeyboardInterrupt
        calls["n"] += 1
        real(self, hook, acts, first, batch)

    monkeypatch.setattr(mod.NeuronScan, "merge", dying)
    with pytest.raises(KeyboardInterrupt):
        scan_neurons(model, corpus, config, tmp_path, desc=None)
    monkeypatch.setattr(mod.NeuronScan, "merge", real)
    assert NeuronScan.load(tmp_path / "scan_state.pt").batches_done == 3
    resumed = scan_neurons(model, corpus, config, tmp_path, desc=None)
    assert resumed.batches_done == whole.batches_done
    for h in whole.hooks:
        for k, t in whole.state[h].items():
            assert torch.equal(t, resumed.state[h][k]), k
    with pytest.raises(ParameterError, match="^out .* holds a scan with another config"):
        scan_neurons(model, corpus, config.replace(top_k=5), tmp_path, desc=None)


def test_bad_input_is_one_line_naming_the_parameter(tiny):
    _, corpus, model, config = tiny
    cases = [(config.replace(layers=(2,)), "layers 2 is out of range: this model has layers 0..1"),
             (config.replace(hook="blocks.{layer}.mlp.hook_postt"), "hook 'blocks.0.mlp.hook_postt' is not"),
             (config.replace(top_k=500), "top_k 500 is more than the")]
    for cfg, msg in cases:
        with pytest.raises(ParameterError) as err:
            scan_neurons(model, corpus, cfg, desc=None)
        assert str(err.value).startswith(msg) and "\n" not in str(err.value)
    with pytest.raises(ParameterError, match="^layers must list"):
        config.replace(layers=(-1,))


def test_pages_from_a_scan_show_the_scanned_values_and_link_quanta(tiny, tmp_path):
    from quanta_interp.neurons.dashboard import index_rows, quantum_links, scan_records
    from quanta_interp.neurons.pages import write_layer

    _, corpus, model, config = tiny
    scan = scan_neurons(model, corpus, config, desc=None)
    links = {"hook": HOOK, "discover": "d", "quanta": [
        {"rank": 2, "size": 9, "targets": ["a"], "top_attribution": [31, 7], "attribution": [0.5, 0.25]}]}
    records = scan_records(model, corpus, scan, HOOK, [7, 31], links=links)
    for rec in records:
        stats = scan.neuron(HOOK, rec["index"])
        assert rec["maxValue"] == round(stats.max, 4) and sum(rec["freq_hist_data_bar_heights"]) == stats.n_tokens
        examples = rec["activations"] + [e for b in rec["intervals"]["bins"] for e in b["examples"]]
        assert len(rec["activations"]) == config.top_k
        for ex in examples:  # the recomputed context marks the very value the scan kept, at the right token
            assert ex["values"][ex["maxValueTokenIndex"]] == pytest.approx(ex["maxValue"], abs=2e-4)
            assert ex["tokens"][ex["maxValueTokenIndex"]] == corpus.tokenizer.token_str(int(corpus.doc(ex["doc"])[ex["pos"]]))
    assert records[0]["quanta"] == [{"quantum": 2, "size": 9, "targets": ["a"], "place": 2, "attribution": 0.25}]
    lines = [f"line {i}" for i in range(48)]
    assert quantum_links(links, [31], lines) == {2: [
        {"neuron": 31, "attribution": 0.5, "href": "neuron_00031.html", "description": "line 31"},
        {"neuron": 7, "attribution": 0.25, "href": None, "description": "line 7"}]}  # 7 has no page here
    assert quantum_links({"quanta": []}) == {}
    rows = index_rows(model, corpus, scan, HOOK, [7, 31], links=links)
    assert len(rows) == 48 and [r["index"] for r in rows if r["href"]] == [7, 31] and rows[31]["cluster"] == "Q2"
    res = write_layer(records, tmp_path, title="t", rows=rows)
    assert res.pages == 2 and 'id="qi-data"' in (tmp_path / "index.html").read_text()


def test_a_neuron_that_fires_on_one_letter_is_described_by_it(tiny):
    """Known truth: make neuron 0's kept examples every 'c' starting a word; the line names 'c' after ' '."""
    from quanta_interp.neurons.dashboard import describe
    from quanta_interp.neurons.scan import EMPTY

    _, corpus, model, config = tiny
    scan = scan_neurons(model, corpus, config.replace(top_k=12), desc=None)
    T, s = scan.context, scan.state[HOOK]
    flat = np.concatenate([corpus.doc(int(d))[st: st + T] for d, st in scan.windows])
    c = corpus.tokenizer.encode("c")[0]
    hits = [g for g in range(1, len(flat)) if flat[g] == c and g % T and flat[g - 1] == corpus.tokenizer.encode(" ")[0]]
    assert len(hits) >= 12
    s["top_tok"][:, 0] = torch.as_tensor(hits[:12])
    s["top_val"][:, 0] = torch.linspace(3, 2, 12)
    s["res_key"][0] = EMPTY  # no interval examples
    d = describe(corpus, scan, HOOK, 0)
    assert d.tokens[0] == "c" and d.after == [" "] and d.n_fit == d.n_heldout == 6
    assert d.text.startswith("'c'") and d.auc > 0.9


def test_pages_with_links_write_quanta_html_linking_both_ways(tiny, tmp_path, monkeypatch):
    """`quanta neurons pages --links`: neuron pages, the layer index, and quanta.html — the linked discover run's
    browser with each quantum listing its neurons (linked where a page exists); neuron pages link back."""
    import json

    from quanta_interp import lm
    from quanta_interp.lm import losses
    from quanta_interp.neurons.config import PagesConfig
    from quanta_interp.neurons.dashboard import write_scan_pages
    from quanta_interp.quanta.browser import write_browser
    from quanta_interp.report.html import page_data

    _, corpus, model, config = tiny
    scan_neurons(model, corpus, config, tmp_path / "scan", desc=None)
    run = tmp_path / "discover"
    write_browser(run / "browser.html", [{"rank": r, "size": 9 - r, "top_targets": [("a", 2)], "examples": []}
                                         for r in (1, 2)], title="t", subtitle="s", n_tokens=20)
    links = {"discover": str(run), "model": "tiny", "hook": HOOK, "max_members": 48, "mean_source": "scan",
             "quanta": [{"rank": 1, "size": 8, "targets": ["a"], "top_attribution": [31, 7], "attribution": [0.5, 0.25]}]}
    (tmp_path / "links.json").write_text(json.dumps(links))
    monkeypatch.setattr(lm, "load", lambda spec, device="cpu": model)
    monkeypatch.setattr(losses, "model_corpus", lambda m, source: corpus)
    res = write_scan_pages(PagesConfig(scan=str(tmp_path / "scan"), layer=1, neurons="31",
                                       links=str(tmp_path / "links.json")), tmp_path / "pages")
    assert res.pages == 1 and res.neurons == [31] and res.quanta == tmp_path / "pages" / "quanta.html"
    data = page_data(res.quanta.read_text())
    q1, q2 = data["clusters"]
    assert [(n["neuron"], n["href"]) for n in q1["neurons"]] == [(31, "neuron_00031.html"), (7, None)]
    assert q2["neurons"] is None and data["neurons_hook"] == HOOK
    assert all(isinstance(n["description"], str) and n["description"] for n in q1["neurons"])
    record = json.loads((tmp_path / "pages" / "neuron_00031.json").read_text())
    assert record["quanta_page"] == "quanta.html" and record["quanta"][0]["quantum"] == 1


def test_a_finished_scan_is_returned_without_loading_the_model_and_links_refuse_another_hooks_means(
        tiny, tmp_path, monkeypatch):
    import json

    from quanta_interp import corpora, lm
    from quanta_interp.neurons.attribution import link_quanta
    from quanta_interp.neurons.config import LinkConfig
    from quanta_interp.neurons.scan import run_scan

    _, corpus, model, config = tiny
    done = scan_neurons(model, corpus, config, tmp_path / "scan", desc=None)
    monkeypatch.setattr(corpora, "check_corpus_source", lambda source: None)

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(lm, "load", no_load)
    again = run_scan(config, tmp_path / "scan")
    assert again.batches_done == done.batches_done and again.tokens_done == done.tokens_done
    # links whose hook is not the scanned one would ablate to another hook's means: refused before loading
    run = tmp_path / "discover"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"model": "tiny"}))
    (run / "clusters.json").write_text(json.dumps([{"rank": 1, "size": 1, "members": []}]))
    with pytest.raises(ParameterError, match="^hook 'blocks.{layer}.mlp.hook_pre' is not the hook"):
        link_quanta(LinkConfig(discover=str(run), layer=1, scan=str(tmp_path / "scan"),
                               hook="blocks.{layer}.mlp.hook_pre"))
