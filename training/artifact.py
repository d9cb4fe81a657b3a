"""Write one model version as a directory, atomically, with a SHA-256 manifest; switch the served version.

A directory appears at its final path only when complete (written under a temporary name beside it, then
renamed); a card update swaps in a complete sibling copy with one ``renameat2(RENAME_EXCHANGE)``; ``current`` is a
symbolic link replaced with one ``rename``. A crash at any moment leaves either the old state or the new one, never
a half; temporaries have names starting with '.'. ``promote`` refuses a candidate that failed validation unless
forced (docs/validation.md).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import joblib

from calculator.model_store import CARD, MANIFEST, ModelLoadError, load_model, sha256_file

CURRENT = "current"
CARD_MARKDOWN = "model_card.md"
AT_FDCWD = -100
RENAME_EXCHANGE = 2


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
        _write_file(tmp / CARD_MARKDOWN, lambda p: p.write_text(card_markdown, encoding="utf-8"))
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


def _exchange(a: Path, b: Path) -> None:
    """Swap two directories in one step (Linux ``renameat2(RENAME_EXCHANGE)``): each name always holds a whole one."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise ArtifactError("this system cannot swap directories atomically (no renameat2); write a new version "
                            "directory instead")
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise ArtifactError(f"cannot swap {a.name} and {b.name} atomically: {os.strerror(err)}")


def update_card(directory: str | Path, card: dict, card_markdown: str, *, expect_manifest: str | None = None) -> None:
    """Replace a version's model card (JSON and Markdown) and manifest together, atomically.

    A version directory may hold nothing that is not in its manifest (the loader refuses strays), so nothing is
    written inside it: a sibling copy (model files hard-linked, new card and manifest written and synced) is swapped
    with it in one ``renameat2(RENAME_EXCHANGE)``. Killed at any moment, the directory holds either the old or the
    new complete version; at most a hidden ``.NAME.*.card`` sibling is left behind. ``expect_manifest`` (the SHA-256
    of the manifest the card was read with) refuses to overwrite a version that changed in between.
    """
    directory = Path(directory).resolve()
    if expect_manifest is not None and sha256_file(directory / MANIFEST) != expect_manifest:
        raise ArtifactError(f"{directory} changed while its card was being updated; run the command again")
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".card", dir=directory.parent))
    try:
        for path in directory.iterdir():
            if path.is_file() and path.name not in (CARD, CARD_MARKDOWN, MANIFEST):
                try:
                    os.link(path, tmp / path.name)  # the model files are unchanged: share them, copy nothing
                except OSError:
                    shutil.copy2(path, tmp / path.name)
        _write_file(tmp / CARD, lambda p: p.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8"))
        _write_file(tmp / CARD_MARKDOWN, lambda p: p.write_text(card_markdown, encoding="utf-8"))
        write_manifest(tmp)
        os.chmod(tmp, 0o755)
        _fsync_dir(tmp)
        _exchange(tmp, directory)
        _fsync_dir(directory.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after the swap: the old version's card, manifest and links


def promote(directory: str | Path, root: str | Path | None = None, *, force: bool = False, registry=None,
            report: Callable[[str], None] | None = None) -> Path:
    """Make ``directory`` the version served by default: ``root/current`` → it, switched with one rename.

    The version is verified (digests, versions, loadable) first, then gated on its validation
    (``training.validate.validation_failures``): a candidate that failed validation, or was never validated, is
    refused unless ``force``. With ``registry`` (the candidate's data) the candidate and the current model are
    compared on it and the comparison is reported before the switch. Promoting an older version is the rollback.
    """
    from training import validate  # imported here: validate writes cards through this module

    report = report or (lambda line: None)
    directory = Path(directory).resolve()
    root = Path(root).resolve() if root else directory.parent
    candidate = load_model(directory)  # raises ModelLoadError on anything wrong, before the switch
    link = root / CURRENT
    current = None
    if link.exists():
        try:
            current = load_model(link)
        except ModelLoadError as exc:
            report(f"the current model does not load ({exc}); it will be replaced")
    if registry is not None and current is not None:
        for line in validate.format_comparison(validate.compare(candidate, current, registry), candidate.version,
                                               current.version):
            report(line)
    failures = validate.validation_failures(candidate)
    if failures:
        reasons = "; ".join(failures)
        if not force:
            raise ArtifactError(f"refusing to promote {directory.name}: {reasons}. Pass --force to promote it anyway")
        report(f"promoting despite failed validation (--force): {reasons}")
    target = os.path.relpath(directory, root)
    tmp = root / f".{CURRENT}.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    _fsync_dir(root)
    return link
