"""Write one model version as a directory, atomically, with a SHA-256 manifest.

A directory appears at its final path only when complete (written under a temporary name beside it, then
renamed); a card update swaps in a complete sibling copy with one ``renameat2(RENAME_EXCHANGE)``; ``current`` is a
symbolic link replaced with one ``rename``. A crash at any moment leaves either the old state or the new one, never
a half; temporaries have names starting with '.'. Switching the served version is ``training.promote``.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import joblib

from prognosis.model import EndpointModel
from prognosis.store import CARD, MANIFEST, manifest_text, sha256_file, write_model_files

CARD_MARKDOWN = "model_card.md"
# The fitted scikit-survival estimator, exported for data scientists beside the served arrays when asked for
# (``python -m training fit --export-sksurv``); the app never opens it.
ESTIMATOR_SUFFIX = ".sksurv.joblib"
AT_FDCWD = -100
RENAME_EXCHANGE = 2


class ArtifactError(Exception):
    """The artifact cannot be written or promoted."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _write_file(path: Path, write: Callable[[Path], object]) -> None:
    write(path)
    _fsync_file(path)


def write_artifact(
    out: str | Path,
    models: dict[str, EndpointModel],
    card: dict,
    card_markdown: str,
    *,
    estimators: dict[str, object] | None = None,
) -> Path:
    """Write the model files (``prognosis.store``), the model card (JSON and Markdown), any estimator exports and
    the manifest into a new directory."""
    out = Path(out)
    if out.exists():
        raise ArtifactError(f"{out} exists already; choose a new directory for this model version")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        for path in write_model_files(tmp, models):
            _fsync_file(path)
        for endpoint, estimator in (estimators or {}).items():
            if estimator is not None:
                _write_file(
                    tmp / f"{endpoint}{ESTIMATOR_SUFFIX}", functools.partial(joblib.dump, estimator, compress=3)
                )
        _write_file(tmp / CARD, lambda p: p.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8"))
        _write_file(tmp / CARD_MARKDOWN, lambda p: p.write_text(card_markdown, encoding="utf-8"))
        write_manifest(tmp)
        os.chmod(tmp, 0o755)
        fsync_dir(tmp)
        os.rename(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_manifest(directory: Path) -> None:
    """(Re)write the manifest over every other file in ``directory``, atomically."""
    text = manifest_text(directory)
    tmp = directory / f".{MANIFEST}.tmp"
    _write_file(tmp, lambda p: p.write_text(text, encoding="ascii"))
    os.replace(tmp, directory / MANIFEST)


def _exchange(a: Path, b: Path) -> None:
    """Swap two directories in one step (Linux ``renameat2(RENAME_EXCHANGE)``): each name always holds a whole one."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise ArtifactError(
            "this system cannot swap directories atomically (no renameat2); write a new version directory instead"
        )
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise ArtifactError(f"cannot swap {a.name} and {b.name} atomically: {os.strerror(err)}")


def update_card(directory: str | Path, card: dict, card_markdown: str, *, expect_manifest: str | None = None) -> None:
    """Replace a version's model card (JSON and Markdown) and manifest together, atomically (``rewrite_version``)."""
    rewrite_version(directory, card, card_markdown, expect_manifest=expect_manifest)


def rewrite_version(
    directory: str | Path,
    card: dict,
    card_markdown: str,
    *,
    expect_manifest: str | None = None,
    keep: Callable[[str], bool] = lambda name: True,
    add: Callable[[Path], None] = lambda tmp: None,
) -> None:
    """Replace a version's card, manifest and (``keep``/``add``) model files together, atomically.

    A version directory may hold nothing that is not in its manifest (the loader refuses strays), so nothing is
    written inside it: a sibling copy (kept files hard-linked, ``add`` writing new ones, new card and manifest
    written and synced) is swapped with it in one ``renameat2(RENAME_EXCHANGE)``. Killed at any moment, the
    directory holds either the old or the new complete version; at most a hidden ``.NAME.*.card`` sibling is left
    behind. ``expect_manifest`` (the SHA-256 of the manifest the card was read with) refuses to overwrite a version
    that changed in between.
    """
    directory = Path(directory).resolve()
    if expect_manifest is not None and sha256_file(directory / MANIFEST) != expect_manifest:
        raise ArtifactError(f"{directory} changed while its card was being updated; run the command again")
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".card", dir=directory.parent))
    try:
        for path in directory.iterdir():
            if path.is_file() and path.name not in (CARD, CARD_MARKDOWN, MANIFEST) and keep(path.name):
                try:
                    os.link(path, tmp / path.name)  # unchanged files: share them, copy nothing
                except OSError:
                    shutil.copy2(path, tmp / path.name)
        add(tmp)
        for path in tmp.iterdir():
            _fsync_file(path)
        _write_file(tmp / CARD, lambda p: p.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8"))
        _write_file(tmp / CARD_MARKDOWN, lambda p: p.write_text(card_markdown, encoding="utf-8"))
        write_manifest(tmp)
        os.chmod(tmp, 0o755)
        fsync_dir(tmp)
        _exchange(tmp, directory)
        fsync_dir(directory.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after the swap: the old version's card, manifest and links
