"""Run directories, atomic writes, sweep manifests, damaged-file checks and the one-writer lock.

A run directory holds `config.json`, `metrics.jsonl`, `result.json` (written last: its presence
means the run finished) and weights as safetensors. A sweep is a folder of run directories plus
`manifest.json`; started again after a kill it redoes only runs without a `result.json`.

Bookkeeping files are read through `read_json` and `load_npy`: a missing, empty, truncated or
wrong-typed file is one `DamagedFileError` naming the file and the fix, never a library message.
`RunLock` keeps a second process out of a folder that one process is writing.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_save_npy", "read_json", "load_npy",
    "DamagedFileError", "RunLock", "FolderBusyError", "check_free_space", "to_jsonable", "config_key", "RunDir",
    "Sweep", "progress", "jsonl_lines",
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


class DamagedFileError(ValueError):
    """A bookkeeping file that exists but cannot be used (empty, truncated, not JSON, wrong type or length).

    `str(error)` is one line: the file, what is wrong with it, and the fix.

    Attributes
    ----------
    path : Path
        The damaged file.
    """

    def __init__(self, path: str | os.PathLike, problem: str, fix: str | None = None):
        self.path = Path(path)
        super().__init__(f"{self.path} is damaged ({problem}); {fix or _DEFAULT_FIX}")


_DEFAULT_FIX = "restore it, or rerun into a new --out folder"


def read_json(path: str | os.PathLike, *, expect: type | None = None, fix: str | None = None) -> Any:
    """Parse the UTF-8 JSON file at `path`.

    Parameters
    ----------
    expect : type or None
        dict or list: what the file must hold (e.g. a settings file must hold an object).
    fix : str or None
        What the user should do when the file is damaged (default: restore it, or use a new --out).

    Raises
    ------
    FileNotFoundError
        `path` does not exist.
    DamagedFileError
        The file is empty, not UTF-8, not valid JSON (e.g. cut by a full disk), or not an `expect`.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        value = json.loads(text)
    except FileNotFoundError:
        raise
    except UnicodeDecodeError:
        raise DamagedFileError(path, "not UTF-8 text", fix) from None
    except json.JSONDecodeError as e:
        problem = "empty" if not text.strip() else f"not valid JSON: {e.msg} at character {e.pos}"
        raise DamagedFileError(path, problem, fix) from None
    if expect is not None and not isinstance(value, expect):
        kind = {dict: "a JSON object", list: "a JSON list"}.get(expect, expect.__name__)
        raise DamagedFileError(path, f"holds a {type(value).__name__}, not {kind}", fix)
    return value


def load_npy(path: str | os.PathLike, *, dtype=None, shape: tuple | None = None, mmap_mode: str | None = None,
             fix: str | None = None) -> np.ndarray:
    """`np.load` of a `.npy` bookkeeping file, checked: one `DamagedFileError` when it cannot be used.

    Parameters
    ----------
    dtype : numpy dtype or None
        The dtype the file must hold.
    shape : tuple or None
        The shape it must have; None entries match any length.
    mmap_mode : str or None
        Passed to `np.load` ("r", "r+"); the data is then not read.
    fix : str or None
        What the user should do (default: restore it, or use a new --out).

    Raises
    ------
    FileNotFoundError
        `path` does not exist.
    DamagedFileError
        Not a .npy file, truncated, holding Python objects, or another dtype or shape.
    """
    path = Path(path)
    try:
        arr = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "pickle" in why:
            why = "it holds pickled Python objects, not numbers"
        problem = "empty" if path.stat().st_size == 0 else f"not a readable .npy array: {why[:90]}"
        raise DamagedFileError(path, problem, fix) from None
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise DamagedFileError(path, f"holds {arr.dtype}, not {np.dtype(dtype)}", fix)
    if shape is not None and (arr.ndim != len(shape)
                              or any(w is not None and w != a for w, a in zip(shape, arr.shape, strict=True))):
        want = "(" + ", ".join("any" if w is None else str(w) for w in shape) + ")"
        raise DamagedFileError(path, f"has shape {arr.shape}, not {want}", fix)
    return arr


