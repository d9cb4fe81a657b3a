"""A model version on disk: ``{endpoint}.npz`` arrays and ``model.json``, under a SHA-256 manifest.

Reading never unpickles: arrays are loaded with ``allow_pickle=False`` and everything else is JSON, after every
file's digest matched the manifest. A joblib export of a scikit-survival estimator may sit beside them for data
scientists; nothing here opens it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from prognosis import covariates
from prognosis.model import ChainLink, Cohort, EndpointModel, Model, RiskSets, UnknownsModel
from prognosis.prepared import prepare

# The folder the calculator serves from by default, and the link in it naming the served version.
MODEL_ARTIFACTS = Path(__file__).resolve().parent.parent / "model_artifacts"
CURRENT = "current"
MODEL_DIR_VARIABLE = "CALCULATOR_MODEL_DIR"
MANIFEST = "MANIFEST.sha256"
CARD = "model_card.json"
MODEL_JSON = "model.json"
FORMAT = 2  # 1: joblib pickles (before issue 10); 2: npz arrays + JSON
UNKNOWNS_PREFIX = "unknowns:"  # arrays of the chain of models of the optional covariates
RISK_SET_ARRAYS = ("event_times", "events", "at_risk", "cum_hazard", "cum_var_hazard", "cum_xbar_hazard")


def served_model_dir() -> Path:
    """Where the calculator looks for its model: ``$CALCULATOR_MODEL_DIR``, else ``model_artifacts/current``."""
    return Path(os.environ.get(MODEL_DIR_VARIABLE) or MODEL_ARTIFACTS / CURRENT)


class ModelLoadError(Exception):
    """The model directory is missing, incomplete, tampered with, or in a format this version cannot read."""


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


def manifest_text(directory: Path) -> str:
    """The manifest over every other (non-hidden) file in ``directory``."""
    return "".join(
        f"{sha256_file(p)}  {p.name}\n"
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
    )


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
            raise ModelLoadError(
                f"{directory}: {name} does not match its SHA-256 in the manifest "
                "(changed or tampered with); refusing to load it"
            )
    return sha256_file(directory / MANIFEST)


# --- writing and reading the model files ------------------------------------------------------------------------


def write_model_files(directory: Path, endpoints: Mapping[str, EndpointModel]) -> list[Path]:
    """Write ``{endpoint}.npz`` and ``model.json`` into ``directory``; return the paths written."""
    meta: dict = {"format": FORMAT, "endpoints": {}}
    paths = []
    for name, ep in endpoints.items():
        rs = ep.risk_sets
        links = ep.cohort.unknowns.links
        arrays = {
            "coef": ep.coef,
            "covariance": ep.covariance,
            **{key: getattr(rs, key) for key in RISK_SET_ARRAYS},
            **{f"{UNKNOWNS_PREFIX}{link.name}": link.coef for link in links},
        }
        path = directory / f"{name}.npz"
        np.savez_compressed(path, allow_pickle=False, **{k: np.asarray(v, dtype=float) for k, v in arrays.items()})
        paths.append(path)
        meta["endpoints"][name] = {
            "terms": list(ep.terms),
            "variance_scale": ep.variance_scale,
            "grade_modality": ep.cohort.grade_modality,
            "unknowns": [
                {"name": link.name, "levels": list(link.levels), "inputs": list(link.inputs)} for link in links
            ],
        }
    path = directory / MODEL_JSON
    path.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return [*paths, path]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path.parent}: {path.name} is unreadable") from exc


def read_endpoints(directory: Path) -> dict[str, EndpointModel]:
    """The endpoint models in ``directory`` (assumed verified), from arrays and JSON only."""
    if not (directory / MODEL_JSON).is_file():
        if any(directory.glob("*.joblib")):
            raise ModelLoadError(
                f"{directory} holds a model in the old pickled format, which the calculator no "
                f"longer opens; convert it with `python -m training convert {directory}`"
            )
        raise ModelLoadError(f"{directory}: {MODEL_JSON} is missing")
    meta = _read_json(directory / MODEL_JSON)
    if meta.get("format") != FORMAT:
        raise ModelLoadError(f"{directory}: model format {meta.get('format')!r} is not {FORMAT}")
    endpoints = {}
    for name, info in meta["endpoints"].items():
        try:
            with np.load(directory / f"{name}.npz", allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{directory}: {name}.npz is unreadable ({exc})") from exc
        try:
            links = tuple(
                ChainLink(
                    link["name"],
                    tuple(link["levels"]),
                    tuple(link["inputs"]),
                    arrays[f"{UNKNOWNS_PREFIX}{link['name']}"],
                )
                for link in info["unknowns"]
            )
            endpoints[name] = EndpointModel(
                name=name,
                terms=tuple(info["terms"]),
                coef=arrays["coef"],
                covariance=arrays["covariance"],
                risk_sets=RiskSets(**{key: arrays[key] for key in RISK_SET_ARRAYS}),
                cohort=Cohort(grade_modality=info["grade_modality"], unknowns=UnknownsModel(links)),
                variance_scale=float(info["variance_scale"]),
            )
        except KeyError as exc:
            raise ModelLoadError(f"{directory}: {name} lacks {exc}") from exc
        for link in links:
            if link.coef.shape != (len(link.levels) - 1, 1 + len(link.inputs)):
                raise ModelLoadError(f"{directory}: {name}'s model of {link.name} does not match its inputs")
        p = len(endpoints[name].terms)
        if endpoints[name].coef.shape != (p,) or endpoints[name].covariance.shape != (p, p):
            raise ModelLoadError(f"{directory}: {name}'s arrays do not match its {p} terms")
        foreign = sorted(set(endpoints[name].terms) - set(covariates.term_ids(covariates.OPTIONAL)))
        if foreign:
            raise ModelLoadError(
                f"{directory}: {name} uses terms the definitions ({covariates.DEFINITIONS_MODULE}) "
                f"do not have: {', '.join(foreign)}"
            )
    return endpoints


def load_model(directory: str | Path) -> Model:
    """Verify and load a model version (a ``current`` link is followed to the version it names)."""
    directory = Path(directory).resolve()
    sha = verify_directory(directory)
    card = _read_json(directory / CARD)
    return Model(directory=directory, sha256=sha, card=card, endpoints=read_endpoints(directory))


_lock = threading.Lock()
_cache: dict[Path, Model] = {}
# Per directory as given: the stat of the manifest it reaches and the model that was current then.
_stamps: dict[str, tuple[tuple[int, int, int, int], Model]] = {}


def cached_model(directory: str | Path) -> Model:
    """The model for ``directory``, loaded once per process and version (one version per directory in memory), with
    scoring's per-model constants computed as it loads (``prognosis.prepared.prepare``).

    The key is the resolved directory and its manifest's digest: a ``current`` link switched by ``promote``, or a
    version whose card was re-validated in place, is picked up by the next call, while a caller already holding the
    old model finishes on it. Each call stats the manifest through ``directory`` (a switched link reaches another
    file; a rewritten manifest has a new inode, size or modification time) and resolves and hashes only when that
    changed: one system call per request instead of a path resolution and a file read.
    """
    try:
        st = os.stat(Path(directory) / MANIFEST)
    except OSError:
        return _verified_model(directory)  # which says why the manifest cannot be read
    stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    seen = _stamps.get(os.fspath(directory))
    if seen is not None and seen[0] == stamp:
        return seen[1]
    model = _verified_model(directory)
    _stamps[os.fspath(directory)] = (stamp, model)
    return model


def _verified_model(directory: str | Path) -> Model:
    target = Path(directory).resolve()
    try:
        digest = sha256_file(target / MANIFEST)
    except OSError as exc:
        raise ModelLoadError(f"model directory {target} has no readable manifest ({MANIFEST})") from exc
    with _lock:
        model = _cache.get(target)
        if model is None or model.sha256 != digest:
            model = load_model(target)
            if model.sha256 != digest:
                raise ModelLoadError(f"{target} changed while it was being loaded; try again")
            try:
                prepare(model)  # scoring's per-model constants now, not on the first predictions
            except ValueError as exc:
                raise ModelLoadError(f"{target}: cannot be scored: {exc}") from exc
            _cache[target] = model
        return model
