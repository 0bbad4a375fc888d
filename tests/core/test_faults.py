"""Faults of a kind that bug reports of neighbouring tools describe, each with the input that showed it here
and the right answer: the kind is fixed wherever it can occur."""

import json

import numpy as np
import pytest
import torch


def test_jsonl_lines_split_on_newlines_only(tmp_path):
    from quanta_interp.io import RunDir
    from quanta_interp.passuntil import load_instances

    path = tmp_path / "inst.jsonl"
    path.write_text(json.dumps({"prompt": "first\u2028second", "answer": "x"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    (inst,) = load_instances(path)
    assert inst.prompt == "first\u2028second" and inst.answer == "x"
    run = RunDir(tmp_path / "run", {"a": 1})
    run.log_metrics({"note": "a\u2029b\x85c"})
    (tmp_path / "run" / "metrics.jsonl").write_text(
        (tmp_path / "run" / "metrics.jsonl").read_text().replace("\\u2029", "\u2029"), encoding="utf-8")
    assert run.metrics() == [{"note": "a\u2029b\x85c"}]


def test_tiny_inputs_are_refused_with_a_size_not_a_library_error():
    from quanta_interp.quanta.clustering import umap_embedding

    with pytest.raises(ValueError, match="UMAP needs at least 4 points, got 3"):
        umap_embedding(np.random.default_rng(0).normal(size=(3, 6)))


def test_degenerate_correlation_matrices_have_norm_zero():
    from quanta_interp.langstats.correlations import Correlation, pair_counts

    zero = Correlation.from_counts(pair_counts(np.array([0, 0, 1, 1, 0]), 1, 2))  # C(1) = 0 exactly
    assert zero.op_norm() == 0.0 == zero.fro_norm()
    single = Correlation.from_counts(pair_counts(np.array([0, 0, 0, 0]), 1, 1))  # a one-token vocabulary
    assert single.op_norm() == 0.0
    normal = Correlation.from_counts(pair_counts(np.array([0, 1, 0, 1, 0, 1, 1, 0]), 1, 2))
    assert normal.op_norm() == pytest.approx(np.linalg.svd(normal.dense())[1][0])


def test_pages_are_written_when_a_token_is_a_lone_surrogate(tmp_path):
    from quanta_interp.quanta.browser import write_browser

    half_emoji = "\ud83d"  # what a byte-level tokenizer decodes for one byte of 😀
    page = write_browser(tmp_path / "b.html", [{"size": 1, "top_targets": [(half_emoji, 1)], "examples": [
        {"tokens": ["a", half_emoji], "doc_name": "d", "pos": 1, "loss": 0.01}]}], title=f"t {half_emoji}",
        subtitle="s", n_tokens=1)
    text = page.read_text(encoding="utf-8")
    data = json.loads(text.split('id="qi-data">')[1].split("</script>")[0])
    assert data["clusters"][0]["top_targets"] == [[half_emoji, 1]]  # the same string again in the page's data


def test_unknown_characters_are_named_not_dropped():
    from quanta_interp.passuntil import Instance, exact_probability
    from quanta_interp.passuntil.tasks import addition_tokenizer

    tok = addition_tokenizer()  # built on "0123456789+=\n"
    with pytest.raises(ValueError, match=r"characters '\?' \(1 in all\) are not in this char tokenizer"):
        tok.encode("1?2")
    model = torch.nn.Module()
    with pytest.raises(ValueError, match=r"characters '\?'"):
        exact_probability(model, [Instance("1+1=", "2?")], tok)


def test_nan_becomes_null_and_pages_show_it_as_na():
    from quanta_interp.io import to_jsonable
    from quanta_interp.neurons.pages import INDEX_JS, NEURON_JS
    from quanta_interp.quanta.browser import SCRIPT
    from quanta_interp.report.html import BASE_JS

    assert to_jsonable({"loss": np.float32("nan"), "x": [np.float64("inf"), 1.5]}) == {"loss": None, "x": [None, 1.5]}
    assert "num(v, d)" in BASE_JS and "'n/a'" in BASE_JS
    for script in (SCRIPT, NEURON_JS, INDEX_JS):  # data values are formatted by QI.num, never .toFixed
        assert "loss.toFixed" not in script and "frac_nonzero).toFixed" not in script


def test_a_hook_that_exists_but_never_fires_is_named_with_its_switch(tmp_path):
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    from quanta_interp.capture import capture_activations

    model = TransformerBridge.boot_native(TransformerBridgeConfig(n_layers=1, d_model=16, n_heads=2, d_head=8,
                                                                  d_mlp=32, d_vocab=23, n_ctx=16, act_fn="gelu"))
    docs = [np.arange(20) % 23]
    # (the recorder refuses before any forward, so TransformerLens's "hook skipped" warning no longer precedes it)
    with pytest.raises(
            ValueError, match=r"hook 'blocks.0.hook_mlp_in' exists but did not fire .*set_use_hook_mlp_in\(True\)"):
        capture_activations(model, docs, np.array([[0, 2, 8]]), ["blocks.0.hook_mlp_in"], tmp_path / "a")
    with pytest.raises(ValueError, match=r"'blocks.0.hook_mlp_inn' is not a hook of this model; close matches"):
        capture_activations(model, docs, np.array([[0, 2, 8]]), ["blocks.0.hook_mlp_inn"], tmp_path / "b")


def test_early_stopping_never_changes_a_verdict_a_continuation_is_judged_on_its_text():
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models

    from quanta_interp.corpora import Tokenizer
    from quanta_interp.passuntil import Instance, PassUntil
    from quanta_interp.passuntil.sampler import bridge_sampler

    backend = HFTokenizer(models.BPE(vocab={"1": 0, "2": 1, "\n": 2, "+": 3, "=": 4, "12": 5}, merges=[("1", "2")]))
    backend.decoder = decoders.Fuse()
    tok = Tokenizer("toy", backend)
    assert tok.encode("12\n") == [5, 2]  # the answer's own tokenization: "12", "\n"

    class SpellsItOut(torch.nn.Module):
        """Always writes the answer one character at a time: "1", "2", "\\n" (never the token "12")."""

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))
            self.cfg = type("cfg", (), {"n_ctx": 16})()

        def forward(self, x):
            out = torch.full((x.shape[0], x.shape[1], 6), -1e9)
            out[:, -1, [0, 1, 2, 2, 2][min(x.shape[1] - 4, 4)]] = 0.0
            return out

    instance = Instance("1+1=", "12\n")
    assert bridge_sampler(SpellsItOut(), tok, stop_on_mismatch=True)(instance, 3, 0) == ["12\n"] * 3
    (record,) = PassUntil(r=1, k_max=10, batch_size=4).run(SpellsItOut(), [instance], tokenizer=tok,
                                                           show_progress=False)
    assert record.passes == 1 and record.samples == 1
