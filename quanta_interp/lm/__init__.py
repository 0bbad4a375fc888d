"""Language models behind TransformerLens 4 bridges: load (SmolLM2 asset, HF hub, local folders, our
runs), train fresh models, per-token losses, and size-ladder scaling analyses."""

from .config import TrainConfig
from .loading import (
           SMOLLM2_NAME,
           LoadedModel,
           corpus_tokenizer,
           hf_tokenizer,
           load,
           load_hf,
           n_params,
           non_embedding_params,
           on_device,
)
from .losses import token_losses
from .training import build_model, train

__all__ = ["LoadedModel", "load", "load_hf", "on_device", "corpus_tokenizer", "hf_tokenizer", "token_losses", "train", "build_model",
           "TrainConfig", "non_embedding_params", "n_params", "SMOLLM2_NAME"]
