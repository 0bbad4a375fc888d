"""The model stage of quanta across scale: every member of a model family scores QDG's targets.

Each member predicts every captured target from the same context window the QDG model saw; the losses
(nats) go to `out/family/<member key>.npy`, one file per member, written atomically, so a killed run
resumes with the members it has. `family/members.json` lists the members in family order with the scale
x of each (non-embedding parameters N, or training steps for checkpoints of one model). The analysis
(`scaling.quanta_scaling`) reads only these arrays.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ParameterError
from ..io import DamagedFileError, atomic_save_npy, atomic_write_json, load_npy, read_json

__all__ = ["resolve_family", "check_members", "check_run_tokenizers", "family_stage", "FamilyStage", "read_family",
           "heldout_targets"]


def resolve_family(spec: str, steps=None) -> list[dict]:
    """The members of a family, in family order, without loading them.

    Parameters
    ----------
    spec : str
        A `quanta lm family` sweep folder (its finished members, by non-embedding size); one `lm.train` run
        folder that kept checkpoints (`TrainConfig.keep_checkpoints`), whose checkpoints at `steps` are the
        members; or a comma list of model specs as `lm.load` takes them (hub names, HF folders, run folders,
        checkpoint files), smallest (or earliest) first.
    steps : sequence of int or None
        `family_steps`: the training steps of the members (picks a run's checkpoints).

    Returns
    -------
    list of dict
        `name`, `spec` and `n_params` (non-embedding, None until loaded for specs outside a sweep).

    Raises
    ------
    ParameterError
        Fewer than 3 members (a folder that is a single run counts as one unless it kept checkpoints), the
        same member twice, a run that kept no checkpoints, or steps it did not keep.
    """
    path = Path(spec).expanduser()
    if (path / "manifest.json").exists():
        from ..lm.scaling import family_members

        try:
            members = [{"name": m.name, "spec": str(m.path), "n_params": m.n_params} for m in family_members(path)]
        except ValueError as e:
            raise ParameterError("family", f"{e}") from None
    elif (path / "model_config.json").exists():
        members = _checkpoints(path, steps)
    else:
        specs = [s.strip() for s in str(spec).split(",") if s.strip()]
        members = [{"name": Path(s).name or s, "spec": s, "n_params": None} for s in specs]
    if len(members) < 3:
        raise ParameterError("family", f"must have at least 3 members (a `quanta lm family` folder or a comma list "
                                       f"of models), got {len(members)}: {spec!r}")
    if len({m["spec"] for m in members}) < len(members):
        raise ParameterError("family", f"lists a model twice: {spec!r}")
    return members


def _checkpoints(run: Path, steps) -> list[dict]:
    """The members of one training run: its kept checkpoints at `steps` (see `resolve_family`)."""
    from ..lm.training import checkpoint_steps

    kept = checkpoint_steps(run)
    if not kept:
        raise ParameterError("family",
                             f"{run} is one training run and kept no checkpoints to follow over training: retrain it "
                             "with --keep-checkpoints, or pass a `quanta lm family` folder or ≥ 3 comma-separated models")
    if not steps:
        raise ParameterError("family", f"{run} is one training run: give family_steps, ≥ 3 of its kept steps "
                                       f"({_shown(sorted(kept))})")
    missing = [s for s in steps if s not in kept]
    if missing:
        raise ParameterError("family_steps", f"{run} kept no checkpoint at steps {missing}; it kept {_shown(sorted(kept))}")
    return [{"name": f"step {s}", "spec": str(kept[s]), "n_params": None} for s in steps]


def _shown(values: list[int]) -> str:
    return ", ".join(map(str, values)) if len(values) <= 8 else f"{', '.join(map(str, values[:6]))}, …, {values[-1]}"


def check_members(members: list[dict], *, steps: bool = False) -> None:
    """What can be known of a family's members before any model loads: each spec names an existing model
    (`lm.check_model_spec`: a missing folder, a run without weights) and, without `steps`, known sizes grow.

    Raises
    ------
    ParameterError
        A member cannot be loaded, or members of known size do not grow in family order.
    """
    from ..lm.loading import check_model_spec

    for m in members:
        try:
            check_model_spec(m["spec"])
        except ValueError as e:
            raise ParameterError("family", f"member {m['name']}: {e}") from None
    sizes = [m["n_params"] for m in members]
    if not steps and None not in sizes and np.any(np.diff(sizes) <= 0):
        raise _not_growing(members)


def _not_growing(members: list[dict]) -> ParameterError:
    return ParameterError("family", "members must grow in non-embedding size in family order, got "
                          + ", ".join(f"{m['name']} {m['n_params']}" for m in members)
                          + "; list them smallest first, or give family_steps for checkpoints of one model")


def _key(spec: str) -> str:
    return hashlib.sha1(spec.encode()).hexdigest()[:12]


def _reference_tokenizer(config, out: Path) -> str:
    """Fingerprint of the QDG run's tokenizer: stored at capture, or read from its model once (then stored)."""
    info_path = out / "model_info.json"
    info = read_json(info_path, expect=dict) if info_path.exists() else {}
    if "tokenizer" not in info:
        from .. import lm

        info["tokenizer"] = (_run_tokenizer(config.model)  # a run folder's tokenizer.json, without loading it
                             or lm.corpus_tokenizer(lm.load(config.model, device="cpu")).fingerprint())
        atomic_write_json(info_path, {**info, "notes": info.get("notes", [])})
    return info["tokenizer"]


def _run_tokenizer(spec: str) -> str | None:
    """Fingerprint of a run folder's tokenizer without loading the model (None for other specs)."""
    from ..corpora import Tokenizer

    path = Path(spec).expanduser()
    path = (path.parent.parent if path.suffix == ".safetensors" else path) / "tokenizer.json"  # a kept checkpoint's run
    return Tokenizer.load(path).fingerprint() if path.exists() else None


def check_run_tokenizers(members: list[dict], config, reference: str | None = None) -> None:
    """Refuse members that are run folders with another tokenizer than `reference` (default: the tokenizer
    of `config.model` when it is a run folder too), reading only their tokenizer.json files.

    Raises
    ------
    ParameterError
        A member's tokenizer differs.
    """
    reference = reference or _run_tokenizer(config.model)
    if reference is None:
        return
    for m in members:
        fp = _run_tokenizer(m["spec"])
        if fp is not None and fp != reference:
            raise _other_tokenizer(m, config)


def _other_tokenizer(member: dict, config) -> ParameterError:
    return ParameterError("family", f"member {member['name']} ({member['spec']}) has another tokenizer than the QDG "
                                    f"run's model ({config.model}); every member must share it")


@dataclass(frozen=True)
class FamilyStage:
    """What `family_stage` did, for the run's timings (`discover` merges `to_dict()` into them).

    Attributes
    ----------
    seconds : float
        Wall time of the stage, 2 decimals; 0.0 when every member had already scored the targets.
    members : list of str
        Member names, in family order.
    """

    seconds: float
    members: list[str]

    def to_dict(self) -> dict:
        """{family_seconds, family_members}: the keys the summary's timings carry."""
        return {"family_seconds": self.seconds, "family_members": self.members}


def family_stage(config, out: str | Path, *, progress: bool = True) -> FamilyStage:
    """Score every captured target with every member of `config.family` (resumable) and list the members.

    Parameters
    ----------
    config : QDGConfig
        Its `family`, `family_steps`, `corpus`, `seed`, `device` and `batch_tokens` are used.
    out : folder
        A QDG run folder with captured gradients.

    Returns
    -------
    FamilyStage

    Raises
    ------
    ParameterError
        A member with another tokenizer than the run's model, fewer than 3 members, or members whose sizes
        do not increase in family order (give `family_steps` for checkpoints of one model).
    """
    from .. import lm
    from ..capture import GradientStore
    from ..capture.windows import window_losses
    from ..corpora import load_corpus

    out, t0 = Path(out), time.perf_counter()
    members = resolve_family(config.family, config.family_steps)
    rows = np.asarray(GradientStore(out / "gradients").targets)
    ref = _reference_tokenizer(config, out)
    check_run_tokenizers(members, config, ref)
    fam = out / "family"
    fam.mkdir(exist_ok=True)
    docs, computed = None, False
    for i, m in enumerate(members):
        key = _key(m["spec"])
        arr, meta = fam / f"{key}.npy", fam / f"{key}.json"
        if arr.exists() and meta.exists():
            fix = f"delete {arr} and {meta}: that member scores the targets again"
            scored = load_npy(arr, dtype=np.float32, mmap_mode="r", fix=fix)
            if len(scored) == len(rows):
                m["n_params"] = read_json(meta, expect=dict, fix=fix).get("n_params")
                if not isinstance(m["n_params"], int):
                    raise DamagedFileError(meta, "lacks the member's n_params", fix)
                continue
        model = lm.load(m["spec"], device=config.device)
        tok = lm.corpus_tokenizer(model)
        if tok.fingerprint() != ref:
            raise _other_tokenizer(m, config)
        if docs is None:
            docs = load_corpus(config.corpus, tokenizer=tok, seed=config.seed).documents()
        losses = window_losses(model.bridge, docs, rows, batch_tokens=config.batch_tokens, progress=progress,
                               desc=f"family {i + 1}/{len(members)} {m['name']}")
        m["n_params"] = int(lm.non_embedding_params(model.bridge))
        atomic_write_json(meta, {"name": m["name"], "spec": m["spec"], "n_params": m["n_params"],
                                 "n_ctx": int(model.cfg.n_ctx)})
        atomic_save_npy(arr, losses)
        computed = True
        del model
    x = list(config.family_steps) if config.family_steps else [m["n_params"] for m in members]
    if not config.family_steps and np.any(np.diff(x) <= 0):
        raise _not_growing(members)
    listing = {"axis": "step" if config.family_steps else "N", "x": x,
               "members": [{**m, "key": _key(m["spec"])} for m in members]}
    atomic_write_json(fam / "members.json", listing)
    return FamilyStage(round(time.perf_counter() - t0, 2) if computed else 0.0, [m["name"] for m in members])


def heldout_targets(lengths, block: int, min_context: int, n: int, *, skip_blocks: int, seed: int = 0) -> np.ndarray:
    """Targets no model chose: `n` uniform random positions in the blocks a QDG scan never reached.

    The scan visits the corpus's blocks (`scan.blocks`) in the seeded order `permutation(seed)` and keeps the
    tokens its model predicts well; the blocks after its first `skip_blocks` are text it never read. Here a
    position of those blocks is drawn with equal probability, whatever any model's loss on it, so curves
    measured on them carry no selection by the family (`scaling.heldout_quanta_scaling`).

    Parameters
    ----------
    lengths : sequence of int
        Document lengths in tokens.
    block, min_context : int
        As the scan used them (`scan.block_length`, `QDGConfig.min_context`).
    n : int
        Targets wanted (fewer when the unread blocks hold fewer positions).
    skip_blocks : int
        Blocks the scan read (its state.json `blocks_done`).

    Returns
    -------
    int64 ndarray (m, 3)
        (doc, start, pos) rows sorted by (doc, pos): the window doc[start:pos] predicts token pos.

    Raises
    ------
    ValueError
        The scan read every block: no held-out text is left.
    """
    from .scan import blocks

    table = blocks(list(lengths), block, min_context)
    rest = table[np.random.default_rng(seed).permutation(len(table))[skip_blocks:]]
    if not len(rest):
        raise ValueError(f"the scan read all {len(table)} blocks: no held-out text is left; scan fewer tokens "
                         "(n_tokens) or a longer corpus")
    sizes = rest[:, 2] - rest[:, 1] - min_context + 1  # targets per block
    pick = np.sort(np.random.default_rng([seed, 1]).choice(sizes.sum(), min(n, int(sizes.sum())), replace=False))
    b = np.searchsorted(np.cumsum(sizes), pick, side="right")
    pos = rest[b, 1] + min_context + pick - np.concatenate([[0], np.cumsum(sizes)])[b]
    rows = np.stack([rest[b, 0], rest[b, 1], pos], 1).astype(np.int64)
    return rows[np.lexsort((rows[:, 2], rows[:, 0]))]


def read_family(out: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The family losses of a run, for the analysis.

    Returns
    -------
    losses : float32 ndarray (n_targets, n_members)
        Loss in nats of every captured target under every member, members in family order.
    x : float64 ndarray (n_members,)
        Each member's scale (non-embedding parameters, or training step).
    listing : dict
        `members.json`: `axis` ("N" or "step"), `x` and the members.

    Raises
    ------
    FileNotFoundError
        `family_stage` has not run in `out`.
    """
    fam = Path(out) / "family"
    listing = read_json(fam / "members.json")
    losses = np.stack([np.load(fam / f"{m['key']}.npy") for m in listing["members"]], axis=1)
    return losses, np.asarray(listing["x"], float), listing
