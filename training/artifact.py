"""Write one model version as a directory, atomically, with a SHA-256 manifest; switch the served version.

A directory appears at its final path only when complete (written under a temporary name beside it, then
renamed), and ``current`` is a symbolic link replaced with one ``rename``: a crash at any moment leaves either the
old state or the new one, never a half.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import joblib

from calculator.model_store import CARD, MANIFEST, load_model, sha256_file

CURRENT = "current"


class ArtifactError(Exception):
    """The artifact cannot be written or promoted."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, write: Callable[[Path], None]) -> None:
    write(path)
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_artifact(out: str | Path, payloads: dict[str, dict], card: dict, card_markdown: str) -> Path:
    """Write ``{endpoint}.joblib``, the model card (JSON and Markdown) and the manifest into a new directory."""
    out = Path(out)
    if out.exists():
        raise ArtifactError(f"{out} exists already; choose a new directory for this model version")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        for endpoint, payload in payloads.items():
            _write_file(tmp / f"{endpoint}.joblib", lambda p, obj=payload: joblib.dump(obj, p, compress=3))
        _write_file(tmp / CARD, lambda p: p.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8"))
        _write_file(tmp / "model_card.md", lambda p: p.write_text(card_markdown, encoding="utf-8"))
        write_manifest(tmp)
        os.chmod(tmp, 0o755)
        _fsync_dir(tmp)
        os.rename(tmp, out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_manifest(directory: Path) -> None:
    """(Re)write the manifest over every other file in ``directory``, atomically."""
    lines = [f"{sha256_file(p)}  {p.name}\n" for p in sorted(directory.iterdir())
             if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")]
    tmp = directory / f".{MANIFEST}.tmp"
    _write_file(tmp, lambda p: p.write_text("".join(lines), encoding="ascii"))
    os.replace(tmp, directory / MANIFEST)


def update_card(directory: Path, card: dict, card_markdown: str) -> None:
    """Replace a version's model card (and its manifest) in place, each file by an atomic rename."""
    for name, text in ((CARD, json.dumps(card, indent=1) + "\n"), ("model_card.md", card_markdown)):
        tmp = directory / f".{name}.tmp"
        _write_file(tmp, lambda p, t=text: p.write_text(t, encoding="utf-8"))
        os.replace(tmp, directory / name)
    write_manifest(directory)


def promote(directory: str | Path, root: str | Path | None = None) -> Path:
    """Make ``directory`` the version served by default: ``root/current`` → it, switched with one rename.

    The version is verified (digests, versions, loadable) first; promoting an older version is the rollback.
    """
    directory = Path(directory).resolve()
    root = Path(root).resolve() if root else directory.parent
    load_model(directory)  # raises ModelLoadError on anything wrong, before the switch
    link = root / CURRENT
    target = os.path.relpath(directory, root)
    tmp = root / f".{CURRENT}.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    _fsync_dir(root)
    return link