def check_free_space(folder: str | os.PathLike, need: int, *, what: str) -> None:
    """Refuse to start writing `need` bytes into `folder` when its file system has less free space.

    Raises
    ------
    OSError
        errno ENOSPC, with a message saying how much space `what` needs and how much is free.
    """
    free = shutil.disk_usage(folder).free
    if free < need:
        raise OSError(errno.ENOSPC, f"{what} needs {_mb(need)} free in {folder}, only {_mb(free)} is: free "
                                    "space and rerun (what is already on disk is kept)", str(folder))


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


class FolderBusyError(RuntimeError):
    """Another live process holds the `RunLock` of a folder."""


class RunLock:
    """An advisory lock that lets one process at a time write a run folder (`fcntl.flock` on `FOLDER/.lock`).

    The lock file holds the holder's PID and start time, so a refused process can say who holds it. The
    kernel drops the lock when its holder dies (even by SIGKILL); a lock file still naming a dead holder is
    taken over, and `note` says so. Within one process the lock is re-entrant (counted per folder).
    Needs a POSIX system (fcntl).

    Parameters
    ----------
    folder : str or PathLike
        The run folder; created if missing (`created` says whether it was).

    Attributes
    ----------
    folder : Path
    note : str or None
        Set by `acquire` when a dead holder's lock was taken over.
    created : list of Path
        The folder and lock file this lock created, for `release(remove=True)`.
    """

    _held: dict[str, list] = {}  # resolved folder → [open lock file, count] in this process

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.note: str | None = None
        self.created: list[Path] = []
        self._key: str | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or raise `FolderBusyError` naming the live holder (its PID and start time).

        Raises
        ------
        FolderBusyError
            Another process holds the lock.
        """
        import fcntl

        if not self.folder.exists():
            self.created.append(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        key = str(self.folder.resolve())
        if key in RunLock._held:
            RunLock._held[key][1] += 1
            self._key = key
            return self
        path = self.folder / ".lock"
        if not path.exists():
            self.created.insert(0, path)
        f = open(path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            f.close()
            raise FolderBusyError(f"{self.folder} is being written by another process ({holder}); wait for it to "
                                  "finish, or use another --out") from None
        previous = _holder(path)
        if previous:
            self.note = (f"{self.folder} was left locked by a process that is no longer running ({previous}); "
                         "its lock was taken over and its work is resumed")
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}) + "\n")
        f.flush()
        RunLock._held[key] = [f, 1]
        self._key = key
        return self

    def release(self, *, remove: bool = False) -> None:
        """Let go of the lock (the last release in this process unlocks the folder and empties the lock file).

        Parameters
        ----------
        remove : bool
            Also delete the lock file and folder if `acquire` created them (a refused run leaves the folder
            as it found it); a folder that holds anything else is kept.
        """
        entry = RunLock._held.get(self._key) if self._key else None
        if entry is None:
            return
        entry[1] -= 1
        self._key = None
        if entry[1] > 0:
            return
        import fcntl

        del RunLock._held[str(self.folder.resolve())]
        f = entry[0]
        f.seek(0)
        f.truncate()  # an empty lock file: the last holder finished cleanly
        f.flush()
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()
        if remove:
            for p in self.created:
                if p.is_dir():
                    if not any(p.iterdir()):
                        p.rmdir()
                else:
                    p.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release(remove=exc_type is not None)


def _holder(path: Path) -> str:
    """'pid P, started T' from a lock file, '' when it is empty (or unreadable)."""
    try:
        info = json.loads(path.read_text() or "null")
        return f"pid {info['pid']}, started {info['started']}" if info else ""
    except (ValueError, KeyError, TypeError, OSError):
        return "a holder whose lock file is unreadable"


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
            if cfg_path.exists() and read_json(cfg_path, expect=dict, fix=self._redo) != to_jsonable(config):
                raise ValueError(f"{self.path} already holds a run with a different config; "
                                 "choose another output folder or delete it")
            if not cfg_path.exists():
                atomic_write_json(cfg_path, config)

    @property
    def _redo(self) -> str:
        return f"delete the folder {self.path} and rerun: the run is redone"

    @property
    def config(self) -> dict[str, Any]:
        """The run's settings, read from `config.json`: a mapping, as any JSON object a run was given (each
        caller rebuilds its own config dataclass from it).

        Raises
        ------
        FileNotFoundError
            The folder was opened with `config=None` and holds no `config.json`.
        DamagedFileError
            `config.json` does not hold a JSON object.
        """
        return read_json(self.path / "config.json", expect=dict, fix=self._redo)

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

    def result(self) -> dict[str, Any]:
        """The run's `result.json`: a mapping, as the JSON of whatever result its worker wrote (each caller
        rebuilds its result type from it).

        Raises
        ------
        FileNotFoundError
            The run has not finished.
        DamagedFileError
            `result.json` does not hold a JSON object.
        """
        return read_json(self.path / "result.json", expect=dict, fix=self._redo)

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

    def load_weights(self, name: str = "weights.safetensors") -> dict[str, torch.Tensor]:
        """The tensors `save_weights` wrote to `name`, as {name: CPU torch.Tensor}: a mapping, the state dict
        `load_state_dict` takes.

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
    lock : bool
        Hold the folder's `RunLock` while this object lives (a sweep that will be written); False to read.

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
    DamagedFileError
        `manifest.json` is empty, not JSON, or not a sweep's manifest.
    FolderBusyError
        `lock` and another live process is writing `root`.
    """

    def __init__(self, root: str | os.PathLike, configs: Iterable[Mapping[str, Any]], *, name: str = "sweep",
                 lock: bool = True):
        self.root, self.name = Path(root), name
        self.configs = [to_jsonable(c) for c in configs]
        self.keys = [config_key(c) for c in self.configs]
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("configs: the sweep has duplicate configs")
        if lock:
            held = RunLock(self.root).acquire()
            weakref.finalize(self, held.release)
            if held.note:
                import warnings

                warnings.warn(held.note, stacklevel=2)
        manifest = {"name": name, "runs": [{"key": k, "config": c} for k, c in zip(self.keys, self.configs, strict=True)]}
        path = self.root / "manifest.json"
        if path.exists():
            old = _manifest(path)
            if old["name"] != name or [r["key"] for r in old["runs"]] != self.keys:
                raise ValueError(f"{self.root} holds a different sweep ({old['name']}, "
                                 f"{len(old['runs'])} runs); use another --out or delete it")
        else:
            atomic_write_json(path, manifest)

    @classmethod
    def open(cls, root: str | os.PathLike, *, hint: str = "") -> Sweep:
        """The sweep already in `root`, to read (unlocked); one FileNotFoundError (ending with `hint`) if there is
        none, one `DamagedFileError` if its manifest is damaged."""
        path = Path(root) / "manifest.json"
        if not path.exists():
            raise FileNotFoundError(f"{root} is not a sweep folder (no manifest.json)" + (f"; {hint}" if hint else ""))
        manifest = _manifest(path)
        return cls(root, [r["config"] for r in manifest["runs"]], name=manifest["name"], lock=False)

    def run_dir(self, i: int) -> RunDir:
        """The `RunDir` of config `i` (`root/runs/KEY`), created with its `config.json` if missing."""
        return RunDir(self.root / "runs" / self.keys[i], self.configs[i])

    def pending(self) -> list[int]:
        """Indices of the configs whose run has no `result.json` yet: what a restart still has to do."""
        return [i for i, k in enumerate(self.keys) if not (self.root / "runs" / k / "result.json").exists()]

    def results(self) -> list[dict | None]:
        """Each config's `result.json`, in config order; None for runs not finished.

        Raises
        ------
        DamagedFileError
            A `result.json` is damaged: the message says to delete it, so that a rerun redoes that run.
        """
        out = []
        for k in self.keys:
            p = self.root / "runs" / k / "result.json"
            out.append(read_json(p, expect=dict, fix="delete it and rerun the sweep: that run is redone")
                       if p.exists() else None)
        return out


def _manifest(path: Path) -> dict:
    """A sweep's manifest.json, checked: a name and runs, each with a key and a config."""
    fix = (f"restore it; or move the finished runs elsewhere, delete {path.parent} and rerun the sweep "
           "(finished runs are then redone)")
    manifest = read_json(path, expect=dict, fix=fix)
    runs = manifest.get("runs")
    if not isinstance(manifest.get("name"), str) or not isinstance(runs, list) or not all(
            isinstance(r, dict) and isinstance(r.get("key"), str) and "config" in r for r in runs):
        raise DamagedFileError(path, "not a sweep manifest: it needs a name and runs with a key and a config each", fix)
    return manifest
