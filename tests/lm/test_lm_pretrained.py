"""Pretrained models: SmolLM2 from the registry asset, and the HF hub path with a tiny stand-in offline."""

import numpy as np
import pytest
import torch

from quanta_interp import lm
from quanta_interp.corpora import load_corpus


def test_smollm2_beats_a_unigram_model_on_shakespeare(smollm2, tmp_path):
    assert smollm2.cfg.n_layers == 30 and smollm2.cfg.d_vocab == 49152
    assert "Q4_1" in smollm2.note and smollm2.spec == "smollm2"
    assert lm.non_embedding_params(smollm2.bridge) == lm.n_params(smollm2.bridge) - 49152 * 576  # tied embed/unembed
    corpus = load_corpus("shakespeare", lm.corpus_tokenizer(smollm2), max_documents=3)
    counts = np.bincount(corpus.tokens, minlength=49152) + 0.5  # in-sample unigram: optimistic on purpose
    sample = corpus.doc(0)[2000:2256]
    unigram = -np.log(counts[sample[1:]] / counts.sum()).mean()
    losses = lm.token_losses(smollm2.bridge, [sample], context=256, progress=False)  # one window
    assert np.isnan(losses[0, 0]) and not np.isnan(losses[0, 1:]).any()
    mean = float(np.nanmean(losses))
    assert 1.5 < mean < unigram - 2.0, (mean, unigram)
    with pytest.raises(ValueError, match=r"vocabulary is \[0, 49152\)"):
        lm.token_losses(smollm2.bridge, [np.array([5, 49152])])


def _tiny_neox():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz .")} | {"[UNK]": 28}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=29, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    return GPTNeoXForCausalLM(cfg).eval(), PreTrainedTokenizerFast(tokenizer_object=tk)


def test_hub_path_with_a_tiny_random_gpt_neox(tmp_path):
    hf, tok = _tiny_neox()
    hf.save_pretrained(tmp_path / "neox")  # before bridging: the bridge wraps the HF modules in place
    tok.save_pretrained(tmp_path / "neox")
    model = lm.load_hf(hf, tok, "tiny-neox")
    ids = np.array(lm.corpus_tokenizer(model).encode("the cat sat on the mat. the dog sat on the log."))
    assert ids.size == 47 and model.cfg.n_ctx == 64
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(hf(torch.from_numpy(ids)[None]).logits[0, :-1],
                                                 torch.from_numpy(ids[1:]), reduction="none").numpy()
    got = lm.token_losses(model.bridge, [ids], context=64, progress=False)[0, 1:]
    np.testing.assert_allclose(got, want, atol=1e-5)
    # embeddings (29·32, untied in/out) are excluded from N
    assert lm.non_embedding_params(model.bridge) == sum(p.numel() for p in hf.parameters()) - 2 * 29 * 32
    # a saved HF folder loads through the same path
    again = lm.load(str(tmp_path / "neox"))
    x = torch.from_numpy(ids)[None]
    assert torch.allclose(again.bridge(x), model.bridge(x), atol=1e-6) and again.spec == str(tmp_path / "neox")
    with pytest.raises(ValueError, match=r"context must be in \[1, 64\]"):
        lm.token_losses(model.bridge, [ids], context=65)


def test_unreachable_hub_model_is_one_line(monkeypatch):
    from transformer_lens.model_bridge import TransformerBridge

    def offline(*args, **kwargs):  # what the hub client raises with no network (without its 25 s of retries)
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.")

    monkeypatch.setattr(TransformerBridge, "boot_transformers", offline)
    with pytest.raises(ValueError, match=r"model 'EleutherAI/pythia-70m' is no local folder \(nothing at .*\) and could "
                                         r"not be loaded from the Hugging Face hub .*go online once") as e:
        lm.load("EleutherAI/pythia-70m")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("spec", ["./no/such/model", "/no/such/model", "~/no-such-model/", "runs/a/b"])
