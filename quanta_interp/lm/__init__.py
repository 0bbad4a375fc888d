"""Language models behind TransformerLens 4 bridges: load (SmolLM2 asset, HF hub, local folders, our
runs), train fresh models, per-token losses, and size-ladder scaling analyses."""

from .._exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "config": ["TrainConfig"],
    "loading": ["SMOLLM2_NAME", "LoadedModel", "check_model_spec", "corpus_tokenizer", "hf_tokenizer", "load", "load_hf",
                "n_params", "non_embedding_params", "on_device", "skeleton"],
    "losses": ["token_losses", "next_token_losses"],
    "training": ["build_model", "train"],
    "scaling": ["family_configs", "train_family", "load_family", "fit_alpha_n", "TokenClasses", "LADDER", "CPU_TRAIN"],
})
