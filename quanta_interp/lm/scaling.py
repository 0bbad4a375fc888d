"""Model families: a size ladder trained through the executors, per-token loss matrices, α_N and the
quantization model's monogenic/polygenic token classes (Michaud et al. 2023, §3.1 of DESIGN.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import check_tokenizer
from ..corpora import load_corpus
from ..executors import map_runs
from ..fitting import PowerLawFit, fit_power_law, fit_range_sensitivity
from .config import UNCONVERGED, TrainConfig
from .training import TrainResult, split_tokens

__all__ = ["LADDER", "CPU_TRAIN", "FamilyMember", "MemberResult", "TrainedMember", "ModelLoss", "ScalingSummary",
           "UNCONVERGED", "family_configs", "train_family", "train_member", "family_members", "converged_members",
           "load_family", "loss_matrix", "fit_alpha_n", "TokenClasses", "analyse", "PAPER_CLASSES"]

PAPER_CLASSES = dict(high=5.0, low=0.3, slope=-0.3, r2=0.98)
# How the CPU-scale family is trained (analyses/lm_scaling.py fits α_N on it; analyses/qdg_lm.py reuses it): a
# constant learning rate after warm-up, each member stopped once its held-out loss fell < 2 % over the last
# doubling of steps (`TrainConfig.converge_tol`), 16k steps at most; the weights of every evaluation are kept.
CPU_TRAIN = dict(steps=16000, n_ctx=64, batch_size=16, lr=3e-3, warmup=50, eval_every=250, eval_batches=16,
                 checkpoint_every=250, schedule="constant", converge_tol=0.02, keep_checkpoints=True)

# (n_layers, d_model): non-embedding parameters 3.3k … 148k (1.65 decades) with d_mlp = 4·d_model
LADDER: tuple[tuple[int, int], ...] = ((1, 16), (1, 32), (2, 32), (2, 48), (2, 64), (3, 64))


@dataclass(frozen=True)
class FamilyMember:
    """One member of a family to train: its name, corpus, tokenizer and `TrainConfig`.

    `to_dict()` is the flat JSON record a family sweep stores (name, corpus, tokenizer, then every
    `TrainConfig.to_dict` field), so a sweep's hashes and config.json files do not depend on this class.
    """

    name: str
    corpus: str
    tokenizer: str
    train: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        """{name, corpus, tokenizer, **train.to_dict()}: the sweep's config of the member."""
        return {"name": self.name, "corpus": self.corpus, "tokenizer": self.tokenizer, **self.train.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FamilyMember:
        """The member from `to_dict()` output (a sweep's config); `ParameterError` for a bad training field."""
        rest = {k: v for k, v in data.items() if k not in ("name", "corpus", "tokenizer")}
        return cls(data["name"], data["corpus"], data["tokenizer"], TrainConfig.from_dict(rest))


@dataclass(frozen=True)
class TrainedMember:
    """A finished member of a family sweep, read from its run folder without loading the model.

    Attributes
    ----------
    name : str
    path : Path
        Its run folder (`lm.load` takes it).
    n_params : int
        Non-embedding parameters N.
    steps : int
        Optimiser steps it took.
    val_loss : float or None
        Held-out loss at its last step (nats per token).
    converged : bool or None
        Whether its convergence rule (`TrainConfig.converge_tol`) stopped it; None: trained without one.
    rule : str
        The rule in words, for messages and summaries.
    """

    name: str
    path: Path
    n_params: int
    steps: int
    val_loss: float | None
    converged: bool | None
    rule: str

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-able values (path as a string)."""
        return {**asdict(self), "path": str(self.path)}


def family_configs(sizes=LADDER, *, corpus: str = "shakespeare", tokenizer: str = "char",
                   **train_kw) -> list[FamilyMember]:
    """One member per (n_layers, d_model), with its resolved training config and the corpus it trains on.

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
    list of FamilyMember
        Named "L{n_layers}-d{d_model}", in the order of `sizes`.

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
    shared = TrainConfig(**{**train_kw, "d_vocab": d_vocab})
    for split in ("train", "val"):
        split_tokens(tokens, corpus, split, shared.n_ctx + 1)
    return [FamilyMember(f"L{n_layers}-d{d_model}", corpus, tokenizer,
                         shared.replace(n_layers=n_layers, d_model=d_model, n_heads=max(1, d_model // 16),
                                        d_mlp=train_kw.get("d_mlp", 4 * d_model)))
            for n_layers, d_model in sizes]


@dataclass(frozen=True)
class MemberResult:
    """A trained family member (`train_member`): its `name` and `lm.train`'s `result`; `to_dict()` is the
    sweep's result.json, {name, **result.to_dict()}."""

    name: str
    result: TrainResult

    def to_dict(self) -> dict[str, Any]:
        """{name, then the `TrainResult` fields}."""
        return {"name": self.name, **self.result.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemberResult:
        """The member from `to_dict()` output (a finished member's result.json)."""
        return cls(data["name"], TrainResult.from_dict({k: v for k, v in data.items() if k != "name"}))


def train_member(config: Mapping[str, Any], run_dir=None) -> MemberResult:
    """Train one family member on its corpus's train split, evaluating on the held-out documents.

    `config` is a `FamilyMember.to_dict()` (what `map_runs` passes); `run_dir` (a `RunDir` or None) is where
    `map_runs` keeps the member, so a rerun resumes it.
    """
    from .training import train

    member = FamilyMember.from_dict(config)
    corpus = load_corpus(member.corpus, member.tokenizer)
    result = train(member.train, corpus.documents("train"), val_tokens=corpus.documents("val"),
                   tokenizer=corpus.tokenizer, run_dir=run_dir.path if run_dir is not None else None, progress=False)
    return MemberResult(member.name, result)


def train_family(members: list[FamilyMember], root: str | Path, **executor) -> list[TrainResult]:
    """Train every member as a resumable sweep under `root` (finished members are not redone);
    `executor` goes to `map_runs` (backend, workers, address, resources).

    Returns
    -------
    list of TrainResult
        One per member, in the order of `members`.
    """
    done = map_runs(train_member, [m.to_dict() for m in members], root=root, name="lm-family", desc="family",
                    **executor)
    return [MemberResult.from_dict(r).result for r in done]


def _rule(config: TrainConfig) -> str:
    if config.converge_tol is None:
        return "none, a fixed number of steps"
    return f"held-out loss falling < {config.converge_tol:.0%} over the last doubling of steps, within {config.steps} steps"


def family_members(root: str | Path) -> list[TrainedMember]:
    """The finished members of a family sweep, without loading them, in increasing model size.

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
    done = [(c, sweep.run_dir(i).path) for i, c in enumerate(sweep.configs) if i not in pending]
    if len(done) < 3:
        raise ValueError(f"family {root}: {len(done)} of {len(sweep.configs)} members finished, need ≥ 3; rerun "
                         "`quanta lm family` on it to resume")
    members = []
    for c, p in done:
        r = read_json(p / "result.json")
        members.append(TrainedMember(c.get("name", p.name), p, int(r["n_params_non_embedding"]), int(r["steps"]),
                                     r.get("val_loss"), r.get("converged"), _rule(FamilyMember.from_dict(c).train)))
    return sorted(members, key=lambda m: m.n_params)



def converged_members(members: list[TrainedMember], root, unconverged: str = "refuse") -> list[TrainedMember]:
    """The members α_N may be fitted over: all of them when each converged by its rule.

    Parameters
    ----------
    unconverged : {"refuse", "drop", "keep"}
        What to do with members their rule did not stop (or trained without one): refuse the family, fit
        without them, or fit them anyway.

    Raises
    ------
    ParameterError
        ('unconverged', …) "refuse" and some member did not converge (naming them and the rule); "drop"
        leaving fewer than 3 members.
    """
    from ..config import ParameterError, check_choice

    check_choice(UNCONVERGED)("unconverged", unconverged)
    bad = [m for m in members if not m.converged]
    if not bad or unconverged == "keep":
        return members
    names = ", ".join(f"{m.name} ({m.steps} steps)" for m in bad)
    if unconverged == "refuse":
        raise ParameterError("unconverged", f"family {root}: {len(bad)} of {len(members)} members are not known to have "
                                            f"converged (rule: {bad[0].rule}): {names}; retrain them with a rule and a "
                                            "higher ceiling (--schedule constant --converge-tol 0.02 --steps N, another "
                                            "--out), or pass --unconverged drop (fit the converged ones) or keep (fit all)")
    kept = [m for m in members if m.converged]
    if len(kept) < 3:
        raise ParameterError("unconverged", f"family {root}: only {len(kept)} of {len(members)} members converged by "
                                            f"their rule ({bad[0].rule}); α_N needs ≥ 3 (unconverged: {names})")
    return kept


def load_family(root: str | Path, *, device: str = "cpu", unconverged: str = "keep",
                checkpoint_at: float | None = None) -> tuple[list, list[TrainedMember]]:
    """The finished members of a family sweep, loaded, in increasing model size.

    Parameters
    ----------
    unconverged : {"refuse", "drop", "keep"}
        See `converged_members`.
    checkpoint_at : float or None
        Load each member's kept checkpoint at this fraction of its steps (0.5: the half budget, to see how
        α_N moves with the budget) instead of its final weights.

    Returns
    -------
    models : list of LoadedModel
        Sorted by non-embedding parameters.
    members : list of TrainedMember
        In the same order.

    Raises
    ------
    FileNotFoundError
        `root` is not a sweep folder.
    ValueError
        Fewer than 3 members finished, members with different tokenizers (they would read different ids), or a
        member without the checkpoint asked for.
    ParameterError
        Unconverged members refused (see `converged_members`).
    """
    from .loading import load
    from .training import checkpoint_steps

    members = converged_members(family_members(root), root, unconverged)
    specs = [m.path for m in members]
    if checkpoint_at is not None:
        specs = []
        for m in members:
            kept, want = checkpoint_steps(m.path), int(round(m.steps * checkpoint_at))
            if want not in kept:
                raise ValueError(f"family {root}: member {m.name} kept no checkpoint at step {want} (kept: "
                                 f"{sorted(kept)[:3]}…); train the family with keep_checkpoints")
            specs.append(kept[want])
    models = [load(p, device=device) for p in specs]
    prints = {m.name: model.tokenizer.fingerprint() if model.tokenizer is not None else None
              for m, model in zip(members, models, strict=True)}
    if len(set(prints.values())) > 1:
        raise ValueError(f"family {root}: its members use different tokenizers {prints}; every member must read the "
                         "same ids: train the family with one --corpus and --tokenizer")
    return models, members


@dataclass(frozen=True)
class ModelLoss:
    """One model's mean per-token loss (nats) on the evaluation documents, and its non-embedding size."""

    name: str
    non_embedding_params: int
    mean_loss: float

    def to_dict(self) -> dict[str, Any]:
        """The fields, in this order."""
        return asdict(self)


@dataclass(frozen=True)
class ScalingSummary:
    """What `analyse` measures on a family (summary.json of `quanta lm scaling`).

    Attributes
    ----------
    alpha_N : float
        Exponent of mean loss ≈ a·N^(−α_N) over non-embedding parameters.
    alpha_N_ci : (float, float)
        Its 95 % pairs-bootstrap interval.
    fit : PowerLawFit
    range_sensitivity : list of dict
        `fit_range_sensitivity`'s table.
    models : tuple of ModelLoss
        In increasing size.
    n_tokens_evaluated, context : int
        Tokens scored per model, and tokens of context per prediction.
    token_classes : dict
        Counts per class and the thresholds.
    """

    alpha_N: float
    alpha_N_ci: tuple[float, float]
    fit: PowerLawFit
    range_sensitivity: list
    models: tuple[ModelLoss, ...]
    n_tokens_evaluated: int
    context: int
    token_classes: dict

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, the keys in field order (`fit` and `models` as their `to_dict`)."""
        return {"alpha_N": self.alpha_N, "alpha_N_ci": self.alpha_N_ci, "fit": self.fit.to_dict(),
                "range_sensitivity": self.range_sensitivity, "models": [m.to_dict() for m in self.models],
                "n_tokens_evaluated": self.n_tokens_evaluated, "context": self.context,
                "token_classes": self.token_classes}


def analyse(models: list, names: list[str], docs: list[np.ndarray], *, context: int = 64,
            thresholds: dict | None = None, progress: bool = True) -> tuple[ScalingSummary, np.ndarray, TokenClasses]:
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
    summary : ScalingSummary
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
    summary = ScalingSummary(
        alpha_N=fit.exponent, alpha_N_ci=fit.exponent_ci, fit=fit, range_sensitivity=sensitivity,
        models=tuple(ModelLoss(k, int(p), float(v)) for k, p, v in zip(names, n, mean, strict=True)),
        n_tokens_evaluated=int(losses.shape[0]), context=context,
        token_classes={**classes.counts(), "thresholds": thresholds})
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
