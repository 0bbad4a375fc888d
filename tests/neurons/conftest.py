"""The tiny native LM and random-word char corpus the neuron tests share (`make_tiny_lm`)."""

import random

import pytest

from quanta_interp import lm
from quanta_interp.corpora import load_corpus

WORDS = "the cat sat on a mat and dog ran far away to see what was there".split()


def tiny_model(root, words_per_doc):
    """(corpus, model): one document of random WORDS per entry of `words_per_doc`, cached under `root`, and a
    seeded 2-layer GELU bridge (d_model 32, d_mlp 48, n_ctx 64) over its characters."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    rnd = random.Random(0)
    (root / "text").mkdir()
    for d, n in enumerate(words_per_doc):
        (root / "text" / f"doc{d}.txt").write_text(" ".join(rnd.choice(WORDS) for _ in range(n)) + "\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("QUANTA_CACHE", str(root / "cache"))
    corpus = load_corpus(str(root / "text"), "char")
    mp.undo()
    cfg = TransformerBridgeConfig(d_model=32, d_head=8, n_heads=4, n_layers=2, n_ctx=64, d_vocab=corpus.vocab_size,
                                  act_fn="gelu", d_mlp=48, seed=0)
    return corpus, lm.LoadedModel(TransformerBridge.boot_native(cfg), corpus.tokenizer, "tiny")


@pytest.fixture(scope="session")
def make_tiny_lm():
    """`tiny_model`, for the module fixtures of the neuron tests."""
    return tiny_model
