"""Switch the version the calculator serves: ``model_artifacts/current`` → a verified, validated version.

``current`` is a symbolic link replaced with one ``rename``, so a running app serves either the old version or the
new one, never a half. The candidate must have passed validation unless forced (docs/validation.md). A version
fitted outside the served folder is copied into it first, so that the link the app reads points to it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from prognosis.store import CURRENT, MODEL_DIR_VARIABLE, ModelLoadError, load_model, served_model_dir
from registry import Registry
from training import validate
from training.artifact import ArtifactError, fsync_dir


def _into_root(directory: Path, root: Path, report: Callable[[str], None]) -> Path:
    """``directory`` itself when it lies in ``root``; else its copy there (made whole, then renamed into place)."""
    if directory.parent == root:
        return directory
    target = root / directory.name
    if target.exists():
        if load_model(target).sha256 == load_model(directory).sha256:
            report(f"{target} already holds this version")
            return target
        raise ArtifactError(f"{root} already has a different version named {directory.name}; rename one of them")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".copy", dir=root))
    try:
        for path in directory.iterdir():
            if path.is_file() and not path.name.startswith("."):
                shutil.copy2(path, tmp / path.name)
        load_model(tmp)  # the copy verifies before it is given its name
        os.chmod(tmp, 0o755)
        fsync_dir(tmp)
        os.rename(tmp, target)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report(f"copied {directory} into {root}, where the calculator serves from")
    return target


def _served_link(root: str | Path | None) -> tuple[Path, Path]:
    """The folder holding the link and the link: ``root/current``, or by default the path the calculator reads."""
    if root:
        return Path(root).resolve(), Path(root).resolve() / CURRENT
    served = served_model_dir().absolute()
    if served.exists() and not served.is_symlink():
        raise ArtifactError(
            f"the calculator serves {served} ({MODEL_DIR_VARIABLE}), a directory, not a link that promote could "
            f"switch: point {MODEL_DIR_VARIABLE} at a link (e.g. {served.parent / CURRENT}) or pass --root"
        )
    return served.parent.resolve(), served.parent.resolve() / served.name


def promote(
    directory: str | Path,
    root: str | Path | None = None,
    *,
    force: bool = False,
    registry: Registry | None = None,
    report: Callable[[str], None] | None = None,
) -> Path:
    """Make ``directory`` the version served by default: ``root/current`` → it, switched with one rename.

    ``root`` defaults to the folder the calculator serves from, and the link to the one it reads
    (``prognosis.store.served_model_dir``: ``model_artifacts/current`` unless ``CALCULATOR_MODEL_DIR`` names another
    link, whatever its name). The version is verified
    (digests, loadable) first, then gated on its validation (``training.validate.validation_failures``): a candidate
    that failed validation, or was never validated, is refused unless ``force``. With ``registry`` (the candidate's
    data) the candidate and the current model are compared on it and the comparison is reported before the switch.
    Promoting an older version is the rollback.
    """
    report = report or (lambda line: None)
    directory = Path(directory).resolve()
    root, link = _served_link(root)
    candidate = load_model(directory)  # raises ModelLoadError on anything wrong, before the switch
    current = None
    if link.exists():
        try:
            current = load_model(link)
        except ModelLoadError as exc:
            report(f"the current model does not load ({exc}); it will be replaced")
    if registry is not None and current is not None:
        for line in validate.format_comparison(
            validate.compare(candidate, current, registry), candidate.version, current.version
        ):
            report(line)
    failures = validate.validation_failures(candidate)
    if failures:
        reasons = "; ".join(failures)
        if not force:
            raise ArtifactError(f"refusing to promote {directory.name}: {reasons}. Pass --force to promote it anyway")
        report(f"promoting despite failed validation (--force): {reasons}")
    directory = _into_root(directory, root, report)
    target = os.path.relpath(directory, root)
    tmp = root / f".{link.name}.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(root)
    return link
