"""Model families: a size ladder trained through the executors, per-token loss matrices, α_N and the
quantization model's monogenic/polygenic token classes (Michaud et al. 2023, §3.1 of DESIGN.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import check_tokenizer
from ..corpora import load_corpus
from ..executors import map_runs
from ..fitting import fit_power_law, fit_range_sensitivity
from .config import TrainConfig
from .training import split_tokens

__all__ = ["LADDER", "CPU_TRAIN", "family_configs", "train_family", "train_member", "family_members", "load_family", "loss_matrix", "fit_alpha_n",
           "TokenClasses", "analyse", "PAPER_CLASSES"]

PAPER_CLASSES = dict(high=5.0, low=0.3, slope=-0.3, r2=0.98)
# How the CPU-scale family is trained (analyses/lm_scaling.py fits α_N on it; analyses/qdg_lm.py reuses it).
CPU_TRAIN = dict(steps=600, n_ctx=64, batch_size=16, lr=3e-3, warmup=50, eval_every=200, checkpoint_every=100)

# (n_layers, d_model): non-embedding parameters 3.3k … 148k (1.65 decades) with d_mlp = 4·d_model
LADDER: tuple[tuple[int, int], ...] = ((1, 16), (1, 32), (2, 32), (2, 48), (2, 64), (3, 64))


def family_configs(sizes=LADDER, *, corpus: str = "shakespeare", tokenizer: str = "char", **train_kw) -> list[dict]:
    """One resolved training config per (n_layers, d_model), plus the corpus it trains on.

    Parameters
    ----------
    sizes : sequence of (int, int)
        (n_layers, d_model) per member; n_heads = max(1, d_model // 16), d_mlp the `TrainConfig` default.
    corpus, tokenizer : str
        As for `load_corpus`; d_vocab is the tokenizer's vocab_size unless `train_kw` gives one.
    **train_kw
        Other `TrainConfig` fields, shared by every member.

    Returns
    -------
    list of dict
        `name` ("L{n_layers}-d{d_model}"), `corpus`, `tokenizer` and every `TrainConfig` field.

    Raises
    ------
    ParameterError
        A setting `TrainConfig` rejects (e.g. a d_model not divisible by its n_heads), a bad `tokenizer`, or a
        corpus whose train or held-out 'val' documents (one document has none) hold no window of n_ctx + 1
        tokens: each member trains on the first and is scored on the second.
    """
    check_tokenizer("tokenizer", tokenizer)
    tokens = load_corpus(corpus, tokenizer)
    d_vocab = train_kw.pop("d_vocab", None) or tokens.vocab_size
    need = TrainConfig(**{**train_kw, "d_vocab": d_vocab}).n_ctx + 1
    for split in ("train", "val"):
        split_tokens(tokens, corpus, split, need)
    out = []
    for n_layers, d_model in sizes:
        heads = max(1, d_model // 16)
        cfg = TrainConfig(**{**train_kw, "n_layers": n_layers, "d_model": d_model, "n_heads": heads,
                             "d_vocab": d_vocab}).to_dict()
        out.append({"name": f"L{n_layers}-d{d_model}", "corpus": corpus, "tokenizer": tokenizer, **cfg})
    return out


def train_member(config: dict, run_dir=None) -> dict:
    """Train one family member on its corpus's train split, evaluating on the held-out documents.

    `config` is one entry of `family_configs`; `run_dir` (a `RunDir` or None) is where `map_runs` keeps the
    member, so a rerun resumes it. Returns `lm.train`'s result with the member's `name` added.
    """
    from .training import train

    corpus = load_corpus(config["corpus"], config["tokenizer"])
    cfg = TrainConfig.from_dict({k: v for k, v in config.items() if k not in ("name", "corpus", "tokenizer")})
    result = train(cfg, corpus.documents("train"), val_tokens=corpus.documents("val"), tokenizer=corpus.tokenizer,
                   run_dir=run_dir.path if run_dir is not None else None, progress=False)
    return {"name": config["name"], **result}


def train_family(configs: list[dict], root: str | Path, **executor) -> list[dict]:
    """Train every config as a resumable sweep under `root` (finished members are not redone);
    `executor` goes to `map_runs` (backend, workers, address, resources).

    Returns
    -------
    list of dict
        `train_member`'s result per config, in the order of `configs`.
    """
    return map_runs(train_member, configs, root=root, name="lm-family", desc="family", **executor)


def family_members(root: str | Path) -> list[tuple[str, Path, int]]:
    """The finished members of a family sweep, without loading them, in increasing model size.

    Returns
    -------
    list of (str, Path, int)
        Name, run folder and non-embedding parameter count of each member.

    Raises
    ------
    FileNotFoundError
        `root` is not a sweep folder.
    ValueError
        Fewer than 3 members finished.
    """
    from ..io import Sweep, read_json

    sweep = Sweep.open(root, hint=f"train a family with `quanta lm family --out {root}`")
    pending = sweep.pending()
    done = [(c.get("name", sweep.run_dir(i).path.name), sweep.run_dir(i).path)
            for i, c in enumerate(sweep.configs) if i not in pending]
    if len(done) < 3:
        raise ValueError(f"family {root}: {len(done)} of {len(sweep.configs)} members finished, need ≥ 3; rerun "
                         "`quanta lm family` on it to resume")
    sized = [(name, p, int(read_json(p / "result.json")["n_params_non_embedding"])) for name, p in done]
    return sorted(sized, key=lambda m: m[2])


def load_family(root: str | Path, *, device: str = "cpu") -> tuple[list, list[dict]]:
    """Every finished member of a family sweep, loaded, in increasing model size, with its name and val loss.

    Returns
    -------
    models : list of LoadedModel
        Sorted by non-embedding parameters.
    info : list of dict
        `name` and `val_loss` (nats per token) per model, in the same order.

    Raises
    ------
    FileNotFoundError
        `root` is not a sweep folder.
    ValueError
        Fewer than 3 members finished, or members with different tokenizers (they would read different ids).
    """
    from ..io import read_json
    from .loading import load

    done = family_members(root)
    models = [load(p, device=device) for _, p, _ in done]
    prints = {name: m.tokenizer.fingerprint() if m.tokenizer is not None else None
              for (name, _, _), m in zip(done, models, strict=True)}
    if len(set(prints.values())) > 1:
        raise ValueError(f"family {root}: its members use different tokenizers {prints}; every member must read the "
                         "same ids: train the family with one --corpus and --tokenizer")
    return models, [{"name": name, "val_loss": read_json(p / "result.json")["val_loss"]} for name, p, _ in done]


def analyse(models: list, names: list[str], docs: list[np.ndarray], *, context: int = 64,
            thresholds: dict | None = None, progress: bool = True) -> tuple[dict, np.ndarray, TokenClasses]:
    """Mean loss vs N, α_N with CI and range sensitivity, and token classes for models sorted by size.

    Parameters
    ----------
    models : list of TransformerBridge
        In increasing non-embedding size (at least 3).
    names : list of str
        One per model, for the summary.
    docs : list of int ndarray (doc_len,)
        Evaluation documents, tokenized with the models' shared tokenizer.
    context : int
        Tokens of context per prediction (see `token_losses`).
    thresholds : dict or None
        `TokenClasses` arguments (high, low, slope, r2); default the paper's (`PAPER_CLASSES`).

    Returns
    -------
    summary : dict
        `alpha_N` with `alpha_N_ci` (95%), `fit` (PowerLawFit of mean loss vs N), `range_sensitivity`,
        `models` (name, non_embedding_params, mean_loss in nats), `n_tokens_evaluated`, `context` and
        `token_classes` (counts per class and the thresholds).
    losses : float32 ndarray (n_tokens, n_models)
        Per-token losses in nats (see `loss_matrix`).
    classes : TokenClasses
        Fitted on `losses`.

    Raises
    ------
    ValueError
        Fewer than 3 models, models not in increasing size, bad thresholds, or documents the models cannot
        score (see `token_losses`).
    """
    from .loading import non_embedding_params

    losses = loss_matrix(models, docs, context=context, progress=progress)
    n = np.array([non_embedding_params(m) for m in models], float)
    mean = losses.mean(0)
    fit, sensitivity = fit_alpha_n(n, mean)
    thresholds = thresholds or PAPER_CLASSES
    classes = TokenClasses(**thresholds).fit(losses, n)
    summary = {
        "alpha_N": fit.exponent, "alpha_N_ci": fit.exponent_ci, "fit": fit, "range_sensitivity": sensitivity,
        "models": [{"name": k, "non_embedding_params": int(p), "mean_loss": float(v)} for k, p, v in zip(names, n, mean, strict=True)],
        "n_tokens_evaluated": int(losses.shape[0]), "context": context,
        "token_classes": {**classes.counts(), "thresholds": thresholds},
    }
    return summary, losses, classes


def loss_matrix(models: list, docs: list[np.ndarray], *, context: int = 64, progress: bool = True) -> np.ndarray:
    """Per-token losses (tokens × models) of every model on the same documents; positions 1.. of each doc.

    Returns
    -------
    float32 ndarray (n_tokens, n_models)
        Loss in nats; rows are the positions the first model scored (every position but each doc's first).
    """
    from .losses import token_losses

    cols = [token_losses(m, docs, context=context, progress=progress) for m in models]
    keep = ~np.isnan(cols[0])
    return np.stack([c[keep] for c in cols], axis=1)


def fit_alpha_n(n_params, mean_losses, **kw) -> tuple:
    """α_N: mean loss ≈ a·N^(−α_N) over non-embedding parameters, with bootstrap CI and range sensitivity.

    The quantization model (Michaud et al. 2023) predicts quanta frequencies ∝ k^−(α_N+1) from this α_N;
    the paper's Pythia value is 0.083. `kw` goes to both `fit_power_law` and `fit_range_sensitivity`
    (offset, n_boot, seed).

    Returns
    -------
    fit : PowerLawFit
        `exponent` is α_N, with its 95% bootstrap `exponent_ci`.
    sensitivity : list of dict
        The exponent refitted with up to 2 sizes dropped from either end (`fit_range_sensitivity`).

    Raises
    ------
    ValueError
        Fewer than 3 distinct sizes, mismatched lengths, or non-positive / non-finite values.
    """
    fit = fit_power_law(np.asarray(n_params, float), np.asarray(mean_losses, float), **kw)
    return fit, fit_range_sensitivity(np.asarray(n_params, float), np.asarray(mean_losses, float), **kw)


class TokenClasses:
    """Label tokens by how their loss falls with model size (the quantization model's token classes).

    monogenic: loss > `high` nats for every model below some size and < `low` at and above it (one
    sharp drop); polygenic: a steady decline, slope of loss vs ln N below `slope` with R² above `r2`.
    The paper's thresholds (Michaud et al. 2023; Pythia, 19M…2.7B) are the defaults; small models need
    smaller ones. A token that qualifies as monogenic is never labelled polygenic.

    Parameters
    ----------
    high, low : float
        Loss thresholds in nats for monogenic tokens, low < high.
    slope : float
        Polygenic: slope of loss (nats) against ln N must be below this.
    r2 : float
        Polygenic: R² of that line must exceed this, in [0, 1].

    Attributes
    ----------
    step_ : int64 ndarray (n_tokens,)
        Index of the first model below `low` for a monogenic token (every smaller one is above `high`);
        −1 when not monogenic.
    slope_ : float64 ndarray (n_tokens,)
        Least-squares slope of loss against ln N, nats per e-fold.
    r2_ : float64 ndarray (n_tokens,)
        R² of that line (0 for a constant loss).
    labels_ : str ndarray (n_tokens,)
        "monogenic", "polygenic" or "other".

    Raises
    ------
    ValueError
        `high` or `low` not finite or low ≥ high, or r2 outside [0, 1].
    """

    def __init__(self, high: float = 5.0, low: float = 0.3, slope: float = -0.3, r2: float = 0.98):
        if not (np.isfinite(high) and np.isfinite(low) and low < high):
            raise ValueError(f"high and low must be finite with low < high, got high={high}, low={low}")
        if not 0 <= r2 <= 1:
            raise ValueError(f"r2 must be in [0, 1], got {r2}")
        self.high, self.low, self.slope, self.r2 = high, low, slope, r2

    def fit(self, losses: np.ndarray, n_params) -> TokenClasses:
        """Label each token from its loss curve over model sizes; returns self.

        Parameters
        ----------
        losses : float array-like (n_tokens, n_models)
            Per-token losses in nats, models in increasing `n_params` order (e.g. `loss_matrix`).
        n_params : float array-like (n_models,)
            Non-embedding parameter counts, strictly increasing.

        Raises
        ------
        ValueError
            `losses` not 2-D with one column per size, fewer than 3 models, or sizes not increasing.
        """
        losses = np.asarray(losses, float)
        n = np.asarray(n_params, float)
        if losses.ndim != 2 or losses.shape[1] != n.size or n.size < 3 or np.any(np.diff(n) <= 0):
            raise ValueError(f"losses must be (tokens × models) with ≥ 3 models in increasing n_params order; "
                             f"got shape {losses.shape} and {n.size} sizes")
        # monogenic: a size index k with all models before it above `high` and from it on below `low`
        above = np.cumprod(losses > self.high, axis=1).astype(bool)  # prefix still above
        below = np.cumprod((losses < self.low)[:, ::-1], axis=1)[:, ::-1].astype(bool)  # suffix below
        k = np.arange(1, n.size)
        ok = above[:, k - 1] & below[:, k]
        self.step_ = np.where(ok.any(axis=1), k[np.argmax(ok, axis=1)], -1)
        x = np.log(n) - np.log(n).mean()
        y = losses - losses.mean(axis=1, keepdims=True)
        self.slope_ = y @ x / (x @ x)
        ss_tot = (y**2).sum(axis=1)
        ss_res = ((y - np.outer(self.slope_, x)) ** 2).sum(axis=1)
        self.r2_ = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), 0.0)
        poly = (self.slope_ < self.slope) & (self.r2_ > self.r2)
        self.labels_ = np.where(self.step_ >= 0, "monogenic", np.where(poly, "polygenic", "other"))
        return self

    def counts(self) -> dict[str, int]:
        """Tokens per label: {"monogenic": …, "polygenic": …, "other": …} (after `fit`)."""
        return {c: int((self.labels_ == c).sum()) for c in ("monogenic", "polygenic", "other")}