def test_a_missing_local_model_path_says_it_does_not_exist_not_that_the_hub_failed(spec, monkeypatch):
    from transformer_lens.model_bridge import TransformerBridge

    def hub(*args, **kwargs):
        raise AssertionError("a local path was sent to the hub")

    monkeypatch.setattr(TransformerBridge, "boot_transformers", hub)
    with pytest.raises(ValueError, match=rf"^model path '{spec}' does not exist \(as a local folder\); pass an existing"):
        lm.load(spec)
    assert lm.check_model_spec("EleutherAI/pythia-70m") == "hub" and lm.check_model_spec("smollm2") == "smollm2"


def test_a_run_folder_without_weights_is_named_before_loading(tmp_path):
    (tmp_path / "model_config.json").write_text("{}")
    with pytest.raises(ValueError, match=f"run folder {tmp_path} has no weights.safetensors yet"):
        lm.check_model_spec(str(tmp_path))
    (tmp_path / "model_config.json").unlink()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="holds neither an HF model"):
        lm.check_model_spec(str(tmp_path))


def _hub_cache(root):
    """A private HF cache holding the tiny GPT-NeoX as the hub repo 'tiny/neox' (what a download leaves)."""
    hf, tok = _tiny_neox()
    repo = root / "hub" / "models--tiny--neox"
    hf.save_pretrained(repo / "snapshots" / "0")
    tok.save_pretrained(repo / "snapshots" / "0")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0")
    return hf


_HUB_CHECK = """
import torch
from quanta_interp import lm
from transformers import AutoModelForCausalLM
ids = torch.tensor([[1, 5, 9, 2]])
model, hf = lm.load("tiny/neox"), AutoModelForCausalLM.from_pretrained("tiny/neox")
with torch.no_grad():
    print("same logits", torch.allclose(model.bridge(ids), hf(ids).logits, atol=1e-5), model.spec)
meta = lm.load("tiny/neox", device="meta").bridge
print("devices", sorted({t.device.type for t in [*meta.parameters(), *meta.buffers()]}))
"""


def test_a_hub_name_loads_through_the_hub_client_from_its_cache_offline(tmp_path):
    """`lm.load("org/name")` is the real hub path (TransformerBridge.boot_transformers by name); a tiny
    GPT-NeoX in a private HF cache stands in for Pythia with the hub switched off. A subprocess, because
    huggingface_hub reads HF_HOME and HF_HUB_OFFLINE once, at import."""
    import os
    import subprocess
    import sys

    _hub_cache(tmp_path / "hf")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", _HUB_CHECK], capture_output=True, text=True, env=env, timeout=300)
    assert "same logits True tiny/neox" in proc.stdout, proc.stderr[-2000:]
    assert "devices ['meta']" in proc.stdout


def test_every_loader_puts_the_model_on_the_device_asked_for(tmp_path):
    """A model left on the CPU when another device was asked for is a silent failure: each loader is run with
    device='meta' (which CPU machines have) and must leave no tensor behind; `on_device` catches one that does.
    (The hub-name loader is checked the same way in the test above.)"""
    hf, tok = _tiny_neox()
    hf.save_pretrained(tmp_path / "neox")
    tok.save_pretrained(tmp_path / "neox")
    run = tmp_path / "run"
    lm.train(lm.TrainConfig(**{"n_layers": 1, "d_model": 16, "n_heads": 2, "n_ctx": 16, "d_vocab": 23, "steps": 2, "batch_size": 4,
              "eval_every": 2, "checkpoint_every": 2}), np.arange(200) % 23, run_dir=run, progress=False)
    for model in (lm.load_hf(*_tiny_neox(), "tiny", device="meta"), lm.load(str(tmp_path / "neox"), device="meta"),
                  lm.load(str(run), device="meta")):
        assert {t.device.type for t in [*model.bridge.parameters(), *model.bridge.buffers()]} == {"meta"}
    with pytest.raises(RuntimeError, match=r"tensors of the model stayed off meta"):
        lm.on_device(lm.load(str(run)).bridge, "meta")
