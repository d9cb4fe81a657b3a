"""The code reads in one direction: prognosis (the model) and registry (reading tables) ← training and calculator;
neither of those imports the other, nor the other's stack, and nothing in the core calls back up (issue 10)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WEB = ("flask", "werkzeug", "wtforms", "flask_wtf", "jinja2")
FITTING = ("sklearn", "sksurv", "joblib", "lifelines", "sqlalchemy", "dask", "distributed")
# `python -m calculator score --dask` imports these when asked (they are not in the runtime image); nothing else in
# the calculator may.
OPTIONAL_DASK = ("dask", "distributed")


def imported_roots(package: str) -> dict[str, set[str]]:
    """Top-level packages each module of ``package`` imports (module level and inside functions)."""
    out: dict[str, set[str]] = {}
    for path in (REPO / package).rglob("*.py"):
        roots = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots.add(node.module.split(".")[0])
        out[str(path.relative_to(REPO))] = roots
    return out


@pytest.mark.parametrize(
    "package,forbidden",
    [
        ("prognosis", ("calculator", "training", "registry", "pandas", *WEB, *FITTING)),
        # registry imports sqlalchemy only when asked to read an SQL table (training's --data URL)
        ("registry", ("calculator", "training", *WEB, *(f for f in FITTING if f != "sqlalchemy"))),
        ("calculator", ("training", *(f for f in FITTING if f not in OPTIONAL_DASK))),
        ("training", ("calculator", *WEB)),
    ],
)
def test_imports_point_one_way(package, forbidden):
    offenders = {
        module: sorted(roots & set(forbidden))
        for module, roots in imported_roots(package).items()
        if roots & set(forbidden)
    }
    assert offenders == {}


def loaded_after(code: str) -> set[str]:
    """Top-level packages in sys.modules after running ``code`` in a fresh interpreter."""
    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_the_training_cli_loads_no_web_stack():
    """Must show: ``python -m training --help`` loads no Flask, Werkzeug or WTForms module."""
    loaded = loaded_after(
        "import contextlib, io\nfrom training.__main__ import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])"
    )
    assert "training" in loaded and not loaded & set(WEB)


def test_dask_is_imported_only_for_the_dask_path():
    """The batch scorer's module level imports no dask: the runtime image, without it, runs ``score`` in process."""
    tree = ast.parse((REPO / "calculator" / "score_cli.py").read_text(encoding="utf-8"))
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert not top & set(OPTIONAL_DASK)


def test_scoring_loads_numpy_and_scipy_only():
    """Must show: importing the scoring module loads no web stack; the core needs neither pandas nor any fitting
    library (the served model is arrays and JSON)."""
    loaded = loaded_after("import prognosis.scoring, prognosis.store")
    assert {"numpy", "scipy", "prognosis"} <= loaded
    assert not loaded & {*WEB, *FITTING, "pandas", "calculator", "training"}


def test_the_served_app_needs_no_fitting_library():
    loaded = loaded_after(
        "from calculator import create_app\napp = create_app({'TESTING': True})\n"
        "import calculator.api, calculator.views"
    )
    assert "flask" in loaded and not loaded & set(FITTING)
