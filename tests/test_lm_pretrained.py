"""Pretrained models: SmolLM2 from the registry asset, and the HF hub path with a tiny stand-in offline."""

import numpy as np
import pytest
import torch

from quanta_interp import lm
from quanta_interp.corpora import load_corpus


def test_smollm2_beats_a_unigram_model_on_shakespeare(smollm2, tmp_path):
    assert smollm2.cfg.n_layers == 30 and smollm2.cfg.d_vocab == 49152
    assert "Q4_1" in smollm2.quanta_note and smollm2.quanta_spec == "smollm2"
    assert lm.non_embedding_params(smollm2) == lm.n_params(smollm2) - 49152 * 576  # tied embed/unembed
    corpus = load_corpus("shakespeare", lm.corpus_tokenizer(smollm2), max_documents=3)
    counts = np.bincount(corpus.tokens, minlength=49152) + 0.5  # in-sample unigram: optimistic on purpose
    sample = corpus.doc(0)[2000:2256]
    unigram = -np.log(counts[sample[1:]] / counts.sum()).mean()
    losses = lm.token_losses(smollm2, [sample], context=256, progress=False)  # one window
    assert np.isnan(losses[0, 0]) and not np.isnan(losses[0, 1:]).any()
    mean = float(np.nanmean(losses))
    assert 1.5 < mean < unigram - 2.0, (mean, unigram)
    with pytest.raises(ValueError, match=r"vocabulary is \[0, 49152\)"):
        lm.token_losses(smollm2, [np.array([5, 49152])])


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
    got = lm.token_losses(model, [ids], context=64, progress=False)[0, 1:]
    np.testing.assert_allclose(got, want, atol=1e-5)
    # embeddings (29·32, untied in/out) are excluded from N
    assert lm.non_embedding_params(model) == sum(p.numel() for p in hf.parameters()) - 2 * 29 * 32
    # a saved HF folder loads through the same path
    again = lm.load(str(tmp_path / "neox"))
    x = torch.from_numpy(ids)[None]
    assert torch.allclose(again(x), model(x), atol=1e-6) and again.quanta_spec == str(tmp_path / "neox")
    with pytest.raises(ValueError, match=r"context must be in \[1, 64\]"):
        lm.token_losses(model, [ids], context=65)


def test_unreachable_hub_model_is_one_line(monkeypatch):
    from transformer_lens.model_bridge import TransformerBridge

    def offline(*args, **kwargs):  # what the hub client raises with no network (without its 25 s of retries)
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.")

    monkeypatch.setattr(TransformerBridge, "boot_transformers", offline)
    with pytest.raises(ValueError, match=r"model 'EleutherAI/pythia-70m' could not be loaded .*go online once") as e:
        lm.load("EleutherAI/pythia-70m")
    assert "\n" not in str(e.value)
