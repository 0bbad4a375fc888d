"""The folder of one `quanta discover` run: the one place its file names are spelled.

Layout (README, "The QDG run folder"): `identity.json` (the capture identity, written when the capture starts),
`config.json` (every setting of the last run), `targets.json` (what the browser shows of each captured target),
`state.json` (written when the scan ran dry), `model_info.json` (what only the loaded model knows, for reruns that
do not load it), `scan/` (`scan.Scan`'s files), `gradients/` (a `capture.GradientStore`: its files are the store's
own), `family/` (the family's losses, `family.family_stage`) and the outputs `summary.json`, `clusters.json`,
`rank_frequency.{csv,json,png,svg}`, `umap.png`, `quanta_scaling.{json,png,svg}` and `browser.html`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import ParameterError

__all__ = ["RunFolder", "CaptureInfo"]


@dataclass(frozen=True)
class RunFolder:
    """Paths of a QDG run folder `root` (see the module docstring); nothing is read or written on construction.

    Attributes
    ----------
    root : Path
    """

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    identity = property(lambda self: self.root / "identity.json", doc="The capture identity (`CaptureConfig.identity`).")
    config = property(lambda self: self.root / "config.json", doc="`QDGConfig.to_dict()` of the last run.")
    targets = property(lambda self: self.root / "targets.json", doc="A record per captured target (`qdg._records`).")
    state = property(lambda self: self.root / "state.json", doc="Where the scan ran dry, when it did.")
    model_info = property(lambda self: self.root / "model_info.json", doc="Model note, tokenizer, layers, block length.")
    scan = property(lambda self: self.root / "scan", doc="The scan's folder (`scan.Scan`).")
    gradients = property(lambda self: self.root / "gradients", doc="The gradient store's folder (`GradientStore`).")
    summary = property(lambda self: self.root / "summary.json", doc="Everything the analysis found.")
    clusters = property(lambda self: self.root / "clusters.json", doc="Every quantum with its members.")
    browser = property(lambda self: self.root / "browser.html", doc="The quanta browser.")
    umap = property(lambda self: self.root / "umap", doc="Stem of umap.png.")
    rank_frequency = property(lambda self: self.root / "rank_frequency", doc="Stem of the rank-frequency figure.")
    quanta_scaling = property(lambda self: self.root / "quanta_scaling", doc="Stem of quanta_scaling.{json,png,svg}.")

    def store(self, *, verify: bool = True):
        """The gradient store, checked (`capture.store.open_store`); None when nothing is captured yet.

        Raises
        ------
        DamagedFileError, DamagedRowsError
            A file of the store is damaged.
        """
        from ..capture.store import open_store

        return open_store(self.gradients, verify=verify)

    def check_layout(self) -> None:
        """Refuse a non-empty folder without identity.json: a QDG run of an older layout (or something else).

        Raises
        ------
        ParameterError
            On `out`, naming the folder and the fix.
        """
        root = self.root
        if root.is_dir() and any(p.name != ".lock" for p in root.iterdir()) and not self.identity.exists():
            raise ParameterError("out", f"{root} holds files but no identity.json: a QDG run from an older "
                                        "quanta_interp layout, or another folder; run `quanta discover` into a new out "
                                        "folder")


@dataclass(frozen=True)
class CaptureInfo:
    """What the capture stage hands the analysis (`capture_stage` → `analysis.analyse`).

    Attributes
    ----------
    notes : tuple of str
        Adjustments and repairs to say in the summary, in order.
    model_info : dict
        `model_info.json`: model_note, tokenizer (fingerprint), n_layers, block_length (tokens) — what only the
        loaded model knows, kept for reruns that do not load it; empty for a run that never loaded one.
    timings : dict str → float
        Seconds of the stages run now (`load_seconds`, `scan_seconds`, `capture_seconds`, and
        `capture_tokens_per_second`), each present only when its stage ran; `discover` adds `family_seconds`.
    """

    notes: tuple[str, ...] = ()
    model_info: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
