"""Load one trained model version: verify its digests and versions first, then unpickle, once per process.

Unpickling a joblib file runs code, so nothing is unpickled until every file's SHA-256 matches the manifest and
the installed scikit-learn / scikit-survival are the versions the model was made with.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import joblib

from prognosis import covariates

MANIFEST = "MANIFEST.sha256"
CARD = "model_card.json"
# Packages whose pickled classes must match the installed ones exactly.
PICKLE_PACKAGES = ("scikit-learn", "scikit-survival")


class ModelLoadError(Exception):
    """The artifact directory is missing, incomplete, tampered with, or made under other library versions."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: Path) -> dict[str, str]:
    """``{file name: sha256}`` from the manifest (``sha256sum`` format, so ``sha256sum -c`` checks it too)."""
    path = directory / MANIFEST
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{directory}: no readable manifest ({MANIFEST})") from exc
    entries = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or "/" in name or name.startswith("."):
            raise ModelLoadError(f"{directory}: malformed manifest line {line[:80]!r}")
        entries[name] = digest
    return entries


def verify_directory(directory: Path) -> str:
    """Check every file against the manifest; return the manifest's own SHA-256 (the model's identity)."""
    if not directory.is_dir():
        raise ModelLoadError(f"model directory {directory} does not exist")
    entries = read_manifest(directory)
    present = {p.name for p in directory.iterdir() if p.is_file() and p.name != MANIFEST}
    unlisted = sorted(present - set(entries))
    if unlisted:
        raise ModelLoadError(f"{directory}: files not in the manifest: {', '.join(unlisted)}; refusing to load")
    for name, expected in entries.items():
        path = directory / name
        if not path.is_file():
            raise ModelLoadError(f"{directory}: {name} is listed in the manifest but missing")
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise ModelLoadError(f"{directory}: {name} cannot be read ({exc.strerror})") from exc
        if actual != expected:
            raise ModelLoadError(f"{directory}: {name} does not match its SHA-256 in the manifest "
                                 "(changed or tampered with); refusing to load it")
    return sha256_file(directory / MANIFEST)


def check_versions(card: dict) -> None:
    """Refuse a model pickled under other scikit-learn / scikit-survival versions than the installed ones."""
    made_with = card.get("software", {})
    for package in PICKLE_PACKAGES:
        installed = metadata.version(package)
        if made_with.get(package) != installed:
            raise ModelLoadError(f"the model was made with {package} {made_with.get(package)} but {installed} is "
                                 "installed; retrain it with the installed versions or install the ones it names")


@dataclass
class LoadedModel:
    """One verified model version, ready for scoring."""

    directory: Path
    sha256: str
    card: dict = field(repr=False)
    endpoints: dict[str, dict] = field(repr=False)

    def __repr__(self) -> str:
        return f"LoadedModel({self.version!r}, {str(self.directory)!r})"

    @property
    def version(self) -> str:
        return self.card["model_version"]

    @property
    def data_source(self) -> str:
        return self.card["data"]["source"]

    @property
    def created_at(self) -> str:
        return self.card["created_at"]


def load_model(directory: str | Path) -> LoadedModel:
    """Verify and load an artifact directory (a ``current`` link is followed to the version it names)."""
    directory = Path(directory).resolve()
    sha = verify_directory(directory)
    try:
        card = json.loads((directory / CARD).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{directory}: {CARD} is unreadable") from exc
    check_versions(card)
    endpoints = {}
    for name in covariates.ENDPOINTS:
        path = directory / f"{name}.joblib"
        if not path.is_file():
            raise ModelLoadError(f"{directory}: {path.name} is missing")
        endpoints[name] = joblib.load(path)
    return LoadedModel(directory=directory, sha256=sha, card=card, endpoints=endpoints)


_lock = threading.Lock()
_cache: dict[tuple[Path, str], LoadedModel] = {}


def get_model(directory: str | Path | None = None) -> LoadedModel:
    """The model for ``directory`` (default: the app's ``MODEL_DIR``), loaded once per process and version.

    The key is the resolved directory and its manifest's digest (one small file read per call): a ``current``
    link switched by ``promote``, or a version whose card was re-validated in place, is picked up by the next
    request, while a request already holding the old model finishes on it.
    """
    if directory is None:
        from flask import current_app  # imported here so that scoring and training never need Flask

        directory = current_app.config["MODEL_DIR"]
    target = Path(directory).resolve()
    try:
        key = (target, sha256_file(target / MANIFEST))
    except OSError as exc:
        raise ModelLoadError(f"model directory {target} has no readable manifest ({MANIFEST})") from exc
    with _lock:
        if key not in _cache:
            model = load_model(target)
            if model.sha256 != key[1]:
                raise ModelLoadError(f"{target} changed while it was being loaded; try again")
            for old in [k for k in _cache if k[0] == target]:
                del _cache[old]  # keep one version per directory in memory
            _cache[key] = model
        return _cache[key]
