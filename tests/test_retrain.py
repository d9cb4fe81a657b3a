"""Retraining workflow: the promotion gate, the comparison, rollback, pick-up without downtime, and kill -9 safety."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from calculator import create_app
from prognosis.store import MANIFEST, load_model
from tests.registries import random_registry
from training import artifact, promote
from training.card import render_markdown

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "training", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def edit_card(directory: Path, change) -> None:
    """Change a version's card the supported way (card and manifest swapped in together)."""
    card = json.loads((directory / "model_card.json").read_text())
    change(card)
    artifact.update_card(directory, card, render_markdown(card))


@pytest.fixture
def root(model_dir, tmp_path):
    """An artifacts folder with two validated versions v1 and v2 (same model files, different version labels)."""
    root = tmp_path / "artifacts"
    root.mkdir()
    for name in ("v1", "v2"):
        shutil.copytree(model_dir, root / name)
        edit_card(root / name, lambda card, n=name: card.update(model_version=n))
    return root


def data_csv(model_dir) -> Path:
    return Path(model_dir).parent / "test-synthetic-2000.csv"


# --- the promotion gate ---------------------------------------------------------------------------------------------


def test_unvalidated_candidate_is_refused_unless_forced(root):
    edit_card(root / "v1", lambda card: card.pop("validation"))
    refused = run("promote", str(root / "v1"), "--root", str(root))
    assert refused.returncode == 2 and "no validation" in refused.stderr and "--force" in refused.stderr
    assert not (root / "current").exists()
    forced = run("promote", str(root / "v1"), "--root", str(root), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "despite failed validation" in forced.stdout
    assert os.readlink(root / "current") == "v1"


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("harrell_c", 0.54, "Harrell's C 0.54 is below 0.55"),
        ("calibration_slope", 0.45, "calibration slope 0.45 is outside [0.5, 1.5]"),
        ("calibration_slope", 1.6, "calibration slope 1.6 is outside [0.5, 1.5]"),
    ],
)
def test_failed_validation_is_refused_unless_forced(root, key, value, message):
    promote.promote(root / "v1", root)
    edit_card(root / "v2", lambda card: card["validation"]["os"][key].update(optimism_corrected=value))
    with pytest.raises(artifact.ArtifactError, match=re.escape(message)):
        promote.promote(root / "v2", root)
    assert os.readlink(root / "current") == "v1"
    promote.promote(root / "v2", root, force=True)
    assert os.readlink(root / "current") == "v2"


def test_validation_of_other_model_files_does_not_count(root):
    edit_card(root / "v2", lambda card: card["validation"]["model_files"].update({"os.npz": "0" * 64}))
    with pytest.raises(artifact.ArtifactError, match="made for other model files"):
        promote.promote(root / "v2", root)


def test_comparison_on_the_candidates_data_and_rollback(root, model_dir):
    assert run("promote", str(root / "v1"), "--root", str(root)).returncode == 0
    done = run("promote", str(root / "v2"), "--root", str(root), "--data", str(data_csv(model_dir)))
    assert done.returncode == 0, done.stderr
    assert "comparison on the candidate's data: candidate v2 vs current v1" in done.stdout
    assert "HPFS: Harrell's C candidate" in done.stdout and "OS: Harrell's C candidate" in done.stdout
    assert os.readlink(root / "current") == "v2"
    # Without --data the source recorded by `validate` is used when it is unchanged.
    edit_card(root / "v1", lambda card: card["validation"]["data"].update(location=str(data_csv(model_dir))))
    back = run("promote", str(root / "v1"), "--root", str(root))  # the rollback
    assert back.returncode == 0, back.stderr
    assert "comparison on the candidate's data: candidate v1 vs current v2" in back.stdout
    assert os.readlink(root / "current") == "v1"
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


# --- a running app picks up the promoted version ---------------------------------------------------------------------


def test_running_app_serves_the_promoted_version(root):
    promote.promote(root / "v1", root)
    client = create_app({"TESTING": True, "MODEL_DIR": root / "current", "WTF_CSRF_ENABLED": False}).test_client()
    body = {"who_grade": 2, "tumor_burden": "<25%", "prior_resection_ablation": False}
    assert client.get("/readyz").get_json()["model_version"] == "v1"
    assert client.post("/api/v1/predict", json=body).get_json()["model"]["model_version"] == "v1"
    promote.promote(root / "v2", root)
    assert client.get("/readyz").get_json()["model_version"] == "v2"
    assert client.post("/api/v1/predict", json=body).get_json()["model"]["model_version"] == "v2"
    assert b"v2" in client.get("/model").data
    promote.promote(root / "v1", root)  # rollback, same process
    assert client.get("/readyz").get_json()["model_version"] == "v1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _version(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())["model_version"]
    except OSError:
        return None


