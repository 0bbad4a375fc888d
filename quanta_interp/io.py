"""Run directories, atomic writes and sweep manifests.

A run directory holds `config.json`, `metrics.jsonl`, `result.json` (written last: its presence
means the run finished) and weights as safetensors. A sweep is a folder of run directories plus
`manifest.json`; started again after a kill it redoes only runs without a `result.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_save_npy", "read_json", "to_jsonable",
    "config_key", "RunDir", "Sweep", "progress", "jsonl_lines",
]


def progress(iterable: Iterable | None = None, **kwargs):
    """A tqdm progress bar with the project's defaults (stderr, refreshed at most once a second).

    Parameters
    ----------
    iterable : iterable or None
        What to wrap; None gives a manual bar (pass `total=` and call `update()`).
    **kwargs
        Passed to `tqdm` (`total`, `desc`, `initial`, ...); they override the defaults.

    Returns
    -------
    tqdm.auto.tqdm
    """
    from tqdm.auto import tqdm

    kwargs.setdefault("mininterval", 1.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temp file in the same folder and an atomic rename.

    A kill leaves either the old file or the new one, never a partial one. Missing parent folders are
    created; the file is made world-readable (0644) since outputs are shared.

    Returns
    -------
    Path
        `path`.

    Raises
    ------
    OSError
        The folder cannot be created or written; `path` is left as it was and the temp file removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` as UTF-8 to `path` atomically (see `atomic_write_bytes`); returns `path`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """`np.save` through a temp file and a rename, so a kill never leaves a truncated array.

    Unlike `np.save`, `path` is used as given: no `.npy` is appended.

    Returns
    -------
    Path
        `path`.
    """
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return atomic_write_bytes(path, buf.getvalue())


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples, paths and dataclasses with `to_dict` to plain JSON types.

    Mapping keys become strings. Python floats that are NaN or inf (including those inside arrays)
    become None, since JSON has none; numpy float scalars are only unwrapped with `.item()`, so a NaN
    one stays NaN. Anything else is returned unchanged.
    """
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())  # a numpy NaN becomes a float NaN, then None below
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj`, passed through `to_jsonable`, to `path` as indented JSON, atomically; returns `path`.

    Raises
    ------
    TypeError
        `obj` holds something `to_jsonable` leaves non-JSON (a set, an arbitrary object).
    """
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Parse the UTF-8 JSON file at `path`.

    Raises
    ------
    FileNotFoundError
        `path` does not exist.
    json.JSONDecodeError
        The file is not valid JSON (e.g. not written through `atomic_write_json`).
    """
    return json.loads(Path(path).read_text(encoding="utf-8"))


def jsonl_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    """(1-based line number, line) of a JSON-lines file, split on "\n" (and "\r\n") only.

    `str.splitlines` also splits on U+2028, U+2029, U+0085 and form feeds, which JSON strings may hold
    unescaped (`json.dumps(..., ensure_ascii=False)`): such a line would be cut in two.
    """
    text = Path(path).read_text(encoding="utf-8")
    return [(i, line.removesuffix("\r")) for i, line in enumerate(text.split("\n"), 1)]


def config_key(config: Mapping[str, Any]) -> str:
    """A short stable hash of a config, used to name its run directory.

    Key order does not matter and tuples hash like lists (the config goes through `to_jsonable`).

    Returns
    -------
    str
        The first 12 hex digits of the sha256 of the config's sorted-key JSON.
    """
    blob = json.dumps(to_jsonable(config), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


class RunDir:
    """One run's folder: config, streamed metrics, final result, safetensors weights.

    Parameters
    ----------
    path : str or PathLike
        The folder; created with `config` (or by the first write), never by merely opening it.
    config : mapping or None
        JSON-able settings of the run, written as `config.json` on first use and checked against it
        afterwards; None opens the folder without checking.

    Attributes
    ----------
    path : Path

    Raises
    ------
    ValueError
        `config` differs from the `config.json` already in the folder.
    """

    def __init__(self, path: str | os.PathLike, config: Mapping[str, Any] | None = None):
        self.path = Path(path)
        if config is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            cfg_path = self.path / "config.json"
            if cfg_path.exists() and read_json(cfg_path) != to_jsonable(config):
                raise ValueError(f"{self.path} already holds a run with a different config; "
                                 "choose another output folder or delete it")
            if not cfg_path.exists():
                atomic_write_json(cfg_path, config)

    @property
    def config(self) -> dict:
        """The run's settings, read from `config.json`.

        Raises
        ------
        FileNotFoundError
            The folder was opened with `config=None` and holds no `config.json`.
        """
        return read_json(self.path / "config.json")

    @property
    def done(self) -> bool:
        """Whether the run finished: `result.json` exists."""
        return (self.path / "result.json").exists()

    def log_metrics(self, row: Mapping[str, Any]) -> None:
        """Append one JSON line; a line cut by a kill is ignored by `metrics()`."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(to_jsonable(row)) + "\n")
            f.flush()

    def metrics(self) -> list[dict]:
        """Every row of `metrics.jsonl` in logging order ([] if none); lines that do not parse are skipped."""
        p = self.path / "metrics.jsonl"
        if not p.exists():
            return []
        rows = []
        for _, line in jsonl_lines(p):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def write_result(self, result: Mapping[str, Any]) -> None:
        """Write `result.json` atomically: the run's last write, which marks it `done`."""
        atomic_write_json(self.path / "result.json", result)

    def result(self) -> dict:
        """The run's `result.json`.

        Raises
        ------
        FileNotFoundError
            The run has not finished.
        """
        return read_json(self.path / "result.json")

    def save_weights(self, tensors: Mapping[str, Any], name: str = "weights.safetensors",
                     metadata: Mapping[str, str] | None = None) -> Path:
        """Save tensors as one safetensors file in the run folder, atomically.

        Parameters
        ----------
        tensors : mapping of str to torch.Tensor
            Detached, moved to CPU and made contiguous before saving.
        name : str
            File name inside the run folder.
        metadata : mapping of str to str or None
            Stored in the safetensors header.

        Returns
        -------
        Path
            The file written.
        """
        from safetensors.torch import save

        data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
        return atomic_write_bytes(self.path / name, data)

    def load_weights(self, name: str = "weights.safetensors") -> dict:
        """The tensors `save_weights` wrote to `name`, as {name: CPU torch.Tensor}.

        Raises
        ------
        FileNotFoundError
            The run folder has no file `name`.
        """
        from safetensors.torch import load_file

        return load_file(self.path / name)


class Sweep:
    """A folder of runs keyed by config hash, with `manifest.json` listing every config.

    Started again on the same folder with the same configs, `pending()` lists only unfinished runs.

    Parameters
    ----------
    root : str or PathLike
        The sweep folder; `manifest.json` is written there, each run under `runs/KEY/`.
    configs : iterable of mapping
        JSON-able settings, one run each, all distinct.
    name : str
        Recorded in the manifest; reopening the folder needs the same name.

    Attributes
    ----------
    root : Path
    name : str
    configs : list of dict
        The configs after `to_jsonable`, in the given order.
    keys : list of str
        `config_key` of each config: its run folder's name.

    Raises
    ------
    ValueError
        Two configs are equal, or `root` already holds a manifest with another name or other configs
        (or the same configs in another order).
    """

    def __init__(self, root: str | os.PathLike, configs: Iterable[Mapping[str, Any]], *, name: str = "sweep"):
        self.root, self.name = Path(root), name
        self.configs = [to_jsonable(c) for c in configs]
        self.keys = [config_key(c) for c in self.configs]
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("configs: the sweep has duplicate configs")
        manifest = {"name": name, "runs": [{"key": k, "config": c} for k, c in zip(self.keys, self.configs, strict=True)]}
        path = self.root / "manifest.json"
        if path.exists():
            old = read_json(path)
            if old.get("name") != name or [r["key"] for r in old["runs"]] != self.keys:
                raise ValueError(f"{self.root} holds a different sweep ({old.get('name')}, "
                                 f"{len(old['runs'])} runs); use another --out or delete it")
        else:
            atomic_write_json(path, manifest)

    @classmethod
    def open(cls, root: str | os.PathLike, *, hint: str = "") -> Sweep:
        """The sweep already in `root`, to read; one FileNotFoundError (ending with `hint`) if there is none."""
        path = Path(root) / "manifest.json"
        if not path.exists():
            raise FileNotFoundError(f"{root} is not a sweep folder (no manifest.json)" + (f"; {hint}" if hint else ""))
        manifest = read_json(path)
        return cls(root, [r["config"] for r in manifest["runs"]], name=manifest["name"])

    def run_dir(self, i: int) -> RunDir:
        """The `RunDir` of config `i` (`root/runs/KEY`), created with its `config.json` if missing."""
        return RunDir(self.root / "runs" / self.keys[i], self.configs[i])

    def pending(self) -> list[int]:
        """Indices of the configs whose run has no `result.json` yet: what a restart still has to do."""
        return [i for i, k in enumerate(self.keys) if not (self.root / "runs" / k / "result.json").exists()]

    def results(self) -> list[dict | None]:
        """Each config's `result.json`, in config order; None for runs not finished."""
        out = []
        for k in self.keys:
            p = self.root / "runs" / k / "result.json"
            out.append(read_json(p) if p.exists() else None)
        return out