def test_gunicorn_serves_the_promoted_version_without_restart(root, tmp_path):
    gunicorn = Path(PYTHON).parent / "gunicorn"
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed in this environment")
    promote.promote(root / "v1", root)
    port = _free_port()
    env = dict(
        os.environ,
        CALCULATOR_MODEL_DIR=str(root / "current"),
        CALCULATOR_BIND=f"127.0.0.1:{port}",
        CALCULATOR_WORKERS="2",
    )
    log = open(tmp_path / "gunicorn.log", "w")
    server = subprocess.Popen(
        [str(gunicorn), "--config", "gunicorn.conf.py", "calculator:create_app()"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        deadline = time.monotonic() + 60
        while _version(url) != "v1":
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.2)
        promote.promote(root / "v2", root)
        # Every worker (requests land on either) answers with the new version from its next request on.
        assert [_version(url) for _ in range(10)] == ["v2"] * 10
        assert server.poll() is None  # same server process throughout
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


# --- kill -9 at any moment ------------------------------------------------------------------------------------------


def assert_served_model_intact(root: Path) -> None:
    """current verifies, and every visible entry is a complete, verifiable version (temporaries start with '.')."""
    load_model(root / "current")
    for entry in root.iterdir():
        if entry.name.startswith(".") or entry.name == "current":
            continue
        assert entry.is_dir(), entry
        load_model(entry)


def test_kill_9_during_card_updates_and_promotions_leaves_a_verified_model(root):
    """Loops of update_card and promote, killed at random moments: every kill lands inside one of them."""
    promote.promote(root / "v1", root)
    loop = f"""
import json, sys
from pathlib import Path
from training import artifact, promote
from training.card import render_markdown
root = Path({str(root)!r})
card = json.loads((root / "v1" / "model_card.json").read_text())
print("ready", flush=True)
i = int(sys.argv[1]) * 100000
while True:
    i += 1
    card["model_version"] = f"v1-{{i}}"
    artifact.update_card(root / "v1", card, render_markdown(card))
    promote.promote(root / ("v2" if i % 2 else "v1"), root)
"""
    rng = random.Random(4)
    versions_seen = set()
    for k in range(8):
        proc = subprocess.Popen([PYTHON, "-c", loop, str(k)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert_served_model_intact(root)
        versions_seen.add(load_model(root / "v1").version)
    assert len(versions_seen) > 1  # the loop did get to rewrite the card between kills


@pytest.mark.slow
def test_kill_9_during_fit_validate_and_promote_commands(root, model_dir, tmp_path):
    csv = tmp_path / "registry.csv"
    random_registry(300, 61).to_csv(csv, index=False)
    promote.promote(root / "v1", root)
    commands = {
        "fit": lambda k: [
            "fit",
            "--data",
            str(csv),
            "--out",
            str(root / f"new{k}"),
            "--validate",
            "--bootstrap",
            "20",
            "--jobs",
            "1",
        ],
        "validate": lambda k: [
            "validate",
            str(root / "v1"),
            "--data",
            str(data_csv(model_dir)),
            "--bootstrap",
            "20",
            "--jobs",
            "1",
        ],
        "promote": lambda k: [
            "promote",
            str(root / ("v2" if k % 2 else "v1")),
            "--root",
            str(root),
            "--data",
            str(data_csv(model_dir)),
        ],
    }
    rng = random.Random(9)
    for command in commands.values():
        started = time.monotonic()
        assert run(*command(0)).returncode == 0
        duration = time.monotonic() - started
        for k in range(1, 3):  # two random moments per command (plus the loop test above for the switch itself)
            proc = subprocess.Popen(
                [PYTHON, "-m", "training", *command(k)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(0.2, duration))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert_served_model_intact(root)
    # Whatever was interrupted, the tree still validates and promotes.
    assert run("promote", str(root / "v1"), "--root", str(root)).returncode == 0
    assert (root / "v1" / MANIFEST).exists()
